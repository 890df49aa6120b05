"""Benchmark the inventory commands on a store of 100,000 endpoints.

The script fills a fresh SQLite file and a throwaway PostgreSQL database with
the same synthetic inventory, then times the read paths of the inventory
commands on each: `list --expiring 30`, `certificates`, `where` (by name and
by fingerprint prefix) and `claim_due_endpoints`, the query behind
`run --once`.

The inventory is made of real certificates. One root and four intermediates
issue 50,000 distinct leaves, with not_after spread over the next 400 days
and about 2 % expired. The leaves belong to services: most services run on
one endpoint, some on up to 60 endpoints behind one wildcard certificate, and
one fleet of 1,000 endpoints shares a wildcard certificate. Every tenth
service or so is part-way through a renewal: a newer certificate for the same
names reached all addresses, or only some of them, which gives
`stale_deployment` findings. A fifth of the endpoints resolve to two
addresses. Each endpoint was scanned twice, six hours apart, and 2 % failed
their latest scan with a time-out.

The chains are analysed by `analyze_chain`, as a scan does, and written
through the store's write path of a monitoring cycle (`detect_changes`,
`record_observations` and `insert_changes`, in batches of 500 scans). Only
the endpoint rows are inserted in bulk, with the same columns that
`upsert_endpoint` writes and the schedule that `release` would set, because
100,000 upserts one by one take minutes.

Each command runs in-process through click's `CliRunner`, as the `certwatch`
executable runs it, including opening the store and rendering the output.
Then it runs again as a new `certwatch` process, which adds interpreter
start-up and the imports of the command's modules. `python -c pass` is timed
in the same run as the floor of any process. After one warm-up run, the
median of `--repeat` runs is reported.

On SQLite the store first gets the planner statistics that `certwatch serve`
makes after its first cycle (`refresh_statistics`). `--no-statistics` skips
them, as in a store that only `run --once` has written.

Usage, from the repository root:

    .venv/bin/python bench/store.py
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from psycopg import sql
from sqlalchemy import Engine, insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from certwatch.cli import cli
from certwatch.commands.listing import DEFAULT_LIMIT, list_sources
from certwatch.monitor.changes import DEFAULT_CHANGE_WINDOW, detect_changes
from certwatch.probe.model import ErrorReason, ProbeError
from certwatch.result import Result, Status, status_from
from certwatch.store.changes import insert_changes
from certwatch.store.database import (
    create_store_engine,
    refresh_statistics,
    session_factory,
    upgrade,
)
from certwatch.store.deployments import served_certificates
from certwatch.store.inventory import (
    DEFAULT_INTERVAL,
    InventoryFilter,
    ensure_team,
)
from certwatch.store.models import EndpointRow, EndpointTagRow
from certwatch.store.observations import CompletedScan, record_observations
from certwatch.store.schedule import (
    SchedulePolicy,
    claim_due_endpoints,
    next_scan_time,
)
from certwatch.store.stale import stale_deployments
from certwatch.targets import Endpoint
from certwatch.x509.analyze import analyze_chain
from certwatch.x509.model import AnalysisPolicy, ChainReport

TARGET_SECONDS = 1.0
DEFAULT_SERVER_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/"
DOMAIN = "bench.test"
FLEET_SIZE = 1000
FLEET_NAME = f"*.fleet.{DOMAIN}"
SCAN_BATCH = 500
CLAIM_LIMIT = 500
CLAIM_LEASE = timedelta(minutes=5)
EXPIRING_DAYS = 30

TEAMS = [f"team-{number:02d}" for number in range(1, 21)]
TAGS = ["prod", "staging", "dmz", "internal", "pci"]

# Shares of the synthetic inventory. Each is an estimate of a typical
# corporate estate, not a measured one.
EXPIRED_SHARE = 0.02
TWO_ADDRESS_SHARE = 0.2
FAILED_SHARE = 0.02
DISABLED_SHARE = 0.01
PARTIAL_ROLLOUT_SHARE = 0.3
KEY_REUSE_SHARE = 0.3
# Endpoints per service: (smallest, largest, weight).
SERVICE_SIZES = [(1, 1, 76), (2, 2, 10), (3, 3, 5), (4, 10, 7), (11, 40, 2)]

RootKey = ec.EllipticCurvePrivateKey
LeafKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


# --- Certificates ---------------------------------------------------------


@dataclass(frozen=True)
class Issuer:
    """An intermediate CA: its certificate, key and DER."""

    certificate: x509.Certificate
    key: RootKey
    der: bytes


@dataclass
class Pki:
    """The root, the intermediates and the pools of leaf keys by key type."""

    root_der: bytes
    issuers: list[Issuer]
    keys: dict[str, list[LeafKey]]


def make_pki(now: datetime) -> Pki:
    """Make one root, four intermediates and a small pool of leaf keys.

    Leaf keys are shared between certificates, because generating 50,000
    keys (RSA ones especially) would take longer than the rest of the fill.
    Of the key, the store reads only its type, size and `spki_sha256`.
    """
    root_key = ec.generate_private_key(ec.SECP384R1())
    root = _ca_certificate("Bench Root", root_key, None, root_key, now)
    issuers = []
    for name in ("Bench CA E1", "Bench CA E2", "Bench CA E3", "Bench CA E4"):
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = _ca_certificate(name, key, root, root_key, now)
        issuers.append(
            Issuer(
                certificate, key, certificate.public_bytes(serialization.Encoding.DER)
            )
        )
    keys: dict[str, list[LeafKey]] = {
        "ec256": [ec.generate_private_key(ec.SECP256R1()) for _ in range(48)],
        "ec384": [ec.generate_private_key(ec.SECP384R1()) for _ in range(8)],
        "rsa": [
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            for _ in range(8)
        ],
    }
    root_der = root.public_bytes(serialization.Encoding.DER)
    return Pki(root_der=root_der, issuers=issuers, keys=keys)


def _ca_certificate(
    name: str,
    key: RootKey,
    issuer: x509.Certificate | None,
    issuer_key: RootKey,
    now: datetime,
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = _builder(
        subject,
        key,
        issuer,
        not_before=now - timedelta(days=365),
        not_after=now + timedelta(days=3650),
    ).add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    usage = _key_usage(signing=False, certificates=True)
    return builder.add_extension(usage, critical=True).sign(issuer_key, hashes.SHA256())


def leaf_der(
    pki: Pki, names: Sequence[str], key: LeafKey, issuer: Issuer, validity: Validity
) -> bytes:
    """Issue a server certificate for `names` (the first is the subject CN)."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    builder = (
        _builder(
            subject,
            key,
            issuer.certificate,
            not_before=validity.not_before,
            not_after=validity.not_after,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(_key_usage(signing=True, certificates=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(name) for name in names]),
            critical=False,
        )
    )
    certificate = builder.sign(issuer.key, hashes.SHA256())
    return certificate.public_bytes(serialization.Encoding.DER)


