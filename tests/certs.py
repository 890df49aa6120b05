"""Certificate factory for tests: roots, intermediates, leaves and cross-signs.

Every certificate is made with the `cryptography` builder and signed by a real
key, so path building and signature checks behave as with real chains. A
typical chain::

    root = make_root()
    intermediate = make_intermediate(root)
    leaf = make_leaf(intermediate, dns_names=["www.example.test"])
    chain = [leaf.der, intermediate.der]  # as a server presents it
    roots = (root.der,)

Validity defaults to `DEFAULT_NOT_BEFORE` .. `DEFAULT_NOT_AFTER` around the
fixed instant `NOW`; pass `not_before`/`not_after` (timezone-aware, whole
seconds) to choose them to the second. Keys default to fresh EC P-256; pass
`key=make_key("rsa", 1024)` or any other key for other types and sizes.
`hash_name` picks the signature hash, including "sha1" and "md5", which the
builder no longer signs with, so those certificates are re-signed here.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
"""The instant the default validity is built around; pass it as `now`."""

DEFAULT_NOT_BEFORE = NOW - timedelta(days=30)
DEFAULT_NOT_AFTER = NOW + timedelta(days=60)
CA_NOT_BEFORE = NOW - timedelta(days=365 * 5)
CA_NOT_AFTER = NOW + timedelta(days=365 * 10)

_CURVES: dict[int, ec.EllipticCurve] = {
    192: ec.SECP192R1(),
    224: ec.SECP224R1(),
    256: ec.SECP256R1(),
    384: ec.SECP384R1(),
    521: ec.SECP521R1(),
}

# AlgorithmIdentifier DER for the hashes that the builder rejects.
_LEGACY_ALGORITHMS: dict[tuple[str, str], bytes] = {
    ("rsa", "sha1"): bytes.fromhex("300d06092a864886f70d0101050500"),
    ("rsa", "md5"): bytes.fromhex("300d06092a864886f70d0101040500"),
    ("ec", "sha1"): bytes.fromhex("300906072a8648ce3d0401"),
}


@dataclass(frozen=True)
class Issued:
    """A certificate together with the private key of its subject."""

    cert: x509.Certificate
    key: PrivateKey

    @property
    def der(self) -> bytes:
        """The certificate in DER, as a server sends it."""
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def pem(self) -> bytes:
        """The certificate in PEM."""
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def sha256(self) -> str:
        """The SHA-256 fingerprint in lowercase hex without separators."""
        return self.cert.fingerprint(hashes.SHA256()).hex()

    @property
    def name(self) -> x509.Name:
        """The subject name, which certificates issued by this one carry."""
        return self.cert.subject

    def key_pem(self) -> bytes:
        """Return the private key as unencrypted PKCS#8 PEM."""
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def make_key(kind: str = "ec", size: int | None = None) -> PrivateKey:
    """Generate a private key.

    Args:
        kind: "rsa", "ec" or "ed25519".
        size: RSA modulus bits (default 2048, below 1024 allowed for weak-key
            tests) or EC curve bits: 192, 224, 256 (default), 384 or 521.

    Raises:
        ValueError: for an unknown kind or curve size.
    """
    if kind == "rsa":
        bits = size or 2048
        if bits < 1024:
            return _small_rsa_key(bits)
        return rsa.generate_private_key(public_exponent=65537, key_size=bits)
    if kind == "ec":
        curve = _CURVES.get(size or 256)
        if curve is None:
            raise ValueError(
                f"no EC curve of {size!r} bits; use one of {sorted(_CURVES)}"
            )
        return ec.generate_private_key(curve)
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unknown key kind {kind!r}; use 'rsa', 'ec' or 'ed25519'")


