"""The inventory: teams, network endpoints and certificate file sources.

Every function works inside the caller's session and transaction and never
commits, so several changes land together or not at all. Functions that
write take `now` from the caller; none reads the clock.
"""

from __future__ import annotations

import logging
import random
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Final, Generic, Literal, TypeVar

from sqlalchemy import (
    ColumnElement,
    Select,
    delete,
    func,
    insert,
    select,
)
from sqlalchemy.orm import Session

from certwatch.store.chunks import chunked
from certwatch.store.errors import StoreError
from certwatch.store.models import (
    DEFAULT_TEAM,
    EndpointRow,
    EndpointTagRow,
    FileSourceRow,
    FileSourceTagRow,
    TeamRow,
)
from certwatch.store.spread import DEFAULT_JITTER, next_scan_after_interval_change
from certwatch.targets import Endpoint

logger = logging.getLogger(__name__)

DEFAULT_INTERVAL = timedelta(hours=6)
"""How often a source is scanned when neither it nor the configuration sets it."""

FOLLOW_DEFAULT: Final = "default"
"""The `SourceSettings.interval` that makes a source follow the default interval."""

MAX_TAG_LENGTH = 100
"""The maximum number of characters of one tag."""

MAX_TAGS = 20
"""The maximum number of tags of one endpoint or file source."""

TAG_PUNCTUATION = "-_.:/@+=&"
"""The characters a tag may contain besides letters, digits and spaces.

Commas separate tags in the web form and semicolons in CSV files, so
neither may appear in a tag.
"""


class AmbiguousEndpointError(StoreError):
    """An endpoint named without a usable team that several teams watch.

    `teams` are the names of the teams that watch it, sorted.
    """

    def __init__(self, message: str, teams: Sequence[str]) -> None:
        super().__init__(message)
        self.teams = tuple(teams)


@dataclass(frozen=True)
class SourceSettings:
    """The settings an operator chooses for an endpoint or file source.

    A field left `None` keeps the stored value on update and takes the
    default on creation: the default team, no tags, the configured default
    interval, enabled, and empty notes. An `interval` of `FOLLOW_DEFAULT`
    makes an existing source follow the configured default interval again.
    `reminders` is a reminder schedule as
    `certwatch.alerts.policy.parse_schedule` reads it; "" clears it, so the
    team's schedule applies.
    """

    team: str | None = None
    tags: Iterable[str] | None = None
    interval: timedelta | Literal["default"] | None = None
    enabled: bool | None = None
    notes: str | None = None
    reminders: str | None = None


@dataclass(frozen=True)
class Schedule:
    """The scan schedule state of one source.

    `last_scanned_at` is `None` before the first scan; `lease_expires_at` is
    `None` unless a scanner has claimed the source. `last_status` is the
    worst status of the latest scan and `not_after` the soonest not_after it
    saw (leaf certificates of an endpoint, every certificate of a file);
    both are `None` before the first scan, and `not_after` also when the
    latest scan obtained no certificate.
    """

    next_scan_at: datetime
    last_scanned_at: datetime | None
    lease_expires_at: datetime | None
    consecutive_failures: int
    last_status: str | None = None
    not_after: datetime | None = None


@dataclass(frozen=True)
class EndpointRecord:
    """A stored endpoint with its settings and schedule.

    `interval` is `None` when the endpoint follows the configured default.
    """

    id: int
    endpoint: Endpoint
    team: str
    tags: tuple[str, ...]
    interval: timedelta | None
    enabled: bool
    notes: str
    schedule: Schedule
    reminders: str | None = None


@dataclass(frozen=True)
class FileSourceRecord:
    """A stored certificate file or folder with its settings and schedule.

    `interval` is `None` when the source follows the configured default.
    """

    id: int
    path: str
    team: str
    tags: tuple[str, ...]
    interval: timedelta | None
    enabled: bool
    notes: str
    schedule: Schedule
    reminders: str | None = None