def _builder(
    subject: x509.Name,
    key: RootKey | LeafKey,
    issuer: x509.Certificate | None,
    *,
    not_before: datetime,
    not_after: datetime,
) -> x509.CertificateBuilder:
    public_key = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject if issuer is None else issuer.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False
        )
    )
    if issuer is None:
        return builder
    identifier = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    return builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
            identifier.value
        ),
        critical=False,
    )


def _key_usage(*, signing: bool, certificates: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=certificates,
        crl_sign=certificates,
        encipher_only=False,
        decipher_only=False,
    )


# --- The inventory plan ----------------------------------------------------


@dataclass(frozen=True)
class Validity:
    """The validity period of one leaf, in whole seconds."""

    not_before: datetime
    not_after: datetime


@dataclass
class Service:
    """Endpoints that serve one set of names, and the certificates for it.

    `chains` lists (leaf, intermediate) DER pairs, oldest leaf first: one,
    or two during a renewal. `rollout` is the share of addresses that serve
    the newer one in the latest scan (1.0 for a completed renewal, `None`
    without renewal).
    """

    names: tuple[str, ...]
    endpoints: list[Endpoint]
    chains: list[tuple[bytes, bytes]] = field(default_factory=list)
    rollout: float | None = None


@dataclass(frozen=True)
class PlannedEndpoint:
    """One endpoint, its addresses, owner and the times of its two scans.

    `failed` endpoints timed out at every address in their latest scan.
    """

    endpoint: Endpoint
    service: int
    addresses: tuple[str, ...]
    team: str
    tags: tuple[str, ...]
    enabled: bool
    previous_at: datetime
    latest_at: datetime
    failed: bool


@dataclass
class Plan:
    """The whole synthetic inventory."""

    now: datetime
    services: list[Service]
    endpoints: list[PlannedEndpoint]


