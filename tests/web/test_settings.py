"""`load_web_settings`: defaults, valid values, and errors that name the variable."""

from __future__ import annotations

import pytest

from certwatch.web.settings import WebSettings, WebSettingsError, load_web_settings


def test_load_web_settings_defaults() -> None:
    settings = load_web_settings({})

    assert settings == WebSettings(
        host="127.0.0.1", port=8080, metrics_token=None, disabled=False
    )
    assert settings.base_url() == "http://127.0.0.1:8080"


def test_load_web_settings_values() -> None:
    settings = load_web_settings(
        {
            "CERTWATCH_WEB_HOST": "[::1]",
            "CERTWATCH_WEB_PORT": " 9090 ",
            "CERTWATCH_METRICS_TOKEN": "0123456789abcdef",
            "CERTWATCH_WEB_DISABLED": "Yes",
            "CERTWATCH_WEB_PUBLIC_URL": "https://certwatch.example.test/tls/",
        }
    )

    assert settings.host == "::1"
    assert settings.port == 9090
    assert settings.metrics_token == "0123456789abcdef"
    assert settings.disabled is True
    assert settings.base_url() == "https://certwatch.example.test/tls"


@pytest.mark.parametrize(
    ("host", "expected"),
    [("0.0.0.0", "0.0.0.0"), ("localhost", "localhost"), ("::", "::")],
)
def test_load_web_settings_hosts(host: str, expected: str) -> None:
    assert load_web_settings({"CERTWATCH_WEB_HOST": host}).host == expected


def test_base_url_brackets_ipv6() -> None:
    assert WebSettings(host="::1", port=8080).base_url() == "http://[::1]:8080"


@pytest.mark.parametrize("value", ["", "0", "false", "NO", "off"])
def test_load_web_settings_enabled(value: str) -> None:
    assert load_web_settings({"CERTWATCH_WEB_DISABLED": value}).disabled is False


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "CERTWATCH_WEB_HOST",
            "web server",
            "CERTWATCH_WEB_HOST='web server' is not an IP address or host name",
        ),
        (
            "CERTWATCH_WEB_HOST",
            "-bad.example.test",
            "CERTWATCH_WEB_HOST='-bad.example.test' is not an IP address",
        ),
        ("CERTWATCH_WEB_PORT", "http", "CERTWATCH_WEB_PORT='http' is not a port"),
        ("CERTWATCH_WEB_PORT", "65536", "CERTWATCH_WEB_PORT='65536' is not a port"),
        ("CERTWATCH_WEB_PORT", "-1", "CERTWATCH_WEB_PORT='-1' is not a port"),
        (
            "CERTWATCH_WEB_DISABLED",
            "maybe",
            "CERTWATCH_WEB_DISABLED='maybe' is not a yes or no",
        ),
        (
            "CERTWATCH_WEB_PUBLIC_URL",
            "certwatch.example.test",
            "CERTWATCH_WEB_PUBLIC_URL='certwatch.example.test' is not an http",
        ),
        (
            "CERTWATCH_WEB_PUBLIC_URL",
            "https://certwatch.example.test/?a=1",
            "has a query or fragment",
        ),
    ],
)
def test_load_web_settings_rejects(variable: str, value: str, message: str) -> None:
    with pytest.raises(WebSettingsError, match=message.replace("?", r"\?")):
        load_web_settings({variable: value})


@pytest.mark.parametrize(
    "token", ["", "short", "has a space in it ok", "tab\there-0123456789"]
)
def test_load_web_settings_rejects_token(token: str) -> None:
    with pytest.raises(
        WebSettingsError, match="CERTWATCH_METRICS_TOKEN is invalid"
    ) as caught:
        load_web_settings({"CERTWATCH_METRICS_TOKEN": token})

    if token:
        assert token not in str(caught.value)
