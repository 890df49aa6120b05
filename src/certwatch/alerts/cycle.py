"""Alerting after a monitoring cycle: decide, record, then deliver.

The decisions and the outbox messages are committed together before any
message is sent, so a process killed at any point loses no message. What
was recorded is sent by the next run. What was not is decided again from
the same stored state, under the same idempotency keys.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from certwatch.alerts.change_notices import change_entries
from certwatch.alerts.digest import Rescan, send_digests
from certwatch.alerts.evaluate import (
    AlertSettings,
    EvaluationReport,
    evaluate_alerts,
    lock_alerting,
)
from certwatch.alerts.outbox import DeliveryReport, deliver_due
from certwatch.alerts.settings import DeliverySettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AlertingReport:
    """The outcome of the alerting step after one cycle: decisions and deliveries."""

    evaluation: EvaluationReport
    delivery: DeliveryReport
    digests: int = 0


def alert_after_cycle(
    sessions: Callable[[], Session],
    *,
    now_fn: Callable[[], datetime],
    settings: AlertSettings,
    delivery: DeliverySettings,
    digest_every: timedelta | None = None,
    rescan: Rescan | None = None,
    evaluate: bool = True,
) -> AlertingReport:
    """Evaluate the alerts and commit them with their messages, then deliver.

    The evaluation also reports the certificate changes the scans recorded
    since the last one, as `changed` items in each team's message. With
    `digest_every`, the teams whose digest is due get one, after `rescan`
    scanned again what it would list. With `evaluate` false only the
    messages already due are delivered, such as retries.
    """
    evaluation = EvaluationReport()
    if evaluate:
        with sessions() as session, session.begin():
            now = now_fn()
            # Taken before the changes are read, so two processes never
            # both report the same change.
            lock_alerting(session)
            changes = change_entries(session, now=now)
            evaluation = evaluate_alerts(
                session, now=now, settings=settings, extra_entries=changes
            )
    digests = 0
    if digest_every is not None:
        digests = send_digests(
            sessions,
            now_fn=now_fn,
            interval=digest_every,
            rescan=rescan,
            thresholds=settings.thresholds,
        )
    delivered = deliver_due(sessions, settings=delivery, now_fn=now_fn)
    return AlertingReport(evaluation, delivered, digests)