def make_plan(
    endpoint_count: int, certificate_count: int, rng: random.Random, now: datetime
) -> Plan:
    """Split the endpoints into services and choose which services renew."""
    services = [_fleet_service()]
    remaining = endpoint_count - FLEET_SIZE
    while remaining > 0:
        size = min(remaining, _service_size(rng))
        services.append(_service(len(services), size, rng))
        remaining -= size
    renewals = certificate_count - len(services)
    if not 0 <= renewals <= len(services):
        raise SystemExit(
            f"Cannot make {certificate_count} certificates for {len(services)} "
            "services: give between one and two certificates per service."
        )
    renewed = {0, *rng.sample(range(1, len(services)), renewals - 1)}
    for index in renewed:
        partial = index == 0 or rng.random() < PARTIAL_ROLLOUT_SHARE
        services[index].rollout = rng.uniform(0.3, 0.9) if partial else 1.0

    endpoints = [
        _planned_endpoint(endpoint, index, rng, now)
        for index, service in enumerate(services)
        for endpoint in service.endpoints
    ]
    return Plan(now=now, services=services, endpoints=endpoints)


def _fleet_service() -> Service:
    hosts = [f"n{number}.fleet.{DOMAIN}" for number in range(FLEET_SIZE)]
    return Service(
        names=(FLEET_NAME, f"fleet.{DOMAIN}"),
        endpoints=[_endpoint(host) for host in hosts],
    )


def _service_size(rng: random.Random) -> int:
    weights = [weight for _, _, weight in SERVICE_SIZES]
    smallest, largest, _ = rng.choices(SERVICE_SIZES, weights)[0]
    return rng.randint(smallest, largest)


def _service(index: int, size: int, rng: random.Random) -> Service:
    zone = f"svc{index}.{DOMAIN}"
    if size == 1:
        return Service(names=(zone, f"www.{zone}"), endpoints=[_endpoint(zone)])
    if rng.random() < 0.5:
        # A load-balanced name pinned to each member's address.
        members = [
            _endpoint(zone, address=_address(index, member)) for member in range(size)
        ]
        return Service(names=(zone,), endpoints=members)
    hosts = [f"h{member}.{zone}" for member in range(size)]
    return Service(names=(f"*.{zone}", zone), endpoints=[_endpoint(h) for h in hosts])


def _endpoint(host: str, *, address: str | None = None) -> Endpoint:
    return Endpoint(target=host, host=host, port=443, server_name=host, address=address)


def _address(service: int, member: int) -> str:
    number = service * 64 + member
    return f"10.{(number >> 16) & 255}.{(number >> 8) & 255}.{number & 255}"


def _planned_endpoint(
    endpoint: Endpoint, service: int, rng: random.Random, now: datetime
) -> PlannedEndpoint:
    if endpoint.address is not None:
        addresses: tuple[str, ...] = (endpoint.address,)
    else:
        first = f"172.{rng.randrange(16, 32)}.{rng.randrange(256)}.{rng.randrange(256)}"
        addresses = (first,)
        if rng.random() < TWO_ADDRESS_SHARE:
            addresses += (
                f"fd00::{rng.randrange(1 << 16):x}:{rng.randrange(1 << 16):x}",
            )
    # Scans of a six-hour interval, spread evenly, one interval apart.
    latest_at = now - timedelta(
        seconds=rng.uniform(0, DEFAULT_INTERVAL.total_seconds())
    )
    previous_at = latest_at - DEFAULT_INTERVAL * rng.uniform(0.9, 1.1)
    tags = tuple(sorted(rng.sample(TAGS, rng.choice((0, 1, 1, 2)))))
    return PlannedEndpoint(
        endpoint=endpoint,
        service=service,
        addresses=addresses,
        team=rng.choice(TEAMS),
        tags=tags,
        enabled=rng.random() >= DISABLED_SHARE,
        previous_at=previous_at,
        latest_at=latest_at,
        failed=rng.random() < FAILED_SHARE,
    )


def issue_certificates(plan: Plan, pki: Pki, rng: random.Random) -> None:
    """Issue each service's certificates: one, or an older and a newer one."""
    now = plan.now
    for service in plan.services:
        key_type = rng.choices(["ec256", "rsa", "ec384"], [80, 15, 5])[0]
        key = rng.choice(pki.keys[key_type])
        issuer = rng.choice(pki.issuers)
        if service.rollout is None:
            validity = _validity(rng, now, days_left=_days_left(rng))
            leaf = leaf_der(pki, service.names, key, issuer, validity)
            service.chains = [(leaf, issuer.der)]
            continue
        old = _validity(rng, now, days_left=rng.uniform(-20, 30))
        new = _validity(rng, now, days_left=rng.uniform(60, 397))
        new_key = (
            key if rng.random() < KEY_REUSE_SHARE else rng.choice(pki.keys[key_type])
        )
        service.chains = [
            (leaf_der(pki, service.names, key, issuer, old), issuer.der),
            (leaf_der(pki, service.names, new_key, issuer, new), issuer.der),
        ]