RecordT = TypeVar("RecordT", "EndpointRecord", "FileSourceRecord")
RowT = TypeVar("RowT", EndpointRow, FileSourceRow)


@dataclass(frozen=True)
class Upserted(Generic[RecordT]):
    """The stored record after an upsert, and whether it was newly created."""

    record: RecordT
    created: bool


@dataclass(frozen=True)
class InventoryFilter:
    """Conditions for a listing; a source must match every field that is set.

    `tags` must all be present. `search` is a case-insensitive substring of
    the endpoint's target or host, or of the file source's path.
    `expiring_by` keeps the sources whose latest scan saw a certificate with
    a not_after at or before that instant (a leaf certificate of an
    endpoint, or any certificate of a file source), and those whose latest
    scan obtained no certificate, because a source that is down may expire
    soon. `status` keeps the sources whose latest scan had that worst status;
    `unknown` also keeps the sources never scanned. `team_ids` keeps the
    sources of those teams, none for an empty tuple, and every team's when
    `None`.
    """

    team: str | None = None
    team_ids: tuple[int, ...] | None = None
    tags: tuple[str, ...] = ()
    enabled: bool | None = None
    search: str | None = None
    expiring_by: datetime | None = None
    status: str | None = None


def ensure_team(session: Session, name: str, *, now: datetime) -> int:
    """Return the id of the team called `name`, creating the team if needed."""
    clean = name.strip()
    if not clean or len(clean) > 200:
        raise StoreError(
            f"Invalid team name {name!r}: give 1 to 200 characters, not only spaces."
        )
    team_id = session.scalar(select(TeamRow.id).where(TeamRow.name == clean))
    if team_id is not None:
        return team_id
    if not clean.isprintable() or _BIDI_CONTROLS.search(clean):
        # Names go into messages, calendar feeds and terminals; a line break
        # or a direction override there breaks them or misleads the reader.
        raise StoreError(
            f"Invalid team name {name!r}: control and text-direction characters "
            "are not allowed; give printable text."
        )
    logger.info("created team %r", clean)
    row = TeamRow(name=clean, created_at=now)
    session.add(row)
    session.flush()
    return row.id


_BIDI_CONTROLS = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def list_teams(session: Session) -> list[str]:
    """Return the names of all teams, sorted."""
    return list(session.scalars(select(TeamRow.name).order_by(TeamRow.name)))


def upsert_endpoint(
    session: Session,
    endpoint: Endpoint,
    *,
    now: datetime,
    settings: SourceSettings | None = None,
    default_interval: timedelta = DEFAULT_INTERVAL,
    team_only: bool = False,
    rng: random.Random | None = None,
) -> Upserted[EndpointRecord]:
    """Add an endpoint, or update it when one with the same identity exists.

    The identity is protocol, host, port, server name and pinned address,
    within a team: two teams may watch the same endpoint, each with its
    own row. The row updated is the one of `settings.team` when that team
    watches the endpoint. Otherwise, unless `team_only` is set, the one
    row of another team that watches it, which then moves to
    `settings.team`; a `settings.team` of `None` keeps that row's team.
    With `team_only`, other teams' rows are never read or changed, and a
    `settings.team` of `None` means the default team.

    An update replaces the target text and every setting given. A new
    endpoint is due at once (`next_scan_at` is `now`), and without an
    interval in `settings` it stores none, so it follows the configured
    default. `default_interval` is that default, which a change between an
    explicit and the default interval needs to move the next scan; `rng`
    draws the jitter of that move (a fresh `random.Random` when `None`).

    Raises:
        AmbiguousEndpointError: without `team_only`, several teams watch
            the endpoint and `settings.team` is not one of them.
        StoreError: a setting is invalid.
    """
    chosen = _checked(settings)
    if team_only and chosen.team is None:
        chosen = replace(chosen, team=DEFAULT_TEAM)
    row = _stored_endpoint(session, endpoint, chosen.team, team_only=team_only)
    created = row is None
    if row is None:
        row = EndpointRow(
            protocol=endpoint.protocol,
            host=endpoint.host,
            port=endpoint.port,
            server_name=endpoint.server_name or "",
            address=endpoint.address or "",
            created_at=now,
            next_scan_at=now,
            consecutive_failures=0,
        )
    row.target = endpoint.target
    _apply_settings(
        session,
        row,
        chosen,
        created=created,
        now=now,
        default_interval=default_interval,
        rng=rng,
    )
    session.add(row)
    session.flush()
    _replace_tags(session, EndpointTagRow, EndpointTagRow.endpoint_id, row.id, chosen)
    return Upserted(_endpoint_records(session, [row])[0], created)


