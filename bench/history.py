"""Benchmark the inventory commands on a store with months of scan history.

The script fills SQLite files and throwaway PostgreSQL databases with one
synthetic inventory, twice per database. The deep store has every address
scanned every 6 hours for 90 days (about 360 scans). The shallow store, the
baseline, has only the last 2 of those scans. On each store it
times `where` by a fleet's name, `certificates` (the default page and
`--limit 0 --json`), `history` of one endpoint and the write of one batch
of 500 scans. Then it compacts the deep store with `compact_history` and a
cutoff of 30 days, as `certwatch serve` does by default, and times
everything again. Each figure is also given as a ratio to the shallow
baseline of the same run.

The inventory: services of 1 to 12 endpoints, each with its own
certificate, and four fleets (a twentieth of the endpoints each) behind
one wildcard certificate each, so that `where` by a fleet host finds many
places. A fifth of the endpoints resolve to two addresses. A sixth of the
services, and the first fleet, renewed their certificate in the middle of
the history, each endpoint switching within two days of the others. Every
scan of an endpoint times out at all its addresses with a chance of 1 %.

Every observation goes through the store's write path, `record_observations`,
in batches of at most 500 scans of one scan round. `detect_changes` and
`insert_changes` run only for the scans whose leaf differs from the last
leaf seen at that endpoint. By the change rule of `detect_changes` the
other scans give no change, and reading the whole history for every batch
would double the fill. The timed batch write is the transaction of a
monitoring cycle without `release`: `detect_changes`, `record_observations`,
`record_stale_findings` and `insert_changes`, then the commit. Its scans
are the next round's, so each timed run adds 500 scans to the store, after
the read commands of that store are timed.

Usage, from the repository root:

    .venv/bin/python bench/history.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy
from click.testing import CliRunner
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session, sessionmaker

import store as store_bench
from certwatch.cli import cli
from certwatch.monitor.changes import DEFAULT_CHANGE_WINDOW, detect_changes
from certwatch.monitor.retention import DEFAULT_RETENTION
from certwatch.probe.model import ErrorReason, ProbeError
from certwatch.result import Result, Status, status_from
from certwatch.store.changes import insert_changes
from certwatch.store.database import (
    create_store_engine,
    refresh_statistics,
    session_factory,
    upgrade,
)
from certwatch.store.inventory import upsert_endpoint
from certwatch.store.models import ObservationRow
from certwatch.store.observations import CompletedScan, record_observations
from certwatch.store.retention import compact_history
from certwatch.store.stale import record_stale_findings
from certwatch.targets import Endpoint

DOMAIN = "history.test"
SCAN_INTERVAL = timedelta(hours=6)
SCAN_BATCH = 500
SHALLOW_ROUNDS = 2
FLEETS = 4
# Shares of the synthetic inventory: estimates of a typical estate, not
# measured from one.
FLEET_SHARE = 0.05
TWO_ADDRESS_SHARE = 0.2
RENEWAL_SHARE = 0.16
TIMEOUT_SHARE = 0.01
# Scan rounds over which the endpoints of a renewed service switch to the
# new certificate (8 rounds of 6 hours are two days).
ROLLOUT_ROUNDS = 8
# Endpoints per service: (smallest, largest, weight).
SERVICE_SIZES = [(1, 1, 80), (2, 4, 15), (5, 12, 5)]


# --- The plan ----------------------------------------------------------------


@dataclass
class Service:
    """Endpoints that serve one set of names, and their certificate chains.

    `chains` contains (leaf, intermediate) DER pairs, oldest first: two when
    the service renewed at `renewal_round`, else one.
    """

    names: tuple[str, ...]
    hosts: list[str]
    renewal_round: int | None = None
    chains: list[tuple[bytes, bytes]] = field(default_factory=list)


@dataclass(frozen=True)
class PlannedEndpoint:
    """One endpoint, its addresses and what each of its scan rounds showed.

    A round's scan is made `offset` after the round starts. From
    `switch_round` on (never when `None`) it serves the service's newer
    chain. In the rounds of `timeouts` it timed out at every address.
    """

    endpoint: Endpoint
    service: int
    addresses: tuple[str, ...]
    offset: timedelta
    switch_round: int | None
    timeouts: frozenset[int]

    def outcome(self, round_number: int) -> int | None:
        """Return the index of the chain served in a round, `None` for a timeout."""
        if round_number in self.timeouts:
            return None
        if self.switch_round is None or round_number < self.switch_round:
            return 0
        return 1


@dataclass
class Plan:
    """The whole synthetic inventory and its scan rounds."""

    now: datetime
    start: datetime
    rounds: int
    services: list[Service]
    endpoints: list[PlannedEndpoint]

    def scanned_at(self, planned: PlannedEndpoint, round_number: int) -> datetime:
        """Return when an endpoint's scan of a round was made."""
        return self.start + SCAN_INTERVAL * round_number + planned.offset


