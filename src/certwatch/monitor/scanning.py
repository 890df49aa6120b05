"""Scan claimed sources and yield each source's scan as soon as it is complete.

An endpoint's scan is complete when every address it resolved to has a
result. `check_endpoints` yields results one address at a time, in the
order the probes finish, and does not say how many addresses an endpoint
has. So the lookups go through `_LookupCounter`, which stores how many
addresses each lookup returned.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from datetime import datetime

from certwatch.check import check_endpoints, check_paths
from certwatch.monitor.settings import MonitorSettings
from certwatch.probe.resolve import Resolver
from certwatch.result import Result
from certwatch.store.observations import CompletedScan
from certwatch.store.schedule import EndpointClaim, FileSourceClaim
from certwatch.targets import Endpoint
from certwatch.x509.model import AnalysisPolicy

Clock = Callable[[], datetime]
_Identity = tuple[str, str, int, str | None]


@dataclass(frozen=True)
class FinishedScan:
    """The complete scan of the claim at `position` in its batch."""

    position: int
    scan: CompletedScan


async def scan_endpoints(
    claims: list[EndpointClaim],
    *,
    settings: MonitorSettings,
    policy: AnalysisPolicy,
    now_fn: Clock,
    resolver: Resolver,
) -> AsyncGenerator[FinishedScan, None]:
    """Probe the claimed endpoints and yield each scan once it is complete.

    A scan is complete when every address of the endpoint has a result. An
    endpoint whose lookup returned no address has no result, so its empty
    scan comes at the end of its round.
    """
    for round_positions in _rounds(claims):
        index = {_identity(claims[p].endpoint): p for p in round_positions}
        grouped: dict[int, list[Result]] = {p: [] for p in round_positions}
        counter = _LookupCounter(resolver)
        found = check_endpoints(
            [claims[p].endpoint for p in round_positions],
            settings=settings.probe,
            policy=policy,
            now=now_fn(),
            resolver=counter,
            workers=settings.workers,
        )
        async for result in found:
            position = index[_result_identity(result)]
            results = grouped[position]
            results.append(result)
            if counter.complete(claims[position].endpoint, results):
                del grouped[position]
                yield _finished(claims, position, results, now_fn())
        for position, results in grouped.items():
            yield _finished(claims, position, results, now_fn())


async def read_file_sources(
    claims: list[FileSourceClaim],
    *,
    settings: MonitorSettings,
    policy: AnalysisPolicy,
    now_fn: Clock,
) -> AsyncGenerator[FinishedScan, None]:
    """Read the claimed files one by one in a worker thread, yielding each scan."""
    now = now_fn()
    for position, claim in enumerate(claims):
        checked = await asyncio.to_thread(
            check_paths,
            [claim.path],
            policy=policy,
            now=now,
            pkcs12_password=settings.pkcs12_password,
        )
        scan = CompletedScan(
            now_fn(), tuple(checked.results), file_source_id=claim.file_source_id
        )
        yield FinishedScan(position, scan)


class _LookupCounter:
    """A resolver that stores how many addresses each host and port resolved to.

    Two endpoints of one round can share a host and port (they differ in
    protocol or server name), and each is looked up on its own. The stored
    count is the largest over those lookups. So an endpoint may wait for
    the end of its round, but never counts as complete before all its
    addresses have a result.
    """

    def __init__(self, resolver: Resolver) -> None:
        self._resolver = resolver
        self._counts: dict[tuple[str, int], int] = {}

    async def resolve(self, host: str, port: int) -> list[str]:
        """Resolve with the wrapped resolver and store the number of addresses."""
        addresses = await self._resolver.resolve(host, port)
        key = (host, port)
        self._counts[key] = max(self._counts.get(key, 0), len(addresses))
        return addresses

    def complete(self, endpoint: Endpoint, results: list[Result]) -> bool:
        """Return whether `results` covers every address of `endpoint`."""
        if endpoint.address is not None or endpoint.is_ip:
            return True
        if results[-1].address is None:
            # A failed lookup gives one result without an address, and no other.
            return True
        expected = self._counts.get((endpoint.host, endpoint.port))
        return expected is not None and len(results) >= expected


def _finished(
    claims: list[EndpointClaim], position: int, results: list[Result], now: datetime
) -> FinishedScan:
    results.sort(key=lambda result: result.address or "")
    endpoint_id = claims[position].endpoint_id
    return FinishedScan(
        position, CompletedScan(now, tuple(results), endpoint_id=endpoint_id)
    )


def _identity(endpoint: Endpoint) -> _Identity:
    return (endpoint.protocol, endpoint.host, endpoint.port, endpoint.server_name)


def _result_identity(result: Result) -> _Identity:
    assert result.protocol is not None and result.host is not None
    assert result.port is not None
    return (result.protocol, result.host, result.port, result.server_name)


def _rounds(claims: list[EndpointClaim]) -> list[list[int]]:
    """Split claims so that no round contains two endpoints with the same results key.

    A result names its endpoint by protocol, host, port and server name, not
    by a pinned address, so endpoints that differ only in the pinned address
    are probed in separate rounds. Returns positions in `claims`.
    """
    rounds: list[tuple[set[_Identity], list[int]]] = []
    for position, claim in enumerate(claims):
        key = _identity(claim.endpoint)
        chosen = next((r for r in rounds if key not in r[0]), None)
        if chosen is None:
            chosen = (set(), [])
            rounds.append(chosen)
        chosen[0].add(key)
        chosen[1].append(position)
    return [positions for _, positions in rounds]
