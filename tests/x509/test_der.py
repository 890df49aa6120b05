"""read_facts and the DER reader on hand-built, malformed certificates.

Each test builds a certificate from TLV parts, so one part can carry a flaw
that the `cryptography` builder would never write. Signatures are junk bytes,
because nothing here verifies them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from certwatch.x509 import der as der_reader
from certwatch.x509.facts import read_facts

NOT_BEFORE = datetime(2020, 1, 1, tzinfo=UTC)
NOT_AFTER = datetime(2051, 1, 1, 12, 0, 0, tzinfo=UTC)

_EC_SPKI = (
    ec.generate_private_key(ec.SECP256R1())
    .public_key()
    .public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
)


def tlv(tag: int, content: bytes) -> bytes:
    """Encode one DER element with a minimal definite length."""
    if len(content) < 0x80:
        return bytes([tag, len(content)]) + content
    size = len(content).to_bytes((len(content).bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def seq(*parts: bytes) -> bytes:
    return tlv(0x30, b"".join(parts))


def oid(dotted: str) -> bytes:
    arcs = [int(arc) for arc in dotted.split(".")]
    body = bytearray()
    for arc in [40 * arcs[0] + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        while arc > 0x7F:
            arc >>= 7
            chunk.append(0x80 | (arc & 0x7F))
        body.extend(reversed(chunk))
    return tlv(0x06, bytes(body))


def name(common_name: str) -> bytes:
    attribute = seq(oid("2.5.4.3"), tlv(0x0C, common_name.encode()))
    return seq(tlv(0x31, attribute))


def extension(extension_oid: str, value: bytes, critical: bytes = b"") -> bytes:
    return seq(oid(extension_oid), critical, tlv(0x04, value))


def subject_alt_name(*names: bytes) -> bytes:
    return extension("2.5.29.17", seq(*names))


ECDSA_WITH_SHA256 = seq(oid("1.2.840.10045.4.3.2"))
SAN = subject_alt_name(tlv(0x82, b"leaf.example"), tlv(0x87, bytes([192, 0, 2, 1])))


@dataclass(frozen=True)
class Parts:
    """The parts of a hand-built certificate, valid unless a test changes one."""

    version: bytes = tlv(0xA0, tlv(0x02, b"\x02"))
    serial: bytes = tlv(0x02, b"\x01\x02\x03")
    issuer: bytes = name("Hand CA")
    not_before: bytes = tlv(0x17, b"200101000000Z")
    not_after: bytes = tlv(0x18, b"20510101120000Z")
    subject: bytes = name("leaf.example")
    spki: bytes = _EC_SPKI
    extensions: tuple[bytes, ...] = (SAN,)
    trailing: bytes = b""

    def encode(self) -> bytes:
        tbs = seq(
            self.version,
            self.serial,
            ECDSA_WITH_SHA256,
            self.issuer,
            seq(self.not_before, self.not_after),
            self.subject,
            self.spki,
            tlv(0xA3, seq(*self.extensions)) if self.extensions else b"",
        )
        signature = tlv(0x03, b"\x00" + seq(tlv(0x02, b"\x01"), tlv(0x02, b"\x01")))
        return seq(tbs, ECDSA_WITH_SHA256, signature) + self.trailing


VALID = Parts()


def _assert_dates_read(der: bytes) -> None:
    facts = read_facts(der)
    assert facts.not_before == NOT_BEFORE
    assert facts.not_after == NOT_AFTER


def test_parts_valid_baseline() -> None:
    der = VALID.encode()

    facts = read_facts(der)

    assert x509.load_der_x509_certificate(der).serial_number == 0x010203
    assert facts.parse_problems == ()
    assert facts.serial == "10203"
    assert facts.not_after == NOT_AFTER
    assert facts.dns_names == ("leaf.example",)
    assert facts.ip_addresses == ("192.0.2.1",)
    assert facts.spki_sha256 == hashlib.sha256(_EC_SPKI).hexdigest()


def test_read_facts_negative_serial() -> None:
    der = replace(VALID, serial=tlv(0x02, b"\x81")).encode()

    facts = read_facts(der)

    assert facts.serial == "-7f"
    assert facts.parse_problems == (
        "The serial number -7f is negative, which RFC 5280 forbids.",
    )
    _assert_dates_read(der)


def test_read_facts_zero_serial() -> None:
    facts = read_facts(replace(VALID, serial=tlv(0x02, b"\x00")).encode())

    assert facts.serial == "0"
    assert facts.parse_problems == ()


def test_read_facts_explicit_default_version() -> None:
    der = replace(VALID, version=tlv(0xA0, tlv(0x02, b"\x00"))).encode()

    facts = read_facts(der)

    assert facts.parse_problems[0].startswith("cryptography cannot load")
    assert any("default version (v1)" in p for p in facts.parse_problems)
    assert facts.serial == "10203"
    assert facts.subject == "CN=leaf.example"
    assert facts.issuer == "CN=Hand CA"
    assert facts.dns_names == ("leaf.example",)
    assert facts.key_type == "EC"
    assert facts.key_size == 256
    assert facts.signature_algorithm == "ecdsa-with-SHA256"
    assert facts.signature_hash == "sha256"
    _assert_dates_read(der)


def test_read_facts_explicit_critical_false() -> None:
    san = extension("2.5.29.17", seq(tlv(0x82, b"a.example")), tlv(0x01, b"\x00"))
    der = replace(VALID, extensions=(san,)).encode()

    facts = read_facts(der)

    assert any("critical=FALSE explicitly" in p for p in facts.parse_problems)
    assert facts.dns_names == ("a.example",)
    assert facts.spki_sha256 == hashlib.sha256(_EC_SPKI).hexdigest()
    _assert_dates_read(der)


def test_read_facts_duplicate_san_entries() -> None:
    san = subject_alt_name(
        tlv(0x82, b"a.example"), tlv(0x82, b"A.EXAMPLE"), tlv(0x87, bytes(4))
    )
    second_san = subject_alt_name(tlv(0x82, b"b.example"))
    der = replace(VALID, extensions=(san, second_san)).encode()

    facts = read_facts(der)

    assert facts.dns_names == ("a.example",)
    assert facts.ip_addresses == ("0.0.0.0",)
    assert any("'a.example' more than once" in p for p in facts.parse_problems)
    assert any("2.5.29.17 appears more than once" in p for p in facts.parse_problems)
    _assert_dates_read(der)


def test_read_facts_junk_san_ip_address() -> None:
    san = subject_alt_name(
        tlv(0x82, b"a.example"),
        tlv(0x87, b"\x0a\x00\x00\x01\x05"),
        tlv(0x87, bytes(range(16))),
    )
    der = replace(VALID, extensions=(san,)).encode()

    facts = read_facts(der)

    assert facts.dns_names == ("a.example",)
    assert facts.ip_addresses == ("1:203:405:607:809:a0b:c0d:e0f",)
    assert any("iPAddress of 5 bytes" in p for p in facts.parse_problems)
    _assert_dates_read(der)


def test_read_facts_malformed_basic_constraints() -> None:
    junk = extension("2.5.29.19", tlv(0x04, b"not a sequence"))
    der = replace(VALID, extensions=(SAN, junk)).encode()

    facts = read_facts(der)

    assert facts.dns_names == ("leaf.example",)
    assert facts.is_ca is None
    assert any(
        "basicConstraints" in p or "2.5.29.19" in p for p in facts.parse_problems
    )
    _assert_dates_read(der)


def test_read_facts_unknown_critical_extension() -> None:
    unknown = extension("1.3.6.1.4.1.99999.1", tlv(0x05, b""), tlv(0x01, b"\xff"))
    der = replace(VALID, extensions=(SAN, unknown)).encode()

    facts = read_facts(der)

    assert facts.parse_problems == ()
    assert facts.dns_names == ("leaf.example",)


def test_read_facts_truncated() -> None:
    full = VALID.encode()
    der = full[: len(full) - 20]

    facts = read_facts(der)

    assert any("truncated" in p for p in facts.parse_problems)
    assert facts.subject == "CN=leaf.example"
    assert facts.dns_names == ("leaf.example",)
    _assert_dates_read(der)


def test_read_facts_trailing_data() -> None:
    der = replace(VALID, trailing=b"\x00\x00junk").encode()

    facts = read_facts(der)

    assert any("6 bytes of extra data" in p for p in facts.parse_problems)
    _assert_dates_read(der)


def test_read_facts_bad_validity_keeps_other_fields() -> None:
    der = replace(VALID, not_after=tlv(0x17, b"511301000000Z")).encode()

    facts = read_facts(der)

    assert facts.not_after is None
    assert facts.not_before is None
    assert facts.subject == "CN=leaf.example"
    assert facts.dns_names == ("leaf.example",)
    assert any("validity" in p for p in facts.parse_problems)


def test_read_facts_not_der() -> None:
    der = b"-----BEGIN CERTIFICATE-----"

    facts = read_facts(der)

    assert facts.sha256 == hashlib.sha256(der).hexdigest()
    assert facts.not_after is None
    assert facts.subject is None
    assert facts.parse_problems[-1].startswith("The certificate is not valid DER")


def test_read_facts_empty_bytes() -> None:
    facts = read_facts(b"")

    assert facts.der == b""
    assert facts.parse_problems[-1].startswith("The certificate is not valid DER")


def test_decode_time_utctime_century() -> None:
    assert der_reader.decode_time(_tlv_at(tlv(0x17, b"491231235959Z"))) == datetime(
        2049, 12, 31, 23, 59, 59, tzinfo=UTC
    )
    assert der_reader.decode_time(_tlv_at(tlv(0x17, b"500101000000Z"))) == datetime(
        1950, 1, 1, tzinfo=UTC
    )


def test_decode_time_generalized_fraction() -> None:
    element = _tlv_at(tlv(0x18, b"20991231235959.5Z"))

    assert der_reader.decode_time(element) == datetime(
        2099, 12, 31, 23, 59, 59, 500000, tzinfo=UTC
    )


def test_decode_time_rejects_local_time() -> None:
    with pytest.raises(der_reader.DerError, match="invalid UTCTime"):
        der_reader.decode_time(_tlv_at(tlv(0x17, b"200101000000+0100")))


def test_decode_time_rejects_impossible_date() -> None:
    with pytest.raises(der_reader.DerError, match="impossible date"):
        der_reader.decode_time(_tlv_at(tlv(0x18, b"20510230000000Z")))


def test_read_tlv_rejects_indefinite_length() -> None:
    with pytest.raises(der_reader.DerError, match="indefinite length"):
        der_reader.read_tlv(b"\x30\x80\x00\x00", 0, 4)


def test_read_tlv_rejects_overrun() -> None:
    with pytest.raises(der_reader.DerError, match="needs 5 bytes but only 4 remain"):
        der_reader.read_tlv(b"\x04\x03ab", 0, 4)


def test_decode_oid_values() -> None:
    assert der_reader.decode_oid(bytes.fromhex("2a864886f70d01010b")) == (
        "1.2.840.113549.1.1.11"
    )
    assert der_reader.decode_oid(bytes.fromhex("8837")) == "2.999"
    with pytest.raises(der_reader.DerError, match="not minimally encoded"):
        der_reader.decode_oid(bytes.fromhex("2a8001"))
    with pytest.raises(der_reader.DerError, match="invalid OBJECT IDENTIFIER"):
        der_reader.decode_oid(bytes.fromhex("2a86"))


@pytest.mark.parametrize(
    "value",
    [
        "plain",
        "a,b+c;d",
        " leading space",
        "trailing space ",
        "#hash",
        "#abc",
        " ",
        "a\\ ",
        'quote"<>\\',
        "nul\0",
    ],
)
def test_name_to_string_matches_cryptography(value: str) -> None:
    distinguished_name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "NZ"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, value),
            x509.NameAttribute(NameOID.EMAIL_ADDRESS, "ops@ca.example"),
        ]
    )

    formatted = der_reader.name_to_string(_tlv_at(distinguished_name.public_bytes()))

    assert formatted == distinguished_name.rfc4514_string()


def test_parse_certificate_matches_cryptography() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = replace(
        VALID,
        spki=key.public_key().public_bytes(
            serialization.Encoding.DER,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        ),
    ).encode()
    certificate = x509.load_der_x509_certificate(der)

    parsed = der_reader.parse_certificate(der)

    assert parsed.problems == ()
    assert parsed.serial == certificate.serial_number
    assert parsed.subject == certificate.subject.rfc4514_string()
    assert parsed.not_before == certificate.not_valid_before_utc
    assert parsed.not_after == certificate.not_valid_after_utc
    assert parsed.key_type == "RSA"
    assert parsed.key_size == 2048


def test_parse_certificate_rejects_non_sequence() -> None:
    with pytest.raises(der_reader.DerError, match="certificate is not a SEQUENCE"):
        der_reader.parse_certificate(tlv(0x04, b"abc"))


def _tlv_at(encoded: bytes) -> der_reader.Tlv:
    return der_reader.read_tlv(encoded, 0, len(encoded))


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_read_facts_random_bytes(data: bytes) -> None:
    facts = read_facts(data)

    assert facts.sha256 == hashlib.sha256(data).hexdigest()
    assert facts.der == data


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(
    position=st.integers(min_value=0, max_value=len(VALID.encode()) - 1),
    replacement=st.binary(min_size=0, max_size=4),
    cut=st.integers(min_value=0, max_value=4),
)
def test_read_facts_mutated_certificate(
    position: int, replacement: bytes, cut: int
) -> None:
    valid = VALID.encode()
    data = valid[:position] + replacement + valid[position + cut :]

    facts = read_facts(data)

    assert facts.sha256 == hashlib.sha256(data).hexdigest()
    if facts.not_after is not None:
        assert facts.not_after.tzinfo is not None
