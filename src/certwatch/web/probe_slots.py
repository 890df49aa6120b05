"""Bound the instant probes that web requests run in the request's thread.

An instant probe (the add page, `POST /api/endpoints`, scan now) occupies
one of the threads of FastAPI's pool (40 by default in anyio 4) for up to
the probe timeout per address. Without a bound, one team sending many such
requests against endpoints that never respond would take every thread,
and every other page, `/healthz` included, would wait. `ProbeSlots`
admits at most `site_limit` instant probes at once, and at most
`holder_limit` for one holder (a team). A request over either limit is
answered at once with 429 and a Retry-After header instead of waiting
for a thread.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import HTTPException

SITE_LIMIT = 8
"""The maximum number of instant probes running at once on the site."""

HOLDER_LIMIT = 2
"""The maximum number of instant probes running at once for one team."""

RETRY_AFTER_SECONDS = 10
"""The Retry-After of a rejected request: about one probe timeout (default)."""


class ProbeSlotsFull(HTTPException):
    """429 for an instant probe over the site's or the team's limit."""

    def __init__(self, message: str) -> None:
        super().__init__(429, message, {"Retry-After": str(RETRY_AFTER_SECONDS)})


class ProbeSlots:
    """Count the instant probes running now, in total and per holder.

    Thread-safe: the handlers run in FastAPI's thread pool.
    """

    def __init__(
        self, site_limit: int = SITE_LIMIT, holder_limit: int = HOLDER_LIMIT
    ) -> None:
        self.site_limit = site_limit
        self.holder_limit = holder_limit
        self._lock = threading.Lock()
        self._running: dict[str, int] = {}

    @property
    def running(self) -> int:
        """The number of instant probes running now."""
        with self._lock:
            return sum(self._running.values())

    @contextmanager
    def hold(self, holder: str) -> Iterator[None]:
        """Hold one slot for `holder` for the duration of the block.

        Raises:
            ProbeSlotsFull: `holder` runs `holder_limit` probes already, or
                the site runs `site_limit`; nothing is held then.
        """
        self._acquire(holder)
        try:
            yield
        finally:
            self._release(holder)

    def _acquire(self, holder: str) -> None:
        with self._lock:
            if self._running.get(holder, 0) >= self.holder_limit:
                raise ProbeSlotsFull(
                    f"Your team already runs {self.holder_limit} scans or adds at "
                    f"once, the maximum: wait {RETRY_AFTER_SECONDS} s for them to "
                    "finish, then send the request again."
                )
            if sum(self._running.values()) >= self.site_limit:
                raise ProbeSlotsFull(
                    f"This site already runs {self.site_limit} scans or adds at "
                    f"once, the maximum: wait {RETRY_AFTER_SECONDS} s, then send "
                    "the request again."
                )
            self._running[holder] = self._running.get(holder, 0) + 1

    def _release(self, holder: str) -> None:
        with self._lock:
            remaining = self._running[holder] - 1
            if remaining:
                self._running[holder] = remaining
            else:
                del self._running[holder]
