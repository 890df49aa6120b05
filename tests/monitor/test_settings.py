"""Monitor settings: durations and the default interval from the environment."""

from __future__ import annotations

from datetime import timedelta

import pytest

from certwatch.monitor.settings import (
    DEFAULT_INTERVAL,
    MonitorSettings,
    SettingsError,
    default_interval,
    load_settings,
    parse_duration,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("30m", timedelta(minutes=30)),
        ("6h", timedelta(hours=6)),
        ("1d", timedelta(days=1)),
        ("2w", timedelta(weeks=2)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        (" 1.5H ", timedelta(hours=1, minutes=30)),
        ("365d", timedelta(days=365)),
        ("1w2d3h4m5s", timedelta(weeks=1, days=2, hours=3, minutes=4, seconds=5)),
    ],
)
def test_parse_duration_accepts(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("6", r"Invalid duration '6': give a number with a unit"),
        ("6x", r"Invalid duration '6x'"),
        ("h", r"Invalid duration 'h'"),
        ("", r"Invalid duration ''"),
        ("-5m", r"Invalid duration '-5m'"),
        ("0s", r"Invalid duration '0s': give at least 1s\."),
        ("366d", r"Invalid duration '366d': give at most 365d"),
        (
            "1m1m",
            r"Invalid duration '1m1m': the unit 'm' appears more than once; give "
            r"each unit once, such as 1h30m\.",
        ),
        ("1h30m1h", r"Invalid duration '1h30m1h': the unit 'h' appears more"),
    ],
)
def test_parse_duration_rejects(text: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        parse_duration(text)


def test_default_interval_from_environment() -> None:
    assert default_interval({}) == DEFAULT_INTERVAL == timedelta(hours=6)
    assert default_interval({"CERTWATCH_DEFAULT_INTERVAL": "30m"}) == timedelta(
        minutes=30
    )
    assert default_interval({"CERTWATCH_DEFAULT_INTERVAL": " "}) == DEFAULT_INTERVAL


def test_default_interval_names_variable() -> None:
    with pytest.raises(
        SettingsError, match=r"^CERTWATCH_DEFAULT_INTERVAL: Invalid duration '1y'"
    ):
        default_interval({"CERTWATCH_DEFAULT_INTERVAL": "1y"})


def test_load_settings_applies_options() -> None:
    settings = load_settings({"CERTWATCH_DEFAULT_INTERVAL": "1d"}, batch_size=20)

    assert settings.default_interval == timedelta(days=1)
    assert settings.batch_size == 20


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"batch_size": 0}, r"Invalid batch size 0: give at least 1\."),
        ({"lease": timedelta(0)}, r"Invalid lease .*: give a positive duration\."),
        ({"max_sleep": timedelta(-1)}, r"Invalid max sleep .*: give a positive"),
    ],
)
def test_monitor_settings_validates(changes: dict[str, object], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        MonitorSettings(**changes)  # type: ignore[arg-type]


def test_parse_duration_huge_value_is_rejected() -> None:
    with pytest.raises(SettingsError, match="give at most 365d"):
        parse_duration("99999999999999999999999d")
