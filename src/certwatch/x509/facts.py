"""Read the facts of one certificate, whatever its bytes contain.

`read_facts` never raises. It reads each field with `cryptography` in its own
guarded step, so a flaw in one field costs only that field and adds a sentence
to `parse_problems`. When `cryptography` cannot load the certificate at all,
the fields come from certwatch's own DER reader in `certwatch.x509.der`.

Both `read_facts` and `load_certificate` keep a bounded cache keyed by the DER
bytes, because a scan of many endpoints meets the same intermediates again
and again.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID

from certwatch.x509 import der as der_reader
from certwatch.x509.model import CertificateFacts

_T = TypeVar("_T")

# Enough for every root in a trust store plus the intermediates and leaves of
# a few thousand endpoints. Each entry keeps one certificate's DER and facts.
CACHE_SIZE = 8192

# Exceptions that `cryptography` 50 raises for a flawed field of a loaded
# certificate.
_FIELD_ERRORS = (
    ValueError,
    TypeError,
    UnsupportedAlgorithm,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
    x509.InvalidVersion,
)

# cryptography types iPAddress values as addresses or networks, and the DER
# reader hands over the raw octets.
_IpValue = (
    bytes
    | ipaddress.IPv4Address
    | ipaddress.IPv6Address
    | ipaddress.IPv4Network
    | ipaddress.IPv6Network
)


def read_facts(der: bytes) -> CertificateFacts:
    """Read the facts of a DER certificate; never raises.

    Fields that cannot be read stay `None` or empty, and `parse_problems`
    says why. Results are cached by the DER bytes.
    """
    return _read_facts_cached(bytes(der))


def load_certificate(der: bytes) -> x509.Certificate | None:
    """Load a DER certificate with `cryptography`, or `None` when it cannot.

    Results are cached by the DER bytes, so the trust code and `read_facts`
    share one loaded object per certificate.
    """
    return _load_cached(bytes(der))[0]


def days_left(not_after: datetime, now: datetime) -> int:
    """Return the whole days from `now` until `not_after`, rounded down.

    23 hours and 59 minutes left is 0, and one second past `not_after` is -1.
    Both datetimes must be timezone-aware.
    """
    return (not_after - now) // timedelta(days=1)


def lifetime(facts: CertificateFacts) -> timedelta | None:
    """Return not_after minus not_before, or `None` when either is unknown."""
    if facts.not_before is None or facts.not_after is None:
        return None
    return facts.not_after - facts.not_before


@functools.lru_cache(maxsize=CACHE_SIZE)
def _load_cached(der: bytes) -> tuple[x509.Certificate | None, str | None]:
    # cryptography 50 warns (CryptographyDeprecationWarning) when it loads a
    # serial number that is not positive. read_facts reports that from the
    # value itself, because a cached load warns only once.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return x509.load_der_x509_certificate(der), None
        except (ValueError, x509.InvalidVersion) as exc:
            return None, str(exc)


@functools.lru_cache(maxsize=CACHE_SIZE)
def _read_facts_cached(der: bytes) -> CertificateFacts:
    sha256 = hashlib.sha256(der).hexdigest()
    try:
        return _read(der, sha256)
    except Exception as exc:
        # The promise of read_facts is that one certificate never stops a
        # run, so an error that escaped both readers becomes a parse problem.
        return CertificateFacts(
            der=der,
            sha256=sha256,
            parse_problems=(f"certwatch failed to read the certificate: {exc!r}.",),
        )


def _read(der: bytes, sha256: str) -> CertificateFacts:
    certificate, error = _load_cached(der)
    if certificate is not None:
        return _CryptographyReader(certificate, der).read(sha256)

    problem = f"cryptography cannot load the certificate ({error})."
    try:
        parsed = der_reader.parse_certificate(der)
    except der_reader.DerError as exc:
        return CertificateFacts(
            der=der,
            sha256=sha256,
            parse_problems=(
                problem,
                f"The certificate is not valid DER: {exc}.",
            ),
        )
    return _facts_from_der(parsed, der, sha256, [problem])


@dataclass
class _Fields:
    """The facts gathered so far, in the types CertificateFacts wants."""

    problems: list[str]
    subject: str | None = None
    issuer: str | None = None
    serial: str | None = None
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()
    common_name: str | None = None
    not_before: datetime | None = None
    not_after: datetime | None = None
    spki_sha256: str | None = None
    key_type: str | None = None
    key_size: int | None = None
    signature_algorithm: str | None = None
    signature_hash: str | None = None
    is_ca: bool | None = None
    ocsp_urls: tuple[str, ...] = ()
    ca_issuers_urls: tuple[str, ...] = ()
    crl_urls: tuple[str, ...] = ()

    def facts(self, der: bytes, sha256: str) -> CertificateFacts:
        return CertificateFacts(
            der=der,
            sha256=sha256,
            subject=self.subject,
            issuer=self.issuer,
            serial=self.serial,
            dns_names=self.dns_names,
            ip_addresses=self.ip_addresses,
            common_name=self.common_name,
            not_before=self.not_before,
            not_after=self.not_after,
            spki_sha256=self.spki_sha256,
            key_type=self.key_type,
            key_size=self.key_size,
            signature_algorithm=self.signature_algorithm,
            signature_hash=self.signature_hash,
            is_ca=self.is_ca,
            ocsp_urls=self.ocsp_urls,
            ca_issuers_urls=self.ca_issuers_urls,
            crl_urls=self.crl_urls,
            parse_problems=tuple(self.problems),
        )

    def set_serial(self, serial: int) -> None:
        # A serial of 0 is also outside RFC 5280, but it reads fine and some
        # roots in Mozilla's store carry it, so only negative serials count.
        self.serial = format(serial, "x")
        if serial < 0:
            self.problems.append(
                f"The serial number {self.serial} is negative, which RFC 5280 forbids."
            )

    def set_subject_alt_names(
        self, dns_names: Iterable[str], ip_addresses: Iterable[_IpValue]
    ) -> None:
        self.dns_names = _unique("DNS name", (n.lower() for n in dns_names), self)
        canonical = (_canonical_ip(value, self.problems) for value in ip_addresses)
        self.ip_addresses = _unique(
            "IP address", (ip for ip in canonical if ip is not None), self
        )

    def set_signature(self, oid: str, hash_name: str | None) -> None:
        self.signature_algorithm = der_reader.SIGNATURE_ALGORITHMS.get(
            oid, (oid, None)
        )[0]
        self.signature_hash = hash_name

    def set_extensions(self, extensions: der_reader.DerExtensions) -> None:
        self.set_subject_alt_names(extensions.dns_names, extensions.ip_addresses)
        self.is_ca = extensions.is_ca
        self.ocsp_urls = extensions.ocsp_urls
        self.ca_issuers_urls = extensions.ca_issuers_urls
        self.crl_urls = extensions.crl_urls


def _unique(kind: str, values: Iterable[str], fields: _Fields) -> tuple[str, ...]:
    """Drop repeated values, keeping the first order, and report each repeat."""
    seen: dict[str, None] = {}
    for value in values:
        if value in seen:
            fields.problems.append(
                f"The subjectAltName extension lists the {kind} {value!r} "
                "more than once."
            )
        seen[value] = None
    return tuple(seen)


def _canonical_ip(value: _IpValue, problems: list[str]) -> str | None:
    if not isinstance(value, bytes):
        return str(value)
    if len(value) not in (4, 16):
        problems.append(
            f"The subjectAltName extension has an iPAddress of {len(value)} bytes "
            f"({value.hex()}), but an address has 4 or 16 bytes; it is ignored."
        )
        return None
    return str(ipaddress.ip_address(value))


def _facts_from_der(
    parsed: der_reader.DerCertificate, der: bytes, sha256: str, problems: list[str]
) -> CertificateFacts:
    fields = _Fields(problems=[*problems, *parsed.problems])
    if parsed.serial is not None:
        fields.set_serial(parsed.serial)
    fields.subject = parsed.subject
    fields.issuer = parsed.issuer
    fields.common_name = parsed.common_name
    fields.not_before = parsed.not_before
    fields.not_after = parsed.not_after
    if parsed.subject_public_key_info is not None:
        fields.spki_sha256 = _sha256(parsed.subject_public_key_info)
    fields.key_type = parsed.key_type
    fields.key_size = parsed.key_size
    if parsed.signature_algorithm_oid is not None:
        fields.set_signature(parsed.signature_algorithm_oid, parsed.signature_hash)
    if parsed.extensions is not None:
        fields.set_extensions(parsed.extensions)
    return fields.facts(der, sha256)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _CryptographyReader:
    """Read each field of a loaded certificate in its own guarded step."""

    def __init__(self, certificate: x509.Certificate, der: bytes) -> None:
        self._certificate = certificate
        self._der = der
        self._fields = _Fields(problems=[])
        self._caught: list[warnings.WarningMessage] = []

    def read(self, sha256: str) -> CertificateFacts:
        """Read every field under one warnings guard for the whole certificate.

        NOTE: warnings.catch_warnings() changes process-wide state on Python
        3.11, so warnings raised by other threads at the same moment may be
        recorded here or lost. Entering it once per certificate instead of
        once per field keeps that window short and the cost low.
        """
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            self._caught = caught
            self._read_fields()
        return self._fields.facts(self._der, sha256)

    def _read_fields(self) -> None:
        certificate = self._certificate
        fields = self._fields

        # cryptography 50 warns about a serial number that is not positive;
        # set_serial reports that in words of its own.
        serial = self._step(
            "serial number", lambda: certificate.serial_number, keep_warnings=False
        )
        if serial is not None:
            fields.set_serial(serial)
        fields.subject = self._step(
            "subject", lambda: certificate.subject.rfc4514_string()
        )
        fields.issuer = self._step(
            "issuer", lambda: certificate.issuer.rfc4514_string()
        )
        fields.common_name = self._step("subject commonName", self._common_name)
        fields.not_before = self._step(
            "not_before", lambda: certificate.not_valid_before_utc
        )
        fields.not_after = self._step(
            "not_after", lambda: certificate.not_valid_after_utc
        )
        fields.spki_sha256 = self._step("subjectPublicKeyInfo", self._spki_sha256)
        self._step("public key", self._read_key)
        self._step("signature algorithm", self._read_signature)
        self._read_extensions()

    def _step(
        self, what: str, read: Callable[[], _T], *, keep_warnings: bool = True
    ) -> _T | None:
        """Run one read, turning its errors and warnings into problems.

        It runs inside the guard of `read`, so the warnings that the guard
        recorded during this step belong to this field. They are taken off
        the record, and become problems unless `keep_warnings` is false.
        """
        caught = self._caught
        start = len(caught)
        problems = self._fields.problems
        try:
            value: _T | None = read()
        except _FIELD_ERRORS as exc:
            problems.append(f"The {what} cannot be read: {exc}.")
            value = None
        if len(caught) > start:
            if keep_warnings:
                problems.extend(
                    f"Reading the {what} gave a warning: {warning.message}."
                    for warning in caught[start:]
                )
            del caught[start:]
        return value

    def _common_name(self) -> str | None:
        names = self._certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if not names:
            return None
        value = names[0].value
        return value if isinstance(value, str) else value.hex()

    def _spki_sha256(self) -> str:
        return _sha256(der_reader.subject_public_key_info(self._der))

    def _read_key(self) -> None:
        fields = self._fields
        oid = self._certificate.public_key_algorithm_oid.dotted_string
        fields.key_type = der_reader.KEY_TYPES.get(oid, oid)
        if fields.key_type in der_reader.ED_KEY_SIZES:
            fields.key_size = der_reader.ED_KEY_SIZES[fields.key_type]
            return

        key = self._certificate.public_key()
        if isinstance(key, rsa.RSAPublicKey | dsa.DSAPublicKey):
            fields.key_size = key.key_size
        elif isinstance(key, ec.EllipticCurvePublicKey):
            fields.key_size = key.curve.key_size
        elif not isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            fields.problems.append(f"The size of the {oid} public key is unknown.")

    def _read_signature(self) -> None:
        oid = self._certificate.signature_algorithm_oid.dotted_string
        try:
            hash_algorithm = self._certificate.signature_hash_algorithm
        except UnsupportedAlgorithm:
            # cryptography 50 rejects MD2 and other retired hashes here,
            # but the OID still names the hash.
            hash_name = der_reader.SIGNATURE_ALGORITHMS.get(oid, (oid, None))[1]
        else:
            hash_name = None if hash_algorithm is None else hash_algorithm.name
        self._fields.set_signature(oid, hash_name)

    def _read_extensions(self) -> None:
        extensions = self._step("extensions", lambda: self._certificate.extensions)
        if extensions is None:
            self._read_extensions_from_der()
            return

        self._step("subjectAltName", lambda: self._read_subject_alt_name(extensions))
        self._step("basicConstraints", lambda: self._read_is_ca(extensions))
        self._step("authorityInfoAccess", lambda: self._read_authority_info(extensions))
        self._step("cRLDistributionPoints", lambda: self._read_crl_urls(extensions))

    def _read_extensions_from_der(self) -> None:
        """Take the extension values from the DER reader instead."""
        try:
            parsed = der_reader.parse_certificate(self._der)
        except der_reader.DerError as exc:
            self._fields.problems.append(f"The extensions cannot be read: {exc}.")
            return
        if parsed.extensions is not None:
            self._fields.set_extensions(parsed.extensions)
        known = set(self._fields.problems)
        self._fields.problems.extend(p for p in parsed.problems if p not in known)

    def _read_subject_alt_name(self, extensions: x509.Extensions) -> None:
        try:
            names = extensions.get_extension_for_class(x509.SubjectAlternativeName)
        except x509.ExtensionNotFound:
            return
        self._fields.set_subject_alt_names(
            names.value.get_values_for_type(x509.DNSName),
            names.value.get_values_for_type(x509.IPAddress),
        )

    def _read_is_ca(self, extensions: x509.Extensions) -> None:
        try:
            constraints = extensions.get_extension_for_class(x509.BasicConstraints)
        except x509.ExtensionNotFound:
            return
        self._fields.is_ca = constraints.value.ca

    def _read_authority_info(self, extensions: x509.Extensions) -> None:
        try:
            access = extensions.get_extension_for_class(x509.AuthorityInformationAccess)
        except x509.ExtensionNotFound:
            return
        urls = [
            (description.access_method, description.access_location.value)
            for description in access.value
            if isinstance(description.access_location, x509.UniformResourceIdentifier)
        ]
        self._fields.ocsp_urls = tuple(
            url for method, url in urls if method == AuthorityInformationAccessOID.OCSP
        )
        self._fields.ca_issuers_urls = tuple(
            url
            for method, url in urls
            if method == AuthorityInformationAccessOID.CA_ISSUERS
        )

    def _read_crl_urls(self, extensions: x509.Extensions) -> None:
        try:
            points = extensions.get_extension_for_class(x509.CRLDistributionPoints)
        except x509.ExtensionNotFound:
            return
        self._fields.crl_urls = tuple(
            name.value
            for point in points.value
            for name in point.full_name or ()
            if isinstance(name, x509.UniformResourceIdentifier)
        )
