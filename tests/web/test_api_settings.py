"""The web settings of the address policy, endpoint limit and request limit."""

from __future__ import annotations

import pytest

from certwatch.web.settings import (
    DEFAULT_REQUESTS_PER_MINUTE,
    OPEN_SIGNUP_ENDPOINT_LIMIT,
    WebSettingsError,
    load_web_settings,
)


def test_settings_defaults_by_signup_mode() -> None:
    invite = load_web_settings({})
    open_site = load_web_settings({"CERTWATCH_WEB_SIGNUP": "open"})

    assert invite.allow_private_targets is True
    assert invite.team_endpoint_limit is None
    assert invite.requests_per_minute == DEFAULT_REQUESTS_PER_MINUTE
    assert open_site.allow_private_targets is False
    assert open_site.team_endpoint_limit == OPEN_SIGNUP_ENDPOINT_LIMIT


def test_settings_explicit_values() -> None:
    settings = load_web_settings(
        {
            "CERTWATCH_WEB_SIGNUP": "open",
            "CERTWATCH_ALLOW_PRIVATE_TARGETS": "true",
            "CERTWATCH_TEAM_ENDPOINT_LIMIT": "none",
            "CERTWATCH_WEB_REQUESTS_PER_MINUTE": "30",
        }
    )
    invite = load_web_settings(
        {
            "CERTWATCH_ALLOW_PRIVATE_TARGETS": "false",
            "CERTWATCH_TEAM_ENDPOINT_LIMIT": "50",
        }
    )

    assert settings.allow_private_targets is True
    assert settings.team_endpoint_limit is None
    assert settings.requests_per_minute == 30
    assert invite.allow_private_targets is False
    assert invite.team_endpoint_limit == 50


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("CERTWATCH_ALLOW_PRIVATE_TARGETS", "maybe", "is not true or false"),
        ("CERTWATCH_TEAM_ENDPOINT_LIMIT", "0", "is not a limit"),
        ("CERTWATCH_TEAM_ENDPOINT_LIMIT", "-5", "is not a limit"),
        ("CERTWATCH_WEB_REQUESTS_PER_MINUTE", "fast", "is not a number of requests"),
        ("CERTWATCH_WEB_REQUESTS_PER_MINUTE", "0", "is not a number of requests"),
    ],
)
def test_settings_invalid(variable: str, value: str, message: str) -> None:
    with pytest.raises(WebSettingsError, match=f"{variable}='{value}' {message}"):
        load_web_settings({variable: value})
