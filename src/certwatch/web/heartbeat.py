"""The monitor's heartbeat: when it last completed a cycle.

A cycle that finds nothing due scans nothing, so the scan times of the
sources cannot tell a quiet monitor from a stopped one. The monitor
therefore records the end of every cycle in `monitor_heartbeats`, and
`/healthz` and `/metrics` read it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from certwatch.store.models import MonitorHeartbeatRow

logger = logging.getLogger(__name__)

MONITOR = "monitor"
"""The heartbeat row that `certwatch serve` writes."""

SessionFactory = Callable[[], Session]
AfterCycle = Callable[[SessionFactory], object]


def record_cycle_completed(session: Session, *, now: datetime) -> None:
    """Record that the monitor completed a cycle at `now`; the caller commits."""
    updated = session.execute(
        update(MonitorHeartbeatRow)
        .where(MonitorHeartbeatRow.name == MONITOR)
        .values(last_cycle_at=now)
    )
    if updated.rowcount == 0:  # type: ignore[attr-defined]
        # The migration creates the row; this brings it back if it was deleted.
        session.execute(
            insert(MonitorHeartbeatRow).values(name=MONITOR, last_cycle_at=now)
        )


def last_cycle_completed(session: Session) -> datetime | None:
    """Return when a monitor last completed a cycle, `None` before the first."""
    return session.scalar(select(func.max(MonitorHeartbeatRow.last_cycle_at)))


def recording_cycles(
    after_cycle: AfterCycle | None, now_fn: Callable[[], datetime]
) -> AfterCycle:
    """Wrap a monitor's `after_cycle` hook so that it first records the heartbeat.

    The heartbeat is committed on its own before `after_cycle` (alerting)
    runs, so a failure in alerting does not make the monitor look stopped.
    A database failure while recording is logged and the hook still runs.
    """

    def run(sessions: SessionFactory) -> object:
        try:
            with sessions() as session, session.begin():
                record_cycle_completed(session, now=now_fn())
        except SQLAlchemyError as exc:
            logger.error("cannot record the end of the monitoring cycle: %s", exc)
        if after_cycle is None:
            return None
        return after_cycle(sessions)

    return run
