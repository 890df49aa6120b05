"""The monitor's settings, with every default in one place.

`load_settings` reads the environment once at start-up and validates it;
the commands pass their options in as keywords.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from certwatch.errors import CertwatchError
from certwatch.monitor.changes import DEFAULT_CHANGE_WINDOW
from certwatch.probe.model import ProbeSettings
from certwatch.store.schedule import SchedulePolicy

INTERVAL_VARIABLE = "CERTWATCH_DEFAULT_INTERVAL"

DEFAULT_INTERVAL = timedelta(hours=6)
"""The scan interval of a source added without one when the environment sets none."""

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNITS = {
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
}
# Longer durations are rejected as likely typos (such as 6000h for 600h),
# and a source scanned less than once a year could expire unseen.
MAX_DURATION = timedelta(days=365)


class SettingsError(CertwatchError, ValueError):
    """A monitor setting, from an option or the environment, that is invalid."""


@dataclass(frozen=True)
class MonitorSettings:
    """The settings of monitoring cycles and of the service.

    `default_interval` is the scan interval of the sources that store none,
    which are those added without one; it replaces the one in `schedule`.
    A cycle claims up to `batch_size` sources at a time under a lease of
    `lease`, renewed every third of it while the batch runs, and records
    its finished scans in a few transactions as they complete (see
    `certwatch.monitor.cycle.FlushPolicy`). `change_window` is how long a place
    remembers a leaf for the alternation rule of `certwatch.monitor.changes`.
    `serve` sleeps at most `max_sleep` between cycles. `workers` is the
    number of analysis processes (`None`: one per core but one).
    """

    probe: ProbeSettings = field(default_factory=ProbeSettings)
    default_interval: timedelta = DEFAULT_INTERVAL
    batch_size: int = 500
    lease: timedelta = timedelta(minutes=5)
    change_window: timedelta = DEFAULT_CHANGE_WINDOW
    schedule: SchedulePolicy = field(default_factory=SchedulePolicy)
    max_sleep: timedelta = timedelta(minutes=1)
    workers: int | None = None
    pkcs12_password: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise SettingsError(
                f"Invalid batch size {self.batch_size!r}: give at least 1."
            )
        for name in ("lease", "change_window", "max_sleep", "default_interval"):
            value = getattr(self, name)
            if value <= timedelta(0):
                raise SettingsError(
                    f"Invalid {name.replace('_', ' ')} {value!r}: give a positive "
                    "duration."
                )
        # The scheduler resolves sources without an interval through the
        # policy, so the policy always carries this default.
        schedule = replace(self.schedule, default_interval=self.default_interval)
        object.__setattr__(self, "schedule", schedule)


def load_settings(
    environ: Mapping[str, str] = os.environ, **options: Any
) -> MonitorSettings:
    """Build the settings from the environment and the given keyword options.

    Raises:
        SettingsError: `CERTWATCH_DEFAULT_INTERVAL` or an option is invalid.
    """
    return MonitorSettings(default_interval=default_interval(environ), **options)


def default_interval(environ: Mapping[str, str] = os.environ) -> timedelta:
    """Return `CERTWATCH_DEFAULT_INTERVAL` as a duration, or 6 hours when unset.

    Raises:
        SettingsError: the variable is set but not a valid duration.
    """
    return duration_variable(environ, INTERVAL_VARIABLE, DEFAULT_INTERVAL)


def duration_variable(
    environ: Mapping[str, str], variable: str, default: timedelta
) -> timedelta:
    """Return the environment variable `variable` as a duration, or `default`.

    Raises:
        SettingsError: the variable is set but not a valid duration; the
            message starts with the variable's name.
    """
    text = environ.get(variable, "").strip()
    if not text:
        return default
    try:
        return parse_duration(text)
    except SettingsError as exc:
        raise SettingsError(f"{variable}: {exc}") from exc


def parse_duration(text: str) -> timedelta:
    """Parse a duration such as `90s`, `30m`, `6h`, `1d`, `2w` or `1h30m`.

    Raises:
        SettingsError: the text is not a sequence of numbers with units,
            repeats a unit, is zero, or exceeds a year.
    """
    compact = text.strip().lower().replace(" ", "")
    parts = _DURATION_PART.findall(compact)
    if not compact or "".join(n + u for n, u in parts) != compact:
        raise SettingsError(
            f"Invalid duration {text!r}: give a number with a unit (s, m, h, d "
            "or w), such as 30m, 6h, 1d or 1h30m."
        )
    units = [unit for _, unit in parts]
    repeated = sorted({unit for unit in units if units.count(unit) > 1})
    if repeated:
        raise SettingsError(
            f"Invalid duration {text!r}: the unit {repeated[0]!r} appears more "
            "than once; give each unit once, such as 1h30m."
        )
    seconds = sum(
        float(number) * _UNITS[unit].total_seconds() for number, unit in parts
    )
    # Compare in seconds first: a timedelta of 10**20 days would overflow.
    if seconds > MAX_DURATION.total_seconds():
        raise SettingsError(
            f"Invalid duration {text!r}: give at most 365d, since a certificate "
            "must be scanned before it expires."
        )
    duration = timedelta(seconds=seconds)
    if duration < timedelta(seconds=1):
        raise SettingsError(f"Invalid duration {text!r}: give at least 1s.")
    if duration > MAX_DURATION:
        raise SettingsError(
            f"Invalid duration {text!r}: give at most 365d, since a certificate "
            "must be scanned before it expires."
        )
    return duration
