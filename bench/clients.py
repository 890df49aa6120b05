"""The two measured clients, each run in a fresh child process.

Run as a script with `baseline` or `certwatch`, this module reads a JSON job
(endpoints, concurrency, timeout, root file) from standard input and scans
every endpoint once on 127.0.0.1. It then prints one JSON line with the wall
time, the outcome counts, and the peak memory and CPU time of the process and
its workers. Only the scan itself is timed, not the imports, the job parsing
or the trust policy.

`baseline` is the least a scanner must do: a stdlib asyncio handshake per
endpoint that reads the leaf in DER and closes, without verifying anything.
`certwatch` runs `certwatch.check.check_endpoints`, which probes, builds the
trust path, matches the host name and derives findings for every endpoint.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from resources import ProcessTreeSampler, peak_rss_kib, raise_open_file_limit

CLIENTS = ("baseline", "certwatch")
LOOPBACK = "127.0.0.1"

# Problems kept for the report. The outcome counts cover all of them.
MAX_PROBLEMS = 5


@dataclass(frozen=True)
class Job:
    """The work of one client child: (server name, port) pairs and settings."""

    endpoints: list[tuple[str, int]]
    concurrency: int
    timeout: float
    root_der: str


@dataclass(frozen=True)
class Scan:
    """The outcome of one scan inside a client child, before peak RSS is read."""

    elapsed: float
    cpu_seconds: float
    outcomes: Counter[str]
    problems: list[str]


@dataclass
class Measurement:
    """The figures of one client child over one scan of every endpoint.

    `elapsed` and `cpu_seconds` cover the scan only. `outcomes` counts
    results by status (`ok`, `warning`, ...) for certwatch, and `ok` or
    `failed` handshakes for the baseline. `problems` holds up to
    `MAX_PROBLEMS` descriptions of results that were not `ok`.
    """

    client: str
    endpoints: int
    elapsed: float
    peak_rss_kib: int
    cpu_seconds: float
    outcomes: dict[str, int]
    problems: list[str] = field(default_factory=list)


def job_from_json(data: dict[str, Any]) -> Job:
    """Build a job from its JSON form, as `json.dumps(asdict(job))` writes it."""
    return Job(
        endpoints=[(str(name), int(port)) for name, port in data["endpoints"]],
        concurrency=int(data["concurrency"]),
        timeout=float(data["timeout"]),
        root_der=str(data["root_der"]),
    )


def measurement_from_json(data: dict[str, Any]) -> Measurement:
    """Build a measurement from the JSON line a client child prints."""
    return Measurement(**data)


async def _baseline_handshake(
    name: str, port: int, context: ssl.SSLContext, limit: asyncio.Semaphore, job: Job
) -> str | None:
    """Return `None` once the leaf is read, or a description of the failure."""
    async with limit:
        try:
            async with asyncio.timeout(job.timeout):
                _, writer = await asyncio.open_connection(
                    LOOPBACK, port, ssl=context, server_hostname=name
                )
                try:
                    leaf = writer.get_extra_info("ssl_object").getpeercert(True)
                finally:
                    writer.close()
                    await writer.wait_closed()
        except (OSError, TimeoutError) as exc:
            return f"{name}:{port}: {type(exc).__name__}: {exc}"
    return None if leaf else f"{name}:{port}: no certificate"


async def _run_baseline(job: Job) -> Scan:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    limit = asyncio.Semaphore(job.concurrency)

    start, cpu_start = time.perf_counter(), time.process_time()
    failures = await asyncio.gather(
        *(
            _baseline_handshake(name, port, context, limit, job)
            for name, port in job.endpoints
        )
    )
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start

    problems = [failure for failure in failures if failure is not None]
    outcomes = Counter({"ok": len(failures) - len(problems), "failed": len(problems)})
    return Scan(elapsed, cpu, +outcomes, problems)


async def _run_certwatch(job: Job) -> Scan:
    # Imported here so that the baseline child never loads certwatch.
    from certwatch.check import check_endpoints
    from certwatch.probe.model import ProbeSettings
    from certwatch.probe.resolve import StaticResolver
    from certwatch.targets import apply_overrides, parse_target
    from certwatch.x509.model import AnalysisPolicy

    pins = {(name, port): LOOPBACK for name, port in job.endpoints}
    endpoints = [
        apply_overrides(parse_target(f"{name}:{port}"), pins)
        for name, port in job.endpoints
    ]
    settings = ProbeSettings(timeout=job.timeout, concurrency=job.concurrency)
    policy = AnalysisPolicy(
        roots=(Path(job.root_der).read_bytes(),), public_roots=False
    )
    resolver = StaticResolver({})
    outcomes: Counter[str] = Counter()
    problems = []

    start, cpu_start = time.perf_counter(), time.process_time()
    results = check_endpoints(
        endpoints, settings=settings, policy=policy, now=_now(), resolver=resolver
    )
    async for result in results:
        outcomes[result.status.value] += 1
        if result.status.value != "ok":
            codes = ",".join(finding.code for finding in result.findings)
            reason = result.error.message if result.error else codes
            problems.append(f"{result.target}: {result.status.value}: {reason}")
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return Scan(elapsed, cpu, outcomes, problems)


def _now() -> datetime:
    return datetime.now(UTC)


def main() -> None:
    """Run one client over the job on standard input and print its measurement."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("client", choices=CLIENTS)
    args = parser.parse_args()
    job = job_from_json(json.load(sys.stdin))
    raise_open_file_limit(job.concurrency)

    runner = _run_baseline if args.client == "baseline" else _run_certwatch
    try:
        with ProcessTreeSampler() as tree:
            scan = asyncio.run(runner(job))
    except KeyboardInterrupt:
        # The parent reports the interruption and stops the servers.
        sys.exit(130)

    # Worker processes count too: their memory adds to this process's peak
    # (as sampled, summed over the tree) and their CPU to the scan's.
    measurement = Measurement(
        client=args.client,
        endpoints=len(job.endpoints),
        elapsed=scan.elapsed,
        peak_rss_kib=max(peak_rss_kib(), tree.peak_tree_pss_kib),
        cpu_seconds=scan.cpu_seconds + tree.descendant_cpu_seconds,
        outcomes=dict(scan.outcomes),
        problems=scan.problems[:MAX_PROBLEMS],
    )
    print(json.dumps(asdict(measurement)))


if __name__ == "__main__":
    main()
