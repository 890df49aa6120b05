"""The outcome of one delivery attempt."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class DeliveryOutcome:
    """Whether a notice reached a contact, and if not, whether to try again.

    `permanent` is true when trying the same delivery again cannot succeed
    (the receiver rejected the address, the URL or the message), and false
    when the failure may pass (server down, timeout, HTTP 5xx, 408 or 429).
    It is false for a delivered notice. `reason` describes what happened
    in words safe to log, without a password or the secret part of a URL.
    `retry_after` is the wait that the receiver asked for with a
    Retry-After header, or `None`.
    """

    delivered: bool
    permanent: bool
    reason: str
    retry_after: timedelta | None = None

    @classmethod
    def success(cls, reason: str) -> DeliveryOutcome:
        """Build the outcome of a delivered notice."""
        return cls(delivered=True, permanent=False, reason=reason)

    @classmethod
    def transient(
        cls, reason: str, retry_after: timedelta | None = None
    ) -> DeliveryOutcome:
        """Build the outcome of a failure that a later attempt may get past."""
        return cls(
            delivered=False, permanent=False, reason=reason, retry_after=retry_after
        )

    @classmethod
    def rejected(cls, reason: str) -> DeliveryOutcome:
        """Build the outcome of a permanent failure."""
        return cls(delivered=False, permanent=True, reason=reason)
