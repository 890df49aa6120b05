"""read_facts on certificates built in each test with the cryptography builder."""

from __future__ import annotations

import hashlib
import ipaddress
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID

from certwatch.x509.facts import days_left, lifetime, load_certificate, read_facts
from certwatch.x509.model import CertificateFacts

NOT_BEFORE = datetime(2025, 1, 1, tzinfo=UTC)
NOT_AFTER = datetime(2025, 4, 1, 12, 30, 15, tzinfo=UTC)

_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_EC_KEY = ec.generate_private_key(ec.SECP384R1())
_ED25519_KEY = ed25519.Ed25519PrivateKey.generate()

_SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example, Inc."),
        ]
    )


def _build(
    key: _SigningKey,
    *,
    extensions: tuple[x509.ExtensionType, ...] = (),
    not_before: datetime = NOT_BEFORE,
    not_after: datetime = NOT_AFTER,
    algorithm: hashes.SHA256 | hashes.SHA384 | None = None,
    serial: int = 0x1F2E3D,
) -> bytes:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name("leaf.example"))
        .issuer_name(_name("Issuing CA"))
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)

    if isinstance(key, ed25519.Ed25519PrivateKey):
        algorithm = None
    elif algorithm is None:
        algorithm = hashes.SHA256()
    certificate = builder.sign(key, algorithm)
    return certificate.public_bytes(serialization.Encoding.DER)


def _spki_sha256(key: _SigningKey) -> str:
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).hexdigest()


def test_read_facts_rsa_fields() -> None:
    san = x509.SubjectAlternativeName(
        [x509.DNSName("leaf.example"), x509.DNSName("www.leaf.example")]
    )
    der = _build(_RSA_KEY, extensions=(san,))

    facts = read_facts(der)

    assert facts.parse_problems == ()
    assert facts.der == der
    assert facts.sha256 == hashlib.sha256(der).hexdigest()
    assert facts.subject == "O=Example\\, Inc.,CN=leaf.example"
    assert facts.issuer == "O=Example\\, Inc.,CN=Issuing CA"
    assert facts.common_name == "leaf.example"
    assert facts.serial == "1f2e3d"
    assert facts.dns_names == ("leaf.example", "www.leaf.example")
    assert facts.ip_addresses == ()
    assert facts.not_before == NOT_BEFORE
    assert facts.not_after == NOT_AFTER
    assert facts.spki_sha256 == _spki_sha256(_RSA_KEY)
    assert facts.key_type == "RSA"
    assert facts.key_size == 2048
    assert facts.signature_algorithm == "sha256WithRSAEncryption"
    assert facts.signature_hash == "sha256"
    assert facts.is_ca is None
    assert not facts.self_issued


def test_read_facts_ec_key() -> None:
    facts = read_facts(_build(_EC_KEY, algorithm=hashes.SHA384()))

    assert facts.key_type == "EC"
    assert facts.key_size == 384
    assert facts.signature_algorithm == "ecdsa-with-SHA384"
    assert facts.signature_hash == "sha384"
    assert facts.spki_sha256 == _spki_sha256(_EC_KEY)
    assert facts.parse_problems == ()


def test_read_facts_ed25519_key() -> None:
    facts = read_facts(_build(_ED25519_KEY))

    assert facts.key_type == "Ed25519"
    assert facts.key_size == 256
    assert facts.signature_algorithm == "ed25519"
    assert facts.signature_hash is None
    assert facts.spki_sha256 == _spki_sha256(_ED25519_KEY)
    assert facts.parse_problems == ()


def test_read_facts_sha1_signature() -> None:
    # cryptography 50 no longer signs with SHA-1, so the test swaps the OID of
    # sha256WithRSAEncryption for sha1WithRSAEncryption, which has the same
    # length. read_facts does not verify signatures, so the mismatch is fine.
    sha256_with_rsa = bytes.fromhex("06092a864886f70d01010b")
    sha1_with_rsa = bytes.fromhex("06092a864886f70d010105")
    der = _build(_RSA_KEY).replace(sha256_with_rsa, sha1_with_rsa)

    facts = read_facts(der)

    assert facts.signature_algorithm == "sha1WithRSAEncryption"
    assert facts.signature_hash == "sha1"


