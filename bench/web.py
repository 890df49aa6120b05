"""Time GET /metrics of the web service on the store benchmark's inventory.

The script fills a store as `bench/store.py` does (100,000 endpoints and
50,000 certificates by default), then times, on the same data:

- the baseline: prometheus-client writing the exposition text of the
  metrics from a snapshot already in memory, the part of a scrape that any
  exporter of these series pays;
- certwatch: a whole scrape, `GET /metrics` over HTTP on loopback from the
  running web service, which reads the store, builds the snapshot and
  writes the same text.

It reports the median of `--repeat` runs after one warm-up, and the ratio
certwatch/baseline. Usage, from the repository root:

    .venv/bin/python bench/web.py --database sqlite
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

import httpx
from prometheus_client.exposition import generate_latest

import store as store_bench
from certwatch.store.database import create_store_engine, session_factory
from certwatch.web.app import create_app
from certwatch.web.collector import SnapshotCollector, read_snapshot
from certwatch.web.server import WebServer
from certwatch.web.settings import WebSettings

T = TypeVar("T")


def timed(run: Callable[[], T], repeat: int) -> tuple[float, float, float, T]:
    """Run once to warm up, then `repeat` times; return median, min, max, result."""
    result = run()
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = run()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), min(seconds), max(seconds), result


def measure(url: str, repeat: int) -> None:
    """Print the baseline, the scrape and their ratio for the store at `url`."""
    engine = create_store_engine(url)
    sessions = session_factory(engine)
    try:
        with sessions() as session:
            snapshot = read_snapshot(session, now=datetime.now(UTC))
        base, base_low, base_high, body = timed(
            lambda: generate_latest(SnapshotCollector(snapshot)), repeat
        )
        print(
            f"  baseline, exposition from memory: {base:.2f} s "
            f"({base_low:.2f} to {base_high:.2f}), {len(body) / 2**20:.1f} MiB, "
            f"{len(snapshot.deployments):,} deployments"
        )

        settings = WebSettings(port=0)
        server = WebServer(create_app(sessions, settings), settings)
        with (
            server.running(threading.Event()),
            httpx.Client(timeout=300) as client,
        ):
            address = f"http://{server.host}:{server.port}/metrics"

            def scrape() -> int:
                response = client.get(address, headers={"Accept-Encoding": "identity"})
                response.raise_for_status()
                return len(response.content)

            full, full_low, full_high, size = timed(scrape, repeat)
        print(
            f"  certwatch, GET /metrics: {full:.2f} s ({full_low:.2f} to "
            f"{full_high:.2f}), {size / 2**20:.1f} MiB"
        )
        print(f"  ratio certwatch/baseline: {full / base:.2f}")
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=100_000)
    parser.add_argument("--certificates", type=int, default=50_000)
    parser.add_argument(
        "--database", choices=("sqlite", "postgresql", "both"), default="both"
    )
    parser.add_argument("--repeat", type=int, default=3)
    arguments = parser.parse_args()

    def run(kind: str, url: str, filled: store_bench.Fill) -> None:
        print(f"{kind}: filled in {filled.seconds:.0f} s", flush=True)
        measure(url, arguments.repeat)

    store_bench.each_filled_database(
        arguments.endpoints, arguments.certificates, arguments.database, run
    )


if __name__ == "__main__":
    main()
