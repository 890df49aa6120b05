"""Retry delays: exponential growth, cap and jitter."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from certwatch.alerts import RetryPolicy, next_attempt_delay


class FixedRandom:
    """A random source that always returns `value`."""

    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


def test_next_attempt_delay_doubles_to_cap() -> None:
    no_jitter = FixedRandom(0.0)

    delays = [next_attempt_delay(attempt, no_jitter) for attempt in range(1, 10)]

    assert delays == [
        timedelta(minutes=1),
        timedelta(minutes=2),
        timedelta(minutes=4),
        timedelta(minutes=8),
        timedelta(minutes=16),
        timedelta(minutes=32),
        timedelta(hours=1),
        timedelta(hours=1),
        timedelta(hours=1),
    ]


def test_next_attempt_delay_jitter_bounds() -> None:
    assert next_attempt_delay(3, FixedRandom(0.999999)) > timedelta(minutes=3)
    assert next_attempt_delay(3, FixedRandom(0.5)) == timedelta(minutes=3.5)
    assert next_attempt_delay(1, FixedRandom(1.0)) == timedelta(seconds=45)


def test_next_attempt_delay_random_within_range() -> None:
    source = random.Random(20270103)
    policy = RetryPolicy(
        first_delay=timedelta(seconds=10), max_delay=timedelta(minutes=5), jitter=0.5
    )

    for attempt in range(1, 30):
        nominal = min(timedelta(seconds=10) * 2 ** (attempt - 1), timedelta(minutes=5))
        delay = next_attempt_delay(attempt, source, policy)
        assert nominal / 2 <= delay <= nominal


def test_next_attempt_delay_huge_attempt() -> None:
    assert next_attempt_delay(10_000, FixedRandom(0.0)) == timedelta(hours=1)


def test_next_attempt_delay_rejects_attempt_zero() -> None:
    with pytest.raises(ValueError, match=r"Invalid attempt number 0: count from 1\."):
        next_attempt_delay(0, FixedRandom(0.0))
