"""Tests for the findings that analyze_chain and analyze_certificate report."""

from __future__ import annotations

from datetime import timedelta

import pytest
from tests.certs import (
    NOW,
    Issued,
    make_intermediate,
    make_key,
    make_leaf,
    make_root,
)

from certwatch.x509.analyze import analyze_certificate, analyze_chain
from certwatch.x509.model import AnalysisPolicy, ChainReport, Severity

ROOT = make_root(key=make_key("rsa"))
INTERMEDIATE = make_intermediate(ROOT, key=make_key("rsa"))
POLICY = AnalysisPolicy(roots=(ROOT.der,))
PRIVATE = AnalysisPolicy(roots=(ROOT.der,), public_roots=False)


def analyze(
    *chain: Issued,
    server_name: str | None = "www.example.test",
    address: str | None = None,
    now=NOW,  # type: ignore[no-untyped-def]
    policy: AnalysisPolicy = POLICY,
) -> ChainReport:
    return analyze_chain(
        [c.der for c in chain],
        server_name=server_name,
        address=address,
        now=now,
        policy=policy,
    )


def codes(report: ChainReport) -> list[str]:
    return [f.code for f in report.findings]


def finding(report: ChainReport, code: str):  # type: ignore[no-untyped-def]
    (match,) = [f for f in report.findings if f.code == code]
    return match


def test_analyze_chain_empty() -> None:
    report = analyze_chain(
        [], server_name="x.example.test", address=None, now=NOW, policy=POLICY
    )

    assert report.leaf is None
    assert report.findings == ()
    assert report.valid_path is None
    assert report.days_left is None
    assert report.severity is None


def test_analyze_chain_clean() -> None:
    leaf = make_leaf(INTERMEDIATE)

    report = analyze(leaf, INTERMEDIATE)

    assert codes(report) == []
    assert report.valid_path == (leaf.sha256, INTERMEDIATE.sha256, ROOT.sha256)
    assert report.days_left == 60
    assert report.leaf is not None and report.leaf.sha256 == leaf.sha256
    assert [c.sha256 for c in report.chain] == [leaf.sha256, INTERMEDIATE.sha256]


def test_analyze_chain_expired_one_second_after() -> None:
    leaf = make_leaf(INTERMEDIATE)
    after = leaf.cert.not_valid_after_utc + timedelta(seconds=1)

    report = analyze(leaf, INTERMEDIATE, now=after)

    assert codes(report) == ["expired"]
    assert report.days_left == -1
    assert "expired on 2026-07-31 12:00:00 UTC" in finding(report, "expired").message
    assert report.valid_path is not None


def test_analyze_chain_at_not_after_not_expired() -> None:
    leaf = make_leaf(INTERMEDIATE)

    report = analyze(leaf, INTERMEDIATE, now=leaf.cert.not_valid_after_utc)

    assert codes(report) == ["expiring_soon"]
    assert finding(report, "expiring_soon").severity is Severity.CRITICAL
    assert report.days_left == 0


def test_analyze_chain_not_yet_valid_boundaries() -> None:
    leaf = make_leaf(INTERMEDIATE)
    start = leaf.cert.not_valid_before_utc

    before = analyze(leaf, INTERMEDIATE, now=start - timedelta(seconds=1))
    at = analyze(leaf, INTERMEDIATE, now=start)

    assert codes(before) == ["not_yet_valid"]
    assert codes(at) == []


def test_analyze_chain_expiring_soon_message() -> None:
    leaf = make_leaf(INTERMEDIATE, not_after=NOW + timedelta(days=12, hours=3))

    report = analyze(leaf, INTERMEDIATE)

    found = finding(report, "expiring_soon")
    assert found.severity is Severity.WARNING
    assert "in 12 days" in found.message
    assert "2026-06-13 15:00:00 UTC" in found.message


