"""Reminder thresholds: which points a certificate's expiry has crossed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from certwatch.alerts.policy import (
    DEFAULT_SCHEDULE,
    ScheduleError,
    expiry_thresholds,
    newest_unsent,
    parse_schedule,
)
from certwatch.x509.expiry import expiry_windows
from certwatch.x509.model import CertificateFacts, Thresholds

NOT_AFTER = datetime(2027, 3, 1, tzinfo=UTC)


def facts(lifetime_days: int) -> CertificateFacts:
    return CertificateFacts(
        der=b"",
        sha256="0" * 64,
        not_before=NOT_AFTER - timedelta(days=lifetime_days),
        not_after=NOT_AFTER,
    )


def crossed(lifetime_days: int, days_before: float, schedule: str = "") -> list[str]:
    certificate = facts(lifetime_days)
    windows = expiry_windows(certificate, Thresholds())
    chosen = parse_schedule(schedule) if schedule else DEFAULT_SCHEDULE
    now = NOT_AFTER - timedelta(days=days_before)
    return expiry_thresholds(certificate, now, windows, chosen)


def test_one_year_certificate_thresholds() -> None:
    # A one-year certificate has a 30-day window: its first reminder is the
    # window itself, then 14, 7, 3 and 1 days.
    assert crossed(365, 31) == []
    assert crossed(365, 29.5) == ["window"]
    assert crossed(365, 14) == ["window", "days:14"]
    assert crossed(365, 2) == ["window", "days:14", "days:7", "days:3"]


def test_short_lifetime_skips_points_outside_window() -> None:
    # A 47-day certificate warns at a third of its life, under 16 days.
    assert crossed(47, 16) == []
    assert crossed(47, 15) == ["window"]
    assert crossed(47, 6) == ["window", "days:14", "days:7"]


def test_expired_adds_one_threshold_a_day() -> None:
    first = crossed(90, -0.5)
    second = crossed(90, -1.5)

    assert first[-1] == "expired:2027-03-01"
    assert second[-1] == "expired:2027-03-02"
    assert first[:-1] == second[:-1]


def test_missed_cycles_send_newest_once() -> None:
    thresholds = crossed(365, 2)

    assert newest_unsent(thresholds, {"window"}) == "days:3"
    assert newest_unsent(thresholds, set(thresholds)) is None


def test_share_schedule() -> None:
    schedule = parse_schedule("20%, 5%")

    assert schedule.text == "20%,5%"
    # 5 % of 100 days is 5 days; 20 % is 20 days, inside the 30-day window.
    assert crossed(100, 4, "20%,5%") == ["window", "share:20", "share:5"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "give days before expiry or shares"),
        ("7,x", "Invalid reminder point 'x'"),
        ("0", "give days above 0"),
        ("150%", "at most 100%"),
    ],
)
def test_parse_schedule_rejects(text: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        parse_schedule(text)