def test_read_facts_ipv6_canonical() -> None:
    san = x509.SubjectAlternativeName(
        [
            x509.IPAddress(
                ipaddress.ip_address("2001:0db8:0000:0000:0000:0000:0000:0001")
            ),
            x509.IPAddress(ipaddress.ip_address("::ffff:192.0.2.1")),
            x509.IPAddress(ipaddress.ip_address("192.0.2.10")),
            x509.DNSName("Mixed.Case.Example"),
        ]
    )

    facts = read_facts(_build(_EC_KEY, extensions=(san,)))

    assert facts.ip_addresses == ("2001:db8::1", "::ffff:c000:201", "192.0.2.10")
    assert facts.dns_names == ("mixed.case.example",)
    assert facts.parse_problems == ()


def test_read_facts_duplicate_dns_names() -> None:
    san = x509.SubjectAlternativeName(
        [
            x509.DNSName("a.example"),
            x509.DNSName("B.example"),
            x509.DNSName("b.example"),
            x509.DNSName("a.example"),
        ]
    )

    facts = read_facts(_build(_EC_KEY, extensions=(san,)))

    assert facts.dns_names == ("a.example", "b.example")
    assert len(facts.parse_problems) == 2
    assert "'b.example' more than once" in facts.parse_problems[0]
    assert "'a.example' more than once" in facts.parse_problems[1]


def test_read_facts_generalized_time_after_2049() -> None:
    not_after = datetime(2051, 6, 30, 23, 59, 59, tzinfo=UTC)

    facts = read_facts(_build(_EC_KEY, not_after=not_after))

    assert facts.not_after == not_after
    assert facts.not_after.tzinfo is UTC
    assert lifetime(facts) == not_after - NOT_BEFORE


def test_read_facts_urls_and_basic_constraints() -> None:
    access = x509.AuthorityInformationAccess(
        [
            x509.AccessDescription(
                AuthorityInformationAccessOID.OCSP,
                x509.UniformResourceIdentifier("http://ocsp.ca.example"),
            ),
            x509.AccessDescription(
                AuthorityInformationAccessOID.CA_ISSUERS,
                x509.UniformResourceIdentifier("http://ca.example/issuer.der"),
            ),
        ]
    )
    points = x509.CRLDistributionPoints(
        [
            x509.DistributionPoint(
                full_name=[x509.UniformResourceIdentifier("http://ca.example/1.crl")],
                relative_name=None,
                reasons=None,
                crl_issuer=None,
            )
        ]
    )
    constraints = x509.BasicConstraints(ca=True, path_length=0)

    facts = read_facts(_build(_EC_KEY, extensions=(access, points, constraints)))

    assert facts.ocsp_urls == ("http://ocsp.ca.example",)
    assert facts.ca_issuers_urls == ("http://ca.example/issuer.der",)
    assert facts.crl_urls == ("http://ca.example/1.crl",)
    assert facts.is_ca is True
    assert facts.parse_problems == ()


def test_read_facts_cached() -> None:
    der = _build(_EC_KEY, serial=0x55AA)

    assert read_facts(der) is read_facts(bytes(bytearray(der)))
    assert load_certificate(der) is load_certificate(der)
    assert load_certificate(der) is not None


def test_load_certificate_rejects_junk() -> None:
    assert load_certificate(b"\x30\x03\x02\x01\x01") is None


@pytest.mark.parametrize(
    ("before_not_after", "expected"),
    [
        (timedelta(days=2), 2),
        (timedelta(days=1), 1),
        (timedelta(days=1) - timedelta(seconds=1), 0),
        (timedelta(hours=23, minutes=59), 0),
        (timedelta(seconds=1), 0),
        (timedelta(0), 0),
        (timedelta(seconds=-1), -1),
        (-timedelta(days=1), -1),
        (-timedelta(days=1, seconds=1), -2),
    ],
)
def test_days_left_around_not_after(before_not_after: timedelta, expected: int) -> None:
    assert days_left(NOT_AFTER, NOT_AFTER - before_not_after) == expected


def test_lifetime_unknown_dates() -> None:
    facts = CertificateFacts(der=b"", sha256="", not_after=NOT_AFTER)

    assert lifetime(facts) is None
