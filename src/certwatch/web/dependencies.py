"""The request handlers' shared context: the store, the settings and the clock."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from certwatch.monitor.instant import ScanSetup
from certwatch.web.probe_slots import ProbeSlots
from certwatch.web.ratelimit import AddressLimiter
from certwatch.web.settings import WebSettings

logger = logging.getLogger(__name__)

SessionFactory = Callable[[], Session]
Clock = Callable[[], datetime]

# While the database stays unreachable, each scrape and health check fails
# again, so one log line per minute reports the failures without flooding
# the log.
FAILURE_LOG_INTERVAL = 60.0


class FailureLog:
    """Log repeated database failures at most once per interval, with a count."""

    def __init__(
        self,
        interval: float = FAILURE_LOG_INTERVAL,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._interval = interval
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._logged_at: float | None = None
        self._suppressed = 0

    def failed(self, where: str, exc: Exception) -> None:
        """Log that `where` could not read the database, unless logged recently."""
        with self._lock:
            now = self._monotonic()
            if self._logged_at is not None and now - self._logged_at < self._interval:
                self._suppressed += 1
                return
            suppressed, self._suppressed = self._suppressed, 0
            self._logged_at = now
        first_line = (str(exc).strip().splitlines() or ["no message"])[0]
        logger.error(
            "%s cannot read the inventory database (%s: %s); %d more failures "
            "since the last report",
            where,
            type(exc).__name__,
            first_line,
            suppressed,
        )


@dataclass(frozen=True)
class WebContext:
    """The state shared by all requests of one application."""

    sessions: SessionFactory
    settings: WebSettings
    now_fn: Clock
    failures: FailureLog = field(default_factory=FailureLog)
    login_addresses: AddressLimiter = field(default_factory=AddressLimiter)
    # How the add form and the API probe new endpoints at once.
    scans: ScanSetup = field(default_factory=ScanSetup)
    # How many instant probes may run at once, so they leave threads free.
    probe_slots: ProbeSlots = field(default_factory=ProbeSlots)


def web_context(request: Request) -> WebContext:
    """Return the context that `create_app` stored on the application."""
    context = request.app.state.certwatch
    assert isinstance(context, WebContext)
    return context


Context = Annotated[WebContext, Depends(web_context)]
"""A handler parameter of this type receives the application's `WebContext`."""
