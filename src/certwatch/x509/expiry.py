"""Expiry thresholds and the validity-period findings of one certificate.

A certificate is valid from not_before through not_after inclusive (RFC 5280,
section 4.1.2.5): it is expired only once `now > not_after` and not yet valid
while `now < not_before`.

The warning and critical points are amounts of remaining time. By default they
follow the lifetime: warning at a third of it but at most 30 days, critical at
a tenth of it but at most 7 days. So a 24-hour certificate warns with 8 hours
left, a 47-day one with about 15.7 days left and a 398-day one with 30 days
left. A threshold given in days is used as is; a share is taken of the
lifetime.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from certwatch.errors import ThresholdError
from certwatch.x509.facts import days_left, lifetime
from certwatch.x509.model import (
    CertificateFacts,
    Finding,
    Severity,
    Threshold,
    Thresholds,
)

DEFAULT_WARNING_SHARE = 1 / 3
DEFAULT_WARNING_CAP = timedelta(days=30)
DEFAULT_CRITICAL_SHARE = 1 / 10
DEFAULT_CRITICAL_CAP = timedelta(days=7)

_DAYS = re.compile(r"^\d+(\.\d+)?$")
_PERCENT = re.compile(r"^(\d+(\.\d+)?)\s*%$")


@dataclass(frozen=True)
class ExpiryWindows:
    """The remaining time at which a certificate turns warning and critical."""

    warning: timedelta
    critical: timedelta


# The largest threshold in days: far larger values overflow date arithmetic,
# and 100 years is longer than any certificate lives.
MAX_THRESHOLD_DAYS = 36_500


def parse_threshold(text: str) -> Threshold:
    """Parse a threshold: days such as `21` or `7.5`, or a share such as `25%`.

    Raises:
        ThresholdError: when the text is neither, a share exceeds 100 %, or
            days exceed `MAX_THRESHOLD_DAYS`.
    """
    value = text.strip()
    if _DAYS.match(value):
        days = float(value)
        if days > MAX_THRESHOLD_DAYS:
            raise ThresholdError(
                f"Invalid threshold {text!r}: give at most {MAX_THRESHOLD_DAYS} "
                "days, which is longer than any certificate lives."
            )
        return Threshold(days=days)

    percent = _PERCENT.match(value)
    if percent is None:
        raise ThresholdError(
            f"Invalid threshold {text!r}: give days such as 21 or 7.5, "
            "or a share of the lifetime such as 25%."
        )
    share = float(percent.group(1)) / 100
    if share > 1:
        raise ThresholdError(
            f"Invalid threshold {text!r}: a share of the lifetime must be at "
            "most 100%; give a smaller percentage or a number of days."
        )
    return Threshold(share=share)


def parse_thresholds(warning_text: str | None, critical_text: str | None) -> Thresholds:
    """Parse `--warning` and `--critical`; either may be absent.

    Raises:
        ThresholdError: a value is invalid, or the critical threshold comes
            before the warning threshold in the same unit.
    """
    warning = parse_threshold(warning_text) if warning_text else None
    critical = parse_threshold(critical_text) if critical_text else None
    if warning is not None and critical is not None:
        later = (
            critical.days is not None
            and warning.days is not None
            and critical.days > warning.days
        ) or (
            critical.share is not None
            and warning.share is not None
            and critical.share > warning.share
        )
        if later:
            raise ThresholdError(
                f"--critical {critical_text} comes before --warning {warning_text}: "
                "give a critical threshold at or below the warning threshold."
            )
    return Thresholds(warning=warning, critical=critical)


def expiry_windows(facts: CertificateFacts, thresholds: Thresholds) -> ExpiryWindows:
    """Compute the warning and critical points for one certificate.

    A certificate whose lifetime cannot be read (dates missing or reversed)
    gets the 30-day and 7-day caps, and a share of its lifetime is zero.
    """
    total = lifetime(facts)
    if total is None or total < timedelta(0):
        total = None
    warning = _window(
        thresholds.warning, total, DEFAULT_WARNING_SHARE, DEFAULT_WARNING_CAP
    )
    critical = _window(
        thresholds.critical, total, DEFAULT_CRITICAL_SHARE, DEFAULT_CRITICAL_CAP
    )
    return ExpiryWindows(warning=warning, critical=critical)


def threshold_days(facts: CertificateFacts, thresholds: Thresholds) -> tuple[int, int]:
    """Return the warning and critical points as whole days, rounded down.

    Meant for outputs that speak in days, such as Nagios performance data;
    the findings themselves compare exact remaining time.
    """
    windows = expiry_windows(facts, thresholds)
    day = timedelta(days=1)
    return windows.warning // day, windows.critical // day


def is_expired(facts: CertificateFacts, now: datetime) -> bool:
    """Tell whether `now` is after not_after; `False` when it is unknown.

    Certificate times have whole seconds, so `now` is compared at that
    granularity: the certificate is still valid during its not_after second.
    """
    return facts.not_after is not None and _whole_second(now) > facts.not_after


def is_not_yet_valid(facts: CertificateFacts, now: datetime) -> bool:
    """Tell whether `now` is before not_before; `False` when it is unknown."""
    return facts.not_before is not None and _whole_second(now) < facts.not_before


def is_outside_validity(facts: CertificateFacts, now: datetime) -> bool:
    """Tell whether the certificate is expired or not yet valid at `now`."""
    return is_expired(facts, now) or is_not_yet_valid(facts, now)


def expiry_severity(
    facts: CertificateFacts, now: datetime, windows: ExpiryWindows
) -> Severity | None:
    """Grade the remaining time: critical, warning or `None` when far off.

    An expired certificate is critical; an unknown not_after gives `None`.
    """
    if facts.not_after is None:
        return None
    remaining = facts.not_after - now
    if remaining <= windows.critical or remaining < timedelta(0):
        return Severity.CRITICAL
    if remaining <= windows.warning:
        return Severity.WARNING
    return None


def expiry_findings(
    facts: CertificateFacts, now: datetime, thresholds: Thresholds
) -> list[Finding]:
    """Return the `expired`, `not_yet_valid` and `expiring_soon` findings."""
    findings: list[Finding] = []
    if is_not_yet_valid(facts, now):
        assert facts.not_before is not None
        findings.append(
            Finding(
                "not_yet_valid",
                Severity.CRITICAL,
                f"The certificate is not valid until {format_time(facts.not_before)}, "
                f"{describe_duration(facts.not_before - now)} from now.",
            )
        )
    if facts.not_after is None:
        return findings

    if is_expired(facts, now):
        findings.append(
            Finding(
                "expired",
                Severity.CRITICAL,
                f"The certificate expired on {format_time(facts.not_after)}, "
                f"{describe_duration(now - facts.not_after)} ago.",
            )
        )
        return findings

    windows = expiry_windows(facts, thresholds)
    severity = expiry_severity(facts, now, windows)
    if severity is not None:
        limit = windows.critical if severity is Severity.CRITICAL else windows.warning
        findings.append(
            Finding(
                "expiring_soon",
                severity,
                f"The certificate expires on {format_time(facts.not_after)}, "
                f"in {describe_days_left(facts.not_after, now)}, within the "
                f"{severity.label} threshold of {describe_duration(limit)}.",
            )
        )
    return findings


def format_time(moment: datetime) -> str:
    """Format an instant as `YYYY-MM-DD HH:MM:SS UTC`."""
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def describe_days_left(not_after: datetime, now: datetime) -> str:
    """Describe the remaining time as whole days, with hours below two days."""
    days = days_left(not_after, now)
    text = _plural(days, "day")
    if days < 2:
        rest = not_after - now - timedelta(days=days)
        text += " and " + _plural(math.floor(rest / timedelta(hours=1)), "hour")
    return text


def describe_duration(duration: timedelta) -> str:
    """Describe a duration in days, or in hours, minutes or seconds below two days."""
    if duration >= timedelta(days=2):
        days = f"{duration / timedelta(days=1):.1f}".removesuffix(".0")
        return f"{days} days"
    if duration < timedelta(minutes=1):
        return _plural(math.floor(duration / timedelta(seconds=1)), "second")
    hours, minutes = divmod(math.floor(duration / timedelta(minutes=1)), 60)
    if hours == 0:
        return _plural(minutes, "minute")
    if minutes == 0:
        return _plural(hours, "hour")
    return f"{_plural(hours, 'hour')} {_plural(minutes, 'minute')}"


def _plural(count: int, unit: str) -> str:
    return f"{count} {unit}" if count == 1 else f"{count} {unit}s"


def _whole_second(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


def _window(
    threshold: Threshold | None,
    total: timedelta | None,
    default_share: float,
    cap: timedelta,
) -> timedelta:
    if threshold is None:
        if total is None:
            return cap
        return min(total * default_share, cap)
    if threshold.days is not None:
        return timedelta(days=threshold.days)
    share = threshold.share or 0.0
    return (total or timedelta(0)) * share
