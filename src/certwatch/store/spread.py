"""Random offsets that keep the scans of a large inventory spread over time.

A source's next scan time comes from its interval. Sources added or
imported together are all due at once for their first scan, so without a
random offset they would stay bunched: ten thousand sources imported in
one go would be scanned in the same minutes of every interval. These
functions are pure: the caller passes `now` and a `random.Random`.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

DEFAULT_JITTER = 0.1
"""The share of a delay by which a next scan time may move either way."""


def jittered(delay: timedelta, jitter: float, rng: random.Random) -> timedelta:
    """Return `delay` moved by a random share of at most `jitter` either way."""
    return delay * (1 + rng.uniform(-jitter, jitter))


def spread_over(interval: timedelta, rng: random.Random) -> timedelta:
    """Return a delay drawn uniformly from (0, `interval`].

    The first successful scan of a source uses it for the following scan,
    so sources first scanned together end up at independent, evenly spread
    points of their interval, and no source waits longer than one interval.
    """
    # random() is in [0, 1), so 1 - random() is in (0, 1].
    return interval * (1 - rng.random())


def next_scan_after_interval_change(
    last_scanned_at: datetime,
    interval: timedelta,
    *,
    now: datetime,
    jitter: float,
    rng: random.Random,
) -> datetime:
    """Return the next scan time of a source whose interval just changed.

    The next scan comes one new interval, with jitter, after the last scan.
    When that time has already passed, the scan is spread over the next
    new interval instead of being due at once: shortening the interval of
    many sources in one import must not make them all due together.
    """
    planned = last_scanned_at + jittered(interval, jitter, rng)
    if planned > now:
        return planned
    return now + spread_over(interval, rng)
