"""Probe every address of an endpoint, and many endpoints under one bound."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Coroutine, Iterator, Sequence
from typing import Any

from certwatch.netpolicy import blocked_address_message, private_address_kind
from certwatch.probe.model import ErrorReason, ProbeError, ProbeResult, ProbeSettings
from certwatch.probe.resolve import ResolutionError, Resolver
from certwatch.probe.tls import probe_address
from certwatch.targets import Endpoint

logger = logging.getLogger(__name__)


async def probe_endpoint(
    endpoint: Endpoint, settings: ProbeSettings, resolver: Resolver
) -> list[ProbeResult]:
    """Probe each address of `endpoint` concurrently, one result per address.

    A pinned `endpoint.address` or an IP literal host is the only address.
    Otherwise `resolver` is called, within `settings.timeout`, and a failed
    lookup gives a single result with `address=None` and a DNS error. An
    address that the address policy of `settings` blocks gets its result
    without a connection.
    """
    addresses = await resolve_addresses(endpoint, settings, resolver)
    if isinstance(addresses, ProbeResult):
        return [addresses]

    # A blocked address keeps its place in the order of the results.
    blocked = {a: blocked_result(endpoint, a, settings) for a in addresses}
    async with asyncio.TaskGroup() as group:
        tasks = {
            address: group.create_task(probe_address(endpoint, address, settings))
            for address, result in blocked.items()
            if result is None
        }
    results = []
    for address, result in blocked.items():
        results.append(tasks[address].result() if result is None else result)
    return results


def blocked_result(
    endpoint: Endpoint, address: str, settings: ProbeSettings
) -> ProbeResult | None:
    """Return the result for an address the policy blocks, `None` if allowed.

    The check runs on the very address that `probe_address` would connect
    to, after resolution, so a second DNS answer cannot bypass it.
    """
    if settings.allow_private_addresses:
        return None
    kind = private_address_kind(address)
    if kind is None:
        return None
    message = blocked_address_message(endpoint.target, address, kind)
    logger.debug("not probing %s at %s: %s", endpoint.target, address, message)
    error = ProbeError(ErrorReason.ADDRESS_NOT_ALLOWED, message)
    return ProbeResult(endpoint=endpoint, address=address, error=error)


async def probe_many(
    endpoints: Sequence[Endpoint], settings: ProbeSettings, resolver: Resolver
) -> AsyncGenerator[ProbeResult, None]:
    """Probe every endpoint and yield each result as soon as it is ready.

    At most `settings.concurrency` address probes run at once, across all
    endpoints. Endpoints start in order while fewer than
    `settings.concurrency` lookups and probes are running or waiting, which
    keeps the number of tasks bounded for long lists. Closing the generator
    early cancels what is still running.
    """
    run = _ProbeRun(endpoints, settings, resolver)
    try:
        run.start_endpoints()
        while run.running:
            for result in await run.next_results():
                yield result
            run.start_endpoints()
    finally:
        await run.cancel()


async def resolve_addresses(
    endpoint: Endpoint, settings: ProbeSettings, resolver: Resolver
) -> list[str] | ProbeResult:
    """Return the addresses to probe for `endpoint`, or the DNS failure result."""
    if endpoint.address is not None:
        return [endpoint.address]
    if endpoint.is_ip:
        return [endpoint.host]

    try:
        async with asyncio.timeout(settings.timeout):
            return await resolver.resolve(endpoint.host, endpoint.port)
    except TimeoutError:
        message = f"Resolving {endpoint.host!r} timed out after {settings.timeout:g} s."
    except ResolutionError as exc:
        message = str(exc)

    logger.debug("DNS lookup for %s failed: %s", endpoint.target, message)
    error = ProbeError(ErrorReason.DNS_ERROR, message)
    return ProbeResult(endpoint=endpoint, address=None, error=error)


# A step of `probe_many`: a lookup returns the endpoint's addresses or its DNS
# failure result, and a probe returns the result of one address.
_Step = tuple[Endpoint, list[str]] | ProbeResult


class _ProbeRun:
    """The tasks of one `probe_many` call and the queue they finish into."""

    def __init__(
        self, endpoints: Sequence[Endpoint], settings: ProbeSettings, resolver: Resolver
    ) -> None:
        self._pending: Iterator[Endpoint] = iter(endpoints)
        self._settings = settings
        self._resolver = resolver
        self._semaphore = asyncio.Semaphore(settings.concurrency)
        self._finished: asyncio.Queue[asyncio.Task[_Step]] = asyncio.Queue()
        self.running: set[asyncio.Task[_Step]] = set()

    def start_endpoints(self) -> None:
        """Start lookups for further endpoints while below the task bound."""
        while len(self.running) < self._settings.concurrency:
            endpoint = next(self._pending, None)
            if endpoint is None:
                return
            self._start(self._lookup(endpoint))

    async def next_results(self) -> list[ProbeResult]:
        """Wait for the next finished task, and start probes when it was a lookup."""
        task = await self._finished.get()
        self.running.discard(task)
        step = task.result()
        if isinstance(step, ProbeResult):
            return [step]

        endpoint, addresses = step
        blocked = []
        for address in addresses:
            result = blocked_result(endpoint, address, self._settings)
            if result is None:
                self._start(self._probe(endpoint, address))
            else:
                blocked.append(result)
        return blocked

    async def cancel(self) -> None:
        """Cancel every task still running and wait until they have ended."""
        for task in self.running:
            task.cancel()
        await asyncio.gather(*self.running, return_exceptions=True)
        self.running.clear()

    def _start(self, step: Coroutine[Any, Any, _Step]) -> None:
        task = asyncio.create_task(step)
        self.running.add(task)
        task.add_done_callback(self._finished.put_nowait)

    async def _lookup(self, endpoint: Endpoint) -> _Step:
        addresses = await resolve_addresses(endpoint, self._settings, self._resolver)
        if isinstance(addresses, ProbeResult):
            return addresses
        return endpoint, addresses

    async def _probe(self, endpoint: Endpoint, address: str) -> _Step:
        async with self._semaphore:
            return await probe_address(endpoint, address, self._settings)
