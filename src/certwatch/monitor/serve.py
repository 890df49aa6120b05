"""The long-running monitor: run cycles, sleeping until the next source is due."""

from __future__ import annotations

import logging
import random
import threading
from datetime import timedelta

from sqlalchemy.exc import SQLAlchemyError

from certwatch.monitor.cycle import Clock, SessionFactory, run_cycle
from certwatch.monitor.settings import MonitorSettings
from certwatch.probe.resolve import Resolver
from certwatch.store.leases import next_due_at
from certwatch.x509.model import AnalysisPolicy

logger = logging.getLogger(__name__)

# The shortest pause between cycles, so that a source that is due again at
# once (an interval shorter than a cycle) cannot make the loop spin.
MIN_SLEEP = timedelta(seconds=1)


def serve(
    sessions: SessionFactory,
    *,
    now_fn: Clock,
    settings: MonitorSettings,
    policy: AnalysisPolicy,
    stop: threading.Event,
    resolver: Resolver | None = None,
    rng: random.Random | None = None,
) -> int:
    """Run monitoring cycles until `stop` is set; return how many cycles ran.

    Between cycles it sleeps until the next source is due, at least
    `MIN_SLEEP` and at most `settings.max_sleep`, so sources added by
    another process are picked up within that time. A database failure
    is logged and the cycle is retried after `settings.max_sleep`. A stop
    request lets the current batch finish and be recorded.
    """
    logger.info(
        "monitor started: batches of %d, lease %s, at most %s between cycles",
        settings.batch_size,
        settings.lease,
        settings.max_sleep,
    )
    cycles = 0
    rng = rng or random.Random()
    while not stop.is_set():
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
            pause = _pause(sessions, now_fn, settings)
        except SQLAlchemyError as exc:
            logger.error(
                "monitoring cycle failed, retrying in %s: %s", settings.max_sleep, exc
            )
            pause = settings.max_sleep
        logger.debug("sleeping %s until the next cycle", pause)
        stop.wait(pause.total_seconds())
    logger.info("monitor stopped after %d cycles", cycles)
    return cycles


def _pause(
    sessions: SessionFactory, now_fn: Clock, settings: MonitorSettings
) -> timedelta:
    with sessions() as session:
        due = next_due_at(session)
    if due is None:
        return settings.max_sleep
    return max(MIN_SLEEP, min(due - now_fn(), settings.max_sleep))
