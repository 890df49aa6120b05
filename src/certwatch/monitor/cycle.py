"""One monitoring cycle: claim sources in batches, scan them, record, release.

Each batch goes through four steps:

1. claim up to `batch_size` sources under a lease and commit, so other
   scanners skip them;
2. probe the endpoints (or read the files) while a background task renews
   the lease every third of its length;
3. in one transaction, detect certificate changes, record the observations
   and the changes, and release every claim with its next scan time;
4. log one line per finished scan.

A process killed in step 2 loses only that batch: earlier batches are
committed, and its leases expire so the sources are claimed again. A
failure in step 2 or 3 abandons the claims when the database is still
reachable, so the sources are due again at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from certwatch.check import check_endpoints, check_paths
from certwatch.monitor.changes import detect_changes
from certwatch.monitor.settings import MonitorSettings
from certwatch.probe.resolve import Resolver, SystemResolver
from certwatch.result import Result
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
from certwatch.targets import Endpoint
from certwatch.x509.model import AnalysisPolicy

logger = logging.getLogger(__name__)

SessionFactory = Callable[[], Session]
Clock = Callable[[], datetime]
ClaimT = TypeVar("ClaimT", EndpointClaim, FileSourceClaim)
ResultT = TypeVar("ResultT")


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

    `batches` counts the committed batches, each one transaction.
    `lost_leases` counts claims whose lease expired and was taken by
    another scanner before the batch was recorded. Their observations are
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
) -> CycleReport:
    """Scan the selected sources in batches and record what was seen.

    `sessions` opens a new session (a `sessionmaker` does). `now_fn` is the
    clock; the cycle reads it for claims, analysis, observation times and
    rescheduling. Setting `stop` ends the cycle after the current batch.
    `on_scan` receives each scan once its batch is committed.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the database failed; committed
            batches stay, and the current batch's leases expire.
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
        self.report = CycleReport(started_at=now_fn())
        self._endpoint_queue = list(selection.endpoint_ids or ())
        self._file_queue = list(selection.file_source_ids or ())
        self._endpoints_done: set[int] = set()
        self._files_done: set[int] = set()

    def run(self) -> CycleReport:
        started = time.perf_counter()
        for claims in self._batches(self._claim_endpoints):
            self._scan_endpoints(claims)
        for file_claims in self._batches(self._claim_file_sources):
            self._scan_file_sources(file_claims)

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

    def _scan_endpoints(self, claims: list[EndpointClaim]) -> None:
        grouped = self._guarded(claims, self._probe(claims))
        scanned_at = self.now_fn()
        scans = [
            CompletedScan(scanned_at, tuple(found), endpoint_id=claim.endpoint_id)
            for claim, found in zip(claims, grouped, strict=True)
        ]
        self._record(claims, scans)
        self.report.endpoints += len(scans)
        self._endpoints_done.update(c.endpoint_id for c in claims)
        for claim, scan in zip(claims, scans, strict=True):
            _log_scan(f"endpoint {claim.endpoint_id} {claim.endpoint.target}", scan)

    def _scan_file_sources(self, claims: list[FileSourceClaim]) -> None:
        now = self.now_fn()

        def read_all() -> list[list[Result]]:
            return [
                check_paths(
                    [claim.path],
                    policy=self.policy,
                    now=now,
                    pkcs12_password=self.settings.pkcs12_password,
                ).results
                for claim in claims
            ]

        found = self._guarded(claims, asyncio.to_thread(read_all))
        scanned_at = self.now_fn()
        scans = [
            CompletedScan(scanned_at, tuple(results), file_source_id=c.file_source_id)
            for c, results in zip(claims, found, strict=True)
        ]
        self._record(claims, scans)
        self.report.file_sources += len(scans)
        self._files_done.update(c.file_source_id for c in claims)
        for claim, scan in zip(claims, scans, strict=True):
            _log_scan(f"file source {claim.file_source_id} {claim.path}", scan)

    def _guarded(
        self,
        claims: Sequence[EndpointClaim | FileSourceClaim],
        work: Awaitable[ResultT],
    ) -> ResultT:
        """Run `work` while renewing the leases; abandon the claims if it fails."""
        try:
            return asyncio.run(self._renewing(claims, work))
        except BaseException:
            self._abandon(claims)
            raise

    async def _renewing(
        self,
        claims: Sequence[EndpointClaim | FileSourceClaim],
        work: Awaitable[ResultT],
    ) -> ResultT:
        renewal = asyncio.create_task(self._renew_periodically(claims))
        try:
            return await work
        finally:
            renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewal

    async def _renew_periodically(
        self, claims: Sequence[EndpointClaim | FileSourceClaim]
    ) -> None:
        period = self.settings.lease.total_seconds() / 3
        while True:
            await asyncio.sleep(period)
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

    async def _probe(self, claims: list[EndpointClaim]) -> list[list[Result]]:
        """Probe the claimed endpoints; return the results of each claim."""
        grouped: list[list[Result]] = [[] for _ in claims]
        for round_positions in _rounds(claims):
            index = {_identity(claims[p].endpoint): p for p in round_positions}
            async for result in check_endpoints(
                [claims[p].endpoint for p in round_positions],
                settings=self.settings.probe,
                policy=self.policy,
                now=self.now_fn(),
                resolver=self.resolver,
                workers=self.settings.workers,
            ):
                grouped[index[_result_identity(result)]].append(result)
        for found in grouped:
            found.sort(key=lambda result: result.address or "")
        return grouped

    def _record(
        self,
        claims: Sequence[EndpointClaim | FileSourceClaim],
        scans: list[CompletedScan],
    ) -> None:
        """Record one batch and release its claims, all in one transaction."""
        finished_at = scans[0].scanned_at
        started = time.perf_counter()
        releases = [
            Release(claim, scan.scanned_at, scan.failed)
            for claim, scan in zip(claims, scans, strict=True)
        ]

        try:
            with self.sessions() as session, session.begin():
                scans = _still_stored(session, scans)
                changes = detect_changes(
                    session, scans, window=self.settings.change_window
                )
                observations = record_observations(session, scans)
                scans = record_stale_findings(
                    session,
                    scans,
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
        except BaseException:
            self._abandon(claims)
            raise

        logger.debug(
            "recorded a batch of %d scans in %.2f s",
            len(scans),
            time.perf_counter() - started,
        )
        report = self.report
        report.batches += 1
        report.observations += observations
        report.changes += len(changes)
        report.failed += sum(scan.failed for scan in scans)
        report.lost_leases += len(claims) - released
        for scan in scans:
            for result in scan.results:
                status = result.status.value
                report.statuses[status] = report.statuses.get(status, 0) + 1
        for scan in scans:
            self.on_scan(scan)

    def _abandon(self, claims: Sequence[EndpointClaim | FileSourceClaim]) -> None:
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


def _identity(endpoint: Endpoint) -> tuple[str, str, int, str | None]:
    return (endpoint.protocol, endpoint.host, endpoint.port, endpoint.server_name)


def _result_identity(result: Result) -> tuple[str, str, int, str | None]:
    assert result.protocol is not None and result.host is not None
    assert result.port is not None
    return (result.protocol, result.host, result.port, result.server_name)


def _rounds(claims: list[EndpointClaim]) -> list[list[int]]:
    """Split claims so that no round contains two endpoints with the same results key.

    A result names its endpoint by protocol, host, port and server name, not
    by a pinned address, so endpoints that differ only in the pinned address
    are probed in separate rounds. Returns positions in `claims`.
    """
    rounds: list[tuple[set[tuple[str, str, int, str | None]], list[int]]] = []
    for position, claim in enumerate(claims):
        key = _identity(claim.endpoint)
        chosen = next((r for r in rounds if key not in r[0]), None)
        if chosen is None:
            chosen = (set(), [])
            rounds.append(chosen)
        chosen[0].add(key)
        chosen[1].append(position)
    return [positions for _, positions in rounds]


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
