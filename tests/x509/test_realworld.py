"""read_facts on certificates that nobody on this project made.

Sources: the certifi bundle, the system bundle when present, the x509 vectors
of the `cryptography_vectors` package (real-world and deliberately malformed
certificates), and the shared corpus at ../shared/corpora with its manifest
of known answers.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import certifi
import cryptography_vectors
import pytest

from certwatch.x509 import der as der_reader
from certwatch.x509.facts import load_certificate, read_facts
from certwatch.x509.model import CertificateFacts

SYSTEM_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
VECTORS = Path(cryptography_vectors.__file__).parent / "x509"
CORPORA = Path(__file__).resolve().parents[2] / ".." / "shared" / "corpora"

_PEM_BLOCK = re.compile(
    rb"-----BEGIN (?:X509 |TRUSTED )?CERTIFICATE-----(.*?)-----END", re.DOTALL
)
# A JKS or JCEKS keystore stores each certificate after the Java modified
# UTF-8 string "X.509" (two length bytes first) and a four-byte length.
_KEYSTORE_CERTIFICATE = re.compile(rb"\x00\x05X\.509(.{4})", re.DOTALL)


def pem_certificates(data: bytes) -> list[bytes]:
    """Decode every CERTIFICATE block, skipping PEM headers and bad base64."""
    certificates = []
    for block in _PEM_BLOCK.finditer(data):
        body = b"".join(line for line in block[1].splitlines() if b":" not in line)
        try:
            certificates.append(base64.b64decode(body, validate=False))
        except binascii.Error:
            continue
    return certificates


def keystore_certificates(data: bytes) -> list[bytes]:
    certificates = []
    for match in _KEYSTORE_CERTIFICATE.finditer(data):
        length = int.from_bytes(match[1], "big")
        certificates.append(data[match.end() : match.end() + length])
    return certificates


def file_certificates(data: bytes) -> list[bytes]:
    """Return the certificates in a PEM or DER file, judged by its content."""
    if b"-----BEGIN" in data:
        return pem_certificates(data)
    if load_certificate(data) is not None or read_facts(data).not_after is not None:
        return [data]
    return []


def _read_all(certificates: list[bytes]) -> list[CertificateFacts]:
    return [read_facts(certificate) for certificate in certificates]


def test_read_facts_certifi_bundle() -> None:
    facts = _read_all(pem_certificates(Path(certifi.where()).read_bytes()))

    assert len(facts) > 100
    for item in facts:
        assert item.not_after is not None, item.subject
        assert item.subject is not None
        assert item.key_type in {"RSA", "EC", "Ed25519", "Ed448"}, item.subject
        assert item.is_ca is not False, item.subject


def test_read_facts_system_bundle() -> None:
    if not SYSTEM_BUNDLE.exists():
        pytest.skip(f"{SYSTEM_BUNDLE} does not exist on this machine")

    facts = _read_all(pem_certificates(SYSTEM_BUNDLE.read_bytes()))

    assert len(facts) > 100
    assert all(item.not_after is not None for item in facts)


def test_parse_certificate_agrees_on_certifi() -> None:
    """The fallback DER reader gives the same fields as cryptography."""
    for der in pem_certificates(Path(certifi.where()).read_bytes()):
        facts = read_facts(der)
        parsed = der_reader.parse_certificate(der)

        assert parsed.problems == (), facts.subject
        assert parsed.subject == facts.subject
        assert parsed.issuer == facts.issuer
        assert parsed.common_name == facts.common_name
        assert parsed.not_before == facts.not_before
        assert parsed.not_after == facts.not_after
        assert parsed.key_type == facts.key_type, facts.subject
        assert parsed.key_size == facts.key_size, facts.subject
        assert parsed.serial is not None
        assert format(parsed.serial, "x") == facts.serial
        assert parsed.extensions is not None
        assert parsed.extensions.is_ca == facts.is_ca, facts.subject


def test_read_facts_cryptography_vectors() -> None:
    files = [path for path in VECTORS.rglob("*") if path.is_file()]
    certificate_count = 0
    with_dates = 0

    for path in files:
        for der in file_certificates(path.read_bytes()):
            facts = read_facts(der)
            certificate_count += 1
            with_dates += facts.not_after is not None

    assert len(files) > 1000
    assert certificate_count > 400
    assert with_dates > 400


def _manifest() -> dict[str, Any]:
    manifest = CORPORA / "MANIFEST.json"
    if not manifest.exists():
        pytest.skip(f"the shared corpus is absent: {manifest} does not exist")
    loaded: dict[str, Any] = json.loads(manifest.read_text())
    return loaded


def _corpus_certificates(files: dict[str, Any]) -> dict[str, bytes]:
    """Map the SHA-256 of every certificate in the corpus files to its DER."""
    found: list[bytes] = []
    for relative, entry in files.items():
        data = (CORPORA / relative).read_bytes()
        if entry["format"] == "x509-limbo testcase JSON":
            case = json.loads(data)
            pems = [
                case["peer_certificate"],
                *case["untrusted_intermediates"],
                *case["trusted_certs"],
            ]
            found.extend(pem_certificates("".join(pems).encode()))
        elif entry["format"] == "Java keystore":
            found.extend(keystore_certificates(data))
        else:
            found.extend(pem_certificates(data))
    return {read_facts(der).sha256: der for der in found}


def _expected_certificates(entry: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for key in ("leaf", "trusted_root"):
        if key in entry:
            yield entry[key]
    yield from entry.get("intermediates", [])
    yield from entry.get("certs", [])
    for chain in entry.get("private_key_entries", {}).values():
        yield from chain
    yield from entry.get("trusted_certs", {}).values()


def _differences(expected: dict[str, Any], facts: CertificateFacts) -> list[str]:
    key = f"{facts.key_type}-{facts.key_size}"
    checks = {
        "subject": (expected["subject"], facts.subject),
        "issuer": (expected["issuer"], facts.issuer),
        "subject_cn": (expected["subject_cn"], facts.common_name),
        "not_before": (
            datetime.fromisoformat(expected["not_before"]),
            facts.not_before,
        ),
        "not_after": (datetime.fromisoformat(expected["not_after"]), facts.not_after),
        "key": (expected["key"], key),
        "signature_hash": (expected["signature_hash"], facts.signature_hash),
        "san_dns_count": (expected["san_dns_count"] or 0, len(facts.dns_names)),
        "san_dns_first": (
            expected.get("san_dns_first", []),
            list(facts.dns_names[: len(expected.get("san_dns_first", []))]),
        ),
        "self_signed_name": (expected["self_signed_name"], facts.self_issued),
    }
    return [
        f"{facts.sha256[:16]} {field}: manifest {want!r}, read_facts {got!r}"
        for field, (want, got) in checks.items()
        if want != got
    ]


# A real flaw in the corpus: an empty countryName (the Corda certificates),
# which cryptography 50 reads with a warning.
_KNOWN_CORPUS_PROBLEMS = re.compile(
    r"^Reading the (subject|issuer) gave a warning: Attribute's length"
)


def test_read_facts_matches_manifest() -> None:
    files = _manifest()["files"]
    certificates = _corpus_certificates(files)
    compared = 0
    differences: list[str] = []

    for relative, entry in files.items():
        for expected in _expected_certificates(entry):
            der = certificates.get(expected["sha256_fingerprint"])
            assert der is not None, f"{relative}: {expected['subject']} not found"
            facts = read_facts(der)
            for problem in facts.parse_problems:
                assert _KNOWN_CORPUS_PROBLEMS.search(problem), problem
            differences.extend(_differences(expected, facts))
            compared += 1

    assert compared > 60
    assert differences == []
