"""Tests for thresholds, lifetime-aware windows and validity to the second."""

from __future__ import annotations

from datetime import timedelta

import pytest
from tests.certs import NOW, make_leaf, make_root

from certwatch.errors import ThresholdError
from certwatch.x509.expiry import (
    expiry_findings,
    expiry_severity,
    expiry_windows,
    is_expired,
    is_not_yet_valid,
    parse_threshold,
    threshold_days,
)
from certwatch.x509.facts import read_facts
from certwatch.x509.model import CertificateFacts, Severity, Threshold, Thresholds

ROOT = make_root()
SECOND = timedelta(seconds=1)


def leaf_lasting(lifetime: timedelta) -> CertificateFacts:
    start = NOW - timedelta(days=1)
    return read_facts(make_leaf(ROOT, not_before=start, not_after=start + lifetime).der)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("21", Threshold(days=21.0)),
        ("7.5", Threshold(days=7.5)),
        (" 0 ", Threshold(days=0.0)),
        ("25%", Threshold(share=0.25)),
        ("12.5 %", Threshold(share=0.125)),
        ("100%", Threshold(share=1.0)),
    ],
)
def test_parse_threshold_valid(text: str, expected: Threshold) -> None:
    assert parse_threshold(text) == expected


@pytest.mark.parametrize("text", ["", "-3", "abc", "21d", "1e3", "nan", "%", "25%%"])
def test_parse_threshold_invalid(text: str) -> None:
    with pytest.raises(ThresholdError, match=r"give days such as 21 or 7\.5"):
        parse_threshold(text)


def test_parse_threshold_share_over_100() -> None:
    with pytest.raises(ThresholdError, match=r"'150%'.*at most 100%"):
        parse_threshold("150%")


@pytest.mark.parametrize(
    ("lifetime", "warning", "critical"),
    [
        (timedelta(hours=24), timedelta(hours=8), timedelta(hours=2.4)),
        (timedelta(days=47), timedelta(days=47 / 3), timedelta(days=4.7)),
        (timedelta(days=90), timedelta(days=30), timedelta(days=7)),
        (timedelta(days=398), timedelta(days=30), timedelta(days=7)),
    ],
)
def test_expiry_windows_default(
    lifetime: timedelta, warning: timedelta, critical: timedelta
) -> None:
    windows = expiry_windows(leaf_lasting(lifetime), Thresholds())

    assert windows.warning == warning
    assert windows.critical == critical


def test_expiry_windows_47_days_is_about_15_7_days() -> None:
    windows = expiry_windows(leaf_lasting(timedelta(days=47)), Thresholds())

    assert round(windows.warning / timedelta(days=1), 1) == 15.7


def test_expiry_windows_days_and_share() -> None:
    thresholds = Thresholds(warning=Threshold(days=21), critical=Threshold(share=0.25))

    windows = expiry_windows(leaf_lasting(timedelta(days=40)), thresholds)

    assert windows.warning == timedelta(days=21)
    assert windows.critical == timedelta(days=10)


def test_expiry_windows_unknown_lifetime_uses_caps() -> None:
    facts = CertificateFacts(der=b"x", sha256="00")

    windows = expiry_windows(facts, Thresholds())

    assert windows.warning == timedelta(days=30)
    assert windows.critical == timedelta(days=7)


def test_expiry_severity_24h_certificate_points() -> None:
    facts = leaf_lasting(timedelta(hours=24))
    assert facts.not_after is not None
    windows = expiry_windows(facts, Thresholds())

    assert (
        expiry_severity(facts, facts.not_after - timedelta(hours=8) - SECOND, windows)
        is None
    )
    assert (
        expiry_severity(facts, facts.not_after - timedelta(hours=8), windows)
        is Severity.WARNING
    )
    assert (
        expiry_severity(facts, facts.not_after - timedelta(hours=2.4), windows)
        is Severity.CRITICAL
    )


def test_is_expired_to_the_second() -> None:
    facts = leaf_lasting(timedelta(days=90))
    assert facts.not_after is not None

    assert not is_expired(facts, facts.not_after - SECOND)
    assert not is_expired(facts, facts.not_after)
    assert not is_expired(facts, facts.not_after + timedelta(microseconds=999_999))
    assert is_expired(facts, facts.not_after + SECOND)


def test_is_not_yet_valid_to_the_second() -> None:
    facts = leaf_lasting(timedelta(days=90))
    assert facts.not_before is not None

    assert is_not_yet_valid(facts, facts.not_before - SECOND)
    assert is_not_yet_valid(facts, facts.not_before - timedelta(microseconds=1))
    assert not is_not_yet_valid(facts, facts.not_before)
    assert not is_not_yet_valid(facts, facts.not_before + SECOND)


def test_expiry_findings_expired_one_second_after() -> None:
    facts = leaf_lasting(timedelta(days=90))
    assert facts.not_after is not None

    findings = expiry_findings(facts, facts.not_after + SECOND, Thresholds())

    assert [f.code for f in findings] == ["expired"]
    assert findings[0].severity is Severity.CRITICAL
    assert "expired on 2026-08-29 12:00:00 UTC, 1 second ago" in findings[0].message


def test_expiry_findings_at_not_after_is_expiring() -> None:
    facts = leaf_lasting(timedelta(days=90))
    assert facts.not_after is not None

    findings = expiry_findings(facts, facts.not_after, Thresholds())

    assert [f.code for f in findings] == ["expiring_soon"]
    assert findings[0].severity is Severity.CRITICAL


def test_expiry_findings_warning_message() -> None:
    facts = leaf_lasting(timedelta(days=90))
    assert facts.not_after is not None

    findings = expiry_findings(
        facts, facts.not_after - timedelta(days=20), Thresholds()
    )

    assert [f.code for f in findings] == ["expiring_soon"]
    assert findings[0].severity is Severity.WARNING
    assert findings[0].message == (
        "The certificate expires on 2026-08-29 12:00:00 UTC, in 20 days, "
        "within the warning threshold of 30 days."
    )


def test_expiry_findings_far_from_expiry() -> None:
    facts = leaf_lasting(timedelta(days=90))
    assert facts.not_after is not None

    assert (
        expiry_findings(facts, facts.not_after - timedelta(days=31), Thresholds()) == []
    )


def test_expiry_findings_not_yet_valid() -> None:
    facts = leaf_lasting(timedelta(days=90))
    assert facts.not_before is not None

    findings = expiry_findings(facts, facts.not_before - SECOND, Thresholds())

    assert [f.code for f in findings] == ["not_yet_valid"]
    assert (
        "not valid until 2026-05-31 12:00:00 UTC, 1 second from now"
        in findings[0].message
    )
    assert expiry_findings(facts, facts.not_before, Thresholds()) == []


def test_threshold_days_rounds_down() -> None:
    assert threshold_days(leaf_lasting(timedelta(days=47)), Thresholds()) == (15, 4)
    assert threshold_days(leaf_lasting(timedelta(hours=24)), Thresholds()) == (0, 0)
    assert threshold_days(leaf_lasting(timedelta(days=398)), Thresholds()) == (30, 7)


def test_parse_threshold_days_too_large() -> None:
    with pytest.raises(ThresholdError, match="Invalid threshold '1000000000'"):
        parse_threshold("1000000000")
