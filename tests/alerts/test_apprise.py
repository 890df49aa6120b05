"""Apprise delivery through its json:// target to a real receiver on 127.0.0.1."""

from __future__ import annotations

import logging

import pytest
from tests.alerts.conftest import HttpReceiver, Reply, make_notice

from certwatch import __version__
from certwatch.alerts import (
    ContactError,
    DeliverySettings,
    WebhookSettings,
    deliver,
    parse_contact,
)
from certwatch.alerts.render import render_message

FAST = DeliverySettings(webhook=WebhookSettings(timeout=2.0))


def _apprise_contact(receiver: HttpReceiver, path: str) -> str:
    return f"apprise:json://127.0.0.1:{receiver.port}{path}"


async def test_apprise_json_delivers(http_receiver: HttpReceiver) -> None:
    contact = parse_contact(_apprise_contact(http_receiver, "/apprise/hook"))
    notice = make_notice(key="apprise-1")

    outcome = await deliver(contact, notice, FAST)

    assert outcome.delivered, outcome.reason
    [request] = http_receiver.requests
    assert request.path == "/apprise/hook"
    assert request.headers["Idempotency-Key"] == "apprise-1"
    assert request.headers["User-Agent"] == f"certwatch/{__version__}"
    body = request.json()
    rendered = render_message(notice)
    assert body["title"] == rendered.subject
    # Apprise strips the final line break.
    assert body["message"] == rendered.text.rstrip("\n")
    assert body["type"] == "failure"


async def test_apprise_failure_transient(http_receiver: HttpReceiver) -> None:
    http_receiver.script = [Reply(500, b"")]
    contact = parse_contact(_apprise_contact(http_receiver, "/hook"))

    outcome = await deliver(contact, make_notice(), FAST)

    assert not outcome.delivered
    assert not outcome.permanent
    assert outcome.reason.startswith("Apprise reported failure")
    assert "500" in outcome.reason


async def test_apprise_redirect_not_followed(http_receiver: HttpReceiver) -> None:
    location = http_receiver.url("/elsewhere")
    http_receiver.script = [Reply(302, b"", (("Location", location),))]
    contact = parse_contact(_apprise_contact(http_receiver, "/moved"))

    outcome = await deliver(contact, make_notice(), FAST)

    assert not outcome.delivered
    assert [request.path for request in http_receiver.requests] == ["/moved"]


async def test_apprise_secret_path_kept_out_of_logs(
    http_receiver: HttpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    http_receiver.script = [Reply(500, b"")]
    contact = parse_contact(_apprise_contact(http_receiver, "/hook/secret-token-77"))

    outcome = await deliver(contact, make_notice(), FAST)

    assert not outcome.delivered
    assert "secret-token-77" not in outcome.reason
    assert f"apprise:json://127.0.0.1:{http_receiver.port}/hook/…" in caplog.text
    assert "secret-token-77" not in caplog.text


def test_apprise_contact_redacts_token_hosts() -> None:
    contact = parse_contact("apprise:tgram://123456789:AAbbCCddEEff/987654")

    assert contact.redacted() == "apprise:tgram://…"
    assert "AAbbCCddEEff" not in repr(contact)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("apprise:nosuchscheme://example.test/x", r"Apprise does not accept it"),
        ("apprise:example.test", r"give SCHEME://"),
    ],
)
def test_apprise_contact_rejects(text: str, message: str) -> None:
    with pytest.raises(ContactError, match=message):
        parse_contact(text)