def _stored_endpoint(
    session: Session, endpoint: Endpoint, team: str | None, *, team_only: bool
) -> EndpointRow | None:
    """Find the row that `upsert_endpoint` updates, `None` to create one."""
    query = select(EndpointRow).where(*_identity(endpoint)).order_by(EndpointRow.id)
    if team is not None:
        team_id = session.scalar(select(TeamRow.id).where(TeamRow.name == team.strip()))
        own = session.scalar(query.where(EndpointRow.team_id == team_id))
        if own is not None or team_only:
            return own
    rows = list(session.scalars(query.limit(2)))
    if len(rows) < 2:
        return rows[0] if rows else None

    teams = _team_names(session)
    holders = sorted({teams[row.team_id] for row in session.scalars(query)})
    listed = ", ".join(repr(name) for name in holders)
    if team is None:
        raise AmbiguousEndpointError(
            f"Endpoint {endpoint.target!r} is watched by several teams ({listed}): "
            "name the team whose endpoint to change.",
            holders,
        )
    raise AmbiguousEndpointError(
        f"Endpoint {endpoint.target!r} is watched by several teams ({listed}) "
        f"but not by {team.strip()!r}, so it is unclear which one to move: name "
        "one of those teams, or remove the endpoint from the others first.",
        holders,
    )


def remove_endpoint(session: Session, endpoint: Endpoint | int) -> bool:
    """Delete an endpoint, by id or identity, with its observations and tags.

    By identity, the endpoint of every team that watches it is deleted.
    Returns `False` when no such endpoint exists.
    """
    condition = (
        [EndpointRow.id == endpoint]
        if isinstance(endpoint, int)
        else _identity(endpoint)
    )
    result = session.execute(delete(EndpointRow).where(*condition))
    return bool(result.rowcount)  # type: ignore[attr-defined]


def get_endpoint(session: Session, endpoint_id: int) -> EndpointRecord | None:
    """Return one endpoint, `None` when the id is unknown."""
    row = session.get(EndpointRow, endpoint_id)
    return _endpoint_records(session, [row])[0] if row is not None else None


def list_endpoints(
    session: Session,
    filters: InventoryFilter | None = None,
    *,
    by_expiry: bool = False,
    undated_first: bool = False,
    limit: int | None = None,
    offset: int = 0,
) -> list[EndpointRecord]:
    """Return the endpoints that match `filters`, ordered by host and port.

    With `by_expiry` the soonest not_after comes first, then endpoints whose
    latest scan saw no certificate, then those never scanned, each group by
    target. `undated_first` moves those two groups before the dated ones.
    `offset` skips that many endpoints of the ordered list, and `limit`
    keeps the first that many of the rest.
    """
    query = _endpoint_query(select(EndpointRow), filters or InventoryFilter())
    if by_expiry and undated_first:
        rows = _undated_then_dated(session, query, offset=offset, limit=limit)
        return _endpoint_records(session, rows)
    if by_expiry:
        query = query.order_by(
            *_expiry_order(EndpointRow, undated_first=undated_first),
            EndpointRow.target,
            EndpointRow.id,
        )
    else:
        query = query.order_by(EndpointRow.host, EndpointRow.port, EndpointRow.id)
    if offset:
        query = query.offset(offset)
    if limit is not None:
        query = query.limit(limit)
    return _endpoint_records(session, list(session.scalars(query)))


