"""Scan stored sources at once, outside the schedule, and record what was seen.

`certwatch add` and the web's add form store their sources first, then
call `scan_and_record`. It probes the endpoints and reads the files with
the check engine, and records the observations, certificate changes and
stale deployments as a monitoring cycle would. It also sets each source's
next scan from now, so the next cycle does not scan it again at once.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from certwatch.check import check_endpoints, check_paths
from certwatch.monitor.changes import detect_changes
from certwatch.monitor.settings import MonitorSettings
from certwatch.probe.resolve import Resolver, SystemResolver
from certwatch.result import Result
from certwatch.sources.files import FileProblem
from certwatch.store.changes import insert_changes
from certwatch.store.leases import claim_endpoints, claim_file_sources
from certwatch.store.observations import CompletedScan, record_observations
from certwatch.store.schedule import Release, release
from certwatch.store.stale import record_stale_findings
from certwatch.targets import Endpoint
from certwatch.truststore import load_roots
from certwatch.x509.model import AnalysisPolicy

SessionFactory = Callable[[], Session]

# The key that maps a result back to its endpoint. The pinned address is
# not part of it, because a result of a pinned endpoint carries the address
# it probed like any other result.
EndpointKey = tuple[str, str, int, str | None]


def _public_policy() -> AnalysisPolicy:
    return AnalysisPolicy(roots=load_roots(()))


@dataclass(frozen=True)
class ScanSetup:
    """The monitor settings, analysis policy and resolver of instant scans.

    The defaults are those of `certwatch serve` without options: the
    monitor settings' defaults, the certifi roots, the default thresholds
    and the system resolver.
    """

    monitor: MonitorSettings = field(default_factory=MonitorSettings)
    policy: AnalysisPolicy = field(default_factory=_public_policy)
    resolver: Resolver = field(default_factory=SystemResolver)


@dataclass(frozen=True)
class StoredSources:
    """Sources already in the store, by id, to scan at once.

    No two endpoints may share protocol, host, port and server name,
    because results are mapped back to their endpoint by those fields.
    """

    endpoints: Mapping[int, Endpoint] = field(default_factory=dict)
    paths: Mapping[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class InstantScan:
    """The outcome of `scan_and_record`.

    `results` are in the order the probes finished, with the findings that
    recording added (such as `stale_deployment`). `by_endpoint` holds the
    same results per endpoint id. `skipped` lists the files inside folders
    that contain no certificate data.
    """

    results: list[Result]
    skipped: list[FileProblem]
    by_endpoint: dict[int, list[Result]]


def endpoint_key(endpoint: Endpoint) -> EndpointKey:
    """Return the fields that map a result back to `endpoint`."""
    return (endpoint.protocol, endpoint.host, endpoint.port, endpoint.server_name)


def scan_and_record(
    sessions: SessionFactory,
    sources: StoredSources,
    setup: ScanSetup,
    *,
    now: datetime,
) -> InstantScan:
    """Probe and read `sources` now, record the scans and reschedule them.

    The probes run in the calling thread, each address within the probe
    timeout of `setup.monitor`. Everything is recorded in one transaction.
    """
    results, skipped = _probe(sources, setup, now)
    scans = _completed_scans(results, sources, now)
    monitor = setup.monitor
    with sessions() as session, session.begin():
        changes = detect_changes(session, scans, window=monitor.change_window)
        record_observations(session, scans)
        recorded = record_stale_findings(
            session, scans, now=now, thresholds=setup.policy.thresholds
        )
        insert_changes(session, changes)
        _reschedule(session, scans, monitor, now)

    by_endpoint = {
        scan.endpoint_id: list(scan.results)
        for scan in recorded
        if scan.endpoint_id is not None
    }
    return InstantScan(
        results=_with_recorded_findings(results, scans, recorded),
        skipped=skipped,
        by_endpoint=by_endpoint,
    )


def _probe(
    sources: StoredSources, setup: ScanSetup, now: datetime
) -> tuple[list[Result], list[FileProblem]]:
    monitor = setup.monitor
    found = check_paths(
        list(sources.paths.values()),
        policy=setup.policy,
        now=now,
        pkcs12_password=monitor.pkcs12_password,
    )
    results = list(found.results)
    if sources.endpoints:
        stream = check_endpoints(
            list(sources.endpoints.values()),
            settings=monitor.probe,
            policy=setup.policy,
            now=now,
            resolver=setup.resolver,
            workers=monitor.workers,
        )
        results.extend(asyncio.run(_collect(stream)))
    return results, found.skipped


async def _collect(stream: AsyncIterator[Result]) -> list[Result]:
    return [result async for result in stream]


def _completed_scans(
    results: Sequence[Result], sources: StoredSources, now: datetime
) -> list[CompletedScan]:
    endpoint_ids = {endpoint_key(e): i for i, e in sources.endpoints.items()}
    path_ids = {path: source_id for source_id, path in sources.paths.items()}
    by_endpoint: dict[int, list[Result]] = {}
    by_file: dict[int, list[Result]] = {}
    for result in results:
        if result.path is not None:
            by_file.setdefault(path_ids[result.target], []).append(result)
            continue
        assert result.host is not None and result.port is not None
        key = (result.protocol or "https", result.host, result.port, result.server_name)
        by_endpoint.setdefault(endpoint_ids[key], []).append(result)
    scans = [
        CompletedScan(scanned_at=now, results=tuple(found), endpoint_id=endpoint_id)
        for endpoint_id, found in by_endpoint.items()
    ]
    scans.extend(
        CompletedScan(scanned_at=now, results=tuple(found), file_source_id=source_id)
        for source_id, found in by_file.items()
    )
    return scans


def _with_recorded_findings(
    results: Sequence[Result],
    probed: Sequence[CompletedScan],
    recorded: Sequence[CompletedScan],
) -> list[Result]:
    """Replace the probed results with those the recording amended.

    Recording adds findings that depend on other places, such as
    `stale_deployment`; the report shows them too, in probe order.
    """
    amended = {
        id(before): after
        for old, new in zip(probed, recorded, strict=True)
        for before, after in zip(old.results, new.results, strict=True)
    }
    return [amended.get(id(result), result) for result in results]


def _reschedule(
    session: Session,
    scans: Sequence[CompletedScan],
    monitor: MonitorSettings,
    now: datetime,
) -> None:
    """Set each scanned source's next scan from `now`, as a cycle would.

    A new source is due at once, so without this the next cycle would scan
    it again right after it was added. A source that a running cycle holds
    under its lease is left to that cycle.
    """
    by_endpoint = {s.endpoint_id: s for s in scans if s.endpoint_id is not None}
    by_file = {s.file_source_id: s for s in scans if s.file_source_id is not None}
    releases = [
        Release(claim, now, by_endpoint[claim.endpoint_id].failed)
        for claim in claim_endpoints(
            session, list(by_endpoint), now=now, lease=monitor.lease
        )
    ]
    releases += [
        Release(claim, now, by_file[claim.file_source_id].failed)
        for claim in claim_file_sources(
            session, list(by_file), now=now, lease=monitor.lease
        )
    ]
    release(session, releases, now=now, policy=monitor.schedule, rng=random.Random())
