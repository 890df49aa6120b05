"""Load-test the dashboard and the JSON API on a store of 10,000 endpoints.

The script fills a store as `bench/store.py` does (10,000 endpoints and
5,000 certificates by default, spread over its teams), makes one user who
owns every team, so that each page covers the whole inventory, and runs the
web service in a child process, as `certwatch serve` does without the
monitor. A client in this process then sends `--requests` GET requests per
path, `--concurrency` at a time, over loopback with the user's login
cookie, and reports the latency percentiles of each path.

The baseline is `GET /healthz` under the same load: the same server,
client, connection handling and one store query, without a page. Each
path's p95 is also reported as a ratio to the baseline's p95.

Usage, from the repository root:

    .venv/bin/python bench/web_load.py --database sqlite
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import select

import store as store_bench
from certwatch.store.accounts import add_membership, create_session, create_user
from certwatch.store.database import (
    create_store_engine,
    refresh_statistics,
    session_factory,
)
from certwatch.store.models import TeamRow
from certwatch.web.app import create_app
from certwatch.web.auth import SESSION_COOKIE
from certwatch.web.server import WebServer
from certwatch.web.settings import WebSettings

BASELINE_PATH = "/healthz"
PATHS = (
    "/dashboard",
    "/dashboard?status=critical",
    "/dashboard?page=20",
    "/certificates",
    "/api/endpoints?limit=100",
    "/api/certificates?limit=100",
)
# Requests before the timed ones, so that caches and connections are warm.
WARM_UP = 20
# How long the server may take to fill its port file.
SERVER_START_SECONDS = 60.0


@dataclass(frozen=True)
class Latencies:
    """The latencies of one path, in seconds, and the failed requests."""

    path: str
    seconds: list[float]
    failures: int
    wall_seconds: float

    def percentile(self, share: float) -> float:
        """Return the latency that `share` of the requests did not exceed."""
        ordered = sorted(self.seconds)
        index = min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))
        return ordered[index]


def serve(url: str, port_file: Path) -> None:
    """Run the web service on a free loopback port until SIGTERM.

    The port is written to `port_file` once the socket listens.
    """
    engine = create_store_engine(url)
    sessions = session_factory(engine)
    # The per-user limit would reject most of the load with 429.
    settings = WebSettings(port=0, requests_per_minute=10**9)
    server = WebServer(create_app(sessions, settings), settings)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with server.running(threading.Event()):
        port_file.write_text(str(server.port))
        stop.wait()
    engine.dispose()


def make_user(url: str) -> str:
    """Make a user who owns every team; return a login session token."""
    engine = create_store_engine(url)
    try:
        sessions = session_factory(engine)
        now = datetime.now(UTC)
        with sessions.begin() as session:
            user = create_user(session, "bench@example.test", "unused", now=now)
            # add_membership also changes an existing role, such as the
            # default team's, which the first account owns already.
            for team_id in session.scalars(select(TeamRow.id)).all():
                add_membership(session, user.id, team_id, "owner", now=now)
            return create_session(
                session, user.id, now=now, lifetime=timedelta(hours=1)
            )
    finally:
        engine.dispose()


async def load(
    base: str, token: str, path: str, requests: int, concurrency: int
) -> Latencies:
    """Send `requests` GETs of `path`, `concurrency` at a time."""
    limits = httpx.Limits(max_connections=concurrency)
    cookies = {SESSION_COOKIE: token}
    async with httpx.AsyncClient(
        base_url=base, cookies=cookies, limits=limits, timeout=60
    ) as client:
        for _ in range(WARM_UP):
            (await client.get(path)).raise_for_status()
        queue: asyncio.Queue[None] = asyncio.Queue()
        for _ in range(requests):
            queue.put_nowait(None)
        seconds: list[float] = []
        failures = 0

        async def worker() -> None:
            nonlocal failures
            while not queue.empty():
                queue.get_nowait()
                started = time.perf_counter()
                response = await client.get(path)
                seconds.append(time.perf_counter() - started)
                failures += response.status_code != 200

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return Latencies(path, seconds, failures, wall)


def measure(url: str, requests: int, concurrency: int) -> list[Latencies]:
    """Start the server on the store at `url` and load each path in turn.

    The store first gets the planner statistics that `serve` makes after
    its first cycle, as a store in use has them.
    """
    token = make_user(url)
    engine = create_store_engine(url)
    try:
        refresh_statistics(session_factory(engine))
    finally:
        engine.dispose()
    with tempfile.TemporaryDirectory(prefix="certwatch-load-") as folder:
        port_file = Path(folder) / "port"
        child = subprocess.Popen(
            [sys.executable, __file__, "--serve", url, "--port-file", str(port_file)],
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        try:
            deadline = time.monotonic() + SERVER_START_SECONDS
            while not port_file.exists() or not port_file.read_text():
                if child.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("The web service did not start.")
                time.sleep(0.1)
            base = f"http://127.0.0.1:{port_file.read_text()}"
            return [
                asyncio.run(load(base, token, path, requests, concurrency))
                for path in (BASELINE_PATH, *PATHS)
            ]
        finally:
            child.send_signal(signal.SIGTERM)
            child.wait(timeout=30)


def report(kind: str, results: list[Latencies]) -> dict[str, object]:
    """Print one line per path and return the figures as a document."""
    baseline = results[0].percentile(0.95)
    rows = []
    for result in results:
        p50, p95, p99 = (result.percentile(s) for s in (0.50, 0.95, 0.99))
        rate = len(result.seconds) / result.wall_seconds
        print(
            f"  {result.path:32} p50 {p50 * 1000:7.1f} ms  p95 {p95 * 1000:7.1f} ms"
            f"  p99 {p99 * 1000:7.1f} ms  {rate:6.1f} req/s"
            f"  p95/baseline {p95 / baseline:6.2f}  failed {result.failures}"
        )
        rows.append(
            {
                "path": result.path,
                "p50_ms": p50 * 1000,
                "p95_ms": p95 * 1000,
                "p99_ms": p99 * 1000,
                "mean_ms": statistics.fmean(result.seconds) * 1000,
                "requests_per_second": rate,
                "p95_ratio_to_baseline": p95 / baseline,
                "failures": result.failures,
            }
        )
    return {"database": kind, "paths": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=10_000)
    parser.add_argument("--certificates", type=int, default=5_000)
    parser.add_argument(
        "--database", choices=("sqlite", "postgresql", "both"), default="both"
    )
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--json", action="store_true", help="Print one JSON document.")
    parser.add_argument("--serve", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--port-file", type=Path, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.serve:
        serve(arguments.serve, arguments.port_file)
        return

    documents = []

    def run(kind: str, url: str, filled: store_bench.Fill) -> None:
        print(
            f"{kind}: filled in {filled.seconds:.0f} s; {arguments.requests} "
            f"requests per path, {arguments.concurrency} at a time",
            flush=True,
        )
        latencies = measure(url, arguments.requests, arguments.concurrency)
        documents.append(report(kind, latencies))

    store_bench.each_filled_database(
        arguments.endpoints, arguments.certificates, arguments.database, run
    )
    if arguments.json:
        print(json.dumps(documents, indent=2))


if __name__ == "__main__":
    main()