def _undated_then_dated(
    session: Session, query: Select[Any], *, offset: int, limit: int | None
) -> list[EndpointRow]:
    """Read one page of endpoints, those without a not_after first.

    The two groups are read by two queries, because one ORDER BY over
    `not_after IS NULL` makes the database sort every matching row, while
    `ORDER BY not_after` with a LIMIT can walk the column's index and stop
    after the page. On PostgreSQL, page 20 of 10,000 endpoints took 12
    instead of 32 ms.
    """
    undated = query.where(EndpointRow.not_after.is_(None))
    undated_count = (
        session.scalar(select(func.count()).select_from(undated.subquery())) or 0
    )
    rows: list[EndpointRow] = []
    if offset < undated_count:
        page = undated.order_by(
            EndpointRow.last_status.is_(None), EndpointRow.target, EndpointRow.id
        ).offset(offset)
        if limit is not None:
            page = page.limit(limit)
        rows.extend(session.scalars(page))
    remaining = None if limit is None else limit - len(rows)
    if remaining is not None and remaining <= 0:
        return rows
    dated = (
        query.where(EndpointRow.not_after.is_not(None))
        .order_by(EndpointRow.not_after, EndpointRow.target, EndpointRow.id)
        .offset(max(0, offset - undated_count))
    )
    if remaining is not None:
        dated = dated.limit(remaining)
    rows.extend(session.scalars(dated))
    return rows


def _expiry_order(
    row: type[EndpointRow] | type[FileSourceRow], *, undated_first: bool
) -> list[Any]:
    """Order by not_after; a source without one sorts after the dated ones.

    Among sources without a not_after, those whose latest scan saw no
    certificate come before those never scanned. `undated_first` puts both
    groups first, in the same order.
    """
    never_scanned = row.last_status.is_(None)
    undated = row.not_after.is_(None)
    if undated_first:
        return [undated.desc(), never_scanned, row.not_after]
    return [never_scanned, undated, row.not_after]


def count_endpoints(session: Session, filters: InventoryFilter | None = None) -> int:
    """Count the endpoints that match `filters`."""
    query = select(func.count()).select_from(EndpointRow)
    return session.scalar(_endpoint_query(query, filters or InventoryFilter())) or 0


def filter_endpoints(query: Select[Any], filters: InventoryFilter) -> Select[Any]:
    """Add the conditions of `filters` to a query that selects from `endpoints`.

    An aggregate over the same endpoints as `list_endpoints` starts here.
    """
    return _endpoint_query(query, filters)


def _endpoint_query(query: Select[Any], filters: InventoryFilter) -> Select[Any]:
    query = _filtered(query, EndpointRow, EndpointTagRow, filters)
    if filters.search:
        pattern = f"%{filters.search.lower()}%"
        query = query.where(
            func.lower(EndpointRow.target).like(pattern)
            | func.lower(EndpointRow.host).like(pattern)
        )
    return query


def upsert_file_source(
    session: Session,
    path: str,
    *,
    now: datetime,
    settings: SourceSettings | None = None,
    default_interval: timedelta = DEFAULT_INTERVAL,
    rng: random.Random | None = None,
) -> Upserted[FileSourceRecord]:
    """Add a certificate file or folder as a source, or update the one stored.

    `path` is stored as given; the caller makes it absolute, because the
    scanner may run in another working directory. The interval and the
    schedule work as in `upsert_endpoint`.
    """
    if not path:
        raise StoreError("Empty file source path: give a file or folder path.")
    chosen = _checked(settings)
    row = session.scalar(select(FileSourceRow).where(FileSourceRow.path == path))
    created = row is None
    if row is None:
        row = FileSourceRow(
            path=path, created_at=now, next_scan_at=now, consecutive_failures=0
        )
    _apply_settings(
        session,
        row,
        chosen,
        created=created,
        now=now,
        default_interval=default_interval,
        rng=rng,
    )
    session.add(row)
    session.flush()
    _replace_tags(
        session, FileSourceTagRow, FileSourceTagRow.file_source_id, row.id, chosen
    )
    return Upserted(_file_source_records(session, [row])[0], created)


