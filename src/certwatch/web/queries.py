"""Whole-inventory reads for the metrics and the calendar feeds.

Each function reads whole tables in one to three queries, so its cost
grows with the inventory but never by one query per row. Only enabled
sources count, as for alerts: a disabled source is not scanned, and its
old results would raise false alarms.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal, NamedTuple

from sqlalchemy import ColumnElement, Row, func, select
from sqlalchemy.orm import Session

from certwatch.store.models import (
    CertificateRow,
    EndpointRow,
    FileSourceRow,
    ObservationCertificateRow,
    ObservationRow,
    TeamRow,
)

SourceKind = Literal["endpoint", "file"]
SOURCE_KINDS: tuple[SourceKind, ...] = ("endpoint", "file")


class CurrentDeployment(NamedTuple):
    """A certificate deployed now: the leaf at an endpoint address, or one in a file.

    `address` is `""` for a file and `path` is `""` for an endpoint.
    `target` is the endpoint's target or the file source's path (a folder
    for a folder source). `common_name` and `not_after` are `None` when the
    certificate's DER could not be read that far.
    """

    team_id: int
    team: str
    kind: SourceKind
    source_id: int
    target: str
    address: str
    path: str
    sha256: str
    common_name: str | None
    not_after: datetime | None


class SourceState(NamedTuple):
    """The schedule's record of an enabled source's latest scan.

    `last_scanned_at` is `None` before the first scan. `consecutive_failures`
    counts the latest scans in a row that obtained no certificate at any
    address (or in no file), so 0 means the latest scan obtained one.
    """

    kind: SourceKind
    source_id: int
    team_id: int
    team: str
    target: str
    last_scanned_at: datetime | None
    consecutive_failures: int


def source_states(session: Session, *, team_id: int | None = None) -> list[SourceState]:
    """Return the schedule state of every enabled source, of one team or of all."""
    connection = session.connection()
    teams = {
        identifier: name
        for identifier, name in connection.execute(select(TeamRow.id, TeamRow.name))
    }
    states: list[SourceState] = []
    for kind in SOURCE_KINDS:
        source = _source_table(kind)
        # Disabled sources are skipped here rather than in SQL: an
        # unanalysed SQLite database reads the rows through the index on
        # `enabled`, one look-up per row, which took twice as long as a scan.
        query = select(
            source.id,
            source.team_id,
            _target_column(kind),
            source.last_scanned_at,
            source.consecutive_failures,
            source.enabled,
        )
        if team_id is not None:
            query = query.where(source.team_id == team_id)
        for (
            source_id,
            owner,
            target,
            scanned_at,
            failures,
            enabled,
        ) in connection.execute(query):
            if enabled:
                states.append(
                    SourceState(
                        kind,
                        source_id,
                        owner,
                        teams[owner],
                        target,
                        scanned_at,
                        failures,
                    )
                )
    return states


def current_deployments(
    session: Session,
    *,
    team_id: int | None = None,
    sources: list[SourceState] | None = None,
) -> list[CurrentDeployment]:
    """Return the deployments of the enabled sources, of one team or of all.

    `sources` saves reading the sources again when the caller has just read
    them with `source_states` (with the same `team_id`). A certificate that
    a file contains twice is listed twice.
    """
    if sources is None:
        sources = source_states(session, team_id=team_id)
    owners: dict[tuple[SourceKind, int | None], SourceState] = {
        (source.kind, source.source_id): source for source in sources
    }
    links = _served_links(session)
    facts = _served_certificate_facts(session)

    deployments: list[CurrentDeployment] = []
    for endpoint_id, file_source_id, address, path, sha256 in links:
        key: tuple[SourceKind, int | None] = (
            ("endpoint", endpoint_id)
            if endpoint_id is not None
            else ("file", file_source_id)
        )
        owner = owners.get(key)
        fact = facts.get(sha256)
        # A disabled source or another team's has no owner here. A
        # certificate without facts stopped being served after the links
        # were read, because a batch was recorded in between (PostgreSQL
        # gives each statement its own snapshot).
        if owner is None or fact is None:
            continue
        deployments.append(
            CurrentDeployment(
                owner.team_id,
                owner.team,
                owner.kind,
                owner.source_id,
                owner.target,
                (address or "") if owner.kind == "endpoint" else "",
                (path or "") if owner.kind == "file" else "",
                sha256,
                *fact,
            )
        )
    return deployments


# The deployments are read in two queries and joined to their sources in
# Python. On SQLite 3.40, one query that joined observations, sources,
# teams and certificates took 1.1 s for the 110,000 deployments of
# bench/store.py's 100,000 endpoints. These two queries take about 0.6 s.


def _served_condition() -> ColumnElement[bool]:
    """Select the links of a latest scan to a leaf, or to any certificate of a file.

    The intermediates an endpoint sends after its leaf are renewed by their
    CA, not by the team, so only the leaf of an endpoint counts.
    """
    return ObservationRow.latest.is_(True) & (
        (ObservationCertificateRow.position == 0)
        | ObservationRow.file_source_id.is_not(None)
    )


def _served_links(
    session: Session,
) -> Sequence[Row[int | None, int | None, str | None, str | None, str]]:
    """Return the place and certificate of every deployment, enabled or not."""
    query = (
        select(
            ObservationRow.endpoint_id,
            ObservationRow.file_source_id,
            ObservationRow.address,
            ObservationRow.path,
            ObservationCertificateRow.certificate_sha256,
        )
        .join(
            ObservationCertificateRow,
            ObservationCertificateRow.observation_id == ObservationRow.id,
        )
        .where(_served_condition())
    )
    return session.connection().execute(query).all()


def _served_certificate_facts(
    session: Session,
) -> dict[str, tuple[str | None, datetime | None]]:
    """Return the common name and not_after of each certificate served now."""
    served = (
        select(ObservationCertificateRow.certificate_sha256)
        .join(
            ObservationRow,
            ObservationRow.id == ObservationCertificateRow.observation_id,
        )
        .where(_served_condition())
    )
    query = select(
        CertificateRow.sha256, CertificateRow.common_name, CertificateRow.not_after
    ).where(CertificateRow.sha256.in_(served))
    return {
        sha256: (common_name, not_after)
        for sha256, common_name, not_after in session.connection().execute(query)
    }


def _source_table(kind: SourceKind) -> type[EndpointRow] | type[FileSourceRow]:
    return EndpointRow if kind == "endpoint" else FileSourceRow


def _target_column(kind: SourceKind) -> Any:
    """Return the column that names a source: an endpoint's target, a file's path."""
    return EndpointRow.target if kind == "endpoint" else FileSourceRow.path


def due_counts(session: Session, *, now: datetime) -> dict[SourceKind, int]:
    """Count the enabled sources that are due at `now` and claimed by no scanner.

    These are the queue the monitor has yet to work through: the same rows
    that `claim_due_endpoints` and `claim_due_file_sources` would claim.
    """
    counts: dict[SourceKind, int] = {}
    for kind in SOURCE_KINDS:
        source = _source_table(kind)
        conditions: list[ColumnElement[bool]] = [
            source.enabled.is_(True),
            source.next_scan_at <= now,
            source.lease_expires_at.is_(None) | (source.lease_expires_at <= now),
        ]
        query = select(func.count()).select_from(source).where(*conditions)
        counts[kind] = session.scalar(query) or 0
    return counts
