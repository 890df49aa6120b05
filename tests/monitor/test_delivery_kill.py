"""A delivery process killed while sending loses no message after a restart.

The outbox delivery runs as a separate Python process against the test
database, with its clock passed on the command line. The local HTTP
receiver holds every request open, the test kills the process with SIGKILL
in the middle of sending, and a second process, started once the claims'
lease has ended, sends every message again under the same idempotency key.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from tests.alerts.conftest import (  # noqa: F401
    HttpReceiver,
    Reply,
    http_receiver,
    make_notice,
)
from tests.monitor.test_alerting import START, add_contact

from certwatch.alerts.outbox import DEFAULT_LEASE, enqueue
from certwatch.store.alerts import find_team
from certwatch.store.models import OutboxRow

DRIVER = """
import sys
from datetime import datetime

from certwatch.alerts.outbox import deliver_due
from certwatch.alerts.settings import DeliverySettings
from certwatch.store.database import create_store_engine, session_factory

sessions = session_factory(create_store_engine(sys.argv[1]))
now = datetime.fromisoformat(sys.argv[2])
deliver_due(sessions, settings=DeliverySettings(), now_fn=lambda: now)
"""

KEYS = ("kill-1", "kill-2", "kill-3")


def start_delivery(url: str, now: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", DRIVER, url, now],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def wait_for_requests(receiver: HttpReceiver, count: int) -> None:
    deadline = time.monotonic() + 60
    while len(receiver.requests) < count:
        assert time.monotonic() < deadline, "the delivery process sent nothing"
        time.sleep(0.05)


def test_killed_delivery_process_loses_nothing(
    sessions: sessionmaker[Session],
    database_url: str,
    http_receiver: HttpReceiver,  # noqa: F811
) -> None:
    with sessions() as session:
        add_contact(session, "default", f"webhook:{http_receiver.url('/hook')}")
        team_id = find_team(session, "default")
        assert team_id is not None
        for key in KEYS:
            enqueue(session, team_id=team_id, notice=make_notice(key=key), now=START)
        session.commit()
    http_receiver.script = [Reply(hang=True) for _ in KEYS]

    first = start_delivery(database_url, START.isoformat())
    try:
        wait_for_requests(http_receiver, len(KEYS))
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=30)
    with sessions() as session:
        undelivered = session.scalars(
            select(OutboxRow.notice_key).where(OutboxRow.delivered_at.is_(None))
        ).all()

    restart = START + DEFAULT_LEASE + timedelta(seconds=1)
    second = start_delivery(database_url, restart.isoformat())
    _, errors = second.communicate(timeout=120)

    assert first.returncode == -signal.SIGKILL
    assert sorted(undelivered) == list(KEYS)
    assert second.returncode == 0, errors.decode()
    with sessions() as session:
        rows = session.scalars(select(OutboxRow)).all()
    assert sorted(row.notice_key for row in rows) == list(KEYS)
    assert all(row.delivered_at == restart for row in rows)
    # Each message reached the receiver twice, both times under its key.
    keys = Counter(
        request.headers["Idempotency-Key"] for request in http_receiver.requests
    )
    assert keys == Counter({key: 2 for key in KEYS})
    for request in http_receiver.requests:
        assert request.json()["key"] == request.headers["Idempotency-Key"]