def remove_file_source(session: Session, source: str | int) -> bool:
    """Delete a file source, by id or path, with its observations and tags."""
    column = FileSourceRow.id if isinstance(source, int) else FileSourceRow.path
    result = session.execute(delete(FileSourceRow).where(column == source))
    return bool(result.rowcount)  # type: ignore[attr-defined]


def list_file_sources(
    session: Session,
    filters: InventoryFilter | None = None,
    *,
    by_expiry: bool = False,
    undated_first: bool = False,
    limit: int | None = None,
    offset: int = 0,
) -> list[FileSourceRecord]:
    """Return the file sources that match `filters`, ordered by path.

    `by_expiry`, `undated_first`, `limit` and `offset` work as for
    `list_endpoints`.
    """
    query = _file_source_query(select(FileSourceRow), filters or InventoryFilter())
    if by_expiry:
        query = query.order_by(
            *_expiry_order(FileSourceRow, undated_first=undated_first)
        )
    query = query.order_by(FileSourceRow.path)
    if offset:
        query = query.offset(offset)
    if limit is not None:
        query = query.limit(limit)
    return _file_source_records(session, list(session.scalars(query)))


def count_file_sources(session: Session, filters: InventoryFilter | None = None) -> int:
    """Count the file sources that match `filters`."""
    query = select(func.count()).select_from(FileSourceRow)
    return session.scalar(_file_source_query(query, filters or InventoryFilter())) or 0


def filter_file_sources(query: Select[Any], filters: InventoryFilter) -> Select[Any]:
    """Add the conditions of `filters` to a query that selects from `file_sources`."""
    return _file_source_query(query, filters)


def _file_source_query(query: Select[Any], filters: InventoryFilter) -> Select[Any]:
    query = _filtered(query, FileSourceRow, FileSourceTagRow, filters)
    if filters.search:
        pattern = f"%{filters.search.lower()}%"
        query = query.where(func.lower(FileSourceRow.path).like(pattern))
    return query


def endpoint_from_row(row: EndpointRow) -> Endpoint:
    """Rebuild the `Endpoint` that a stored row describes."""
    return Endpoint(
        target=row.target,
        host=row.host,
        port=row.port,
        server_name=row.server_name or None,
        protocol=row.protocol,
        address=row.address or None,
    )


def schedule_from_row(row: EndpointRow | FileSourceRow) -> Schedule:
    """Return the schedule columns of a stored source."""
    return Schedule(
        next_scan_at=row.next_scan_at,
        last_scanned_at=row.last_scanned_at,
        lease_expires_at=row.lease_expires_at,
        consecutive_failures=row.consecutive_failures,
        last_status=row.last_status,
        not_after=row.not_after,
    )


def _checked(settings: SourceSettings | None) -> SourceSettings:
    """Return the settings with tags normalized, raising before anything is written."""
    chosen = settings or SourceSettings()
    if chosen.tags is None:
        return chosen
    return replace(chosen, tags=normalize_tags(chosen.tags))


def _identity(endpoint: Endpoint) -> list[ColumnElement[bool]]:
    return [
        EndpointRow.protocol == endpoint.protocol,
        EndpointRow.host == endpoint.host,
        EndpointRow.port == endpoint.port,
        EndpointRow.server_name == (endpoint.server_name or ""),
        EndpointRow.address == (endpoint.address or ""),
    ]


