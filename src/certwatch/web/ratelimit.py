"""Limits kept in memory: failed logins per address, requests per caller.

The per-account limit lives in the store (`users.failed_logins`), so it
applies across processes. This one slows a client that tries many accounts
from one address. It is per process and forgotten on restart, which is
enough to make guessing slow.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from datetime import datetime, timedelta

ADDRESS_FAILURE_LIMIT = 20
ADDRESS_WINDOW = timedelta(minutes=15)
# Past this many addresses, the one that failed longest ago is forgotten,
# so a flood from many addresses cannot exhaust the memory.
MAX_TRACKED_ADDRESSES = 10_000


class AddressLimiter:
    """Count failed logins per client address over a sliding window."""

    def __init__(
        self,
        limit: int = ADDRESS_FAILURE_LIMIT,
        window: timedelta = ADDRESS_WINDOW,
        max_addresses: int = MAX_TRACKED_ADDRESSES,
    ) -> None:
        self._limit = limit
        self._window = window
        self._max_addresses = max_addresses
        self._lock = threading.Lock()
        self._failures: dict[str, deque[datetime]] = {}

    def blocked(self, address: str, now: datetime) -> bool:
        """Tell whether the address failed `limit` times within the window."""
        with self._lock:
            failures = self._recent(address, now)
            return failures is not None and len(failures) >= self._limit

    def failed(self, address: str, now: datetime) -> None:
        """Count a failed login from the address."""
        with self._lock:
            failures = self._recent(address, now) or deque()
            failures.append(now)
            # Re-inserting keeps the dict ordered by latest failure.
            self._failures.pop(address, None)
            self._failures[address] = failures
            while len(self._failures) > self._max_addresses:
                del self._failures[next(iter(self._failures))]

    def _recent(self, address: str, now: datetime) -> deque[datetime] | None:
        failures = self._failures.get(address)
        if failures is None:
            return None
        while failures and now - failures[0] >= self._window:
            failures.popleft()
        return failures


REQUEST_WINDOW = timedelta(minutes=1)
# Past this many callers, the one seen longest ago is forgotten, as above.
MAX_TRACKED_CALLERS = 10_000


class RequestLimiter:
    """Count requests per caller (a user, a login session or an API token).

    A caller may send `limit` requests in any window of `REQUEST_WINDOW`;
    `admit` tells how long a caller over the limit must wait. Like
    `AddressLimiter`, the counts are per process and kept in memory.
    """

    def __init__(
        self,
        limit: int,
        window: timedelta = REQUEST_WINDOW,
        max_callers: int = MAX_TRACKED_CALLERS,
    ) -> None:
        self.limit = limit
        self._window = window
        self._max_callers = max_callers
        self._lock = threading.Lock()
        self._requests: dict[str, deque[datetime]] = {}

    def admit(self, caller: str, now: datetime) -> int | None:
        """Count a request; return `None` to serve it, else seconds to wait.

        A rejected request is not counted, so a caller that keeps retrying
        is served again once its oldest request leaves the window.
        """
        with self._lock:
            requests = self._requests.pop(caller, None) or deque()
            while requests and now - requests[0] >= self._window:
                requests.popleft()
            # Re-inserting keeps the dict ordered by latest request.
            self._requests[caller] = requests
            while len(self._requests) > self._max_callers:
                del self._requests[next(iter(self._requests))]
            if len(requests) >= self.limit:
                wait = self._window - (now - requests[0])
                return max(1, math.ceil(wait.total_seconds()))
            requests.append(now)
            return None