def _days_left(rng: random.Random) -> float:
    if rng.random() < EXPIRED_SHARE:
        return rng.uniform(-60, 0)
    return rng.uniform(0, 400)


def _validity(rng: random.Random, now: datetime, *, days_left: float) -> Validity:
    not_after = (now + timedelta(days=days_left)).replace(microsecond=0)
    short = days_left < 80 and rng.random() < 0.5
    lifetime = timedelta(days=90 if short else 397)
    not_before = min(
        not_after - lifetime, now.replace(microsecond=0) - timedelta(days=1)
    )
    return Validity(not_before=not_before, not_after=not_after)


# --- Scan results ------------------------------------------------------------


class Analyser:
    """Analyses each distinct chain once, as a scan would, and reuses the report.

    Every endpoint's name is listed in the certificate it serves, so the
    host name check adds no finding and the report of a chain is the same at
    every endpoint that serves it.
    """

    def __init__(self, pki: Pki, now: datetime) -> None:
        self.policy = AnalysisPolicy(roots=(pki.root_der,), public_roots=False)
        self.now = now
        self.reports: dict[tuple[bytes, bytes], ChainReport] = {}

    def report(self, chain: tuple[bytes, bytes], endpoint: Endpoint) -> ChainReport:
        found = self.reports.get(chain)
        if found is None:
            found = analyze_chain(
                chain,
                server_name=endpoint.server_name,
                address=None,
                now=self.now,
                policy=self.policy,
            )
            self.reports[chain] = found
        return found


def scan_results(
    plan: Plan, analyser: Analyser, rng: random.Random
) -> tuple[list[tuple[Result, ...]], list[tuple[Result, ...]]]:
    """Return the results of every endpoint's previous and latest scan."""
    previous = []
    latest = []
    for planned in plan.endpoints:
        service = plan.services[planned.service]
        previous.append(
            tuple(
                _served(planned, address, service.chains[0], analyser)
                for address in planned.addresses
            )
        )
        latest.append(
            tuple(
                _latest_result(planned, address, service, analyser, rng)
                for address in planned.addresses
            )
        )
    return previous, latest


def _latest_result(
    planned: PlannedEndpoint,
    address: str,
    service: Service,
    analyser: Analyser,
    rng: random.Random,
) -> Result:
    endpoint = planned.endpoint
    if planned.failed:
        return Result(
            target=endpoint.target,
            status=Status.UNKNOWN,
            error=ProbeError(ErrorReason.TIMEOUT, "The TLS handshake timed out."),
            host=endpoint.host,
            port=endpoint.port,
            server_name=endpoint.server_name,
            address=address,
            protocol=endpoint.protocol,
        )
    renewed = service.rollout is not None and rng.random() < service.rollout
    return _served(planned, address, service.chains[renewed], analyser)


def _served(
    planned: PlannedEndpoint,
    address: str,
    chain: tuple[bytes, bytes],
    analyser: Analyser,
) -> Result:
    endpoint = planned.endpoint
    report = analyser.report(chain, endpoint)
    return Result(
        target=endpoint.target,
        status=status_from(report.findings),
        findings=report.findings,
        report=report,
        host=endpoint.host,
        port=endpoint.port,
        server_name=endpoint.server_name,
        address=address,
        protocol=endpoint.protocol,
        tls_version="TLSv1.3",
    )


# --- Databases and the fill --------------------------------------------------


