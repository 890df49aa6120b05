"""One monitoring cycle: claim sources in batches, scan them, record, release.

Each batch goes through these steps:

1. claim up to `batch_size` sources under a lease and commit, so other
   scanners skip them;
2. probe the endpoints (or read the files) while a background task renews,
   every third of the lease, the leases of the sources not recorded yet;
3. as scans finish, record them in transactions (see `FlushPolicy`). Each
   transaction detects certificate changes, records the observations and
   the changes, and releases the claims of its sources with their next scan
   time. It runs in a worker thread, so probing goes on meanwhile;
4. log one line per recorded scan.

A process killed in step 2 or 3 loses only the scans not recorded yet:
earlier transactions are committed, and the remaining leases expire so
those sources are claimed again. A failure abandons the claims not
recorded yet when the database is still reachable, so those sources are
due again at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections.abc import (
    AsyncGenerator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Sequence,
)
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from certwatch.monitor.changes import detect_changes
from certwatch.monitor.scanning import FinishedScan, read_file_sources, scan_endpoints
from certwatch.monitor.settings import MonitorSettings
from certwatch.probe.resolve import Resolver, SystemResolver
from certwatch.store.changes import insert_changes
from certwatch.store.leases import claim_endpoints, claim_file_sources, renew_leases
from certwatch.store.models import EndpointRow, FileSourceRow
from certwatch.store.observations import CompletedScan, record_observations
from certwatch.store.schedule import (
    EndpointClaim,
    FileSourceClaim,
    Release,
    abandon,
    claim_due_endpoints,
    claim_due_file_sources,
    release,
)
from certwatch.store.stale import record_stale_findings
from certwatch.x509.model import AnalysisPolicy

logger = logging.getLogger(__name__)

SessionFactory = Callable[[], Session]
Clock = Callable[[], datetime]
ClaimT = TypeVar("ClaimT", EndpointClaim, FileSourceClaim)


@dataclass(frozen=True)
class Selection:
    """The sources a cycle scans.

    With both fields `None` the cycle scans what is due. Otherwise it scans
    exactly the listed endpoints and file sources once each, due or not
    (a `None` field then means none of that kind).
    """

    endpoint_ids: tuple[int, ...] | None = None
    file_source_ids: tuple[int, ...] | None = None

    @property
    def due(self) -> bool:
        """Whether the cycle scans due sources rather than listed ones."""
        return self.endpoint_ids is None and self.file_source_ids is None


DUE = Selection()


@dataclass(frozen=True)
class FlushPolicy:
    """The bounds on how long finished scans wait to be recorded.

    A cycle records finished scans together in one transaction, once
    `max_scans` of them wait or `max_wait` seconds after the first of them
    finished, whichever comes first. So a large batch takes few
    transactions, and a scan that finished early is not held back by a
    slow one in its batch.
    """

    max_scans: int = 100
    max_wait: float = 1.0

    def __post_init__(self) -> None:
        if self.max_scans < 1:
            raise ValueError(f"Invalid max_scans {self.max_scans!r}: give at least 1.")
        if self.max_wait <= 0:
            raise ValueError(
                f"Invalid max_wait {self.max_wait!r}: give a positive number "
                "of seconds."
            )


DEFAULT_FLUSH = FlushPolicy()


def _still_stored(session: Session, scans: list[CompletedScan]) -> list[CompletedScan]:
    """Drop the scans of sources removed while their batch was scanned.

    `certwatch remove` may delete a source in the middle of a batch; its
    results would break the foreign keys and lose the whole batch.
    """
    endpoint_ids = {s.endpoint_id for s in scans if s.endpoint_id is not None}
    file_ids = {s.file_source_id for s in scans if s.file_source_id is not None}
    kept_endpoints = set(
        session.scalars(select(EndpointRow.id).where(EndpointRow.id.in_(endpoint_ids)))
    )
    kept_files = set(
        session.scalars(select(FileSourceRow.id).where(FileSourceRow.id.in_(file_ids)))
    )
    kept = [
        scan
        for scan in scans
        if scan.endpoint_id in kept_endpoints or scan.file_source_id in kept_files
    ]
    if len(kept) < len(scans):
        logger.info(
            "dropped the results of %d sources removed during their scan",
            len(scans) - len(kept),
        )
    return kept


def describe_statuses(statuses: dict[str, int]) -> str:
    """Format result counts worst first, as `critical=2 warning=1 ok=9`."""
    order = ("critical", "unknown", "warning", "ok")
    return " ".join(f"{name}={statuses[name]}" for name in order if statuses.get(name))


@dataclass
class CycleReport:
    """The outcome of one cycle.

    `batches` counts the batches whose scans were all recorded, and
    `writes` the transactions that recorded scans (one or more per batch).
    `lost_leases` counts claims whose lease expired and was taken by
    another scanner before their scan was recorded. Their observations are
    stored, but their next scan time is the one the other scanner sets.
    `busy` counts listed sources skipped because another scanner held them.
    `stopped` is whether a stop request ended the cycle before it ran out
    of work. `duration` is in seconds, measured with a monotonic clock.
    """

    started_at: datetime
    finished_at: datetime | None = None
    duration: float = 0.0
    endpoints: int = 0
    file_sources: int = 0
    observations: int = 0
    failed: int = 0
    changes: int = 0
    batches: int = 0
    writes: int = 0
    lost_leases: int = 0
    busy: int = 0
    stopped: bool = False
    statuses: dict[str, int] = field(default_factory=dict)
    """How many results (one per address or file certificate) had each status."""

    @property
    def scans(self) -> int:
        """How many sources were scanned and recorded."""
        return self.endpoints + self.file_sources


def run_cycle(
    sessions: SessionFactory,
    *,
    now_fn: Clock,
    settings: MonitorSettings,
    policy: AnalysisPolicy,
    selection: Selection = DUE,
    resolver: Resolver | None = None,
    rng: random.Random | None = None,
    stop: threading.Event | None = None,
    on_scan: Callable[[CompletedScan], None] | None = None,
    flush: FlushPolicy = DEFAULT_FLUSH,
) -> CycleReport:
    """Scan the selected sources in batches and record what was seen.

    `sessions` opens a new session (a `sessionmaker` does). `now_fn` is the
    clock; the cycle reads it for claims, analysis, observation times and
    rescheduling. Setting `stop` ends the cycle after the current batch.
    `on_scan` receives each scan once its transaction is committed.
    `flush` bounds how long finished scans wait to be recorded.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the database failed; recorded
            scans stay, and the leases of the others expire.
    """
    cycle = _Cycle(
        sessions=sessions,
        now_fn=now_fn,
        settings=settings,
        policy=policy,
        selection=selection,
        resolver=resolver or SystemResolver(),
        rng=rng or random.Random(),
        stop=stop or threading.Event(),
        on_scan=on_scan or (lambda scan: None),
        flush=flush,
    )
    return cycle.run()


class _Cycle:
    def __init__(
        self,
        *,
        sessions: SessionFactory,
        now_fn: Clock,
        settings: MonitorSettings,
        policy: AnalysisPolicy,
        selection: Selection,
        resolver: Resolver,
        rng: random.Random,
        stop: threading.Event,
        on_scan: Callable[[CompletedScan], None],
        flush: FlushPolicy,
    ) -> None:
        self.sessions = sessions
        self.now_fn = now_fn
        self.settings = settings
        self.policy = policy
        self.selection = selection
        self.resolver = resolver
        self.rng = rng
        self.stop = stop
        self.on_scan = on_scan
        self.flush = flush
        self.report = CycleReport(started_at=now_fn())
        self._endpoint_queue = list(selection.endpoint_ids or ())
        self._file_queue = list(selection.file_source_ids or ())
        self._endpoints_done: set[int] = set()
        self._files_done: set[int] = set()

    def run(self) -> CycleReport:
        started = time.perf_counter()
        for claims in self._batches(self._claim_endpoints):
            scans = scan_endpoints(
                claims,
                settings=self.settings,
                policy=self.policy,
                now_fn=self.now_fn,
                resolver=self.resolver,
            )
            self._scan_batch(claims, scans)
        for file_claims in self._batches(self._claim_file_sources):
            scans = read_file_sources(
                file_claims,
                settings=self.settings,
                policy=self.policy,
                now_fn=self.now_fn,
            )
            self._scan_batch(file_claims, scans)

        report = self.report
        report.finished_at = self.now_fn()
        report.duration = time.perf_counter() - started
        logger.info(
            "cycle finished in %.1f s: endpoints=%d file_sources=%d failed=%d "
            "observations=%d changes=%d batches=%d %s%s",
            report.duration,
            report.endpoints,
            report.file_sources,
            report.failed,
            report.observations,
            report.changes,
            report.batches,
            describe_statuses(report.statuses),
            ", stopped on request" if report.stopped else "",
        )
        return report

    def _batches(
        self, claim: Callable[[Session], list[ClaimT]]
    ) -> Iterator[list[ClaimT]]:
        """Yield claimed batches until none is left or a stop is requested."""
        while True:
            if self.stop.is_set():
                self.report.stopped = True
                return
            with self.sessions() as session, session.begin():
                claims = claim(session)
                fresh = [c for c in claims if not self._scanned(c)]
                # A source whose interval is shorter than this cycle comes
                # due again; it waits for the next cycle, so a cycle ends.
                repeated = [c for c in claims if self._scanned(c)]
                if repeated:
                    abandon(session, repeated)
            if not fresh:
                return
            yield fresh

    def _scanned(self, claim: EndpointClaim | FileSourceClaim) -> bool:
        if isinstance(claim, EndpointClaim):
            return claim.endpoint_id in self._endpoints_done
        return claim.file_source_id in self._files_done

    def _claim_endpoints(self, session: Session) -> list[EndpointClaim]:
        limit = self.settings.batch_size
        now = self.now_fn()
        if self.selection.due:
            return claim_due_endpoints(
                session, now=now, limit=limit, lease=self.settings.lease
            )
        return self._claim_listed(
            self._endpoint_queue,
            lambda ids: claim_endpoints(
                session, ids, now=now, lease=self.settings.lease
            ),
        )

    def _claim_file_sources(self, session: Session) -> list[FileSourceClaim]:
        limit = self.settings.batch_size
        now = self.now_fn()
        if self.selection.due:
            return claim_due_file_sources(
                session, now=now, limit=limit, lease=self.settings.lease
            )
        return self._claim_listed(
            self._file_queue,
            lambda ids: claim_file_sources(
                session, ids, now=now, lease=self.settings.lease
            ),
        )

    def _claim_listed(
        self, queue: list[int], claim: Callable[[list[int]], list[ClaimT]]
    ) -> list[ClaimT]:
        """Claim the next listed ids, counting those another scanner holds."""
        while queue:
            ids = queue[: self.settings.batch_size]
            del queue[: self.settings.batch_size]
            claims = claim(ids)
            self.report.busy += len(ids) - len(claims)
            if claims:
                return claims
        return []

    def _scan_batch(
        self,
        claims: Sequence[EndpointClaim | FileSourceClaim],
        scans: AsyncGenerator[FinishedScan, None],
    ) -> None:
        """Scan one batch, recording the scans as they finish.

        A failure abandons the claims whose scans are not recorded yet, so
        those sources are due again at once. Recorded scans stay.
        """
        pending = _Pending(claims)
        try:
            asyncio.run(
                self._renewing(pending, self._record_as_finished(pending, scans))
            )
        except BaseException:
            self._abandon(pending.unrecorded())
            raise
        self.report.batches += 1

    async def _renewing(self, pending: _Pending, work: Awaitable[None]) -> None:
        renewal = asyncio.create_task(self._renew_periodically(pending))
        try:
            await work
        finally:
            renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewal

    async def _renew_periodically(self, pending: _Pending) -> None:
        period = self.settings.lease.total_seconds() / 3
        while True:
            await asyncio.sleep(period)
            claims = pending.unrecorded()
            if claims:
                await asyncio.to_thread(self._renew, claims)

    def _renew(self, claims: Sequence[EndpointClaim | FileSourceClaim]) -> None:
        try:
            with self.sessions() as session, session.begin():
                renewed = renew_leases(
                    session, claims, now=self.now_fn(), lease=self.settings.lease
                )
        except SQLAlchemyError as exc:
            # The lease may now expire under the batch, and another scanner
            # may scan the same sources; the results are still recorded.
            logger.warning(
                "renewing the leases of %d sources failed, so another scanner may "
                "scan them too: %s",
                len(claims),
                exc,
            )
            return
        logger.debug("renewed %d of %d leases", renewed, len(claims))

    async def _record_as_finished(
        self, pending: _Pending, scans: AsyncGenerator[FinishedScan, None]
    ) -> None:
        """Record finished scans in transactions bounded by count and by time.

        A failure of the scans ends the batch after the scans that finished
        before it are recorded.
        """
        finished: asyncio.Queue[_Queued | None] = asyncio.Queue()
        producer = asyncio.create_task(_enqueue(scans, finished))
        try:
            ended = False
            while not ended:
                waiting, ended = await self._next_write(finished)
                if waiting:
                    await self._write(pending, waiting)
            await producer
        finally:
            if not producer.done():
                producer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await producer

    async def _next_write(
        self, finished: asyncio.Queue[_Queued | None]
    ) -> tuple[list[FinishedScan], bool]:
        """Wait for the scans of the next transaction.

        Waits without limit for the first scan, then until `max_scans` scans
        wait or `max_wait` seconds passed since the first one finished. Scans
        already queued are always taken, up to `max_scans`, so a slow write
        does not leave a backlog to be written one scan at a time. Also
        returns whether the batch has no more scans.
        """
        first = await finished.get()
        if first is None:
            return [], True
        waiting = [first.scan]
        loop = asyncio.get_running_loop()
        deadline = first.finished_at + self.flush.max_wait
        while len(waiting) < self.flush.max_scans:
            if finished.empty():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(finished.get(), remaining)
                except TimeoutError:
                    break
            else:
                item = finished.get_nowait()
            if item is None:
                return waiting, True
            waiting.append(item.scan)
        return waiting, False

    async def _write(self, pending: _Pending, waiting: list[FinishedScan]) -> None:
        """Record scans in a worker thread, so that probing goes on meanwhile."""
        claims = [pending.claims[finished.position] for finished in waiting]
        scans = [finished.scan for finished in waiting]
        written = await asyncio.to_thread(self._record, claims, scans)
        pending.mark_recorded(finished.position for finished in waiting)
        self._count(claims, scans, written)

    def _record(
        self,
        claims: Sequence[EndpointClaim | FileSourceClaim],
        scans: list[CompletedScan],
    ) -> _Written:
        """Record scans and release their claims, all in one transaction."""
        finished_at = max(scan.scanned_at for scan in scans)
        started = time.perf_counter()
        releases = [
            Release(claim, scan.scanned_at, scan.failed)
            for claim, scan in zip(claims, scans, strict=True)
        ]

        with self.sessions() as session, session.begin():
            stored = _still_stored(session, scans)
            changes = detect_changes(
                session, stored, window=self.settings.change_window
            )
            observations = record_observations(session, stored)
            stored = record_stale_findings(
                session,
                stored,
                now=finished_at,
                thresholds=self.policy.thresholds,
            )
            insert_changes(session, changes)
            released = release(
                session,
                releases,
                now=finished_at,
                policy=self.settings.schedule,
                rng=self.rng,
            )

        logger.debug(
            "recorded %d scans in one transaction in %.2f s",
            len(scans),
            time.perf_counter() - started,
        )
        return _Written(stored, observations, len(changes), released)

    def _count(
        self,
        claims: Sequence[EndpointClaim | FileSourceClaim],
        scans: list[CompletedScan],
        written: _Written,
    ) -> None:
        """Add a recorded transaction to the report, log its scans, call `on_scan`."""
        report = self.report
        report.writes += 1
        report.observations += written.observations
        report.changes += written.changes
        report.failed += sum(scan.failed for scan in written.stored)
        report.lost_leases += len(claims) - written.released
        for scan in written.stored:
            for result in scan.results:
                status = result.status.value
                report.statuses[status] = report.statuses.get(status, 0) + 1

        for claim, scan in zip(claims, scans, strict=True):
            if isinstance(claim, EndpointClaim):
                report.endpoints += 1
                self._endpoints_done.add(claim.endpoint_id)
                _log_scan(f"endpoint {claim.endpoint_id} {claim.endpoint.target}", scan)
            else:
                report.file_sources += 1
                self._files_done.add(claim.file_source_id)
                _log_scan(f"file source {claim.file_source_id} {claim.path}", scan)
        for scan in written.stored:
            self.on_scan(scan)

    def _abandon(self, claims: Sequence[EndpointClaim | FileSourceClaim]) -> None:
        if not claims:
            return
        try:
            with self.sessions() as session, session.begin():
                abandon(session, claims)
        except SQLAlchemyError as exc:
            logger.warning(
                "abandoning %d claims failed, they become due when their leases "
                "expire: %s",
                len(claims),
                exc,
            )


@dataclass(frozen=True)
class _Queued:
    """A finished scan, with the event loop's time when it finished."""

    scan: FinishedScan
    finished_at: float