@pytest.mark.parametrize(
    ("lifetime", "left", "expected"),
    [
        (timedelta(hours=24), timedelta(hours=8, seconds=1), None),
        (timedelta(hours=24), timedelta(hours=8), Severity.WARNING),
        (timedelta(hours=24), timedelta(hours=2, minutes=24), Severity.CRITICAL),
        (timedelta(days=47), timedelta(days=15.6), Severity.WARNING),
        (timedelta(days=47), timedelta(days=15.7), None),
        (timedelta(days=47), timedelta(days=4.7), Severity.CRITICAL),
        (timedelta(days=90), timedelta(days=30), Severity.WARNING),
        (timedelta(days=90), timedelta(days=7), Severity.CRITICAL),
        (timedelta(days=398), timedelta(days=30, seconds=1), None),
        (timedelta(days=398), timedelta(days=30), Severity.WARNING),
    ],
)
def test_analyze_chain_lifetime_windows(
    lifetime: timedelta, left: timedelta, expected: Severity | None
) -> None:
    not_after = NOW + timedelta(days=1000)
    leaf = make_leaf(INTERMEDIATE, not_before=not_after - lifetime, not_after=not_after)

    report = analyze(leaf, INTERMEDIATE, now=not_after - left, policy=PRIVATE)

    severities = [f.severity for f in report.findings if f.code == "expiring_soon"]
    assert severities == ([] if expected is None else [expected])


def test_analyze_chain_hostname_mismatch() -> None:
    leaf = make_leaf(INTERMEDIATE, dns_names=["www.example.test", "*.api.example.test"])

    report = analyze(leaf, INTERMEDIATE, server_name="a.b.api.example.test")

    found = finding(report, "hostname_mismatch")
    assert found.severity is Severity.CRITICAL
    assert found.message == (
        "The certificate is not valid for 'a.b.api.example.test': it names "
        "'www.example.test', '*.api.example.test'."
    )
    assert report.valid_path is not None


def test_analyze_chain_hostname_mismatch_thousand_sans() -> None:
    names = [f"host{i}.example.test" for i in range(1000)]
    leaf = make_leaf(INTERMEDIATE, dns_names=names)

    report = analyze(leaf, INTERMEDIATE, server_name="other.example.test")

    message = finding(report, "hostname_mismatch").message
    assert "'host0.example.test'" in message
    assert "'host9.example.test' and 990 more." in message
    assert "host10.example.test" not in message


def test_analyze_chain_ip_target() -> None:
    leaf = make_leaf(INTERMEDIATE, dns_names=[], ip_addresses=["2001:db8::7"])

    good = analyze(leaf, INTERMEDIATE, server_name=None, address="2001:db8::7")
    bad = analyze(leaf, INTERMEDIATE, server_name=None, address="192.0.2.7")

    assert codes(good) == []
    assert codes(bad) == ["hostname_mismatch"]
    assert "'192.0.2.7': it names '2001:db8::7'" in bad.findings[0].message


@pytest.mark.parametrize(
    ("kind", "size", "expected"),
    [
        ("rsa", 512, Severity.CRITICAL),
        ("rsa", 1024, Severity.WARNING),
        ("rsa", 2048, None),
        ("ec", 192, Severity.WARNING),
        ("ec", 224, Severity.WARNING),
        ("ec", 256, None),
        ("ed25519", None, None),
    ],
)
def test_analyze_chain_weak_key(
    kind: str, size: int | None, expected: Severity | None
) -> None:
    leaf = make_leaf(INTERMEDIATE, key=make_key(kind, size))

    report = analyze(leaf, INTERMEDIATE)

    severities = [f.severity for f in report.findings if f.code == "weak_key"]
    assert severities == ([] if expected is None else [expected])


def test_analyze_chain_weak_key_message() -> None:
    leaf = make_leaf(INTERMEDIATE, key=make_key("rsa", 1024))

    report = analyze(leaf, INTERMEDIATE)

    assert "has a 1024-bit RSA key" in finding(report, "weak_key").message


def test_analyze_chain_weak_signature_sha1_leaf() -> None:
    leaf = make_leaf(INTERMEDIATE, hash_name="sha1")

    report = analyze(leaf, INTERMEDIATE)

    found = finding(report, "weak_signature")
    assert found.severity is Severity.WARNING
    assert "sha1WithRSAEncryption" in found.message
    assert "chain_invalid" in codes(report)


