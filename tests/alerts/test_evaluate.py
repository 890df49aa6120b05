"""Alerts raised by trust findings, after a real scan of a local TLS server.

The server on 127.0.0.1 serves a certificate, the monitor's cycle scans
and records it, and `evaluate_alerts` reads the findings the scan stored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker
from tests.alerts.conftest import StartSmtp, smtp_pki, smtp_server  # noqa: F401
from tests.certs import NOW, make_self_signed
from tests.monitor.helpers import INTERVAL, Clock, make_pki, pinned, settings
from tests.monitor.test_alerting import add_contact
from tests.servers import Chain, LocalServer
from tests.store.conftest import (  # noqa: F401
    database_url,
    engine,
    postgres_server,
    postgres_url,
    sqlite_template,
)

from certwatch.alerts.evaluate import AlertSettings, evaluate_alerts
from certwatch.alerts.settings import SmtpSecurity
from certwatch.monitor.cycle import run_cycle
from certwatch.store.database import session_factory
from certwatch.store.inventory import SourceSettings, upsert_endpoint
from certwatch.store.models import AlertRow, FindingRow, OutboxRow


@pytest.fixture
def sessions(engine: Engine) -> Iterator[sessionmaker[Session]]:  # noqa: F811
    """A session factory on a migrated test database."""
    yield session_factory(engine)


def scan_and_evaluate(
    sessions: sessionmaker[Session], chain: Chain, start: Callable[..., LocalServer]
) -> tuple[list[str], list[AlertRow]]:
    """Serve `chain`, scan it once and evaluate the alerts.

    Returns the finding codes of the scan and the alerts.
    """
    server = start(chain=chain)
    clock = Clock(NOW)
    with sessions.begin() as session:
        upsert_endpoint(
            session,
            pinned("www.example.test", server.port),
            now=clock(),
            settings=SourceSettings(interval=INTERVAL),
        )
    pki = make_pki()
    run_cycle(sessions, now_fn=clock, settings=settings(), policy=pki.policy)
    with sessions.begin() as session:
        evaluate_alerts(
            session, now=clock() + timedelta(minutes=1), settings=AlertSettings()
        )
    with sessions() as session:
        codes = sorted(session.scalars(select(FindingRow.code)))
        alerts = list(session.scalars(select(AlertRow)))
        session.expunge_all()
    return codes, alerts


def test_evaluate_self_signed_raises_alert(
    sessions: sessionmaker[Session], local_server: Callable[..., LocalServer]
) -> None:
    leaf = make_self_signed(
        ["www.example.test"],
        not_before=NOW - timedelta(days=10),
        not_after=NOW + timedelta(days=300),
    )
    codes, alerts = scan_and_evaluate(
        sessions, Chain.from_pems(leaf.key_pem(), leaf.pem), local_server
    )

    assert "self_signed" in codes
    identities = [alert.identity for alert in alerts]
    assert identities == [f"finding:self_signed:{leaf.sha256}"]
    assert alerts[0].severity == "critical"
    assert alerts[0].code == "self_signed"
    assert alerts[0].event == "problem"


def test_evaluate_finding_notice_names_certificate(
    sessions: sessionmaker[Session], local_server: Callable[..., LocalServer]
) -> None:
    leaf = make_self_signed(
        ["www.example.test"],
        not_before=NOW - timedelta(days=10),
        not_after=NOW + timedelta(days=300),
    )
    with sessions.begin() as session:
        add_contact(session, "default", "email:ops@example.test")

    scan_and_evaluate(sessions, Chain.from_pems(leaf.key_pem(), leaf.pem), local_server)

    with sessions() as session:
        [notice] = session.scalars(select(OutboxRow.notice))
    [item] = notice["items"]
    assert item["finding_code"] == "self_signed"
    assert item["names"] == ["www.example.test"]
    assert item["not_after"] is not None


async def test_evaluate_starttls_not_offered_alerts_with_reply(
    sessions: sessionmaker[Session],
    smtp_server: StartSmtp,  # noqa: F811
) -> None:
    # Without a TLS context, aiosmtpd does not offer STARTTLS.
    server = await smtp_server(SmtpSecurity.PLAIN)
    clock = Clock(NOW)
    with sessions.begin() as session:
        upsert_endpoint(
            session,
            replace(pinned("mail.example.test", server.port), protocol="smtp"),
            now=clock(),
            settings=SourceSettings(interval=INTERVAL),
        )
    pki = make_pki()
    for _ in range(3):
        await asyncio.to_thread(
            run_cycle, sessions, now_fn=clock, settings=settings(), policy=pki.policy
        )
        clock.advance(INTERVAL)
    with sessions.begin() as session:
        evaluate_alerts(session, now=clock(), settings=AlertSettings())
    with sessions() as session:
        alerts = list(session.scalars(select(AlertRow)))

    assert [alert.code for alert in alerts] == ["starttls_not_offered"]
    [alert] = alerts
    assert alert.severity == "critical"
    assert alert.event == "problem"
    assert "does not offer" in alert.message
    assert "It replied: " in alert.message