async def _enqueue(
    scans: AsyncGenerator[FinishedScan, None], queue: asyncio.Queue[_Queued | None]
) -> None:
    """Put each finished scan on `queue`, then `None` once the scans end or fail."""
    loop = asyncio.get_running_loop()
    try:
        async with contextlib.aclosing(scans):
            async for finished in scans:
                queue.put_nowait(_Queued(finished, loop.time()))
    finally:
        queue.put_nowait(None)


class _Pending:
    """The claims of one batch and which of their scans are recorded."""

    def __init__(self, claims: Sequence[EndpointClaim | FileSourceClaim]) -> None:
        self.claims = claims
        self._recorded: set[int] = set()

    def mark_recorded(self, positions: Iterable[int]) -> None:
        self._recorded.update(positions)

    def unrecorded(self) -> list[EndpointClaim | FileSourceClaim]:
        """Return the claims still held for scans that are not recorded yet."""
        return [c for i, c in enumerate(self.claims) if i not in self._recorded]


@dataclass(frozen=True)
class _Written:
    """What one transaction recorded.

    `stored` are the scans of sources that still exist, with their stale
    deployment findings. `released` counts the claims whose lease was still held.
    """

    stored: list[CompletedScan]
    observations: int
    changes: int
    released: int


def _log_scan(source: str, scan: CompletedScan) -> None:
    parts = []
    for result in scan.results:
        if result.report is None:
            codes = [finding.code for finding in result.findings]
            reason = result.error.reason if result.error else ", ".join(codes)
            reason = reason or "no certificate"
            parts.append(f"{result.place} {result.status} ({reason})")
        else:
            parts.append(
                f"{result.place} {result.status}, {result.days_left} days left"
            )
    logger.info(
        "scanned %s: %s",
        _loggable(source),
        _loggable("; ".join(parts)) or "nothing found",
    )


def _loggable(text: str) -> str:
    """Escape control characters, so a target cannot forge or hide log lines."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
