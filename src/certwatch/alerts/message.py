"""The message model: what one alert delivery tells one team.

A `Notice` is built by the alert policy from the store and handed to a
channel, which renders it as an email, a JSON webhook body, or a Slack or
Teams card. The model holds plain values only, so rendering needs no
database and tests build notices by hand.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from certwatch.x509.model import Severity

MAX_KEY_LENGTH = 200
"""The maximum length of an idempotency key, which travels in HTTP and email headers."""

# Visible ASCII only, so the key is a valid header value everywhere.
_KEY = re.compile(r"^[\x21-\x7e]+$")


class EventKind(enum.StrEnum):
    """The kind of event a notice reports, as named in the webhook `event` field."""

    EXPIRING = "expiring"
    """A certificate passed a warning or critical threshold before not_after."""
    EXPIRED = "expired"
    """A certificate that is still deployed is past its not_after."""
    PROBLEM = "problem"
    """A finding other than expiry, such as `hostname_mismatch`."""
    CHANGED = "changed"
    """The certificate at some places was replaced by another."""
    RESOLVED = "resolved"
    """An earlier alert no longer applies, usually after a renewal."""
    STALE_DEPLOYMENT = "stale_deployment"
    """A renewed certificate reached only some of the places."""
    TEST = "test"
    """A message sent on request to check that a contact works."""


# Among items of the same severity, the order in which they are listed.
_EVENT_RANK = {
    EventKind.EXPIRED: 0,
    EventKind.EXPIRING: 1,
    EventKind.STALE_DEPLOYMENT: 2,
    EventKind.PROBLEM: 3,
    EventKind.CHANGED: 4,
    EventKind.RESOLVED: 5,
    EventKind.TEST: 6,
}


@dataclass(frozen=True)
class Place:
    """An endpoint address or a file where a certificate is deployed.

    An endpoint place has `target` (as the inventory shows it, such as
    `www.example.test:443`) and `address`, which is `None` when the
    address is not known. A file place has `path` only.
    """

    target: str | None = None
    address: str | None = None
    path: str | None = None

    def __post_init__(self) -> None:
        if (self.target is None) == (self.path is None):
            raise ValueError(
                f"Invalid place {self!r}: give either an endpoint target or a "
                "file path."
            )
        if self.path is not None and self.address is not None:
            raise ValueError(f"Invalid place {self!r}: a file has no address.")

    @classmethod
    def endpoint(cls, target: str, address: str | None = None) -> Place:
        """Build the place of an endpoint address."""
        return cls(target=target, address=address)

    @classmethod
    def file(cls, path: str) -> Place:
        """Build the place of a certificate file."""
        return cls(path=path)

    @property
    def kind(self) -> str:
        """`endpoint` or `file`."""
        return "file" if self.path is not None else "endpoint"

    @property
    def label(self) -> str:
        """The place in one line, such as `www.example.test:443 at 192.0.2.10`."""
        if self.path is not None:
            return self.path
        if self.address is None:
            return f"{self.target}"
        return f"{self.target} at {self.address}"


@dataclass(frozen=True)
class NoticeItem:
    """One certificate or finding that a notice reports.

    `message` is the finding's message or another sentence in plain words.
    `names` are the certificate's DNS names and IP addresses. `fingerprint`
    is its SHA-256 in lowercase hex, and `days_left` the floor of the days
    to `not_after`, negative once expired as in the JSON output. Both are
    `None` when not known. `places` are where the certificate is deployed.
    `finding_code` is set for findings, such as `expiring_soon`.

    For `resolved` and `changed` items, `not_after` and `fingerprint`
    describe the certificate that was replaced, and `new_not_after` and
    `new_fingerprint` its replacement (`None` when there is none). For
    `stale_deployment` items, `stale_places` are the places that still
    serve the replaced certificate.

    `alert_id` is the stored alert that the item reminds of, which emails
    offer to acknowledge; it is `None` for items that are no open alert,
    such as resolved ones, digest entries and test messages.
    """

    event: EventKind
    severity: Severity
    message: str = ""
    names: tuple[str, ...] = ()
    fingerprint: str | None = None
    not_after: datetime | None = None
    days_left: int | None = None
    places: tuple[Place, ...] = ()
    finding_code: str | None = None
    new_fingerprint: str | None = None
    new_not_after: datetime | None = None
    stale_places: tuple[Place, ...] = ()
    alert_id: int | None = None

    def __post_init__(self) -> None:
        for name in ("not_after", "new_not_after"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _utc(value, name))
        # Lists given by a caller become tuples, so an item stays immutable.
        for name in ("names", "places", "stale_places"):
            object.__setattr__(self, name, tuple(getattr(self, name)))


@dataclass(frozen=True)
class Notice:
    """One message to one team: an idempotency key and the items to report.

    `key` identifies the message across retries: channels send it as the
    `Idempotency-Key` header and derive the email Message-ID from it, so a
    receiver can drop a duplicate. It is 1 to 200 visible ASCII characters.
    `generated_at` is when the policy decided the alert, timezone-aware.
    Items are kept most urgent first: by severity, then expired before
    expiring before the other events, then fewest days left. Only a `test`
    notice may have no items.
    """

    key: str
    team: str
    event: EventKind
    generated_at: datetime
    items: tuple[NoticeItem, ...] = field(default=())

    def __post_init__(self) -> None:
        if len(self.key) > MAX_KEY_LENGTH or not _KEY.match(self.key):
            raise ValueError(
                f"Invalid idempotency key {self.key!r}: give 1 to {MAX_KEY_LENGTH} "
                "visible ASCII characters, without spaces."
            )
        if not self.items and self.event is not EventKind.TEST:
            raise ValueError(
                f"Invalid {self.event.value} notice {self.key!r}: it has no items; "
                "only a test notice may be empty."
            )
        object.__setattr__(
            self, "generated_at", _utc(self.generated_at, "generated_at")
        )
        object.__setattr__(self, "items", tuple(sorted(self.items, key=_urgency)))


def _urgency(item: NoticeItem) -> tuple[int, int, float, float]:
    days = math.inf if item.days_left is None else item.days_left
    not_after = math.inf if item.not_after is None else item.not_after.timestamp()
    return (-item.severity, _EVENT_RANK[item.event], days, not_after)


def _utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            f"Invalid {name} {value!r}: give a timezone-aware time, such as "
            "datetime.now(UTC)."
        )
    return value.astimezone(UTC)