def make_plan(endpoint_count: int, days: int, rng: random.Random) -> Plan:
    """Split the endpoints into services and plan every scan round."""
    now = datetime.now(UTC)
    rounds = int(timedelta(days=days) / SCAN_INTERVAL)
    fleet_size = max(2, int(endpoint_count * FLEET_SHARE))
    services = [_fleet(number, fleet_size) for number in range(FLEETS)]
    remaining = endpoint_count - FLEETS * fleet_size
    while remaining > 0:
        size = min(remaining, _service_size(rng))
        zone = f"svc{len(services)}.{DOMAIN}"
        hosts = [zone] if size == 1 else [f"h{n}.{zone}" for n in range(size)]
        services.append(Service(names=(f"*.{zone}", zone), hosts=hosts))
        remaining -= size
    for index, service in enumerate(services):
        if index == 0 or (index >= FLEETS and rng.random() < RENEWAL_SHARE):
            service.renewal_round = rng.randrange(int(rounds * 0.3), int(rounds * 0.7))
    endpoints = [
        _planned_endpoint(host, index, service.renewal_round, rounds, rng)
        for index, service in enumerate(services)
        for host in service.hosts
    ]
    start = now - SCAN_INTERVAL * rounds
    return Plan(now, start, rounds, services, endpoints)


def _fleet(number: int, size: int) -> Service:
    zone = f"fleet{number}.{DOMAIN}"
    hosts = [f"n{member}.{zone}" for member in range(size)]
    return Service(names=(f"*.{zone}", zone), hosts=hosts, renewal_round=None)


def _service_size(rng: random.Random) -> int:
    weights = [weight for _, _, weight in SERVICE_SIZES]
    smallest, largest, _ = rng.choices(SERVICE_SIZES, weights)[0]
    return rng.randint(smallest, largest)


def _planned_endpoint(
    host: str,
    service: int,
    renewal_round: int | None,
    rounds: int,
    rng: random.Random,
) -> PlannedEndpoint:
    addresses: tuple[str, ...] = (
        f"172.{rng.randrange(16, 32)}.{rng.randrange(256)}.{rng.randrange(256)}",
    )
    if rng.random() < TWO_ADDRESS_SHARE:
        addresses += (f"fd00::{rng.randrange(1 << 16):x}:{rng.randrange(1 << 16):x}",)
    switch_round = None
    if renewal_round is not None:
        switch_round = renewal_round + rng.randrange(ROLLOUT_ROUNDS)
    timeouts = frozenset(n for n in range(rounds) if rng.random() < TIMEOUT_SHARE)
    return PlannedEndpoint(
        endpoint=Endpoint(target=host, host=host, port=443, server_name=host),
        service=service,
        addresses=addresses,
        offset=SCAN_INTERVAL * rng.random(),
        switch_round=switch_round,
        timeouts=timeouts,
    )


def issue_certificates(plan: Plan, pki: store_bench.Pki, rng: random.Random) -> None:
    """Issue each service's certificate, and a newer one for those that renewed.

    An older certificate expires 30 days after its renewal round, as a
    certificate renewed a month before its expiry does.
    """
    for service in plan.services:
        key = rng.choice(pki.keys["ec256"])
        issuer = rng.choice(pki.issuers)
        not_after = plan.now + timedelta(days=rng.uniform(40, 300))
        if service.renewal_round is not None:
            renewed_at = plan.start + SCAN_INTERVAL * service.renewal_round
            old_end = renewed_at + timedelta(days=30)
            old = _validity(old_end)
            leaf = store_bench.leaf_der(pki, service.names, key, issuer, old)
            service.chains.append((leaf, issuer.der))
            not_after = renewed_at + timedelta(days=90)
        leaf = store_bench.leaf_der(
            pki, service.names, key, issuer, _validity(not_after)
        )
        service.chains.append((leaf, issuer.der))


def _validity(not_after: datetime) -> store_bench.Validity:
    not_after = not_after.replace(microsecond=0)
    return store_bench.Validity(not_after - timedelta(days=90), not_after)


# --- Scans -------------------------------------------------------------------