def _apply_settings(
    session: Session,
    row: EndpointRow | FileSourceRow,
    settings: SourceSettings,
    *,
    created: bool,
    now: datetime,
    default_interval: timedelta,
    rng: random.Random | None,
) -> None:
    """Copy the given settings onto `row`, which a new row must not yet be added to.

    Resolving the team may flush the session, and a half-filled new row in
    it would fail its NOT NULL constraints.
    """
    if settings.team is not None or created:
        team = DEFAULT_TEAM if settings.team is None else settings.team
        row.team_id = ensure_team(session, team, now=now)
    if created:
        row.interval_seconds = _stored_seconds(settings.interval)
    elif settings.interval is not None:
        seconds = _stored_seconds(settings.interval)
        old = row.interval_seconds or _interval_seconds(default_interval)
        new = seconds or _interval_seconds(default_interval)
        if new != old:
            _reschedule_for_interval(row, new, now, rng or random.Random())
        row.interval_seconds = seconds
    if settings.enabled is not None or created:
        row.enabled = True if settings.enabled is None else settings.enabled
    if settings.notes is not None or created:
        row.notes = settings.notes or ""
    if settings.reminders is not None:
        row.reminder_schedule = settings.reminders or None
    row.updated_at = now


def _reschedule_for_interval(
    row: EndpointRow | FileSourceRow, seconds: int, now: datetime, rng: random.Random
) -> None:
    """Move the next scan to one new interval, with jitter, after the last scan.

    A shorter interval brings the next scan forward. When the last scan is
    older than the new interval, the next scan falls at a random point of
    the coming interval, so that many sources changed together are not
    all due at once. A longer interval puts the next scan off. A source
    never scanned stays due, and a failing source keeps its retry time,
    which backoff chose.
    """
    if row.last_scanned_at is None or row.consecutive_failures:
        return
    row.next_scan_at = next_scan_after_interval_change(
        row.last_scanned_at,
        timedelta(seconds=seconds),
        now=now,
        jitter=DEFAULT_JITTER,
        rng=rng,
    )


def _stored_seconds(interval: timedelta | Literal["default"] | None) -> int | None:
    """Return the interval to store, `None` to follow the configured default."""
    if interval is None or interval == FOLLOW_DEFAULT:
        return None
    if not isinstance(interval, timedelta):
        raise StoreError(
            f"Invalid scan interval {interval!r}: give a duration or "
            f"{FOLLOW_DEFAULT!r}."
        )
    return _interval_seconds(interval)


def _interval_seconds(interval: timedelta) -> int:
    seconds = int(interval.total_seconds())
    if seconds < 1:
        raise StoreError(
            f"Invalid scan interval {interval!r}: give at least one second."
        )
    return seconds


def normalize_tags(tags: Iterable[str]) -> tuple[str, ...]:
    """Strip, de-duplicate and sort tags, in Unicode NFC form.

    Every entry point (command line, CSV and JSON import, web form, API)
    stores tags through this rule: 1 to `MAX_TAG_LENGTH` characters that
    are letters, digits, spaces or one of `TAG_PUNCTUATION`, and at most
    `MAX_TAGS` tags.

    Raises:
        StoreError: a tag breaks the rule, or there are too many.
    """
    clean: set[str] = set()
    for tag in tags:
        text = unicodedata.normalize("NFC", tag.strip())
        if not text or len(text) > MAX_TAG_LENGTH:
            raise StoreError(
                f"Invalid tag {tag[:MAX_TAG_LENGTH]!r}: give 1 to "
                f"{MAX_TAG_LENGTH} characters, not only spaces."
            )
        if not all(_tag_character(char) for char in text):
            raise StoreError(
                f"Invalid tag {tag!r}: use only letters, digits, spaces and "
                f"{' '.join(TAG_PUNCTUATION)}, for example 'team-web'."
            )
        clean.add(text)
        if len(clean) > MAX_TAGS:
            raise StoreError(
                f"Too many tags ({tag!r} is number {len(clean)}): give at most "
                f"{MAX_TAGS} tags to one endpoint or file."
            )
    return tuple(sorted(clean))


def _tag_character(char: str) -> bool:
    return char.isalnum() or char == " " or char in TAG_PUNCTUATION


