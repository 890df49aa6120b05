"""Analyse chains in worker processes while the event loop goes on probing.

Checking a chain costs a few hundred microseconds of CPU, mostly the
signature checks of the validator, and on the event loop that time is taken
from the handshakes. A process pool moves it to the other cores. Threads do
not help: the analysis outside the validator holds the GIL.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime

from certwatch.probe.model import ProbeResult
from certwatch.x509.analyze import analyze_chain
from certwatch.x509.model import AnalysisPolicy, ChainReport

# The policy of this worker process, set once by the pool's initializer so
# that the trust roots are not sent along with every chain.
_worker_policy: AnalysisPolicy | None = None


def worker_count() -> int:
    """Return how many analysis workers suit this machine: one core is left
    for the event loop."""
    return max(1, (os.cpu_count() or 2) - 1)


# The maximum number of chains sent to a worker in one message. Sending them
# one by one costs the event loop more in pickling and in the pool's feeder
# threads than the analysis it moves away, so each loop iteration sends one.
MAX_BATCH = 64

_Work = tuple[tuple[bytes, ...], str | None, str | None]


class AnalysisPool:
    """A pool of worker processes that run `analyze_chain` for one policy.

    Chains submitted in the same event loop iteration go to a worker in one
    batch.
    """

    def __init__(self, policy: AnalysisPolicy, workers: int) -> None:
        # forkserver rather than fork: the process has threads (DNS lookups),
        # and forking a process with threads can copy a held lock.
        self._executor = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("forkserver"),
            initializer=_set_worker_policy,
            initargs=(policy,),
        )
        self._batch: list[tuple[_Work, asyncio.Future[ChainReport]]] = []
        self._now: datetime | None = None

    def submit(self, probe: ProbeResult, now: datetime) -> asyncio.Future[ChainReport]:
        """Queue the chain of `probe` for analysis and return its future report."""
        loop = asyncio.get_running_loop()
        endpoint = probe.endpoint
        address = endpoint.host if endpoint.is_ip else None
        future: asyncio.Future[ChainReport] = loop.create_future()

        if self._batch and now != self._now:
            self._send()
        if not self._batch:
            loop.call_soon(self._send)
        self._now = now
        self._batch.append(((probe.chain, endpoint.server_name, address), future))
        if len(self._batch) >= MAX_BATCH:
            self._send()
        return future

    def close(self) -> None:
        """Drop the chains not started yet and let the workers exit."""
        for _, future in self._batch:
            future.cancel()
        self._batch = []
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _send(self) -> None:
        if not self._batch:
            return
        batch, self._batch = self._batch, []
        assert self._now is not None
        loop = asyncio.get_running_loop()
        futures = [future for _, future in batch]
        try:
            reports = loop.run_in_executor(
                self._executor, _analyze_batch, [work for work, _ in batch], self._now
            )
        except Exception as exc:
            # A pool that cannot start its workers (or is shut down) must not
            # leave the waiting results hanging.
            for future in futures:
                if not future.done():
                    future.set_exception(exc)
            return
        reports.add_done_callback(lambda done: _deliver(done, futures))


def _deliver(
    done: asyncio.Future[list[ChainReport]],
    futures: list[asyncio.Future[ChainReport]],
) -> None:
    """Hand each report of a finished batch to the future that waits for it."""
    if done.cancelled():
        for future in futures:
            future.cancel()
        return
    error = done.exception()
    for index, future in enumerate(futures):
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(done.result()[index])


def _set_worker_policy(policy: AnalysisPolicy) -> None:
    global _worker_policy
    _worker_policy = policy


def _analyze_batch(batch: list[_Work], now: datetime) -> list[ChainReport]:
    policy = _worker_policy
    assert policy is not None, "the pool initializer sets the policy"
    return [
        analyze_chain(
            chain, server_name=server_name, address=address, now=now, policy=policy
        )
        for chain, server_name, address in batch
    ]