class ScanMaker:
    """A maker of the plan's completed scans, which reuses each distinct result."""

    def __init__(self, plan: Plan, pki: store_bench.Pki) -> None:
        self.plan = plan
        self.analyser = store_bench.Analyser(pki, plan.now)
        self.results: dict[tuple[int, int | None], tuple[Result, ...]] = {}

    def scan(
        self, index: int, endpoint_id: int, round_number: int, *, final: bool = False
    ) -> CompletedScan:
        """Return the scan of one endpoint in one round.

        With `final` the scan shows the newest chain, as the rounds after the
        planned history do.
        """
        planned = self.plan.endpoints[index]
        outcome = planned.outcome(round_number)
        if final:
            outcome = len(self.plan.services[planned.service].chains) - 1
        results = self.results.get((index, outcome))
        if results is None:
            results = tuple(
                self._result(planned, address, outcome) for address in planned.addresses
            )
            self.results[index, outcome] = results
        return CompletedScan(
            scanned_at=self.plan.scanned_at(planned, round_number),
            results=results,
            endpoint_id=endpoint_id,
        )

    def _result(
        self, planned: PlannedEndpoint, address: str, outcome: int | None
    ) -> Result:
        endpoint = planned.endpoint
        timeout = Result(
            target=endpoint.target,
            status=Status.UNKNOWN,
            error=ProbeError(ErrorReason.TIMEOUT, "The TLS handshake timed out."),
            host=endpoint.host,
            port=endpoint.port,
            server_name=endpoint.server_name,
            address=address,
            protocol=endpoint.protocol,
        )
        if outcome is None:
            return timeout
        chain = self.plan.services[planned.service].chains[outcome]
        report = self.analyser.report(chain, endpoint)
        return replace(
            timeout,
            status=status_from(report.findings),
            error=None,
            findings=report.findings,
            report=report,
            tls_version="TLSv1.3",
        )


# --- Filling a store ---------------------------------------------------------


@dataclass
class Store:
    """A filled store: its URL, endpoint ids (in plan order) and next round."""

    kind: str
    url: str
    ids: list[int]
    next_round: int
    fill_seconds: float
    written_batches: int = 0


def fill(kind: str, url: str, plan: Plan, maker: ScanMaker, rounds: range) -> Store:
    """Migrate a new database, add the endpoints and write the scan `rounds`."""
    started = time.perf_counter()
    upgrade(url)
    engine = create_store_engine(url)
    try:
        sessions = session_factory(engine)
        with sessions.begin() as session:
            ids = [
                upsert_endpoint(session, planned.endpoint, now=plan.start).record.id
                for planned in plan.endpoints
            ]
        for round_number in rounds:
            _write_round(sessions, plan, maker, ids, round_number)
            if round_number % 40 == 0:
                _progress(f"{kind}: wrote round {round_number + 1} of {rounds.stop}")
        seconds = time.perf_counter() - started
        settle(engine)
    finally:
        engine.dispose()
    return Store(kind, url, ids, rounds.stop, seconds)


def _write_round(
    sessions: sessionmaker[Session],
    plan: Plan,
    maker: ScanMaker,
    ids: list[int],
    round_number: int,
) -> None:
    """Write one round's scans in batches, in the order they were made."""
    order = sorted(range(len(ids)), key=lambda i: plan.endpoints[i].offset)
    for start in range(0, len(order), SCAN_BATCH):
        chunk = order[start : start + SCAN_BATCH]
        scans = [maker.scan(i, ids[i], round_number) for i in chunk]
        changing = [
            scan
            for i, scan in zip(chunk, scans, strict=True)
            if _leaf_switched(plan.endpoints[i], round_number)
        ]
        with sessions.begin() as session:
            changes = detect_changes(session, changing, window=DEFAULT_CHANGE_WINDOW)
            record_observations(session, scans)
            insert_changes(session, changes)


def _leaf_switched(planned: PlannedEndpoint, round_number: int) -> bool:
    """Tell whether a round is the first to show the newer leaf.

    Only such a scan gives a change: the other scans show the last leaf seen
    at their addresses, or none after a timeout, and a place's first leaf is
    no change.
    """
    if planned.switch_round is None:
        return False
    first = planned.switch_round
    while first in planned.timeouts:
        first += 1
    return round_number == first


