"""Benchmark the certwatch scan engine against a bare asyncio TLS client.

The script makes a root, an intermediate and one ECDSA P-256 leaf per
endpoint. A child process serves them on 127.0.0.1, with one port per leaf or
one port that picks the leaf by SNI. Two clients then scan every endpoint at
the same concurrency. `baseline` only completes each handshake and
reads the leaf. `certwatch` runs the full engine, `check_endpoints`, with
trust path, host name and findings for every endpoint. Each measured scan
runs in a fresh child process, so its peak memory belongs to that client alone.

One warm-up scan per client is discarded. Then the clients alternate for
`--repeat` rounds, and the median wall time of each gives its endpoints per
second. Every scan must return `ok` for every endpoint, or the script stops,
so a broken setup cannot produce a fast but wrong figure.

Usage, from the repository root:

    .venv/bin/python bench/scan.py --endpoints 2000 --mode port
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from certs import BenchPki, server_name, write_bench_pki
from clients import CLIENTS, Job, Measurement, measurement_from_json
from servers import MODES, RunningServers, run_servers

MAX_ENDPOINTS = 5000
TARGET_RATIO = 0.9
TARGET_PEAK_RSS_MIB = 150.0

BENCH_DIR = Path(__file__).resolve().parent
SOURCE_DIR = BENCH_DIR.parent / "src"


@dataclass(frozen=True)
class Run:
    """One measured scan and the server CPU time spent while it ran."""

    measurement: Measurement
    server_cpu_seconds: float


@dataclass(frozen=True)
class Summary:
    """The median figures of one client over the measured rounds.

    `peak_rss_mib` is the highest peak over the rounds. The CPU shares are
    CPU seconds per wall second of the scan, so 1.0 means one busy core.
    """

    endpoints_per_second: float
    median_seconds: float
    peak_rss_mib: float
    client_cpu_share: float
    server_cpu_share: float


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and check the command line."""
    parser = argparse.ArgumentParser(
        description="Compare certwatch's scan engine with a bare asyncio client."
    )
    parser.add_argument(
        "--endpoints",
        type=int,
        default=2000,
        help=f"number of TLS endpoints to serve and scan, 1 to {MAX_ENDPOINTS}",
    )
    parser.add_argument(
        "--mode",
        choices=MODES,
        default="port",
        help="serve one port per endpoint, or one port that picks the leaf by SNI",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=100,
        help="handshakes in flight at once, the same for both clients",
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="measured rounds after the warm-up"
    )
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="deadline per handshake in seconds"
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON document instead of text"
    )
    args = parser.parse_args(argv)

    if not 1 <= args.endpoints <= MAX_ENDPOINTS:
        parser.error(
            f"--endpoints {args.endpoints} is out of range 1 to {MAX_ENDPOINTS}."
        )
    if args.concurrency < 1 or args.repeat < 1 or args.timeout <= 0:
        parser.error("--concurrency, --repeat and --timeout must be positive.")
    return args


def run_client(client: str, job: Job, servers: RunningServers) -> Run:
    """Scan once with `client` in a fresh child and check every result is ok."""
    environment = dict(os.environ)
    search_path = [str(SOURCE_DIR), environment.get("PYTHONPATH", "")]
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, search_path))
    # A scan that needs longer than every handshake timing out in turn is stuck.
    limit = 60 + job.timeout * (len(job.endpoints) / job.concurrency + 1)

    cpu_before = servers.cpu_seconds()
    completed = subprocess.run(
        [sys.executable, str(BENCH_DIR / "clients.py"), client],
        input=json.dumps(asdict(job)).encode(),
        stdout=subprocess.PIPE,
        env=environment,
        timeout=limit,
        check=False,
    )
    server_cpu = servers.cpu_seconds() - cpu_before
    if completed.returncode != 0:
        raise SystemExit(
            f"The {client} client failed with exit code {completed.returncode}."
        )

    measurement = measurement_from_json(json.loads(completed.stdout))
    if measurement.outcomes != {"ok": len(job.endpoints)}:
        raise SystemExit(
            f"The {client} client did not get ok for all {len(job.endpoints)} "
            f"endpoints: {measurement.outcomes}; first problems: "
            f"{measurement.problems}."
        )
    return Run(measurement=measurement, server_cpu_seconds=server_cpu)


def measure(job: Job, servers: RunningServers, repeat: int) -> list[Run]:
    """Warm up each client once, then run `repeat` rounds in alternating order."""
    for client in CLIENTS:
        _progress(f"warm-up: {client}")
        run_client(client, job, servers)

    runs = []
    for round_index in range(repeat):
        order = CLIENTS if round_index % 2 == 0 else CLIENTS[::-1]
        for client in order:
            run = run_client(client, job, servers)
            _progress(
                f"round {round_index + 1}: {client} {run.measurement.elapsed:.2f} s"
            )
            runs.append(run)
    return runs