def name(common_name: str | None, organization: str | None = None) -> x509.Name:
    """Build a subject name from a common name and an optional organization."""
    attributes = []
    if organization is not None:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    if common_name is not None:
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def make_root(
    common_name: str = "certwatch test root",
    *,
    key: PrivateKey | None = None,
    not_before: datetime = CA_NOT_BEFORE,
    not_after: datetime = CA_NOT_AFTER,
    hash_name: str = "sha256",
    path_length: int | None = None,
) -> Issued:
    """Make a self-signed CA certificate to use as a trust root."""
    key = key or make_key()
    return _issue(
        subject=name(common_name, "certwatch tests"),
        public_key=key.public_key(),
        issuer=None,
        signing_key=key,
        subject_key=key,
        not_before=not_before,
        not_after=not_after,
        hash_name=hash_name,
        extensions=_ca_extensions(key.public_key(), None, path_length),
    )


def make_intermediate(
    issuer: Issued,
    common_name: str = "certwatch test intermediate",
    *,
    key: PrivateKey | None = None,
    not_before: datetime = CA_NOT_BEFORE,
    not_after: datetime = CA_NOT_AFTER,
    hash_name: str = "sha256",
    path_length: int | None = None,
    ca: bool = True,
) -> Issued:
    """Make a CA certificate issued by `issuer`.

    With `ca=False` the certificate lacks the CA basic constraint, so chains
    through it are invalid; use it to test `chain_invalid`.
    """
    key = key or make_key()
    extensions = _ca_extensions(key.public_key(), issuer, path_length)
    if not ca:
        extensions = _leaf_extensions(key.public_key(), issuer, [], [], True)
    return _issue(
        subject=name(common_name, "certwatch tests"),
        public_key=key.public_key(),
        issuer=issuer,
        signing_key=issuer.key,
        subject_key=key,
        not_before=not_before,
        not_after=not_after,
        hash_name=hash_name,
        extensions=extensions,
    )


def make_leaf(
    issuer: Issued | None,
    *,
    dns_names: Iterable[str] = ("www.example.test",),
    ip_addresses: Iterable[str] = (),
    common_name: str | None = None,
    san: bool = True,
    key: PrivateKey | None = None,
    not_before: datetime = DEFAULT_NOT_BEFORE,
    not_after: datetime = DEFAULT_NOT_AFTER,
    hash_name: str = "sha256",
    server_auth: bool = True,
) -> Issued:
    """Make an end-entity (server) certificate.

    Args:
        issuer: The issuing CA, or `None` for a self-signed leaf.
        dns_names: DNS SAN entries, written as given (wildcards and A-labels
            included).
        ip_addresses: iPAddress SAN entries, IPv4 or IPv6 text.
        common_name: Subject CN; defaults to the first DNS name or address.
        san: With `False`, the certificate has no SAN extension at all, so
            only the subject CN names it.
        key: The subject key; a fresh EC P-256 key by default.
        not_before: Start of validity, to the second.
        not_after: End of validity, to the second (still valid at it).
        hash_name: Signature hash: "sha256", "sha384", "sha512", "sha1", "md5".
        server_auth: With `False`, the extended key usage is clientAuth only.
    """
    key = key or make_key()
    dns_list = list(dns_names)
    ip_list = list(ip_addresses)
    if common_name is None and (dns_list or ip_list):
        common_name = (dns_list or ip_list)[0]
    subject = name(common_name)
    if not san:
        dns_list, ip_list = [], []
    extensions = _leaf_extensions(key.public_key(), issuer, dns_list, ip_list, san)
    if not server_auth:
        extensions = [
            (ext, critical)
            for ext, critical in extensions
            if not isinstance(ext, x509.ExtendedKeyUsage)
        ]
        extensions.append(
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
        )
    return _issue(
        subject=subject,
        public_key=key.public_key(),
        issuer=issuer,
        signing_key=issuer.key if issuer else key,
        subject_key=key,
        not_before=not_before,
        not_after=not_after,
        hash_name=hash_name,
        extensions=extensions,
    )