def settle(engine: Engine) -> None:
    """Give the planner statistics, as autovacuum or `certwatch serve` would.

    PostgreSQL gets `VACUUM ANALYZE`, which autovacuum runs after large
    writes or deletes. SQLite gets `refresh_statistics`, which `serve` runs
    after its first cycle and then daily.
    """
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            connection.execution_options(isolation_level="AUTOCOMMIT").execute(
                text("VACUUM ANALYZE")
            )
        return
    refresh_statistics(session_factory(engine))
    with engine.connect() as connection:
        connection.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))


# --- Timing ------------------------------------------------------------------


@dataclass(frozen=True)
class Targets:
    """The arguments of the timed commands."""

    fleet_host: str
    history_target: str


def pick_targets(plan: Plan) -> Targets:
    """Pick a host of the renewed fleet and a renewed endpoint with two addresses."""
    fleet_host = plan.services[0].hosts[1]
    renewed = [
        planned
        for planned in plan.endpoints
        if planned.switch_round is not None and len(planned.addresses) == 2
    ]
    chosen = renewed[0] if renewed else plan.endpoints[0]
    return Targets(fleet_host, chosen.endpoint.target)


def commands(targets: Targets) -> list[tuple[str, ...]]:
    """Return the timed commands, each as its argument list."""
    return [
        ("where", targets.fleet_host),
        ("certificates",),
        ("certificates", "--limit", "0", "--json"),
        ("history", targets.history_target),
    ]


def run_command(url: str, args: tuple[str, ...]) -> str:
    """Run `certwatch ARGS` in-process and return its output.

    Raises:
        SystemExit: the command failed.
    """
    outcome = CliRunner().invoke(cli, list(args), env={"CERTWATCH_DATABASE_URL": url})
    if outcome.exit_code != 0:
        raise SystemExit(
            f"certwatch {' '.join(args)} failed with exit code "
            f"{outcome.exit_code}: {outcome.output[-2000:]}"
        )
    return outcome.stdout


def listed_places(url: str, args: tuple[str, ...]) -> tuple[int, str]:
    """Run the JSON form of a command and return its places and its document.

    The document leaves out `listed_at` and each certificate's `days_left`,
    which change with the clock, so that two stores that list the same
    places give the same text, even when compaction took minutes.
    """
    json_args = args if "--json" in args else (*args, "--json")
    document = json.loads(run_command(url, json_args))
    document.pop("listed_at", None)
    for item in document.get("certificates", []):
        item.pop("days_left", None)
    if "sources" in document:
        places = sum(len(source["served"]) for source in document["sources"])
    else:
        places = sum(len(item["deployments"]) for item in document["certificates"])
    return places, json.dumps(document, sort_keys=True)


def _output_length(url: str, args: tuple[str, ...]) -> Callable[[], int]:
    """Return a runner of `certwatch ARGS` that returns the output's length."""
    return lambda: len(run_command(url, args))


def write_batch(
    store: Store, plan: Plan, maker: ScanMaker, sessions: sessionmaker[Session]
) -> int:
    """Write the next 500 scans as a monitoring cycle does, and commit.

    The scans continue the rounds after the store's history, endpoint by
    endpoint in plan order, so each endpoint is scanned once per round.
    """
    count = len(store.ids)
    first = store.written_batches * SCAN_BATCH
    store.written_batches += 1
    scans = []
    for position in range(first, first + SCAN_BATCH):
        index = position % count
        round_number = store.next_round + position // count
        scans.append(maker.scan(index, store.ids[index], round_number, final=True))
    finished_at = max(scan.scanned_at for scan in scans)
    with sessions.begin() as session:
        changes = detect_changes(session, scans, window=DEFAULT_CHANGE_WINDOW)
        written = record_observations(session, scans)
        record_stale_findings(session, scans, now=finished_at)
        insert_changes(session, changes)
    return written


@dataclass(frozen=True)
class Figure:
    """The run times of one operation and the places its JSON form listed.

    For the batch write, `places` is the number of observations written.
    """

    operation: str
    seconds: list[float]
    places: int

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def measure(
    store: Store, plan: Plan, maker: ScanMaker, targets: Targets, repeat: int
) -> list[Figure]:
    """Time the commands and then the batch write on one store."""
    figures = []
    for args in commands(targets):
        places, _ = listed_places(store.url, args)
        timing = store_bench.time_operation(
            " ".join(args), _output_length(store.url, args), repeat
        )
        figures.append(Figure(timing.operation, timing.seconds, places))
    engine = create_store_engine(store.url)
    try:
        sessions = session_factory(engine)
        timing = store_bench.time_operation(
            f"write {SCAN_BATCH} scans",
            lambda: write_batch(store, plan, maker, sessions),
            repeat,
        )
    finally:
        engine.dispose()
    figures.append(Figure(timing.operation, timing.seconds, timing.rows))
    return figures


