"""A small DER reader for certificates that `cryptography` rejects.

`cryptography` refuses a whole certificate for one flaw (a DEFAULT value
encoded explicitly, bytes after the end, a truncated signature), but an expiry
monitor still wants the dates. This module reads the tbsCertificate fields of
RFC 5280 from the raw TLV structure. It accepts those flaws, records each as a
problem sentence, and raises `DerError` only when the outer structure cannot
be read at all.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

from certwatch.errors import CertwatchError

_T = TypeVar("_T")

_BOOLEAN = 0x01
_INTEGER = 0x02
_BIT_STRING = 0x03
_OCTET_STRING = 0x04
_NULL = 0x05
_OID = 0x06
_UTC_TIME = 0x17
_GENERALIZED_TIME = 0x18
_SEQUENCE = 0x30
_SET = 0x31
_VERSION = 0xA0
_EXTENSIONS = 0xA3
_DNS_NAME = 0x82
_URI = 0x86
_IP_ADDRESS = 0x87

# Short attribute names, the same set that `cryptography`'s rfc4514_string()
# uses, so both readers print a name the same way.
_ATTRIBUTE_NAMES = {
    "2.5.4.3": "CN",
    "2.5.4.6": "C",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.9": "STREET",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "0.9.2342.19200300.100.1.1": "UID",
    "0.9.2342.19200300.100.1.25": "DC",
}
_COMMON_NAME = "2.5.4.3"

# ASN.1 string types of X.520 attribute values and their Python codecs.
# TeletexString is decoded as Latin-1, so that every byte maps to a character.
_STRING_CODECS = {
    0x0C: "utf-8",
    0x12: "ascii",
    0x13: "ascii",
    0x14: "latin-1",
    0x16: "ascii",
    0x1A: "ascii",
    0x1C: "utf-32-be",
    0x1E: "utf-16-be",
}

# Signature algorithm OIDs with the names `cryptography` gives them and the
# hash each one implies; RSASSA-PSS names its hash in its parameters.
SIGNATURE_ALGORITHMS: dict[str, tuple[str, str | None]] = {
    "1.2.840.113549.1.1.2": ("md2WithRSAEncryption", "md2"),
    "1.2.840.113549.1.1.4": ("md5WithRSAEncryption", "md5"),
    "1.2.840.113549.1.1.5": ("sha1WithRSAEncryption", "sha1"),
    "1.3.14.3.2.29": ("sha1WithRSASignature", "sha1"),
    "1.2.840.113549.1.1.14": ("sha224WithRSAEncryption", "sha224"),
    "1.2.840.113549.1.1.11": ("sha256WithRSAEncryption", "sha256"),
    "1.2.840.113549.1.1.12": ("sha384WithRSAEncryption", "sha384"),
    "1.2.840.113549.1.1.13": ("sha512WithRSAEncryption", "sha512"),
    "1.2.840.113549.1.1.10": ("RSASSA-PSS", None),
    "1.2.840.10045.4.1": ("ecdsa-with-SHA1", "sha1"),
    "1.2.840.10045.4.3.1": ("ecdsa-with-SHA224", "sha224"),
    "1.2.840.10045.4.3.2": ("ecdsa-with-SHA256", "sha256"),
    "1.2.840.10045.4.3.3": ("ecdsa-with-SHA384", "sha384"),
    "1.2.840.10045.4.3.4": ("ecdsa-with-SHA512", "sha512"),
    "1.2.840.10040.4.3": ("dsa-with-sha1", "sha1"),
    "2.16.840.1.101.3.4.3.1": ("dsa-with-sha224", "sha224"),
    "2.16.840.1.101.3.4.3.2": ("dsa-with-sha256", "sha256"),
    "1.3.101.112": ("ed25519", None),
    "1.3.101.113": ("ed448", None),
}
_RSASSA_PSS = "1.2.840.113549.1.1.10"
_HASH_ALGORITHMS = {
    "1.2.840.113549.2.5": "md5",
    "1.3.14.3.2.26": "sha1",
    "2.16.840.1.101.3.4.2.4": "sha224",
    "2.16.840.1.101.3.4.2.1": "sha256",
    "2.16.840.1.101.3.4.2.2": "sha384",
    "2.16.840.1.101.3.4.2.3": "sha512",
}

KEY_TYPES = {
    "1.2.840.113549.1.1.1": "RSA",
    "1.2.840.10045.2.1": "EC",
    "1.3.101.112": "Ed25519",
    "1.3.101.113": "Ed448",
    "1.2.840.10040.4.1": "DSA",
}
# Curve OIDs and their sizes in bits, as `cryptography` reports curve.key_size.
_CURVE_SIZES = {
    "1.2.840.10045.3.1.7": 256,
    "1.3.132.0.10": 256,
    "1.3.132.0.33": 224,
    "1.3.132.0.34": 384,
    "1.3.132.0.35": 521,
    "1.2.840.10045.3.1.1": 192,
}
# Ed25519 and Ed448 have one size each: the length of the public key in bits.
ED_KEY_SIZES = {"Ed25519": 256, "Ed448": 456}

_SUBJECT_ALT_NAME = "2.5.29.17"
_BASIC_CONSTRAINTS = "2.5.29.19"
_CRL_DISTRIBUTION_POINTS = "2.5.29.31"
_AUTHORITY_INFO_ACCESS = "1.3.6.1.5.5.7.1.1"
_OCSP = "1.3.6.1.5.5.7.48.1"
_CA_ISSUERS = "1.3.6.1.5.5.7.48.2"

_UTC_TIME_PATTERN = re.compile(rb"(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z")
_GENERALIZED_TIME_PATTERN = re.compile(
    rb"(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(?:\.(\d{1,9}))?Z"
)


class DerError(CertwatchError, ValueError):
    """DER bytes that cannot be read as the structure RFC 5280 expects."""


@dataclass(frozen=True)
class Tlv:
    """One DER element: a tag and the span of its value inside `data`."""

    tag: int
    data: bytes = field(repr=False)
    start: int
    value_start: int
    end: int

    @property
    def value(self) -> bytes:
        return self.data[self.value_start : self.end]

    @property
    def encoded(self) -> bytes:
        """The whole element, tag and length included."""
        return self.data[self.start : self.end]


@dataclass(frozen=True)
class DerExtensions:
    """The extension values certwatch needs, as encoded.

    `ip_addresses` are the raw iPAddress octets, which may have any length.
    `is_ca` is `None` when basicConstraints is absent.
    """

    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[bytes, ...] = ()
    is_ca: bool | None = None
    ocsp_urls: tuple[str, ...] = ()
    ca_issuers_urls: tuple[str, ...] = ()
    crl_urls: tuple[str, ...] = ()


@dataclass(frozen=True)
class DerCertificate:
    """The fields read from a certificate; each is `None` when unreadable.

    `problems` has one sentence for every flaw met on the way.
    """

    serial: int | None = None
    issuer: str | None = None
    subject: str | None = None
    common_name: str | None = None
    not_before: datetime | None = None
    not_after: datetime | None = None
    subject_public_key_info: bytes | None = None
    key_type: str | None = None
    key_size: int | None = None
    signature_algorithm_oid: str | None = None
    signature_hash: str | None = None
    extensions: DerExtensions | None = None
    problems: tuple[str, ...] = ()


def read_tlv(data: bytes, offset: int, limit: int) -> Tlv:
    """Read the element at `offset`, which must end at or before `limit`.

    Raises:
        DerError: the element is cut off, uses an indefinite length or a
            high tag number, or runs past `limit`.
    """
    tag, value_start, end = _read_header(data, offset)
    if end > limit:
        raise DerError(
            f"element at offset {offset} needs {end - offset} bytes "
            f"but only {limit - offset} remain"
        )
    return Tlv(tag, data, offset, value_start, end)


def children(parent: Tlv) -> list[Tlv]:
    """Read every element inside a constructed element.

    Raises:
        DerError: one of the elements cannot be read.
    """
    items = []
    offset = parent.value_start
    while offset < parent.end:
        item = read_tlv(parent.data, offset, parent.end)
        items.append(item)
        offset = item.end
    return items


def parse_certificate(der: bytes) -> DerCertificate:
    """Read the fields of an X.509 certificate, tolerating common flaws.

    A certificate cut short still yields the fields before the cut.

    Raises:
        DerError: the bytes do not start with a certificate SEQUENCE that
            contains a tbsCertificate SEQUENCE.
    """
    problems: list[str] = []
    certificate = _read_outer(der, 0, len(der), "certificate", problems)
    if certificate.end < len(der):
        problems.append(
            f"The certificate is followed by {len(der) - certificate.end} "
            "bytes of extra data."
        )
    tbs = _read_outer(
        der, certificate.value_start, certificate.end, "tbsCertificate", problems
    )

    tbs_fields, error = _read_prefix(tbs)
    if error is not None:
        problems.append(
            f"The tbsCertificate is malformed after its first fields: {error}."
        )
    after_tbs, _ = _read_prefix(
        Tlv(_SEQUENCE, der, certificate.start, tbs.end, certificate.end)
    )
    outer_algorithm = after_tbs[0] if after_tbs else None
    return _TbsReader(tbs_fields, outer_algorithm, problems).read()


def subject_public_key_info(der: bytes) -> bytes:
    """Return the SubjectPublicKeyInfo element of a certificate, as encoded.

    Raises:
        DerError: the certificate has no readable SubjectPublicKeyInfo.
    """
    certificate = read_tlv(der, 0, len(der))
    tbs = read_tlv(der, certificate.value_start, certificate.end)
    fields = children(tbs)
    if fields and fields[0].tag == _VERSION:
        fields = fields[1:]
    if len(fields) < 6 or fields[5].tag != _SEQUENCE:
        raise DerError("tbsCertificate has no SubjectPublicKeyInfo SEQUENCE")
    return fields[5].encoded


def decode_oid(value: bytes) -> str:
    """Decode the contents of an OBJECT IDENTIFIER into dotted form.

    Raises:
        DerError: the contents are empty, padded or cut off.
    """
    if not value or value[-1] & 0x80:
        raise DerError(f"invalid OBJECT IDENTIFIER {value.hex()!r}")
    arcs: list[int] = []
    current = 0
    for byte in value:
        if current == 0 and byte == 0x80:
            raise DerError(
                f"OBJECT IDENTIFIER {value.hex()!r} is not minimally encoded"
            )
        current = (current << 7) | (byte & 0x7F)
        if byte & 0x80:
            continue
        if not arcs:
            # X.690 packs the first two arcs into one subidentifier.
            first = min(current // 40, 2)
            arcs.extend((first, current - 40 * first))
        else:
            arcs.append(current)
        current = 0
    return ".".join(str(arc) for arc in arcs)


def decode_integer(value: bytes) -> int:
    """Decode the two's-complement contents of an INTEGER.

    Raises:
        DerError: the contents are empty.
    """
    if not value:
        raise DerError("INTEGER with no content octets")
    return int.from_bytes(value, "big", signed=True)


def decode_time(element: Tlv) -> datetime:
    """Decode a UTCTime or GeneralizedTime into an aware UTC datetime.

    UTCTime years 50 to 99 are 1950 to 1999, as RFC 5280 section 4.1.2.5
    specifies.

    Raises:
        DerError: the element is another type or not a valid Zulu time.
    """
    if element.tag == _UTC_TIME:
        match = _UTC_TIME_PATTERN.fullmatch(element.value)
        if match is None:
            raise DerError(f"invalid UTCTime {element.value!r}")
        year = int(match[1])
        year += 1900 if year >= 50 else 2000
        fraction = b""
    elif element.tag == _GENERALIZED_TIME:
        match = _GENERALIZED_TIME_PATTERN.fullmatch(element.value)
        if match is None:
            raise DerError(f"invalid GeneralizedTime {element.value!r}")
        year = int(match[1])
        fraction = match[7] or b""
    else:
        raise DerError(f"tag 0x{element.tag:02x} is not a UTCTime or GeneralizedTime")

    month, day, hour, minute, second = (int(part) for part in match.groups()[1:6])
    microsecond = int(fraction.ljust(6, b"0")[:6])
    try:
        return datetime(year, month, day, hour, minute, second, microsecond, tzinfo=UTC)
    except ValueError as exc:
        raise DerError(f"impossible date {element.value!r}: {exc}") from exc


def name_to_string(name: Tlv) -> str:
    """Format a Name as an RFC 4514 string, last RDN first.

    Attribute types without a short name appear as dotted OIDs, and values of
    types other than strings as `#` and the hex of their encoding.

    Raises:
        DerError: the Name is not a SEQUENCE OF SET OF attributes.
    """
    rdns = []
    for rdn in _expect_children(name, _SEQUENCE, "Name"):
        attributes = [
            f"{_ATTRIBUTE_NAMES.get(oid, oid)}={_format_value(value)}"
            for oid, value in _rdn_attributes(rdn)
        ]
        rdns.append("+".join(attributes))
    return ",".join(reversed(rdns))


def first_common_name(name: Tlv) -> str | None:
    """Return the first commonName of a Name, or `None` when it has none.

    Raises:
        DerError: the Name is malformed.
    """
    for rdn in _expect_children(name, _SEQUENCE, "Name"):
        for oid, value in _rdn_attributes(rdn):
            if oid == _COMMON_NAME:
                text = _decode_string(value)
                return "#" + value.encoded.hex() if text is None else text
    return None


def _read_header(data: bytes, offset: int) -> tuple[int, int, int]:
    if offset + 2 > len(data):
        raise DerError(f"element at offset {offset} is cut off")
    tag = data[offset]
    if tag & 0x1F == 0x1F:
        raise DerError(f"high tag number form at offset {offset} is not supported")

    length = data[offset + 1]
    value_start = offset + 2
    if length == 0x80:
        raise DerError(f"indefinite length at offset {offset} is not allowed in DER")
    if length > 0x80:
        count = length & 0x7F
        if count > 4 or value_start + count > len(data):
            raise DerError(f"invalid length at offset {offset}")
        length = int.from_bytes(data[value_start : value_start + count], "big")
        value_start += count
    return tag, value_start, value_start + length


def _read_outer(
    data: bytes, offset: int, limit: int, what: str, problems: list[str]
) -> Tlv:
    """Read a SEQUENCE, cutting its length to `limit` when it claims more."""
    tag, value_start, end = _read_header(data, offset)
    if tag != _SEQUENCE:
        raise DerError(f"{what} is not a SEQUENCE (tag 0x{tag:02x})")
    if end > limit:
        problems.append(
            f"The {what} is truncated: it declares {end - offset} bytes "
            f"but only {limit - offset} are present."
        )
        end = limit
    return Tlv(tag, data, offset, value_start, end)


def _read_prefix(parent: Tlv) -> tuple[list[Tlv], str | None]:
    """Read elements until one fails, returning those read and the error."""
    items: list[Tlv] = []
    offset = parent.value_start
    while offset < parent.end:
        try:
            item = read_tlv(parent.data, offset, parent.end)
        except DerError as exc:
            return items, str(exc)
        items.append(item)
        offset = item.end
    return items, None


def _expect(element: Tlv, tag: int, what: str) -> Tlv:
    if element.tag != tag:
        raise DerError(f"{what} has tag 0x{element.tag:02x}, expected 0x{tag:02x}")
    return element


def _expect_children(element: Tlv, tag: int, what: str) -> list[Tlv]:
    return children(_expect(element, tag, what))


def _only_child(element: Tlv, what: str) -> Tlv:
    items = children(element)
    if len(items) != 1:
        raise DerError(f"{what} has {len(items)} elements, expected 1")
    return items[0]


def _first_child(element: Tlv, tag: int, what: str) -> Tlv:
    items = _expect_children(element, tag, what)
    if not items:
        raise DerError(f"{what} is empty")
    return items[0]


def _rdn_attributes(rdn: Tlv) -> Iterator[tuple[str, Tlv]]:
    for attribute in _expect_children(rdn, _SET, "RelativeDistinguishedName"):
        parts = _expect_children(attribute, _SEQUENCE, "AttributeTypeAndValue")
        if len(parts) != 2:
            raise DerError("AttributeTypeAndValue does not have two elements")
        oid = decode_oid(_expect(parts[0], _OID, "attribute type").value)
        yield oid, parts[1]


def _decode_string(value: Tlv) -> str | None:
    codec = _STRING_CODECS.get(value.tag)
    if codec is None:
        return None
    try:
        return value.value.decode(codec)
    except UnicodeDecodeError:
        return None


def _format_value(value: Tlv) -> str:
    """Format an attribute value as RFC 4514 section 2.4 requires."""
    text = _decode_string(value)
    if text is None:
        return "#" + value.encoded.hex()

    last = len(text) - 1
    characters = []
    for index, char in enumerate(text):
        if char == "\0":
            characters.append("\\00")
        elif (
            char in '\\"+,;<>'
            or (index == 0 and char in "# ")
            or (index == last and char == " ")
        ):
            characters.append("\\" + char)
        else:
            characters.append(char)
    return "".join(characters)


class _TbsReader:
    """Read each tbsCertificate field on its own, so one flaw costs one field."""

    def __init__(
        self, fields: list[Tlv], outer_algorithm: Tlv | None, problems: list[str]
    ) -> None:
        self._problems = problems
        self._outer_algorithm = outer_algorithm
        self._fields: dict[str, Tlv] = {}
        self._extensions: Tlv | None = None
        self._place(fields)

    def read(self) -> DerCertificate:
        serial = self._step("serial number", self._serial)
        issuer = self._step("issuer", lambda: name_to_string(self._field("issuer")))
        subject = self._step("subject", lambda: name_to_string(self._field("subject")))
        common_name = self._step(
            "subject commonName", lambda: first_common_name(self._field("subject"))
        )
        validity = self._step("validity", self._validity)
        spki = self._step("subjectPublicKeyInfo", lambda: self._field("spki").encoded)
        key = self._step("public key", self._key)
        algorithm = self._step("signature algorithm", self._signature_algorithm)
        extensions = self._step("extensions", self._read_extensions)

        return DerCertificate(
            serial=serial,
            issuer=issuer,
            subject=subject,
            common_name=common_name,
            not_before=validity[0] if validity else None,
            not_after=validity[1] if validity else None,
            subject_public_key_info=spki,
            key_type=key[0] if key else None,
            key_size=key[1] if key else None,
            signature_algorithm_oid=algorithm[0] if algorithm else None,
            signature_hash=algorithm[1] if algorithm else None,
            extensions=extensions,
            problems=tuple(self._problems),
        )

    def _place(self, fields: list[Tlv]) -> None:
        if fields and fields[0].tag == _VERSION:
            self._check_version(fields[0])
            fields = fields[1:]
        names = ("serial", "signature", "issuer", "validity", "subject", "spki")
        self._fields = dict(zip(names, fields, strict=False))
        for extra in fields[len(names) :]:
            if extra.tag == _EXTENSIONS:
                self._extensions = extra

    def _check_version(self, version: Tlv) -> None:
        try:
            number = _only_child(version, "version")
            value = decode_integer(_expect(number, _INTEGER, "version").value)
        except DerError as exc:
            self._problems.append(f"The version field is malformed: {exc}.")
            return
        if value == 0:
            self._problems.append(
                "The certificate encodes the default version (v1) explicitly, "
                "which DER forbids."
            )

    def _step(self, what: str, read: Callable[[], _T]) -> _T | None:
        try:
            return read()
        except DerError as exc:
            self._problems.append(f"The {what} cannot be read: {exc}.")
            return None

    def _field(self, name: str) -> Tlv:
        try:
            return self._fields[name]
        except KeyError:
            raise DerError(f"the tbsCertificate has no {name} field") from None

    def _serial(self) -> int:
        return decode_integer(_expect(self._field("serial"), _INTEGER, "serial").value)

    def _validity(self) -> tuple[datetime, datetime]:
        times = _expect_children(self._field("validity"), _SEQUENCE, "Validity")
        if len(times) != 2:
            raise DerError(f"Validity has {len(times)} elements, expected 2")
        return decode_time(times[0]), decode_time(times[1])

    def _key(self) -> tuple[str, int | None]:
        parts = _expect_children(self._field("spki"), _SEQUENCE, "SubjectPublicKeyInfo")
        if len(parts) != 2:
            raise DerError("SubjectPublicKeyInfo does not have two elements")
        oid, parameters = _algorithm_identifier(parts[0])
        key_type = KEY_TYPES.get(oid, oid)
        return key_type, _key_size(key_type, parameters, parts[1])

    def _signature_algorithm(self) -> tuple[str, str | None]:
        element = self._outer_algorithm or self._field("signature")
        oid, parameters = _algorithm_identifier(element)
        if oid == _RSASSA_PSS:
            return oid, _pss_hash(parameters)
        return oid, SIGNATURE_ALGORITHMS.get(oid, (oid, None))[1]

    def _read_extensions(self) -> DerExtensions | None:
        if self._extensions is None:
            return None
        sequence = _only_child(self._extensions, "extensions")
        values = _ExtensionValues(self._problems)
        for extension in _expect_children(sequence, _SEQUENCE, "Extensions"):
            values.add(extension)
        return values.result()


def _algorithm_identifier(element: Tlv) -> tuple[str, Tlv | None]:
    parts = _expect_children(element, _SEQUENCE, "AlgorithmIdentifier")
    if not parts or len(parts) > 2:
        raise DerError(f"AlgorithmIdentifier has {len(parts)} elements")
    oid = decode_oid(_expect(parts[0], _OID, "algorithm").value)
    return oid, parts[1] if len(parts) == 2 else None


def _key_size(key_type: str, parameters: Tlv | None, key: Tlv) -> int | None:
    if key_type in ED_KEY_SIZES:
        return ED_KEY_SIZES[key_type]
    if key_type == "EC" and parameters is not None and parameters.tag == _OID:
        return _CURVE_SIZES.get(decode_oid(parameters.value))
    if key_type == "DSA" and parameters is not None and parameters.tag == _SEQUENCE:
        prime = _first_child(parameters, _SEQUENCE, "Dss-Parms")
        return decode_integer(prime.value).bit_length()
    if key_type == "RSA":
        bits = _expect(key, _BIT_STRING, "subjectPublicKey").value
        if not bits or bits[0] != 0:
            raise DerError("RSA subjectPublicKey has unused bits")
        rsa_key = read_tlv(bits, 1, len(bits))
        modulus = _first_child(rsa_key, _SEQUENCE, "RSAPublicKey")
        return decode_integer(modulus.value).bit_length()
    return None


def _pss_hash(parameters: Tlv | None) -> str | None:
    """Return the hash of RSASSA-PSS parameters, SHA-1 when absent (RFC 4055)."""
    if parameters is None or parameters.tag != _SEQUENCE:
        return None
    for item in children(parameters):
        if item.tag == 0xA0:
            oid, _ = _algorithm_identifier(_only_child(item, "hashAlgorithm"))
            return _HASH_ALGORITHMS.get(oid)
    return "sha1"


class _ExtensionValues:
    """Collect the extension values certwatch uses, first occurrence wins."""

    def __init__(self, problems: list[str]) -> None:
        self._problems = problems
        self._seen: set[str] = set()
        self._dns_names: list[str] = []
        self._ip_addresses: list[bytes] = []
        self._is_ca: bool | None = None
        self._ocsp_urls: list[str] = []
        self._ca_issuers_urls: list[str] = []
        self._crl_urls: list[str] = []

    def add(self, extension: Tlv) -> None:
        try:
            self._add(extension)
        except DerError as exc:
            self._problems.append(f"An extension cannot be read: {exc}.")

    def _add(self, extension: Tlv) -> None:
        parts = _expect_children(extension, _SEQUENCE, "Extension")
        if len(parts) not in (2, 3):
            raise DerError(f"Extension has {len(parts)} elements")
        oid = decode_oid(_expect(parts[0], _OID, "extnID").value)
        if oid in self._seen:
            self._problems.append(f"The extension {oid} appears more than once.")
            return
        self._seen.add(oid)
        if len(parts) == 3 and parts[1].value == b"\x00":
            self._problems.append(
                f"The extension {oid} encodes critical=FALSE explicitly, "
                "which DER forbids because FALSE is the default."
            )

        content = _expect(parts[-1], _OCTET_STRING, "extnValue").value
        try:
            self._read(oid, read_tlv(content, 0, len(content)))
        except DerError as exc:
            self._problems.append(f"The extension {oid} cannot be read: {exc}.")

    def result(self) -> DerExtensions:
        return DerExtensions(
            dns_names=tuple(self._dns_names),
            ip_addresses=tuple(self._ip_addresses),
            is_ca=self._is_ca,
            ocsp_urls=tuple(self._ocsp_urls),
            ca_issuers_urls=tuple(self._ca_issuers_urls),
            crl_urls=tuple(self._crl_urls),
        )

    def _read(self, oid: str, value: Tlv) -> None:
        if oid == _SUBJECT_ALT_NAME:
            self._read_subject_alt_name(value)
        elif oid == _BASIC_CONSTRAINTS:
            flags = _expect_children(value, _SEQUENCE, "BasicConstraints")
            self._is_ca = bool(
                flags and flags[0].tag == _BOOLEAN and flags[0].value != b"\x00"
            )
        elif oid == _AUTHORITY_INFO_ACCESS:
            self._read_authority_info_access(value)
        elif oid == _CRL_DISTRIBUTION_POINTS:
            self._read_crl_distribution_points(value)

    def _read_subject_alt_name(self, value: Tlv) -> None:
        for name in _expect_children(value, _SEQUENCE, "GeneralNames"):
            if name.tag == _DNS_NAME:
                self._dns_names.append(name.value.decode("latin-1"))
            elif name.tag == _IP_ADDRESS:
                self._ip_addresses.append(name.value)

    def _read_authority_info_access(self, value: Tlv) -> None:
        for description in _expect_children(value, _SEQUENCE, "AuthorityInfoAccess"):
            parts = _expect_children(description, _SEQUENCE, "AccessDescription")
            if len(parts) != 2 or parts[1].tag != _URI:
                continue
            method = decode_oid(_expect(parts[0], _OID, "accessMethod").value)
            url = parts[1].value.decode("latin-1")
            if method == _OCSP:
                self._ocsp_urls.append(url)
            elif method == _CA_ISSUERS:
                self._ca_issuers_urls.append(url)

    def _read_crl_distribution_points(self, value: Tlv) -> None:
        points = _expect_children(value, _SEQUENCE, "CRLDistributionPoints")
        for point in points:
            for name in _expect_children(point, _SEQUENCE, "DistributionPoint"):
                if name.tag != 0xA0:
                    continue
                for full_name in children(name):
                    if full_name.tag != 0xA0:
                        continue
                    self._crl_urls.extend(
                        uri.value.decode("latin-1")
                        for uri in children(full_name)
                        if uri.tag == _URI
                    )
