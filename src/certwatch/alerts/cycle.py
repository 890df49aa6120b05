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

from certwatch.alerts.digest import Rescan, send_digests
from certwatch.alerts.evaluate import AlertSettings, EvaluationReport, evaluate_alerts
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

    With `digest_every`, the teams whose digest is due get one, after
    `rescan` scanned again what it would list. With `evaluate` false only
    the messages already due are delivered, such as retries.
    """
    evaluation = EvaluationReport()
    if evaluate:
        with sessions() as session, session.begin():
            evaluation = evaluate_alerts(session, now=now_fn(), settings=settings)
    digests = 0
    if digest_every is not None:
        digests = send_digests(
            sessions, now_fn=now_fn, interval=digest_every, rescan=rescan
        )
    delivered = deliver_due(sessions, settings=delivery, now_fn=now_fn)
    return AlertingReport(evaluation, delivered, digests)
