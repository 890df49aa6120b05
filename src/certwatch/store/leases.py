"""Claims on named sources, lease renewal, and when the next source is due.

These complement `certwatch.store.schedule`, which claims due sources. A
scan that an operator requests names its sources. A long batch renews its
leases so that no other scanner takes them over. The service sleeps until
the next source is due. The locking is the same as in `schedule`:
`FOR UPDATE SKIP LOCKED` on PostgreSQL, one `UPDATE ... RETURNING` on
SQLite, and the caller commits right after a claim.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from certwatch.store.chunks import chunked
from certwatch.store.models import EndpointRow, FileSourceRow
from certwatch.store.schedule import (
    EndpointClaim,
    FileSourceClaim,
    Lease,
    endpoint_claim,
    file_source_claim,
)

RowT = TypeVar("RowT", EndpointRow, FileSourceRow)


def claim_endpoints(
    session: Session, endpoint_ids: Sequence[int], *, now: datetime, lease: timedelta
) -> list[EndpointClaim]:
    """Claim the given endpoints whether due or not, disabled ones included.

    Endpoints that another scanner holds under an unexpired lease, and
    unknown ids, are left out of the returned claims.
    """
    rows, granted = _claim_ids(session, EndpointRow, endpoint_ids, now, lease)
    return [endpoint_claim(row, granted) for row in rows]


def claim_file_sources(
    session: Session, file_source_ids: Sequence[int], *, now: datetime, lease: timedelta
) -> list[FileSourceClaim]:
    """Claim the given file sources, as `claim_endpoints` does for endpoints."""
    rows, granted = _claim_ids(session, FileSourceRow, file_source_ids, now, lease)
    return [file_source_claim(row, granted) for row in rows]


def renew_leases(
    session: Session,
    claims: Sequence[EndpointClaim | FileSourceClaim],
    *,
    now: datetime,
    lease: timedelta,
) -> int:
    """Move the expiry of held leases to `now + lease`; return how many moved.

    A lease that another scanner took over after it expired keeps that
    scanner's token and is not touched. The claims keep their original
    `Lease.expires_at`; only the token matters to `release`.
    """
    renewed = 0
    for row_type, ids, tokens in _claims_by_table(claims):
        for chunk in chunked(ids):
            result = session.execute(
                update(row_type)
                .where(row_type.id.in_(chunk), row_type.lease_token.in_(tokens))
                .values(lease_expires_at=now + lease)
                .execution_options(synchronize_session=False)
            )
            renewed += result.rowcount  # type: ignore[attr-defined]
    return renewed


def enabled_source_ids(session: Session) -> tuple[list[int], list[int]]:
    """Return the ids of every enabled endpoint and every enabled file source."""
    endpoints = session.scalars(
        select(EndpointRow.id)
        .where(EndpointRow.enabled.is_(True))
        .order_by(EndpointRow.id)
    )
    files = session.scalars(
        select(FileSourceRow.id)
        .where(FileSourceRow.enabled.is_(True))
        .order_by(FileSourceRow.id)
    )
    return list(endpoints), list(files)


def next_due_at(session: Session) -> datetime | None:
    """Return the earliest time an enabled source may be due, `None` if none exists.

    A source under a lease counts from its lease expiry, which is when it
    would become due if its scanner died. The result can therefore be
    earlier than the real next scan, but never later.
    """
    candidates: list[datetime] = []
    for row_type in (EndpointRow, FileSourceRow):
        free = session.scalar(
            select(func.min(row_type.next_scan_at)).where(
                row_type.enabled.is_(True), row_type.lease_expires_at.is_(None)
            )
        )
        held = session.scalar(
            select(func.min(row_type.lease_expires_at)).where(
                row_type.enabled.is_(True), row_type.lease_expires_at.is_not(None)
            )
        )
        candidates.extend(value for value in (free, held) if value is not None)
    return min(candidates, default=None)


def _claim_ids(
    session: Session,
    row_type: type[RowT],
    ids: Sequence[int],
    now: datetime,
    lease: timedelta,
) -> tuple[list[RowT], Lease]:
    if lease <= timedelta(0):
        raise ValueError(f"Invalid lease {lease!r}: give a positive duration.")
    granted = Lease(token=uuid.uuid4().hex, expires_at=now + lease)
    free = (row_type.lease_expires_at.is_(None)) | (row_type.lease_expires_at <= now)
    claim = (
        update(row_type)
        .values(lease_token=granted.token, lease_expires_at=granted.expires_at)
        .execution_options(synchronize_session=False)
    )
    claimed: list[int] = []
    postgresql = session.get_bind().dialect.name == "postgresql"
    for chunk in chunked(sorted(set(ids))):
        if postgresql:
            locked = list(
                session.scalars(
                    select(row_type.id)
                    .where(row_type.id.in_(chunk), free)
                    .with_for_update(skip_locked=True)
                )
            )
            if locked:
                session.execute(claim.where(row_type.id.in_(locked)))
            claimed.extend(locked)
        else:
            statement = claim.where(row_type.id.in_(chunk), free)
            claimed.extend(session.scalars(statement.returning(row_type.id)))
    if not claimed:
        return [], granted

    rows: list[RowT] = []
    for chunk in chunked(sorted(claimed)):
        rows.extend(
            session.scalars(
                select(row_type)
                .where(row_type.id.in_(chunk))
                .order_by(row_type.id)
                .execution_options(populate_existing=True)
            )
        )
    return rows, granted


def _claims_by_table(
    claims: Sequence[EndpointClaim | FileSourceClaim],
) -> list[tuple[type[EndpointRow] | type[FileSourceRow], list[int], set[str]]]:
    endpoints = [c for c in claims if isinstance(c, EndpointClaim)]
    files = [c for c in claims if isinstance(c, FileSourceClaim)]
    return [
        (
            EndpointRow,
            [c.endpoint_id for c in endpoints],
            {c.lease.token for c in endpoints},
        ),
        (
            FileSourceRow,
            [c.file_source_id for c in files],
            {c.lease.token for c in files},
        ),
    ]
