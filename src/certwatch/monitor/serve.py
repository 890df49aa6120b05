"""The long-running monitor: run cycles, sleeping until the next source is due."""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from certwatch.monitor.cycle import Clock, SessionFactory, run_cycle
from certwatch.monitor.retention import compact_if_due, history_retention
from certwatch.monitor.settings import MonitorSettings, SettingsError
from certwatch.probe.resolve import Resolver
from certwatch.store.database import refresh_statistics
from certwatch.store.errors import StoreError
from certwatch.store.leases import next_due_at
from certwatch.x509.model import AnalysisPolicy

logger = logging.getLogger(__name__)

# The shortest pause between cycles, so that a source that is due again at
# once (an interval shorter than a cycle) cannot make the loop spin.
MIN_SLEEP = timedelta(seconds=1)
# How often `serve` refreshes SQLite's planner statistics, in seconds: the
# shape of an inventory changes slowly.
STATISTICS_EVERY = 24 * 3600.0


def serve(
    sessions: SessionFactory,
    *,
    now_fn: Clock,
    settings: MonitorSettings,
    policy: AnalysisPolicy,
    stop: threading.Event,
    resolver: Resolver | None = None,
    rng: random.Random | None = None,
    store_problem: Callable[[], str | None] | None = None,
    after_cycle: Callable[[SessionFactory], object] | None = None,
) -> int:
    """Run monitoring cycles until `stop` is set; return how many cycles ran.

    Between cycles it sleeps until the next source is due, at least
    `MIN_SLEEP` and at most `settings.max_sleep`, so sources added by
    another process are picked up within that time. A database failure
    is logged and the cycle is retried after `settings.max_sleep`. A stop
    request lets the current batch finish and be recorded. `after_cycle`
    runs after each cycle (alerting); its failure is logged, and the
    monitor goes on scanning.

    Raises:
        StoreError: `store_problem`, asked before each cycle, named a
            problem that retrying cannot fix, such as a deleted database file.
    """
    logger.info(
        "monitor started: batches of %d, lease %s, at most %s between cycles",
        settings.batch_size,
        settings.lease,
        settings.max_sleep,
    )
    cycles = 0
    statistics_at: float | None = None
    compacted_at: float | None = None
    retention = _history_retention()
    rng = rng or random.Random()
    while not stop.is_set():
        problem = store_problem() if store_problem else None
        if problem is not None:
            logger.error("monitor stopped: %s", problem)
            raise StoreError(problem)
        try:
            run_cycle(
                sessions,
                now_fn=now_fn,
                settings=settings,
                policy=policy,
                resolver=resolver,
                rng=rng,
                stop=stop,
            )
            cycles += 1
            statistics_at = _refresh_statistics(sessions, statistics_at)
            if after_cycle is not None:
                _run_after_cycle(after_cycle, sessions)
            compacted_at = compact_if_due(
                sessions,
                now=now_fn(),
                retention=retention,
                compacted_at=compacted_at,
                monotonic_now=time.monotonic(),
            )
            pause = _pause(sessions, now_fn, settings)
        except SQLAlchemyError as exc:
            logger.error(
                "monitoring cycle failed, retrying in %s: %s", settings.max_sleep, exc
            )
            pause = settings.max_sleep
        logger.debug("sleeping %s until the next cycle", pause)
        stop.wait(pause.total_seconds())
    logger.info(
        "monitor stopped after %d %s", cycles, "cycle" if cycles == 1 else "cycles"
    )
    return cycles


def _refresh_statistics(
    sessions: SessionFactory, refreshed_at: float | None
) -> float | None:
    """Refresh the planner's statistics after the first cycle, then daily.

    Returns when they were last refreshed, on the monotonic clock. A
    failure is logged; the monitor goes on and tries again after a day.
    """
    now = time.monotonic()
    if refreshed_at is not None and now - refreshed_at < STATISTICS_EVERY:
        return refreshed_at
    try:
        refresh_statistics(sessions)
    except SQLAlchemyError as exc:
        logger.warning("refreshing the query planner's statistics failed: %s", exc)
    return now


def _history_retention() -> timedelta | None:
    """Read the retention age, `None` after logging why it is invalid."""
    try:
        return history_retention()
    except SettingsError as exc:
        # A bad retention setting must not stop scanning: history only
        # keeps growing until the operator fixes it.
        logger.error("history compaction is off: %s; fix it and restart", exc)
        return None


def _run_after_cycle(
    after_cycle: Callable[[SessionFactory], object], sessions: SessionFactory
) -> None:
    try:
        after_cycle(sessions)
    except Exception:
        # Scanning must go on even when alerting fails: the next cycle
        # evaluates again, and the outbox keeps what was recorded.
        logger.exception("alerting after the cycle failed")


def _pause(
    sessions: SessionFactory, now_fn: Clock, settings: MonitorSettings
) -> timedelta:
    with sessions() as session:
        due = next_due_at(session)
    if due is None:
        return settings.max_sleep
    return max(MIN_SLEEP, min(due - now_fn(), settings.max_sleep))


class SqliteFileWatch:
    """Notice when the SQLite database file is deleted or replaced while open.

    SQLite keeps writing to a deleted file through its open descriptor, so
    the monitor would record scans that vanish when it exits.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._identity = self._stat()

    def _stat(self) -> tuple[int, int] | None:
        try:
            found = os.stat(self.path)
        except OSError:
            return None
        return (found.st_dev, found.st_ino)

    def problem(self) -> str | None:
        """Return what happened to the file, `None` while it is the one opened."""
        now = self._stat()
        if now is None:
            return (
                f"the database file {self.path} was deleted; restore it or "
                "restart certwatch to create a new one"
            )
        if now != self._identity:
            return (
                f"the database file {self.path} was replaced by another file; "
                "restart certwatch to use it"
            )
        return None