@contextmanager
def sqlite_database() -> Iterator[str]:
    """Yield the URL of a new SQLite file in a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="certwatch-bench-") as folder:
        yield f"sqlite:///{Path(folder) / 'store.db'}"


@contextmanager
def postgres_database(server_url: str) -> Iterator[str]:
    """Create a throwaway database on the server, yield its URL, then drop it."""
    server = make_url(server_url)
    name = f"certwatch_bench_{uuid.uuid4().hex[:12]}"
    admin = _admin_connection(server_url)
    try:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)
            )
        )
        admin.close()


def _admin_connection(server_url: str) -> psycopg.Connection[Any]:
    server = make_url(server_url)
    return psycopg.connect(
        host=server.host or "127.0.0.1",
        port=server.port or 5432,
        user=server.username or "postgres",
        password=server.password,
        dbname="postgres",
        autocommit=True,
    )


@dataclass(frozen=True)
class Fill:
    """How long the fill took and what it left in the database."""

    seconds: float
    observations: int
    bytes: int


def fill(url: str, plan: Plan, results: ScanResults) -> Fill:
    """Migrate a new database and write the whole inventory into it."""
    started = time.perf_counter()
    upgrade(url)
    engine = create_store_engine(url)
    try:
        sessions = session_factory(engine)
        with sessions.begin() as session:
            ids = insert_endpoints(session, plan)
        written = 0
        for batch in _scan_batches(plan, results, ids):
            with sessions.begin() as session:
                changes = detect_changes(session, batch, window=DEFAULT_CHANGE_WINDOW)
                written += record_observations(session, batch)
                insert_changes(session, changes)
        seconds = time.perf_counter() - started
        _settle(engine)
        return Fill(seconds=seconds, observations=written, bytes=_size(engine))
    finally:
        engine.dispose()


def insert_endpoints(session: Session, plan: Plan) -> list[int]:
    """Insert the endpoints and their tags as `upsert_endpoint` would store them.

    The schedule columns hold what `release` writes after the latest scan:
    the next scan one interval later, or five minutes later after a failure,
    each spread by up to 10 %.
    """
    team_ids = {team: ensure_team(session, team, now=plan.now) for team in TEAMS}
    rng = random.Random(1)
    rows = [
        _endpoint_row(planned, team_ids[planned.team], plan.now, rng)
        for planned in plan.endpoints
    ]
    ids = list(
        session.scalars(
            insert(EndpointRow).returning(EndpointRow.id, sort_by_parameter_order=True),
            rows,
        )
    )
    tags = [
        {"endpoint_id": endpoint_id, "tag": tag}
        for endpoint_id, planned in zip(ids, plan.endpoints, strict=True)
        for tag in planned.tags
    ]
    session.execute(insert(EndpointTagRow), tags)
    return ids


def _endpoint_row(
    planned: PlannedEndpoint, team_id: int, now: datetime, rng: random.Random
) -> dict[str, Any]:
    endpoint = planned.endpoint
    failures = 1 if planned.failed else 0
    created = planned.previous_at - timedelta(days=30)
    return {
        "target": endpoint.target,
        "protocol": endpoint.protocol,
        "host": endpoint.host,
        "port": endpoint.port,
        "server_name": endpoint.server_name or "",
        "address": endpoint.address or "",
        "team_id": team_id,
        "interval_seconds": int(DEFAULT_INTERVAL.total_seconds()),
        "enabled": planned.enabled,
        "notes": "",
        "created_at": created,
        "updated_at": created,
        "next_scan_at": next_scan_time(
            planned.latest_at,
            interval=DEFAULT_INTERVAL,
            consecutive_failures=failures,
            policy=SchedulePolicy(),
            rng=rng,
        ),
        "lease_token": None,
        "lease_expires_at": None,
        "last_scanned_at": planned.latest_at,
        "consecutive_failures": failures,
    }


@dataclass(frozen=True)
class ScanResults:
    """The results of each endpoint's previous and latest scan, in plan order."""

    previous: list[tuple[Result, ...]]
    latest: list[tuple[Result, ...]]


def _scan_batches(
    plan: Plan, results: ScanResults, ids: Sequence[int]
) -> Iterator[list[CompletedScan]]:
    """Yield the scans in the order a monitor would record them, 500 at a time."""
    scans = []
    for index, (planned, endpoint_id) in enumerate(
        zip(plan.endpoints, ids, strict=True)
    ):
        scans.append(
            CompletedScan(
                scanned_at=planned.previous_at,
                results=results.previous[index],
                endpoint_id=endpoint_id,
            )
        )
        scans.append(
            CompletedScan(
                scanned_at=planned.latest_at,
                results=results.latest[index],
                endpoint_id=endpoint_id,
            )
        )
    scans.sort(key=lambda scan: scan.scanned_at)
    for start in range(0, len(scans), SCAN_BATCH):
        yield scans[start : start + SCAN_BATCH]


def _settle(engine: Engine) -> None:
    """Bring the database to the state it reaches on its own after a while.

    PostgreSQL's autovacuum analyses large tables after bulk writes, so the
    planner has statistics; this runs it now instead of during the timing.
    On SQLite only the write-ahead log is folded into the file, so that its
    size is complete. Its statistics come from `certwatch serve`, which
    `run_database` imitates.
    """
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            connection.execution_options(isolation_level="AUTOCOMMIT").execute(
                text("VACUUM ANALYZE")
            )
    else:
        with engine.connect() as connection:
            connection.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))


