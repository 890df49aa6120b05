"""When to try a failed delivery again: exponential backoff with jitter."""

from __future__ import annotations

from datetime import timedelta
from typing import Protocol

from certwatch.alerts.settings import RetryPolicy

# Past 2**64 first delays the cap always applies; stopping the exponent
# there keeps the float product finite for any attempt number.
_MAX_EXPONENT = 64


class RandomSource(Protocol):
    """Anything with `random()` returning a float in [0, 1), such as `random.Random`."""

    def random(self) -> float: ...


def next_attempt_delay(
    attempt: int, random_source: RandomSource, policy: RetryPolicy | None = None
) -> timedelta:
    """Return how long to wait after failed attempt number `attempt` (from 1).

    The delay doubles with each attempt from `policy.first_delay` up to
    `policy.max_delay`, then a random share of up to `policy.jitter` of it
    is taken off. A delay is thus never above the maximum, and never below
    `1 - jitter` times the doubled delay.

    Raises:
        ValueError: `attempt` is below 1.
    """
    if attempt < 1:
        raise ValueError(f"Invalid attempt number {attempt!r}: count from 1.")
    policy = policy or RetryPolicy()
    exponent = min(attempt - 1, _MAX_EXPONENT)
    # Multiply in float seconds: a timedelta times 2**64 would overflow.
    nominal = min(
        policy.first_delay.total_seconds() * 2.0**exponent,
        policy.max_delay.total_seconds(),
    )
    return timedelta(seconds=nominal * (1 - policy.jitter * random_source.random()))
