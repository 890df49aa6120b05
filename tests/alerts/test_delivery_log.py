"""The log line of a failed delivery says what kind of failure it was."""

from __future__ import annotations

import logging

import pytest
from tests.alerts.conftest import GENERATED_AT, HttpReceiver, Reply

from certwatch.alerts import (
    DeliverySettings,
    EventKind,
    Notice,
    WebhookSettings,
    deliver,
    parse_contact,
)


async def test_failed_test_message_log_promises_no_retry(
    http_receiver: HttpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    http_receiver.script = [Reply(503)]
    contact = parse_contact(f"webhook:{http_receiver.url('/hook')}")
    notice = Notice("test-1", "web", EventKind.TEST, GENERATED_AT)
    settings = DeliverySettings(webhook=WebhookSettings(timeout=2.0))

    with caplog.at_level(logging.WARNING, logger="certwatch.alerts.channels"):
        outcome = await deliver(contact, notice, settings)

    assert not outcome.delivered
    assert not outcome.permanent
    assert "(temporary failure)" in caplog.text
    # A test message is never retried, so the log must not promise it.
    assert "retry" not in caplog.text