def _size(engine: Engine) -> int:
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            query = text("SELECT pg_database_size(current_database())")
            return int(connection.execute(query).scalar_one())
    database = engine.url.database
    assert database is not None
    return os.path.getsize(database)


# --- Timing ------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    """The run times of one operation; `rows` is what its warm-up listed.

    `process_seconds` are the times of the same command run as a new
    `certwatch` process, and empty for operations that are not commands.
    """

    operation: str
    seconds: list[float]
    rows: int
    process_seconds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def time_operation(name: str, run: Callable[[], int], repeat: int) -> Timing:
    """Run once to warm up (its row count is kept), then `repeat` timed runs."""
    rows = run()
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - started)
    return Timing(operation=name, seconds=seconds, rows=rows)


def command(url: str, *args: str) -> Callable[[], int]:
    """Return a runner of `certwatch ARGS`, which checks its exit code.

    It returns the number of certificates or sources listed, read from the
    JSON document or the table's closing line.
    """

    def run() -> int:
        outcome = CliRunner().invoke(
            cli, list(args), env={"CERTWATCH_DATABASE_URL": url}
        )
        if outcome.exit_code != 0:
            raise SystemExit(
                f"certwatch {' '.join(args)} failed with exit code "
                f"{outcome.exit_code}: {outcome.output[-2000:]}"
            )
        return _listed_count(outcome.stdout, args)

    return run


def process_command(executable: Path, url: str, *args: str) -> Callable[[], int]:
    """Return a runner of `certwatch ARGS` as a new process.

    Like `command`, it checks the exit code and returns the number listed.
    """
    environ = {**os.environ, "CERTWATCH_DATABASE_URL": url}

    def run() -> int:
        finished = subprocess.run(
            [str(executable), *args], env=environ, capture_output=True, check=False
        )
        if finished.returncode != 0:
            raise SystemExit(
                f"{executable} {' '.join(args)} failed with exit code "
                f"{finished.returncode}: {finished.stderr.decode()[-2000:]}"
            )
        return _listed_count(finished.stdout.decode(), args)

    return run


def time_command(
    label: str, url: str, args: Sequence[str], repeat: int, executable: Path
) -> Timing:
    """Time `certwatch ARGS` in-process and as a new process.

    Raises:
        SystemExit: the two ways list a different number of rows.
    """
    in_process = time_operation(label, command(url, *args), repeat)
    process = time_operation(label, process_command(executable, url, *args), repeat)
    if process.rows != in_process.rows:
        raise SystemExit(
            f"certwatch {' '.join(args)} listed {in_process.rows} rows in-process "
            f"but {process.rows} as a process: compare the two outputs."
        )
    return replace(in_process, process_seconds=process.seconds)


def python_startup(repeat: int) -> list[float]:
    """Time `python -c pass`, the start-up that every process pays."""

    def run() -> int:
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        return 0

    return time_operation("python -c pass", run, repeat).seconds


def _listed_count(output: str, args: Sequence[str]) -> int:
    if "--json" in args:
        document = json.loads(output)
        key = "sources" if args[0] == "list" else "certificates"
        return len(document[key])
    closing = output.strip().splitlines()[-1]
    return int(closing.split()[0])


def claim(sessions: sessionmaker[Session]) -> Callable[[], int]:
    """Return a runner of `claim_due_endpoints` that rolls its claim back.

    The rollback keeps the same endpoints due for every run.
    """

    def run() -> int:
        with sessions() as session:
            claims = claim_due_endpoints(
                session, now=datetime.now(UTC), limit=CLAIM_LIMIT, lease=CLAIM_LEASE
            )
            session.rollback()
        return len(claims)

    return run


def list_queries(sessions: sessionmaker[Session]) -> Callable[[], int]:
    """Return a runner of the store queries behind `list --expiring 30`."""

    def run() -> int:
        limit = datetime.now(UTC) + timedelta(days=EXPIRING_DAYS)
        with sessions() as session:
            listing = list_sources(
                session,
                InventoryFilter(expiring_by=limit),
                limit=DEFAULT_LIMIT,
                now=datetime.now(UTC),
            )
        return len(listing.sources)

    return run


def certificates_queries(sessions: sessionmaker[Session]) -> Callable[[], int]:
    """Return a runner of the store queries behind `certificates`."""

    def run() -> int:
        with sessions() as session:
            page = served_certificates(session, limit=DEFAULT_LIMIT)
            sha256s = [item.certificate.sha256 for item in page.certificates]
            stale_deployments(session, now=datetime.now(UTC), sha256s=sha256s)
        return len(page.certificates)

    return run


def measure(url: str, plan: Plan, repeat: int, executable: Path) -> list[Timing]:
    """Time every operation on the filled database at `url`."""
    fingerprint = _fingerprint_prefix(plan)
    name = f"n1.fleet.{DOMAIN}"
    expiring = ("list", "--expiring", str(EXPIRING_DAYS))
    commands: list[tuple[str, ...]] = [
        expiring,
        (*expiring, "--json"),
        (*expiring, "--limit", "0", "--json"),
        ("certificates",),
        ("certificates", "--json"),
        ("certificates", "--limit", "0", "--json"),
        ("where", name),
        ("where", fingerprint),
    ]
    timings = [
        time_command(" ".join(args), url, args, repeat, executable) for args in commands
    ]
    engine = create_store_engine(url)
    try:
        sessions = session_factory(engine)
        operations: list[tuple[str, Callable[[], int]]] = [
            (f"claim_due_endpoints(limit={CLAIM_LIMIT})", claim(sessions)),
            (
                f"list --expiring {EXPIRING_DAYS}: store queries only",
                list_queries(sessions),
            ),
            ("certificates: store queries only", certificates_queries(sessions)),
        ]
        timings += [time_operation(label, run, repeat) for label, run in operations]
        return timings
    finally:
        engine.dispose()


def _fingerprint_prefix(plan: Plan) -> str:
    """Return 12 hex digits of the fingerprint of a multi-endpoint service's leaf."""
    service = next(item for item in plan.services[1:] if len(item.endpoints) > 3)
    return hashlib.sha256(service.chains[-1][0]).hexdigest()[:12]


