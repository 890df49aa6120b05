"""Webhook, Slack and Teams delivery against a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from tests.alerts.conftest import HttpReceiver, Reply, make_notice
from tests.servers import closed_port

from certwatch import __version__
from certwatch.alerts import (
    DeliverySettings,
    WebhookSettings,
    deliver,
    parse_contact,
)
from certwatch.alerts.channels.webhook import classify_response, parse_retry_after
from certwatch.alerts.payloads import webhook_payload

FAST = DeliverySettings(webhook=WebhookSettings(timeout=0.5))

SLACK_SECRET = "T00000000/B00000000/XXXXsecretXXXXslack"


async def test_webhook_posts_schema_and_headers(http_receiver: HttpReceiver) -> None:
    contact = parse_contact(f"webhook:{http_receiver.url('/hooks/certwatch?x=1')}")
    notice = make_notice(key="notice-77")

    outcome = await deliver(contact, notice, FAST)

    assert outcome.delivered, outcome.reason
    assert outcome.reason == "accepted with HTTP 200 (ok)"
    [request] = http_receiver.requests
    assert request.method == "POST"
    assert request.path == "/hooks/certwatch?x=1"
    assert request.headers["Idempotency-Key"] == "notice-77"
    assert request.headers["X-Certwatch-Event"] == "expiring"
    assert request.headers["User-Agent"] == f"certwatch/{__version__}"
    assert request.headers["Content-Type"] == "application/json; charset=utf-8"
    assert request.json() == webhook_payload(notice)
    assert request.json()["schema_version"] == 1


async def test_webhook_retry_after_500_same_key(http_receiver: HttpReceiver) -> None:
    http_receiver.script = [Reply(500, b"oops")]
    contact = parse_contact(f"webhook:{http_receiver.url('/hook')}")
    notice = make_notice(key="retry-me")

    first = await deliver(contact, notice, FAST)
    second = await deliver(contact, notice, FAST)

    assert not first.delivered
    assert not first.permanent
    assert "HTTP 500" in first.reason
    assert second.delivered
    keys = [request.headers["Idempotency-Key"] for request in http_receiver.requests]
    assert keys == ["retry-me", "retry-me"]
    assert http_receiver.requests[0].body == http_receiver.requests[1].body


async def test_webhook_404_permanent(http_receiver: HttpReceiver) -> None:
    http_receiver.script = [Reply(404, b"no_service")]
    contact = parse_contact(f"webhook:{http_receiver.url('/gone')}")

    outcome = await deliver(contact, make_notice(), FAST)

    assert not outcome.delivered
    assert outcome.permanent
    assert (
        outcome.reason == "the receiver rejected the notice with HTTP 404 (no_service)"
    )


async def test_webhook_429_honours_retry_after(http_receiver: HttpReceiver) -> None:
    http_receiver.script = [Reply(429, b"slow down", (("Retry-After", "120"),))]
    contact = parse_contact(f"webhook:{http_receiver.url('/hook')}")

    outcome = await deliver(contact, make_notice(), FAST)

    assert not outcome.delivered
    assert not outcome.permanent
    assert outcome.retry_after == timedelta(seconds=120)
    # A body that is not a short error code stays out of the reason.
    assert "slow down" not in outcome.reason


async def test_webhook_hang_times_out(http_receiver: HttpReceiver) -> None:
    http_receiver.script = [Reply(hang=True)]
    contact = parse_contact(f"webhook:{http_receiver.url('/slow')}")
    settings = DeliverySettings(webhook=WebhookSettings(timeout=0.2))

    outcome = await deliver(contact, make_notice(), settings)

    assert not outcome.delivered
    assert not outcome.permanent
    assert outcome.reason == "the receiver did not respond within 0.2 s"
    assert len(http_receiver.requests) == 1


async def test_webhook_redirect_not_followed(http_receiver: HttpReceiver) -> None:
    location = http_receiver.url("/elsewhere/token-abc")
    http_receiver.script = [Reply(302, b"", (("Location", location),))]
    contact = parse_contact(f"webhook:{http_receiver.url('/moved')}")

    outcome = await deliver(contact, make_notice(), FAST)

    assert not outcome.delivered
    assert outcome.permanent
    assert "does not follow redirects" in outcome.reason
    assert "token-abc" not in outcome.reason
    assert [request.path for request in http_receiver.requests] == ["/moved"]


async def test_webhook_connection_refused() -> None:
    with closed_port() as port:
        contact = parse_contact(f"webhook:http://127.0.0.1:{port}/hook")
        outcome = await deliver(contact, make_notice(), FAST)

    assert not outcome.delivered
    assert not outcome.permanent
    assert outcome.reason.startswith("connecting to the receiver failed")


async def test_slack_payload_received(http_receiver: HttpReceiver) -> None:
    contact = parse_contact(f"slack:{http_receiver.url('/services/' + SLACK_SECRET)}")

    outcome = await deliver(contact, make_notice(key="slack-1"), FAST)

    assert outcome.delivered, outcome.reason
    [request] = http_receiver.requests
    body = request.json()
    assert request.headers["Idempotency-Key"] == "slack-1"
    assert body["text"].startswith("www.example.test (+1 name) expires in 7 days")
    assert body["blocks"][0]["type"] == "header"
    assert body["blocks"][1]["type"] == "section"
    assert "192.0.2.10" in body["blocks"][1]["text"]["text"]


async def test_teams_payload_received(http_receiver: HttpReceiver) -> None:
    contact = parse_contact(f"teams:{http_receiver.url('/workflows/abc/invoke')}")

    outcome = await deliver(contact, make_notice(), FAST)

    assert outcome.delivered, outcome.reason
    body = http_receiver.requests[0].json()
    assert body["type"] == "message"
    attachment = body["attachments"][0]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert attachment["content"]["type"] == "AdaptiveCard"


async def test_webhook_secrets_kept_out_of_logs(
    http_receiver: HttpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    http_receiver.script = [Reply(500, b"")]
    url = http_receiver.url(f"/services/{SLACK_SECRET}?token=querysecret")
    contact = parse_contact(f"slack:{url}")

    outcome = await deliver(contact, make_notice(), FAST)

    assert not outcome.delivered
    assert "XXXXsecretXXXXslack" not in outcome.reason
    assert "querysecret" not in outcome.reason
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert (
        f"to slack:http://127.0.0.1:{http_receiver.port}/services/…?…"
        in warnings[0].getMessage()
    )
    # httpx logs every request; the filter redacts its URL.
    assert any("HTTP Request: POST" in r.getMessage() for r in caplog.records)
    assert "XXXXsecretXXXXslack" not in caplog.text
    assert "querysecret" not in caplog.text


async def test_webhook_success_logged_at_info(
    http_receiver: HttpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="certwatch.alerts")
    contact = parse_contact(f"webhook:{http_receiver.url('/hook')}")

    await deliver(contact, make_notice(key="logged-1"), FAST)

    [record] = [r for r in caplog.records if r.name == "certwatch.alerts.channels"]
    assert record.levelno == logging.INFO
    assert record.getMessage().startswith("Delivered expiring notice logged-1 to")


@pytest.mark.parametrize(
    ("status", "delivered", "permanent"),
    [
        (200, True, False),
        (202, True, False),
        (204, True, False),
        (301, False, True),
        (400, False, True),
        (401, False, True),
        (403, False, True),
        (408, False, False),
        (410, False, True),
        (429, False, False),
        (500, False, False),
        (502, False, False),
        (503, False, False),
    ],
)
def test_classify_response_status(
    status: int, delivered: bool, permanent: bool
) -> None:
    outcome = classify_response(status, httpx.Headers(), "")

    assert outcome.delivered is delivered
    assert outcome.permanent is permanent


def test_parse_retry_after_forms() -> None:
    now = datetime(2027, 1, 3, 12, 0, 0, tzinfo=UTC)

    assert parse_retry_after(None) is None
    assert parse_retry_after("30") == timedelta(seconds=30)
    assert parse_retry_after("999999") == timedelta(days=1)
    assert parse_retry_after("Sun, 03 Jan 2027 12:01:00 GMT", now) == timedelta(
        minutes=1
    )
    assert parse_retry_after("Sun, 03 Jan 2027 11:00:00 GMT", now) == timedelta(0)
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-5") is None


async def test_webhook_endless_body_is_cut_short() -> None:
    # A receiver that replies 200 and then sends without end must neither
    # hold the delivery nor fill the memory.
    sent = 0

    async def handle(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        nonlocal sent
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
        chunk = b"x" * 65536
        try:
            while sent < 256 * 1024 * 1024:
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        contact = parse_contact(f"webhook:http://127.0.0.1:{port}/hook")
        outcome = await deliver(contact, make_notice(), FAST)
    finally:
        server.close()
        await server.wait_closed()

    assert outcome.delivered, outcome.reason
    # The client stopped reading long before the receiver ran out.
    assert sent < 256 * 1024 * 1024


def test_retry_after_huge_number_is_capped() -> None:
    assert parse_retry_after("9" * 23) == timedelta(days=1)