def count_observations(url: str) -> int:
    """Return the number of observations in the store."""
    engine = create_store_engine(url)
    try:
        with engine.connect() as connection:
            query = select(func.count()).select_from(ObservationRow)
            return int(connection.execute(query).scalar_one())
    finally:
        engine.dispose()


def json_documents(url: str, targets: Targets) -> dict[str, str]:
    """Return the JSON document of each timed command, by command."""
    return {" ".join(args): listed_places(url, args)[1] for args in commands(targets)}


def compact(store: Store, targets: Targets, now: datetime) -> dict[str, Any]:
    """Compact the store's history as `serve` does, then settle it; time both.

    The JSON documents of the timed commands are compared before and
    after, because compaction must not change any of them.
    """
    before = json_documents(store.url, targets)
    engine = create_store_engine(store.url)
    try:
        started = time.perf_counter()
        result = compact_history(
            session_factory(engine), cutoff=now - DEFAULT_RETENTION
        )
        seconds = time.perf_counter() - started
        started = time.perf_counter()
        settle(engine)
        settle_seconds = time.perf_counter() - started
    finally:
        engine.dispose()
    after = json_documents(store.url, targets)
    return {
        "seconds": seconds,
        "settle_seconds": settle_seconds,
        "examined": result.examined,
        "removed": result.removed,
        "places": result.places,
        "changed_answers": [
            command
            for command, document in after.items()
            if before[command] != document
        ],
    }


# --- The run -----------------------------------------------------------------


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        description="Time the inventory commands on a store with deep history, "
        "before and after compaction, against a shallow store."
    )
    parser.add_argument(
        "--endpoints",
        type=int,
        default=2000,
        help="Number of endpoints (default 2,000).",
    )
    parser.add_argument(
        "--days",
        type=int,
        default=90,
        help="Days of deep history, one scan every 6 hours (default 90).",
    )
    parser.add_argument(
        "--database",
        choices=("sqlite", "postgresql", "both"),
        default="both",
        help="Which databases to fill and time (default: both).",
    )
    parser.add_argument(
        "--postgres-server",
        default=store_bench.DEFAULT_SERVER_URL,
        help="PostgreSQL server URL without a database; throwaway databases "
        "are created there and dropped at the end (default: "
        f"{store_bench.DEFAULT_SERVER_URL}).",
    )

    parser.add_argument("--repeat", type=int, default=5, help="Timed runs (default 5).")
    parser.add_argument("--seed", type=int, default=2026, help="Random seed.")
    parser.add_argument("--json", action="store_true", help="Print one JSON document.")
    arguments = parser.parse_args(argv)

    if arguments.endpoints < SCAN_BATCH:
        parser.error(f"--endpoints must be at least {SCAN_BATCH}.")
    if arguments.days <= DEFAULT_RETENTION.days:
        parser.error(f"--days must be above {DEFAULT_RETENTION.days}.")
    if arguments.repeat < 1:
        parser.error("--repeat must be at least 1.")
    return arguments


def opened_database(
    kind: str, arguments: argparse.Namespace
) -> AbstractContextManager[str]:
    """Return a context manager that yields the URL of a new, empty database."""
    if kind == "sqlite":
        return store_bench.sqlite_database()
    return store_bench.postgres_database(arguments.postgres_server)


def run_database(
    kind: str, arguments: argparse.Namespace, plan: Plan, maker: ScanMaker
) -> dict[str, Any]:
    """Fill a shallow and a deep store of `kind`, time both, compact the deep one."""
    targets = pick_targets(plan)
    shallow_rounds = range(plan.rounds - SHALLOW_ROUNDS, plan.rounds)
    with opened_database(kind, arguments) as shallow_url:
        shallow = fill(kind, shallow_url, plan, maker, shallow_rounds)
        _progress(f"{kind}: shallow store filled in {shallow.fill_seconds:.0f} s")
        shallow_observations = count_observations(shallow_url)
        baseline = measure(shallow, plan, maker, targets, arguments.repeat)
        version = server_version(shallow_url)
    with opened_database(kind, arguments) as deep_url:
        deep = fill(kind, deep_url, plan, maker, range(plan.rounds))
        _progress(f"{kind}: deep store filled in {deep.fill_seconds:.0f} s")
        deep_observations = count_observations(deep_url)
        before = measure(deep, plan, maker, targets, arguments.repeat)
        compaction = compact(deep, targets, datetime.now(UTC))
        _progress(f"{kind}: compacted in {compaction['seconds']:.0f} s")
        compacted_observations = count_observations(deep_url)
        after = measure(deep, plan, maker, targets, arguments.repeat)
    return {
        "database": kind,
        "version": version,
        "fill_seconds": {"shallow": shallow.fill_seconds, "deep": deep.fill_seconds},
        "observations": {
            "shallow": shallow_observations,
            "deep": deep_observations,
            "compacted": compacted_observations,
        },
        "compaction": compaction,
        "timings": _timings(baseline, before, after),
    }