def make_self_signed(
    dns_names: Iterable[str] = ("www.example.test",),
    **options: Any,
) -> Issued:
    """Make a self-signed leaf; takes the keyword options of `make_leaf`."""
    return make_leaf(None, dns_names=dns_names, **options)


def cross_sign(
    ca: Issued,
    by: Issued,
    *,
    not_before: datetime = CA_NOT_BEFORE,
    not_after: datetime = CA_NOT_AFTER,
    hash_name: str = "sha256",
) -> Issued:
    """Issue a second certificate for `ca`'s subject and key, signed by `by`.

    Certificates issued by `ca` then chain through either version, as with
    the cross-signs that public CAs use to reach older roots.
    """
    return _issue(
        subject=ca.cert.subject,
        public_key=ca.key.public_key(),
        issuer=by,
        signing_key=by.key,
        subject_key=ca.key,
        not_before=not_before,
        not_after=not_after,
        hash_name=hash_name,
        extensions=_ca_extensions(ca.key.public_key(), by, None),
    )


def der_chain(*certificates: Issued) -> list[bytes]:
    """Return the DER of `certificates` in the given order."""
    return [certificate.der for certificate in certificates]


def seconds(value: datetime) -> datetime:
    """Drop the microseconds, because certificate times have whole seconds."""
    return value.replace(microsecond=0)


def _issue(
    *,
    subject: x509.Name,
    public_key: PublicKey,
    issuer: Issued | None,
    signing_key: PrivateKey,
    subject_key: PrivateKey,
    not_before: datetime,
    not_after: datetime,
    hash_name: str,
    extensions: Sequence[tuple[x509.ExtensionType, bool]],
) -> Issued:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)

    if hash_name in ("sha1", "md5"):
        certificate = _sign_legacy(builder, signing_key, hash_name)
    else:
        algorithm = (
            None
            if isinstance(signing_key, ed25519.Ed25519PrivateKey)
            else _hash(hash_name)
        )
        certificate = builder.sign(signing_key, algorithm)
    return Issued(certificate, subject_key)


def _hash(hash_name: str) -> hashes.HashAlgorithm:
    algorithms: dict[str, hashes.HashAlgorithm] = {
        "sha256": hashes.SHA256(),
        "sha384": hashes.SHA384(),
        "sha512": hashes.SHA512(),
        "sha1": hashes.SHA1(),
        "md5": hashes.MD5(),
    }
    if hash_name not in algorithms:
        raise ValueError(f"unknown hash {hash_name!r}; use one of {sorted(algorithms)}")
    return algorithms[hash_name]


def _ca_extensions(
    public_key: PublicKey, issuer: Issued | None, path_length: int | None
) -> list[tuple[x509.ExtensionType, bool]]:
    return [
        (x509.BasicConstraints(ca=True, path_length=path_length), True),
        (
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            True,
        ),
        (x509.SubjectKeyIdentifier.from_public_key(public_key), False),
        *_authority_key_id(public_key, issuer),
    ]


def _leaf_extensions(
    public_key: PublicKey,
    issuer: Issued | None,
    dns_names: list[str],
    ip_addresses: list[str],
    san: bool,
) -> list[tuple[x509.ExtensionType, bool]]:
    extensions: list[tuple[x509.ExtensionType, bool]] = [
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=isinstance(public_key, rsa.RSAPublicKey),
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            True,
        ),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
        (x509.SubjectKeyIdentifier.from_public_key(public_key), False),
        *_authority_key_id(public_key, issuer),
    ]
    if san:
        general_names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
        general_names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
        extensions.append((x509.SubjectAlternativeName(general_names), False))
    return extensions


def _authority_key_id(
    public_key: PublicKey, issuer: Issued | None
) -> list[tuple[x509.ExtensionType, bool]]:
    # A self-signed certificate names its own key; the verifier in
    # cryptography requires the extension on every non-root certificate.
    signer = issuer.key.public_key() if issuer else public_key
    return [(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer), False)]


