"""How long observations stay uncompacted, and the daily compaction of `serve`.

`certwatch.store.retention` does the compaction. This module reads its
setting from the environment, as the other monitor settings are read.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from certwatch.monitor.settings import duration_variable
from certwatch.store.retention import compact_history
from certwatch.x509.expiry import describe_duration

logger = logging.getLogger(__name__)

RETENTION_VARIABLE = "CERTWATCH_HISTORY_RETENTION"

DEFAULT_RETENTION = timedelta(days=30)
"""The age after which runs of one outcome are compacted, when none is set."""

COMPACT_EVERY = 24 * 3600.0
"""How often `serve` compacts history, in seconds of the monotonic clock."""


def history_retention(environ: Mapping[str, str] = os.environ) -> timedelta:
    """Return `CERTWATCH_HISTORY_RETENTION` as a duration, or 30 days when unset.

    Raises:
        SettingsError: the variable is set but not a valid duration.
    """
    return duration_variable(environ, RETENTION_VARIABLE, DEFAULT_RETENTION)


def compact_if_due(
    sessions: Callable[[], Session],
    *,
    now: datetime,
    retention: timedelta | None,
    compacted_at: float | None,
    monotonic_now: float,
) -> float | None:
    """Compact history after the first cycle and then daily.

    Returns when history was last compacted, on the monotonic clock. With
    `retention` `None` (an invalid setting, logged at start-up) nothing
    happens. A database failure is logged, and compaction is tried again
    after a day: the chunks deleted before it stay deleted.
    """
    if retention is None:
        return compacted_at
    if compacted_at is not None and monotonic_now - compacted_at < COMPACT_EVERY:
        return compacted_at
    try:
        result = compact_history(sessions, cutoff=now - retention)
    except SQLAlchemyError as exc:
        logger.warning("compacting history failed, retrying in a day: %s", exc)
        return monotonic_now
    logger.info(
        "compacted history older than %s: removed %d of %d observations at %d places",
        describe_duration(retention),
        result.removed,
        result.examined,
        result.places,
    )
    return monotonic_now