def _timings(
    baseline: list[Figure], before: list[Figure], after: list[Figure]
) -> list[dict[str, Any]]:
    rows = []
    for shallow, deep, compacted in zip(baseline, before, after, strict=True):
        rows.append(
            {
                "operation": shallow.operation,
                "shallow": {
                    "median_seconds": shallow.median,
                    "seconds": shallow.seconds,
                },
                "deep": {"median_seconds": deep.median, "seconds": deep.seconds},
                "compacted": {
                    "median_seconds": compacted.median,
                    "seconds": compacted.seconds,
                },
                "places": {
                    "shallow": shallow.places,
                    "deep": deep.places,
                    "compacted": compacted.places,
                },
            }
        )
    return rows


def server_version(url: str) -> str:
    """Return the version of the database server or of the SQLite library."""
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as connection:
            if engine.dialect.name == "postgresql":
                query = text("SHOW server_version")
            else:
                query = text("SELECT sqlite_version()")
            return str(connection.execute(query).scalar_one())
    finally:
        engine.dispose()


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def print_summary(document: dict[str, Any]) -> None:
    """Print the figures as Markdown tables."""
    print(
        f"{document['endpoints']:,} endpoints, {document['addresses']:,} addresses, "
        f"{document['rounds']} scan rounds of 6 hours in the deep history"
    )
    for found in document["databases"]:
        observations = found["observations"]
        compaction = found["compaction"]
        changed = ", ".join(compaction["changed_answers"])
        print()
        print(
            f"{found['database']} {found['version']}: fill "
            f"{found['fill_seconds']['deep']:.0f} s (deep), "
            f"{found['fill_seconds']['shallow']:.1f} s (shallow); observations "
            f"{observations['deep']:,} deep, {observations['compacted']:,} "
            f"compacted, {observations['shallow']:,} shallow; compaction "
            f"{compaction['seconds']:.1f} s, removed {compaction['removed']:,}, "
            f"then {compaction['settle_seconds']:.1f} s of statistics; output "
            f"changed by compaction: {changed or 'none'}"
        )
        print()
        print(
            "| operation | shallow s | deep s | deep / shallow | compacted s "
            "| compacted / shallow | places (shallow, deep, compacted) |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for item in found["timings"]:
            print(_summary_row(item))


def _summary_row(item: dict[str, Any]) -> str:
    shallow = item["shallow"]["median_seconds"]
    deep = item["deep"]["median_seconds"]
    compacted = item["compacted"]["median_seconds"]
    places = item["places"]
    return (
        f"| `{item['operation']}` | {shallow:.3f} | {deep:.3f} | "
        f"{deep / shallow:.1f} | {compacted:.3f} | {compacted / shallow:.1f} | "
        f"{places['shallow']:,}, {places['deep']:,}, {places['compacted']:,} |"
    )


def main(argv: list[str] | None = None) -> None:
    arguments = parse_arguments(argv)
    started = time.perf_counter()
    rng = random.Random(arguments.seed)
    plan = make_plan(arguments.endpoints, arguments.days, rng)
    pki = store_bench.make_pki(plan.now)
    issue_certificates(plan, pki, rng)
    maker = ScanMaker(plan, pki)
    _progress(f"prepared the plan in {time.perf_counter() - started:.0f} s")
    kinds = (
        ["sqlite", "postgresql"]
        if arguments.database == "both"
        else [arguments.database]
    )
    document = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "endpoints": len(plan.endpoints),
        "addresses": sum(len(planned.addresses) for planned in plan.endpoints),
        "rounds": plan.rounds,
        "retention_days": DEFAULT_RETENTION.days,
        "databases": [run_database(kind, arguments, plan, maker) for kind in kinds],
    }
    if arguments.json:
        print(json.dumps(document, indent=2))
    else:
        print_summary(document)


if __name__ == "__main__":
    main()