# --- The run -----------------------------------------------------------------


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        description="Time the inventory commands on a large synthetic store."
    )
    parser.add_argument("--endpoints", type=int, default=100_000)
    parser.add_argument("--certificates", type=int, default=50_000)
    parser.add_argument(
        "--database",
        choices=("sqlite", "postgresql", "both"),
        default="both",
        help="Which databases to fill and time (default: both).",
    )
    parser.add_argument(
        "--postgres-server",
        default=DEFAULT_SERVER_URL,
        help="PostgreSQL server URL without a database; a throwaway database "
        f"is created there and dropped at the end (default: {DEFAULT_SERVER_URL}).",
    )
    parser.add_argument("--repeat", type=int, default=5, help="Timed runs (default 5).")
    parser.add_argument("--seed", type=int, default=2026, help="Random seed.")
    parser.add_argument("--json", action="store_true", help="Print one JSON document.")
    parser.add_argument(
        "--no-statistics",
        action="store_true",
        help="Do not give SQLite the planner statistics that `certwatch serve` "
        "makes, as in a store that only `run --once` has written.",
    )
    parser.add_argument(
        "--executable",
        type=Path,
        default=Path(sys.executable).parent / "certwatch",
        help="The certwatch executable timed as a process (default: the one "
        "next to this Python).",
    )
    arguments = parser.parse_args(argv)
    if arguments.endpoints <= FLEET_SIZE:
        parser.error(f"--endpoints must be above {FLEET_SIZE}.")
    if arguments.repeat < 1:
        parser.error("--repeat must be at least 1.")
    return arguments


def prepare(arguments: argparse.Namespace) -> tuple[Plan, ScanResults, float]:
    """Make the certificates, the plan and every scan result; return the time."""
    started = time.perf_counter()
    rng = random.Random(arguments.seed)
    now = datetime.now(UTC)
    pki = make_pki(now)
    plan = make_plan(arguments.endpoints, arguments.certificates, rng, now)
    issue_certificates(plan, pki, rng)
    previous, latest = scan_results(plan, Analyser(pki, now), rng)
    return plan, ScanResults(previous, latest), time.perf_counter() - started


def run_database(
    kind: str, arguments: argparse.Namespace, plan: Plan, results: ScanResults
) -> dict[str, Any]:
    """Fill one database of `kind`, time the operations and return the figures."""
    opened = (
        sqlite_database()
        if kind == "sqlite"
        else postgres_database(arguments.postgres_server)
    )
    with opened as url:
        filled = fill(url, plan, results)
        _progress(
            f"{kind}: filled in {filled.seconds:.0f} s, {filled.bytes / 2**20:.0f} MiB"
        )
        statistics_given = kind == "sqlite" and not arguments.no_statistics
        if statistics_given:
            _give_statistics(url)
        startup = python_startup(arguments.repeat)
        timings = measure(url, plan, arguments.repeat, arguments.executable)
        version = _server_version(url)
    return {
        "database": kind,
        "version": version,
        "sqlite_statistics": statistics_given,
        "python_startup_seconds": startup,
        "fill_seconds": filled.seconds,
        "observations": filled.observations,
        "size_bytes": filled.bytes,
        "timings": [
            {
                "operation": item.operation,
                "median_seconds": item.median,
                "seconds": item.seconds,
                "process_median_seconds": (
                    statistics.median(item.process_seconds)
                    if item.process_seconds
                    else None
                ),
                "process_seconds": item.process_seconds,
                "rows": item.rows,
            }
            for item in timings
        ],
    }


