"""The monitor's heartbeat: recorded after each cycle, also when alerting fails."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker
from tests.monitor.helpers import Clock

from certwatch.store.models import MonitorHeartbeatRow
from certwatch.web.heartbeat import (
    last_cycle_completed,
    record_cycle_completed,
    recording_cycles,
)


def test_record_cycle_completed_updates(
    sessions: sessionmaker[Session], clock: Clock
) -> None:
    with sessions.begin() as session:
        record_cycle_completed(session, now=clock())
    clock.advance(timedelta(minutes=1))
    with sessions.begin() as session:
        record_cycle_completed(session, now=clock())

    with sessions() as session:
        assert last_cycle_completed(session) == clock()


def test_record_cycle_completed_recreates_row(
    sessions: sessionmaker[Session], clock: Clock
) -> None:
    with sessions.begin() as session:
        session.execute(delete(MonitorHeartbeatRow))

    with sessions.begin() as session:
        before = last_cycle_completed(session)
        record_cycle_completed(session, now=clock())

    with sessions() as session:
        assert before is None
        assert last_cycle_completed(session) == clock()


def test_recording_cycles_before_failing_hook(
    sessions: sessionmaker[Session], clock: Clock
) -> None:
    def failing_alerting(_: object) -> None:
        raise RuntimeError("alerting failed")

    hook = recording_cycles(failing_alerting, clock)

    with pytest.raises(RuntimeError, match="alerting failed"):
        hook(sessions)

    with sessions() as session:
        assert last_cycle_completed(session) == clock()


def test_recording_cycles_returns_hook_result(
    sessions: sessionmaker[Session], clock: Clock
) -> None:
    assert recording_cycles(lambda _: "report", clock)(sessions) == "report"
    assert recording_cycles(None, clock)(sessions) is None