def test_analyze_chain_weak_signature_md5_intermediate() -> None:
    intermediate = make_intermediate(ROOT, hash_name="md5")
    leaf = make_leaf(intermediate)

    report = analyze(leaf, intermediate)

    found = finding(report, "weak_signature")
    assert found.severity is Severity.CRITICAL
    assert "CN=certwatch test intermediate" in found.message


def test_analyze_chain_sha1_trust_root_not_flagged() -> None:
    root = make_root("sha1 root", key=make_key("rsa"), hash_name="sha1")
    intermediate = make_intermediate(root)
    leaf = make_leaf(intermediate)

    report = analyze(leaf, intermediate, root, policy=AnalysisPolicy(roots=(root.der,)))

    assert codes(report) == []


def test_analyze_chain_excessive_lifetime_public() -> None:
    leaf = make_leaf(
        INTERMEDIATE,
        not_before=NOW - timedelta(days=10),
        not_after=NOW - timedelta(days=10) + timedelta(days=398, seconds=1),
    )

    report = analyze(leaf, INTERMEDIATE)

    assert codes(report) == ["excessive_lifetime"]
    assert finding(report, "excessive_lifetime").severity is Severity.WARNING


def test_analyze_chain_398_days_allowed() -> None:
    leaf = make_leaf(
        INTERMEDIATE,
        not_before=NOW - timedelta(days=10),
        not_after=NOW - timedelta(days=10) + timedelta(days=398),
    )

    assert codes(analyze(leaf, INTERMEDIATE)) == []


def test_analyze_chain_excessive_lifetime_needs_public_valid_path() -> None:
    leaf = make_leaf(INTERMEDIATE, not_after=NOW + timedelta(days=800))

    private = analyze(leaf, INTERMEDIATE, policy=PRIVATE)
    incomplete = analyze(leaf)

    assert codes(private) == []
    assert codes(incomplete) == ["incomplete_chain"]


def test_analyze_chain_extra_expired_is_info_only() -> None:
    stale = make_intermediate(ROOT, "stale", not_after=NOW - timedelta(days=1))
    leaf = make_leaf(INTERMEDIATE)

    report = analyze(leaf, stale, INTERMEDIATE)

    assert codes(report) == ["extra_certificate_expired"]
    assert report.severity is Severity.INFO
    assert report.valid_path is not None


def test_analyze_chain_parse_error() -> None:
    leaf = make_leaf(INTERMEDIATE)
    broken = leaf.der + b"\x00\x00"

    report = analyze_chain(
        [broken, INTERMEDIATE.der],
        server_name="www.example.test",
        address=None,
        now=NOW,
        policy=POLICY,
    )

    found = finding(report, "parse_error")
    assert found.severity is Severity.WARNING
    assert report.days_left == 60


def test_analyze_certificate_file_findings() -> None:
    leaf = make_leaf(
        INTERMEDIATE,
        key=make_key("rsa", 1024),
        hash_name="sha1",
        not_after=NOW + timedelta(days=3),
    )

    report = analyze_certificate(leaf.der, now=NOW, policy=POLICY)

    assert sorted(codes(report)) == ["expiring_soon", "weak_key", "weak_signature"]
    assert report.valid_path is None
    assert report.days_left == 3


def test_analyze_certificate_no_trust_or_hostname() -> None:
    leaf = make_leaf(make_root("unknown"), dns_names=["x.example.test"])

    report = analyze_certificate(leaf.der, now=NOW, policy=POLICY)

    assert codes(report) == []


def test_analyze_certificate_trusted_root_signature_ignored() -> None:
    root = make_root("sha1 root", key=make_key("rsa"), hash_name="sha1")

    report = analyze_certificate(
        root.der, now=NOW, policy=AnalysisPolicy(roots=(root.der,))
    )

    assert codes(report) == []


def test_analyze_chain_cache_keeps_verdict_per_now() -> None:
    intermediate = make_intermediate(ROOT, not_after=NOW + timedelta(days=100))
    leaf = make_leaf(intermediate, not_after=NOW + timedelta(days=60))
    later = NOW + timedelta(days=101)

    first = analyze(leaf, intermediate)
    second = analyze(leaf, intermediate, now=later)
    third = analyze(leaf, intermediate)

    assert codes(first) == []
    assert "chain_expired" in codes(second)
    assert "expired" in codes(second)
    assert codes(third) == []
