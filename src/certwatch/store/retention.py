"""Compact old history: drop the repeated observations inside runs of one outcome.

A place (an address of an endpoint, or a file of a file source) is usually
scanned many times with the same result. Every query about history reads
only where the outcome changed. It reads the first and last sighting of
each certificate at each place (deployments now and before, `history`),
the last sighting of each leaf (the alternation rule of change detection),
and the latest observation of each source. So a run of consecutive
observations at one place with the same outcome can be reduced to its
first and last observation without changing any answer.

The outcome of an observation is its status, error reason, TLS version and
presented chain. Findings belong to their observation and go with it. No
other table refers to an observation: change events store times and
fingerprints, and alerts and the outbox store places and fingerprints.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from certwatch.store.models import (
    EndpointRow,
    FileSourceRow,
    ObservationCertificateRow,
    ObservationRow,
)

logger = logging.getLogger(__name__)

# Observations deleted per transaction. SQLite lets one writer in at a
# time, so a short transaction keeps the monitor's batch writes waiting
# briefly.
DELETE_CHUNK = 1000
# Sources whose history one read plans at a time, which bounds the rows a
# single query sorts.
SOURCE_GROUP = 200
# Rows fetched at a time while a plan reads history.
_FETCH_ROWS = 5000


@dataclass(frozen=True)
class Compaction:
    """The outcome of one compaction, or of a dry run.

    `examined` counts the observations older than `cutoff`, `removed` those
    deleted (or to be deleted), and `places` the addresses and files that
    lost any.
    """

    cutoff: datetime
    examined: int
    removed: int
    places: int
    dry_run: bool


def compact_history(
    sessions: Callable[[], Session], *, cutoff: datetime, dry_run: bool = False
) -> Compaction:
    """Reduce each run of one outcome before `cutoff` to its first and last.

    Works through the sources a group at a time and deletes in
    transactions of `DELETE_CHUNK` observations, each committed, so a large
    store never keeps one long write transaction open. The latest observations
    of a source are never deleted. With `dry_run` nothing is deleted.
    """
    total = _Totals()
    for column, table in (
        (ObservationRow.endpoint_id, EndpointRow),
        (ObservationRow.file_source_id, FileSourceRow),
    ):
        for source_ids in _source_groups(sessions, table):
            with sessions() as session:
                plan = _plan(session, column, source_ids, cutoff)
            total.add(plan)
            if not dry_run:
                total.removed += _delete(sessions, plan.doomed)
    if dry_run:
        total.removed = total.doomed
    logger.debug(
        "history compaction%s: %d of %d observations before %s removed at %d places",
        " (dry run)" if dry_run else "",
        total.removed,
        total.examined,
        cutoff.isoformat(),
        total.places,
    )
    return Compaction(cutoff, total.examined, total.removed, total.places, dry_run)


@dataclass
class _Plan:
    examined: int = 0
    doomed: list[int] = field(default_factory=list)
    places: set[tuple[Any, ...]] = field(default_factory=set)


@dataclass
class _Totals:
    examined: int = 0
    doomed: int = 0
    removed: int = 0
    places: int = 0

    def add(self, plan: _Plan) -> None:
        self.examined += plan.examined
        self.doomed += len(plan.doomed)
        self.places += len(plan.places)


def _source_groups(
    sessions: Callable[[], Session], table: type[EndpointRow] | type[FileSourceRow]
) -> Iterator[list[int]]:
    """Yield the ids of the sources of one kind, `SOURCE_GROUP` at a time."""
    after = 0
    while True:
        with sessions() as session:
            ids = list(
                session.scalars(
                    select(table.id)
                    .where(table.id > after)
                    .order_by(table.id)
                    .limit(SOURCE_GROUP)
                )
            )
        if not ids:
            return
        yield ids
        after = ids[-1]


@dataclass
class _Observation:
    id: int
    place: tuple[Any, ...]
    outcome: tuple[Any, ...]
    latest: bool
    chain: list[str] = field(default_factory=list)

    def key(self) -> tuple[Any, ...]:
        return (*self.outcome, tuple(self.chain))


def _plan(
    session: Session, column: Any, source_ids: Sequence[int], cutoff: datetime
) -> _Plan:
    """List the observations inside runs of one outcome, before `cutoff`.

    A run is a sequence of consecutive observations at one place, in the
    order they were made, with the same outcome. Its first and last
    observation stay, so the first and last sighting of everything it
    showed stay too.
    """
    plan = _Plan()
    run_first: _Observation | None = None
    previous: _Observation | None = None
    for observation in _observations(session, column, source_ids, cutoff):
        plan.examined += 1
        same_run = (
            previous is not None
            and previous.place == observation.place
            and previous.key() == observation.key()
        )
        # Inside a run, the previous observation has a neighbour with the
        # same outcome on both sides, so no query reads it. A latest
        # observation is never deleted.
        inside_run = same_run and previous is not run_first
        if not same_run:
            run_first = observation
        elif inside_run and previous is not None and not previous.latest:
            plan.doomed.append(previous.id)
            plan.places.add(previous.place)
        previous = observation
    return plan


def _observations(
    session: Session, column: Any, source_ids: Sequence[int], cutoff: datetime
) -> Iterator[_Observation]:
    """Yield the sources' observations before `cutoff`, by place and time."""
    observation = ObservationRow
    link = ObservationCertificateRow
    place = (
        column,
        func.coalesce(observation.address, ""),
        func.coalesce(observation.path, ""),
    )
    query = (
        select(
            observation.id,
            *place,
            observation.status,
            observation.error_reason,
            observation.tls_version,
            observation.latest,
            link.certificate_sha256,
        )
        .outerjoin(link, link.observation_id == observation.id)
        .where(column.in_(source_ids), observation.observed_at < cutoff)
        .order_by(*place, observation.observed_at, observation.id, link.position)
        .execution_options(yield_per=_FETCH_ROWS)
    )
    current: _Observation | None = None
    for row in session.execute(query):
        if current is None or current.id != row[0]:
            if current is not None:
                yield current
            current = _Observation(
                id=row[0],
                place=tuple(row[1:4]),
                outcome=tuple(row[4:7]),
                latest=bool(row[7]),
            )
        if row[8] is not None:
            current.chain.append(row[8])
    if current is not None:
        yield current


def _delete(sessions: Callable[[], Session], doomed: Sequence[int]) -> int:
    """Delete the observations in short transactions and return how many went.

    Their chain links and findings go with them through the foreign keys'
    ON DELETE CASCADE. The delete skips latest observations, as a second
    guard next to the plan.
    """
    removed = 0
    for start in range(0, len(doomed), DELETE_CHUNK):
        chunk = doomed[start : start + DELETE_CHUNK]
        with sessions() as session:
            result: Any = session.execute(
                delete(ObservationRow)
                .where(ObservationRow.id.in_(chunk), ObservationRow.latest.is_(False))
                .execution_options(synchronize_session=False)
            )
            session.commit()
        removed += result.rowcount
    return removed