def _replace_tags(
    session: Session,
    table: type[EndpointTagRow] | type[FileSourceTagRow],
    owner_column: object,
    owner_id: int,
    settings: SourceSettings,
) -> None:
    if settings.tags is None:
        return
    tags = normalize_tags(settings.tags)
    session.execute(delete(table).where(owner_column == owner_id))  # type: ignore[arg-type]
    if tags:
        owner_key = "endpoint_id" if table is EndpointTagRow else "file_source_id"
        session.execute(
            insert(table), [{owner_key: owner_id, "tag": tag} for tag in tags]
        )


def _filtered(
    query: Select[Any],
    row: type[EndpointRow] | type[FileSourceRow],
    tag_table: type[EndpointTagRow] | type[FileSourceTagRow],
    filters: InventoryFilter,
) -> Select[Any]:
    if filters.team is not None:
        query = query.join(TeamRow, TeamRow.id == row.team_id).where(
            TeamRow.name == filters.team
        )
    if filters.team_ids is not None:
        query = query.where(row.team_id.in_(filters.team_ids))
    if filters.enabled is not None:
        query = query.where(row.enabled == filters.enabled)
    owner = (
        EndpointTagRow.endpoint_id
        if tag_table is EndpointTagRow
        else FileSourceTagRow.file_source_id
    )
    for tag in normalize_tags(filters.tags):
        has_tag = select(owner).where(owner == row.id, tag_table.tag == tag)
        query = query.where(has_tag.exists())
    if filters.expiring_by is not None:
        query = query.where(
            (row.not_after <= filters.expiring_by)
            | (row.not_after.is_(None) & row.last_status.is_not(None))
        )
    if filters.status is not None:
        condition = row.last_status == filters.status
        if filters.status == "unknown":
            condition = condition | row.last_status.is_(None)
        query = query.where(condition)
    return query


def _endpoint_records(
    session: Session, rows: Sequence[EndpointRow]
) -> list[EndpointRecord]:
    ids = [row.id for row in rows]
    tags = _tags_by_owner(
        session, select(EndpointTagRow.endpoint_id, EndpointTagRow.tag), ids
    )
    teams = _team_names(session)
    return [
        EndpointRecord(
            id=row.id,
            endpoint=endpoint_from_row(row),
            team=teams[row.team_id],
            tags=tags.get(row.id, ()),
            interval=_record_interval(row),
            enabled=row.enabled,
            notes=row.notes,
            schedule=schedule_from_row(row),
            reminders=row.reminder_schedule,
        )
        for row in rows
    ]


def _file_source_records(
    session: Session, rows: Sequence[FileSourceRow]
) -> list[FileSourceRecord]:
    ids = [row.id for row in rows]
    tags = _tags_by_owner(
        session, select(FileSourceTagRow.file_source_id, FileSourceTagRow.tag), ids
    )
    teams = _team_names(session)
    return [
        FileSourceRecord(
            id=row.id,
            path=row.path,
            team=teams[row.team_id],
            tags=tags.get(row.id, ()),
            interval=_record_interval(row),
            enabled=row.enabled,
            notes=row.notes,
            schedule=schedule_from_row(row),
            reminders=row.reminder_schedule,
        )
        for row in rows
    ]


def _record_interval(row: EndpointRow | FileSourceRow) -> timedelta | None:
    if row.interval_seconds is None:
        return None
    return timedelta(seconds=row.interval_seconds)


def _tags_by_owner(
    session: Session, query: Select[int, str], ids: Sequence[int]
) -> dict[int, tuple[str, ...]]:
    owner_column = query.selected_columns[0]
    found: defaultdict[int, list[str]] = defaultdict(list)
    for chunk in chunked(ids):
        for owner_id, tag in session.execute(query.where(owner_column.in_(chunk))):
            found[owner_id].append(tag)
    return {owner_id: tuple(sorted(tags)) for owner_id, tags in found.items()}


def _team_names(session: Session) -> dict[int, str]:
    return {
        team_id: name
        for team_id, name in session.execute(select(TeamRow.id, TeamRow.name))
    }