def _sign_legacy(
    builder: x509.CertificateBuilder, signing_key: PrivateKey, hash_name: str
) -> x509.Certificate:
    """Sign with SHA-1 or MD5, which `CertificateBuilder.sign` rejects.

    The builder signs with SHA-256 first; then the signature algorithm inside
    the TBSCertificate and after it are swapped and the TBS is signed again.
    """
    if isinstance(signing_key, rsa.RSAPrivateKey):
        kind = "rsa"
    elif isinstance(signing_key, ec.EllipticCurvePrivateKey):
        kind = "ec"
    else:
        raise ValueError(f"{hash_name!r} signatures need an RSA or EC key")
    algorithm_id = _LEGACY_ALGORITHMS.get((kind, hash_name))
    if algorithm_id is None:
        raise ValueError(f"no {hash_name!r} signature algorithm for {kind} keys")

    template = builder.sign(signing_key, hashes.SHA256())
    tbs_fields = _der_children(template.tbs_certificate_bytes)
    # TBSCertificate: [0] version, serialNumber, signature AlgorithmIdentifier, ...
    tbs_fields[2] = algorithm_id
    tbs = _der_tlv(0x30, b"".join(tbs_fields))

    if isinstance(signing_key, rsa.RSAPrivateKey):
        signature = signing_key.sign(tbs, padding.PKCS1v15(), _hash(hash_name))
    else:
        signature = signing_key.sign(tbs, ec.ECDSA(_hash(hash_name)))
    bit_string = _der_tlv(0x03, b"\x00" + signature)
    der = _der_tlv(0x30, tbs + algorithm_id + bit_string)
    return x509.load_der_x509_certificate(der)


def _der_tlv(tag: int, content: bytes) -> bytes:
    length = len(content)
    if length < 0x80:
        return bytes([tag, length]) + content
    length_bytes = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length_bytes)]) + length_bytes + content


def _der_children(sequence: bytes) -> list[bytes]:
    """Split a DER SEQUENCE into the full encodings of its elements."""
    content_start, content_end = _der_bounds(sequence, 0)
    children = []
    position = content_start
    while position < content_end:
        _, child_end = _der_bounds(sequence, position)
        children.append(sequence[position:child_end])
        position = child_end
    return children


def _der_bounds(data: bytes, offset: int) -> tuple[int, int]:
    """Return (content start, element end) of the DER element at `offset`."""
    length = data[offset + 1]
    header = 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(data[offset + 2 : offset + 2 + count], "big")
        header += count
    return offset + header, offset + header + length


def _small_rsa_key(bits: int) -> rsa.RSAPrivateKey:
    """Build an RSA key below 1024 bits, which `generate_private_key` rejects."""
    exponent = 65537
    while True:
        p = _random_prime(bits // 2)
        q = _random_prime(bits - bits // 2)
        n = p * q
        phi = (p - 1) * (q - 1)
        if p != q and n.bit_length() == bits and phi % exponent:
            break
    d = pow(exponent, -1, phi)
    numbers = rsa.RSAPrivateNumbers(
        p=p,
        q=q,
        d=d,
        dmp1=d % (p - 1),
        dmq1=d % (q - 1),
        iqmp=pow(q, -1, p),
        public_numbers=rsa.RSAPublicNumbers(exponent, n),
    )
    return numbers.private_key(unsafe_skip_rsa_key_validation=True)


def _random_prime(bits: int) -> int:
    while True:
        candidate = secrets.randbits(bits) | (1 << (bits - 1)) | (1 << (bits - 2)) | 1
        if _is_probable_prime(candidate):
            return candidate


def _is_probable_prime(n: int, rounds: int = 32) -> bool:
    if n < 4:
        return n in (2, 3)
    for small in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37):
        if n % small == 0:
            return n == small
    d, r = n - 1, 0
    while d % 2 == 0:
        d //= 2
        r += 1
    for _ in range(rounds):
        witness = secrets.randbelow(n - 3) + 2
        x = pow(witness, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True
