"""The reminder policy: which thresholds a certificate's expiry has crossed.

Reminders never match an exact day. Each threshold is a point in time, and
the policy lists every threshold already behind `now`. The caller sends a
reminder when one of them has not been sent yet and records them all, so a
missed cycle still sends the overdue reminder, once.

For a certificate inside its warning window the thresholds are `window`
(the first reminder, when it becomes `expiring_soon`), then `days:N` for
each reminder point N of the schedule that lies inside the window, and once
it has expired `expired:YYYY-MM-DD`, one a day while it is still deployed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from certwatch.errors import CertwatchError
from certwatch.x509.expiry import ExpiryWindows
from certwatch.x509.model import CertificateFacts

DEFAULT_REMINDER_DAYS = (30, 14, 7, 3, 1)
"""The reminder points of the default schedule, in days before not_after."""

WINDOW = "window"
"""The threshold of the first reminder: the certificate became `expiring_soon`."""

OPEN = "open"
"""The only threshold of a finding other than expiry: it was found."""

_DAYS = re.compile(r"^\d+(\.\d+)?$")
_SHARE = re.compile(r"^(\d+(\.\d+)?)%$")
_MAX_POINTS = 20


class ScheduleError(CertwatchError, ValueError):
    """A reminder schedule that cannot be read."""


@dataclass(frozen=True)
class ReminderPoint:
    """One reminder point: days before not_after, or a share of the lifetime."""

    days: float | None = None
    share: float | None = None

    @property
    def key(self) -> str:
        """The point as the threshold records it, such as `days:7` or `share:10`."""
        if self.days is not None:
            return f"days:{_number(self.days)}"
        assert self.share is not None
        return f"share:{_number(self.share * 100)}"

    def before_expiry(self, lifetime: timedelta | None) -> timedelta | None:
        """Return the time before not_after of the point, `None` without a lifetime."""
        if self.days is not None:
            return timedelta(days=self.days)
        assert self.share is not None
        return None if lifetime is None else lifetime * self.share

    @property
    def text(self) -> str:
        if self.days is not None:
            return _number(self.days)
        assert self.share is not None
        return f"{_number(self.share * 100)}%"


@dataclass(frozen=True)
class ReminderSchedule:
    """The reminder points of a team or endpoint, latest first."""

    points: tuple[ReminderPoint, ...]

    @property
    def text(self) -> str:
        """The schedule as `parse_schedule` reads it, such as `30,14,7`."""
        return ",".join(point.text for point in self.points)


DEFAULT_SCHEDULE = ReminderSchedule(
    tuple(ReminderPoint(days=float(days)) for days in DEFAULT_REMINDER_DAYS)
)


def parse_schedule(text: str) -> ReminderSchedule:
    """Parse a reminder schedule: days such as `30,14,7` or shares such as `20%,5%`.

    Raises:
        ScheduleError: an entry is neither days nor a percentage, is zero or
            negative, a share is above 100 %, or there are too many points.
    """
    entries = [entry.strip() for entry in text.split(",") if entry.strip()]
    if not entries:
        raise ScheduleError(
            f"Invalid reminder schedule {text!r}: give days before expiry or "
            "shares of the lifetime, separated by commas, such as 30,14,7 or 20%,5%."
        )
    if len(entries) > _MAX_POINTS:
        raise ScheduleError(
            f"Invalid reminder schedule {text!r}: give at most {_MAX_POINTS} points."
        )
    return _ordered_schedule({_point(entry, text) for entry in entries})


def _point(entry: str, text: str) -> ReminderPoint:
    share = _SHARE.match(entry)
    if share is not None:
        value = float(share.group(1))
        if not 0 < value <= 100:
            raise ScheduleError(
                f"Invalid reminder point {entry!r} in {text!r}: give a share "
                "above 0% and at most 100%."
            )
        return ReminderPoint(share=value / 100)
    if _DAYS.match(entry):
        days = float(entry)
        if not 0 < days <= 3650:
            raise ScheduleError(
                f"Invalid reminder point {entry!r} in {text!r}: give days above "
                "0 and at most 3650."
            )
        return ReminderPoint(days=days)
    raise ScheduleError(
        f"Invalid reminder point {entry!r} in {text!r}: give days such as 14 or "
        "a share of the lifetime such as 10%."
    )


def expiry_thresholds(
    facts: CertificateFacts,
    now: datetime,
    windows: ExpiryWindows,
    schedule: ReminderSchedule = DEFAULT_SCHEDULE,
) -> list[str]:
    """List the thresholds behind `now`, oldest first; empty outside the window.

    A reminder point outside the warning window is skipped: with a 90-day
    certificate whose window is 30 days, the 30-day point is the window
    itself. An expired certificate has crossed every point and one
    `expired:` threshold for the current UTC day.
    """
    if facts.not_after is None:
        return []
    remaining = facts.not_after - now
    if remaining > windows.warning:
        return []

    lifetime = _lifetime(facts)
    crossed = [WINDOW]
    for point in sorted(
        schedule.points, key=lambda p: -(_seconds(p.before_expiry(lifetime)))
    ):
        before = point.before_expiry(lifetime)
        if before is None or before >= windows.warning:
            continue
        if remaining <= before:
            crossed.append(point.key)
    if remaining < timedelta(0):
        crossed.append(f"expired:{now.date().isoformat()}")
    return crossed


def merge_schedules(schedules: Iterable[ReminderSchedule]) -> ReminderSchedule:
    """Combine schedules into one with every reminder point of each.

    A certificate served at places with different schedules gets the
    reminders of all of them; a point that several share counts once.
    """
    return _ordered_schedule(
        {point for schedule in schedules for point in schedule.points}
    )


def _ordered_schedule(points: set[ReminderPoint]) -> ReminderSchedule:
    """Sort points latest first: days by size, then shares by size."""
    ordered = sorted(
        points, key=lambda p: (p.days is None, -(p.days or 0), -(p.share or 0))
    )
    return ReminderSchedule(tuple(ordered))


def newest_unsent(crossed: list[str], sent: set[str]) -> str | None:
    """Return the newest crossed threshold when any crossed one is unsent.

    Several unsent thresholds (cycles were missed) give one reminder, for
    the newest, and the caller records them all.
    """
    if any(threshold not in sent for threshold in crossed):
        return crossed[-1]
    return None


def _lifetime(facts: CertificateFacts) -> timedelta | None:
    if facts.not_before is None or facts.not_after is None:
        return None
    total = facts.not_after - facts.not_before
    return total if total > timedelta(0) else None


def _seconds(value: timedelta | None) -> float:
    return -math.inf if value is None else value.total_seconds()


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:g}"
