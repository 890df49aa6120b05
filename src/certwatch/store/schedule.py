"""The scan schedule: claim due sources, then release them with a new due time.

A scanner claims due rows by writing a lease (a random token and an expiry)
and commits at once. The lease keeps other scanners off the row until it
expires, so a scanner killed mid-cycle leaves nothing stuck: once the lease
expires the row is due again, and the observations it had already committed
stay.

On PostgreSQL the claim selects due rows with `FOR UPDATE SKIP LOCKED`, so
scanners claiming at the same moment each get different rows without
waiting for one another. SQLite has no row locks, so there the claim is one
`UPDATE ... RETURNING` statement. SQLite takes its single write lock before
that statement reads, so two claims run one after the other and the second
finds the first one's lease. This is true only when the claim is the first
statement of its transaction.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, bindparam, select, update
from sqlalchemy.orm import Session

from certwatch.store.inventory import DEFAULT_INTERVAL, endpoint_from_row
from certwatch.store.models import EndpointRow, FileSourceRow
from certwatch.store.spread import DEFAULT_JITTER, jittered, spread_over
from certwatch.targets import Endpoint

RowT = TypeVar("RowT", EndpointRow, FileSourceRow)

# Backoff doubles per consecutive failure up to this exponent, which keeps
# the arithmetic bounded; `max_retry_delay` caps the delay long before.
_MAX_BACKOFF_EXPONENT = 30


@dataclass(frozen=True)
class SchedulePolicy:
    """The rules that choose the next scan time.

    After a successful scan the next one is due one interval later, moved
    by up to `jitter` (a share of the interval) either way. The first
    success of a source, after it was added or after failed scans, instead
    puts the next scan at a uniformly random point of the following
    interval, so that sources added or recovered together spread evenly
    over it. After a failed scan (no certificate obtained at any address)
    the retry comes after `retry_delay`, doubled for each further
    consecutive failure and capped at `max_retry_delay`, also moved by up
    to `jitter`, so a dead endpoint is retried soon and then ever less
    often. A source stored without an interval follows `default_interval`.
    """

    jitter: float = DEFAULT_JITTER
    retry_delay: timedelta = timedelta(minutes=5)
    max_retry_delay: timedelta = timedelta(hours=24)
    default_interval: timedelta = DEFAULT_INTERVAL

    def __post_init__(self) -> None:
        if not 0 <= self.jitter < 1:
            raise ValueError(
                f"Invalid schedule jitter {self.jitter!r}: give a share from 0 "
                "up to, but not including, 1."
            )
        if self.retry_delay <= timedelta(0) or self.max_retry_delay < self.retry_delay:
            raise ValueError(
                f"Invalid retry delays {self.retry_delay!r} and "
                f"{self.max_retry_delay!r}: both must be positive and the "
                "maximum at least the first delay."
            )
        if self.default_interval <= timedelta(0):
            raise ValueError(
                f"Invalid default interval {self.default_interval!r}: give a "
                "positive duration."
            )


@dataclass(frozen=True)
class Lease:
    """A claim on one source: the token that proves it and when it expires."""

    token: str
    expires_at: datetime


@dataclass(frozen=True)
class EndpointClaim:
    """An endpoint claimed for scanning, with what rescheduling needs.

    `interval` is `None` when the endpoint follows the configured default.
    `spread_next` is true until the endpoint has a successful scan that no
    failure followed: its next success then spreads the following scan.
    """

    endpoint_id: int
    endpoint: Endpoint
    interval: timedelta | None
    consecutive_failures: int
    lease: Lease
    spread_next: bool = False


@dataclass(frozen=True)
class FileSourceClaim:
    """A file source claimed for scanning, with what rescheduling needs.

    `interval` and `spread_next` mean what they mean in `EndpointClaim`.
    """

    file_source_id: int
    path: str
    interval: timedelta | None
    consecutive_failures: int
    lease: Lease
    spread_next: bool = False


@dataclass(frozen=True)
class Release:
    """The end of one claimed scan: when it ran and whether it failed."""

    claim: EndpointClaim | FileSourceClaim
    scanned_at: datetime
    failed: bool


def claim_due_endpoints(
    session: Session, *, now: datetime, limit: int, lease: timedelta
) -> list[EndpointClaim]:
    """Claim up to `limit` due endpoints, the longest overdue first.

    An endpoint is due when it is enabled, its `next_scan_at` has passed and
    it has no unexpired lease. The caller commits right after, which
    publishes the leases (and on SQLite ends the write lock).
    """
    rows, granted = _claim(session, EndpointRow, now=now, limit=limit, lease=lease)
    return [endpoint_claim(row, granted) for row in rows]


def claim_due_file_sources(
    session: Session, *, now: datetime, limit: int, lease: timedelta
) -> list[FileSourceClaim]:
    """Claim up to `limit` due file sources, as `claim_due_endpoints` does."""
    rows, granted = _claim(session, FileSourceRow, now=now, limit=limit, lease=lease)
    return [file_source_claim(row, granted) for row in rows]


def endpoint_claim(row: EndpointRow, lease: Lease) -> EndpointClaim:
    """Build the claim of an endpoint row that `lease` now holds."""
    return EndpointClaim(
        endpoint_id=row.id,
        endpoint=endpoint_from_row(row),
        interval=_stored_interval(row),
        consecutive_failures=row.consecutive_failures,
        lease=lease,
        spread_next=_unsettled(row),
    )


def file_source_claim(row: FileSourceRow, lease: Lease) -> FileSourceClaim:
    """Build the claim of a file source row that `lease` now holds."""
    return FileSourceClaim(
        file_source_id=row.id,
        path=row.path,
        interval=_stored_interval(row),
        consecutive_failures=row.consecutive_failures,
        lease=lease,
        spread_next=_unsettled(row),
    )


def _stored_interval(row: EndpointRow | FileSourceRow) -> timedelta | None:
    if row.interval_seconds is None:
        return None
    return timedelta(seconds=row.interval_seconds)


def _unsettled(row: EndpointRow | FileSourceRow) -> bool:
    """Tell whether the source was never scanned or its latest scan failed."""
    return row.last_scanned_at is None or row.consecutive_failures > 0


def release(
    session: Session,
    releases: Sequence[Release],
    *,
    now: datetime,
    policy: SchedulePolicy,
    rng: random.Random,
) -> int:
    """End the claims and set each source's next scan time from `now`.

    A release applies only while the claim's lease token is still on the
    row: a scanner whose lease expired and was claimed again by another
    scanner changes nothing. Returns how many rows were released.
    """
    released = 0
    for row_type, items in _by_table(releases).items():
        parameters = [_release_parameters(item, now, policy, rng) for item in items]
        if parameters:
            statement = _release_statement(row_type)
            result = session.connection().execute(statement, parameters)
            released += result.rowcount
    return released


def abandon(session: Session, claims: Sequence[EndpointClaim | FileSourceClaim]) -> int:
    """Drop claims without scanning, so the sources are due again at once."""
    abandoned = 0
    for claim in claims:
        row_type, source_id = _claim_source(claim)
        result = session.execute(
            update(row_type)
            .where(row_type.id == source_id, row_type.lease_token == claim.lease.token)
            .values(lease_token=None, lease_expires_at=None)
            .execution_options(synchronize_session=False)
        )
        abandoned += result.rowcount  # type: ignore[attr-defined]
    return abandoned


def next_scan_time(
    now: datetime,
    *,
    interval: timedelta,
    consecutive_failures: int,
    policy: SchedulePolicy,
    rng: random.Random,
    spread: bool = False,
) -> datetime:
    """Return when a source is due next, after a scan that ended at `now`.

    With `spread`, a successful scan puts the next one at a uniformly
    random point of (`now`, `now + interval`], as for the first success of
    a source. A failure ignores `spread` and backs off.
    """
    if consecutive_failures <= 0 and spread:
        return now + spread_over(interval, rng)
    if consecutive_failures <= 0:
        delay = interval
    else:
        exponent = min(consecutive_failures - 1, _MAX_BACKOFF_EXPONENT)
        delay = min(policy.retry_delay * 2**exponent, policy.max_retry_delay)
    return now + jittered(delay, policy.jitter, rng)


def _claim(
    session: Session,
    row_type: type[RowT],
    *,
    now: datetime,
    limit: int,
    lease: timedelta,
) -> tuple[list[RowT], Lease]:
    if limit < 1:
        raise ValueError(f"Invalid claim limit {limit!r}: give at least 1.")
    if lease <= timedelta(0):
        raise ValueError(f"Invalid lease {lease!r}: give a positive duration.")
    granted = Lease(token=uuid.uuid4().hex, expires_at=now + lease)

    due = (
        select(row_type.id)
        .where(*_due(row_type, now))
        .order_by(row_type.next_scan_at, row_type.id)
        .limit(limit)
    )
    claim = (
        update(row_type)
        .values(lease_token=granted.token, lease_expires_at=granted.expires_at)
        .execution_options(synchronize_session=False)
    )
    if session.get_bind().dialect.name == "postgresql":
        ids = list(session.scalars(due.with_for_update(skip_locked=True)))
        if ids:
            session.execute(claim.where(row_type.id.in_(ids)))
    else:
        ids = list(
            session.scalars(claim.where(row_type.id.in_(due)).returning(row_type.id))
        )
    if not ids:
        return [], granted

    rows = session.scalars(
        select(row_type)
        .where(row_type.id.in_(ids))
        .order_by(row_type.next_scan_at, row_type.id)
        .execution_options(populate_existing=True)
    )
    return list(rows), granted


def _due(row_type: type[RowT], now: datetime) -> list[ColumnElement[bool]]:
    return [
        row_type.enabled.is_(True),
        row_type.next_scan_at <= now,
        (row_type.lease_expires_at.is_(None)) | (row_type.lease_expires_at <= now),
    ]


def _claim_source(
    claim: EndpointClaim | FileSourceClaim,
) -> tuple[type[EndpointRow] | type[FileSourceRow], int]:
    if isinstance(claim, EndpointClaim):
        return EndpointRow, claim.endpoint_id
    return FileSourceRow, claim.file_source_id


def _by_table(
    releases: Sequence[Release],
) -> dict[type[EndpointRow] | type[FileSourceRow], list[Release]]:
    grouped: dict[type[EndpointRow] | type[FileSourceRow], list[Release]] = {
        EndpointRow: [],
        FileSourceRow: [],
    }
    for item in releases:
        row_type, _ = _claim_source(item.claim)
        grouped[row_type].append(item)
    return grouped


def _release_parameters(
    item: Release, now: datetime, policy: SchedulePolicy, rng: random.Random
) -> dict[str, Any]:
    claim = item.claim
    failures = claim.consecutive_failures + 1 if item.failed else 0
    _, source_id = _claim_source(claim)
    return {
        "source_id": source_id,
        "token": claim.lease.token,
        "new_next_scan_at": next_scan_time(
            now,
            interval=claim.interval or policy.default_interval,
            consecutive_failures=failures,
            policy=policy,
            rng=rng,
            spread=claim.spread_next,
        ),
        "new_failures": failures,
        "new_scanned_at": item.scanned_at,
    }


def _release_statement(row_type: type[EndpointRow] | type[FileSourceRow]) -> Any:
    table: Any = row_type.__table__
    return (
        update(table)
        .where(
            table.c.id == bindparam("source_id"),
            table.c.lease_token == bindparam("token"),
        )
        .values(
            next_scan_at=bindparam("new_next_scan_at"),
            consecutive_failures=bindparam("new_failures"),
            last_scanned_at=bindparam("new_scanned_at"),
            lease_token=None,
            lease_expires_at=None,
        )
    )
