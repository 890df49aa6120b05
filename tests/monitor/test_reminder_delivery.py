"""Reminders end to end: each threshold by email through aiosmtpd, and `alerts ack`.

Scans are recorded through the store's write path with the clock moved by
hand. `alert_after_cycle` runs its own event loop, so the tests call it in
a worker thread while the SMTP server keeps running in the test's loop.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from tests.alerts.conftest import StartSmtp, smtp_pki, smtp_server  # noqa: F401
from tests.monitor.test_alerting import (
    NOT_AFTER,
    SETTINGS,
    add_contact,
    add_endpoint,
    before_expiry,
    evaluate,
    items,
    one_year_leaf,
    scan,
)

from certwatch.alerts.cycle import alert_after_cycle
from certwatch.alerts.settings import DeliverySettings, SmtpSecurity
from certwatch.cli import cli
from certwatch.store.models import AlertRow

NAME = "www.example.test"


@pytest.mark.parametrize(
    ("before", "days", "phrase"),
    [
        (8, 6.9, "expires in 6 days"),
        (3.5, 2.9, "expires in 2 days"),
        (1.5, 0.9, "expires within a day"),
    ],
)
async def test_reminder_email_each_threshold(
    sessions: sessionmaker[Session],
    smtp_server: StartSmtp,  # noqa: F811
    before: float,
    days: float,
    phrase: str,
) -> None:
    server = await smtp_server(SmtpSecurity.PLAIN)
    delivery = DeliverySettings(smtp=server.settings(SmtpSecurity.PLAIN))
    leaf = one_year_leaf(dns_names=[NAME])
    with sessions() as session:
        add_contact(session, "default", "email:ops@example.test")
        endpoint_id = add_endpoint(session, NAME)

    async def cycle_at(at: datetime) -> None:
        with sessions() as session:
            scan(session, endpoint_id, NAME, [("192.0.2.1", leaf)], at)
        await asyncio.to_thread(
            alert_after_cycle,
            sessions,
            now_fn=lambda: at,
            settings=SETTINGS,
            delivery=delivery,
        )

    # The earlier thresholds were sent already, in one catch-up message.
    await cycle_at(before_expiry(before))
    earlier = len(server.handler.received)
    await cycle_at(before_expiry(days))
    after_threshold = len(server.handler.received)
    await cycle_at(before_expiry(days) + timedelta(hours=1))

    assert earlier == 1
    assert after_threshold == 2
    assert len(server.handler.received) == 2
    message = server.handler.received[1].message
    assert message["Subject"] == (
        f"{NAME} {phrase} ({NOT_AFTER.date().isoformat()}) at 1 place"
    )
    assert server.handler.received[1].recipients == ["ops@example.test"]


def test_ack_command_silences_until_date(
    sessions: sessionmaker[Session], database_url: str
) -> None:
    # `alerts ack` rejects an --until date before the real clock, so this
    # timeline is placed after today rather than at the module's NOT_AFTER.
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    not_after = today + timedelta(days=30)
    leaf = one_year_leaf(not_after, dns_names=[NAME])

    def before_expiry(days: float) -> datetime:
        return not_after - timedelta(days=days)

    until = before_expiry(2.0)
    with sessions() as session:
        add_contact(session, "default", "email:ops@example.test")
        endpoint_id = add_endpoint(session, NAME)
        at = before_expiry(6.9)
        scan(session, endpoint_id, NAME, [("192.0.2.1", leaf)], at)
        [first] = evaluate(session, at)
        alert_id = session.scalars(select(AlertRow.id)).one()

    result = CliRunner().invoke(
        cli,
        ["alerts", "ack", str(alert_id), "--until", until.date().isoformat()],
        env={"CERTWATCH_DATABASE_URL": database_url},
    )

    assert result.exit_code == 0, result.output
    assert f"Acknowledged alert {alert_id} until" in result.output
    with sessions() as session:
        # The 3-day threshold passes while the acknowledgement holds.
        at = before_expiry(2.9)
        scan(session, endpoint_id, NAME, [("192.0.2.1", leaf)], at)
        silenced = evaluate(session, at)
        at = until - timedelta(minutes=1)
        scan(session, endpoint_id, NAME, [("192.0.2.1", leaf)], at)
        still_silenced = evaluate(session, at)
        # Once the date is reached, the overdue reminder goes out once.
        at = until
        scan(session, endpoint_id, NAME, [("192.0.2.1", leaf)], at)
        reminded = evaluate(session, at)
        again = evaluate(session, at + timedelta(hours=1))

    assert items(first)[0]["event"] == "expiring"
    assert silenced == []
    assert still_silenced == []
    assert len(reminded) == 1
    assert items(reminded[0])[0]["alert_id"] == alert_id
    assert again == []
