"""The client address that the web service uses behind X-Forwarded-For.

The failed-login limit counts per client address, so a client that can
choose its address with X-Forwarded-For escapes it. These tests run real
uvicorn, because uvicorn's proxy-header middleware decides the address.
"""

from __future__ import annotations

import httpx
import pytest
from tests.web.conftest import ServeApp
from tests.web.page_helpers import csrf_of

from certwatch.web.ratelimit import ADDRESS_FAILURE_LIMIT
from certwatch.web.settings import (
    TRUSTED_PROXIES_VARIABLE,
    WebSettings,
    WebSettingsError,
    load_web_settings,
    parse_trusted_proxies,
)


def _fail_login(client: httpx.Client, csrf: str, forwarded_for: str) -> int:
    response = client.post(
        "/login",
        data={
            "csrf_token": csrf,
            "email": "nobody@example.test",
            "password": "wrong password 123",
        },
        headers={"X-Forwarded-For": forwarded_for},
    )
    return response.status_code


def test_login_limit_ignores_forwarded_for_by_default(serve_app: ServeApp) -> None:
    base_url = serve_app(WebSettings(port=0))
    with httpx.Client(base_url=base_url, timeout=30) as client:
        csrf = csrf_of(client.get("/login"))
        codes = [
            _fail_login(client, csrf, f"203.0.113.{number}")
            for number in range(ADDRESS_FAILURE_LIMIT)
        ]
        blocked = _fail_login(client, csrf, "198.51.100.7")

    assert codes == [403] * ADDRESS_FAILURE_LIMIT
    # Every attempt came from 127.0.0.1, whatever the header contained.
    assert blocked == 429


def test_login_limit_trusts_listed_proxy(serve_app: ServeApp) -> None:
    settings = WebSettings(port=0, trusted_proxies=("127.0.0.1/32",))
    base_url = serve_app(settings)
    with httpx.Client(base_url=base_url, timeout=30) as client:
        csrf = csrf_of(client.get("/login"))
        for _ in range(ADDRESS_FAILURE_LIMIT):
            _fail_login(client, csrf, "203.0.113.9")
        same_client = _fail_login(client, csrf, "203.0.113.9")
        other_client = _fail_login(client, csrf, "198.51.100.7")

    assert same_client == 429
    assert other_client == 403


def test_login_limit_unlisted_proxy_is_ignored(serve_app: ServeApp) -> None:
    settings = WebSettings(port=0, trusted_proxies=("10.0.0.0/8",))
    base_url = serve_app(settings)
    with httpx.Client(base_url=base_url, timeout=30) as client:
        csrf = csrf_of(client.get("/login"))
        for number in range(ADDRESS_FAILURE_LIMIT):
            _fail_login(client, csrf, f"203.0.113.{number}")
        blocked = _fail_login(client, csrf, "198.51.100.7")

    assert blocked == 429


def test_trusted_proxies_default_is_empty() -> None:
    assert load_web_settings({}).trusted_proxies == ()


def test_trusted_proxies_parses_addresses_and_networks() -> None:
    text = " 127.0.0.1, 10.0.0.0/8 ,[::1],192.168.1.7/24,127.0.0.1"
    environ = {TRUSTED_PROXIES_VARIABLE: text}

    proxies = load_web_settings(environ).trusted_proxies

    assert proxies == ("127.0.0.1/32", "10.0.0.0/8", "::1/128", "192.168.1.0/24")


@pytest.mark.parametrize("text", ["*", "proxy.example.test", "10.0.0.0/33", "1.2.3"])
def test_trusted_proxies_invalid_entry(text: str) -> None:
    with pytest.raises(WebSettingsError, match=TRUSTED_PROXIES_VARIABLE) as caught:
        parse_trusted_proxies(f"127.0.0.1,{text}")

    assert repr(text) in str(caught.value)
    assert "CIDR" in str(caught.value)