def summarise(runs: list[Run], client: str) -> Summary:
    """Reduce the rounds of one client to medians and the highest peak RSS."""
    own = [run for run in runs if run.measurement.client == client]
    elapsed = statistics.median(run.measurement.elapsed for run in own)
    endpoints = own[0].measurement.endpoints
    return Summary(
        endpoints_per_second=endpoints / elapsed,
        median_seconds=elapsed,
        peak_rss_mib=max(run.measurement.peak_rss_kib for run in own) / 1024,
        client_cpu_share=statistics.median(
            run.measurement.cpu_seconds / run.measurement.elapsed for run in own
        ),
        server_cpu_share=statistics.median(
            run.server_cpu_seconds / run.measurement.elapsed for run in own
        ),
    )


def describe_machine() -> dict[str, Any]:
    """Collect the facts that a reader needs to compare figures across machines."""
    from cryptography.hazmat.backends.openssl.backend import backend

    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "ssl_openssl": ssl.OPENSSL_VERSION,
        "cryptography_openssl": backend.openssl_version_text(),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def build_job(pki: BenchPki, ports: tuple[int, ...], args: argparse.Namespace) -> Job:
    """Pair each leaf's server name with the port that serves it."""
    endpoints = [
        (server_name(index), ports[index] if args.mode == "port" else ports[0])
        for index in range(args.endpoints)
    ]
    return Job(
        endpoints=endpoints,
        concurrency=args.concurrency,
        timeout=args.timeout,
        root_der=str(pki.root_der),
    )


def report(args: argparse.Namespace, runs: list[Run]) -> dict[str, Any]:
    """Build the JSON document: settings, machine, every round and the summary."""
    summaries = {client: summarise(runs, client) for client in CLIENTS}
    ratio = (
        summaries["certwatch"].endpoints_per_second
        / summaries["baseline"].endpoints_per_second
    )
    peak_rss = summaries["certwatch"].peak_rss_mib
    return {
        "command": " ".join(sys.orig_argv),
        "endpoints": args.endpoints,
        "mode": args.mode,
        "concurrency": args.concurrency,
        "repeat": args.repeat,
        "timeout": args.timeout,
        "machine": describe_machine(),
        "runs": [
            {**asdict(run.measurement), "server_cpu_seconds": run.server_cpu_seconds}
            for run in runs
        ],
        "summary": {client: asdict(summary) for client, summary in summaries.items()},
        "ratio": ratio,
        "targets": {
            "ratio": TARGET_RATIO,
            "ratio_met": ratio >= TARGET_RATIO,
            "peak_rss_mib": TARGET_PEAK_RSS_MIB,
            "peak_rss_met": peak_rss < TARGET_PEAK_RSS_MIB,
        },
    }


def print_text(document: dict[str, Any]) -> None:
    """Print the summary as a small table with the verdict on both targets."""
    print(
        f"{document['endpoints']} endpoints by {document['mode']}, concurrency "
        f"{document['concurrency']}, median of {document['repeat']} rounds"
    )
    print(
        f"{'client':<10} {'endpoints/s':>12} {'median s':>9} {'peak mem MiB':>13} "
        f"{'client CPU':>11} {'server CPU':>11}"
    )
    for client, summary in document["summary"].items():
        print(
            f"{client:<10} {summary['endpoints_per_second']:>12.0f} "
            f"{summary['median_seconds']:>9.2f} {summary['peak_rss_mib']:>13.1f} "
            f"{summary['client_cpu_share']:>10.0%} {summary['server_cpu_share']:>10.0%}"
        )

    targets = document["targets"]
    verdict = {True: "met", False: "not met"}
    print(
        f"ratio certwatch/baseline: {document['ratio']:.3f} "
        f"(target {targets['ratio']}: {verdict[targets['ratio_met']]})"
    )
    print(
        f"certwatch peak memory: "
        f"{document['summary']['certwatch']['peak_rss_mib']:.1f} "
        f"MiB (target under {targets['peak_rss_mib']:.0f}: "
        f"{verdict[targets['peak_rss_met']]})"
    )


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    """Run the whole benchmark and print its figures."""
    args = parse_arguments(argv)
    with tempfile.TemporaryDirectory(prefix="certwatch-bench-") as directory:
        _progress(f"writing {args.endpoints} leaf certificates to {directory}")
        pki = write_bench_pki(Path(directory), args.endpoints, datetime.now(UTC))

        _progress(f"starting the TLS server child ({args.mode} mode)")
        with run_servers(pki, args.mode, args.concurrency) as servers:
            runs = measure(build_job(pki, servers.ports, args), servers, args.repeat)

    document = report(args, runs)
    if args.json:
        print(json.dumps(document, indent=2))
    else:
        print_text(document)


def _exit_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    # SystemExit unwinds the `with` blocks, so the server child is stopped and
    # the certificate folder removed, as after Ctrl-C.
    sys.exit(128 + signum)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        main()
    except KeyboardInterrupt:
        print("Interrupted; the TLS server child was stopped.", file=sys.stderr)
        sys.exit(130)