def _give_statistics(url: str) -> None:
    """Run `refresh_statistics`, as `serve` does after its first cycle."""
    engine = create_store_engine(url)
    try:
        refresh_statistics(session_factory(engine))
    finally:
        engine.dispose()


def _server_version(url: str) -> str:
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as connection:
            if engine.dialect.name == "postgresql":
                return str(connection.execute(text("SHOW server_version")).scalar_one())
            return str(connection.execute(text("SELECT sqlite_version()")).scalar_one())
    finally:
        engine.dispose()


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def print_summary(document: dict[str, Any]) -> None:
    """Print the figures as Markdown tables."""
    print(
        f"{document['endpoints']:,} endpoints, {document['certificates']:,} leaf "
        f"certificates; prepared in {document['prepare_seconds']:.0f} s"
    )
    for found in document["databases"]:
        startup = statistics.median(found["python_startup_seconds"])
        statistics_note = (
            ", with planner statistics" if found["sqlite_statistics"] else ""
        )
        print()
        print(
            f"{found['database']} {found['version']}{statistics_note}: "
            f"fill {found['fill_seconds']:.0f} s, "
            f"{found['observations']:,} observations, "
            f"{found['size_bytes'] / 2**20:.0f} MiB; "
            f"`python -c pass` {startup:.3f} s"
        )
        print()
        print(
            "| operation | median s | min s | max s | rows | process median s "
            "| process / `python -c pass` | under 1 s |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for item in found["timings"]:
            print(_summary_row(item, startup))


def _summary_row(item: dict[str, Any], startup: float) -> str:
    """Format one timing as a table row, with the verdicts in-process / as a process."""
    seconds = item["seconds"]
    verdicts = [_verdict(item["median_seconds"])]
    process = item["process_median_seconds"]
    if process is None:
        process_cells = "| - | - "
    else:
        process_cells = f"| {process:.3f} | {process / startup:.0f} "
        verdicts.append(_verdict(process))
    return (
        f"| `{item['operation']}` | {item['median_seconds']:.3f} | "
        f"{min(seconds):.3f} | {max(seconds):.3f} | {item['rows']:,} "
        f"{process_cells}| {' / '.join(verdicts)} |"
    )


def _verdict(seconds: float) -> str:
    return "yes" if seconds < TARGET_SECONDS else "NO"


def database_kinds(choice: str) -> list[str]:
    """Return the databases that a `--database` choice names, in run order."""
    return ["sqlite", "postgresql"] if choice == "both" else [choice]


def each_filled_database(
    endpoints: int,
    certificates: int,
    choice: str,
    run: Callable[[str, str, Fill], None],
) -> None:
    """Fill each database of `choice` with one synthetic store and call `run`.

    The certificates and scan results are made once, with the default
    seed. `run` gets the database kind, its URL and the fill's figures
    while the database exists. A PostgreSQL database is made on the
    default server and dropped after `run` returns.
    """
    arguments = parse_arguments(
        ["--endpoints", str(endpoints), "--certificates", str(certificates)]
    )
    plan, results, prepared = prepare(arguments)
    print(f"prepared in {prepared:.0f} s", flush=True)
    for kind in database_kinds(choice):
        opened = (
            sqlite_database()
            if kind == "sqlite"
            else postgres_database(DEFAULT_SERVER_URL)
        )
        with opened as url:
            run(kind, url, fill(url, plan, results))


def main(argv: list[str] | None = None) -> None:
    arguments = parse_arguments(argv)
    plan, results, prepared = prepare(arguments)
    _progress(f"prepared certificates and scan results in {prepared:.0f} s")
    kinds = database_kinds(arguments.database)
    document = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "endpoints": len(plan.endpoints),
        "certificates": sum(len(service.chains) for service in plan.services),
        "prepare_seconds": prepared,
        "databases": [run_database(kind, arguments, plan, results) for kind in kinds],
    }
    if arguments.json:
        print(json.dumps(document, indent=2))
    else:
        print_summary(document)


if __name__ == "__main__":
    main()
