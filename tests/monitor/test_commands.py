"""`certwatch scan`, `run --once` and `serve`, in-process and as real processes.

The process tests start `python -m certwatch` against the test database and
local servers, then kill it, run two at once, or stop it with SIGTERM.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from tests.monitor.helpers import LEASE, Pki, add_endpoints, pinned
from tests.servers import LocalServer, Mode

from certwatch.cli import cli
from certwatch.store.database import create_store_engine, session_factory
from certwatch.store.inventory import get_endpoint
from certwatch.store.models import EndpointRow, ObservationRow
from certwatch.store.observations import latest_observations
from certwatch.store.schedule import claim_due_endpoints

StartServer = Callable[..., LocalServer]
SOURCE = Path(__file__).resolve().parents[2] / "src"
# The default lease of `run --once`, which a killed process leaves behind.
DEFAULT_LEASE = timedelta(minutes=5)


@pytest.fixture
def url_sessions(database_url: str) -> Iterator[sessionmaker[Session]]:
    """Sessions on the test database that a `certwatch` process also opens."""
    engine = create_store_engine(database_url)
    yield session_factory(engine)
    engine.dispose()


def invoke(url: str, *args: str, env: dict[str, str] | None = None) -> Result:
    environment = {"CERTWATCH_DATABASE_URL": url, **(env or {})}
    return CliRunner().invoke(cli, list(args), env=environment)


def start_certwatch(url: str, log: Path, *args: str) -> subprocess.Popen[bytes]:
    environment = {
        **os.environ,
        "CERTWATCH_DATABASE_URL": url,
        "PYTHONPATH": str(SOURCE),
        # `serve` also starts the web service: a free port keeps these tests
        # apart from anything else listening on the default 8080.
        "CERTWATCH_WEB_PORT": "0",
    }
    with log.open("wb") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "certwatch", "-v", *args],
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )


def wait_for(condition: Callable[[], bool], *, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.05)


def count_observations(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(ObservationRow)) or 0


def real_now() -> datetime:
    return datetime.now(UTC)


# In-process commands


def test_scan_command_unknown_target(database_url: str) -> None:
    result = invoke(database_url, "scan", "nothere.example.test", "/srv/none.pem")

    assert result.exit_code == 2
    assert (
        "'nothere.example.test' is not in the inventory: add it with "
        "'certwatch add nothere.example.test' first."
    ) in result.output
    assert "'/srv/none.pem' is not in the inventory" in result.output


def test_scan_command_needs_selection(database_url: str) -> None:
    result = invoke(database_url, "scan")

    assert result.exit_code == 2
    assert "Give TARGET or PATH arguments, --all or --due." in result.output


def test_scan_command_named_target(
    database_url: str,
    url_sessions: sessionmaker[Session],
    local_server: StartServer,
    pki: Pki,
) -> None:
    server = local_server(chain=pki.chain(pki.leaf))
    later = real_now() + timedelta(days=1)
    [named, other] = add_endpoints(
        url_sessions,
        [
            pinned("www.example.test", server.port),
            pinned("a.example.test", server.port),
        ],
        now=later,
    )

    result = invoke(database_url, "scan", f"www.example.test:{server.port}")

    assert result.exit_code == 0, result.output
    assert "Scanned 1 endpoint and 0 file sources" in result.output
    assert "127.0.0.1" in result.output
    assert server.server_names == ["www.example.test"]
    with url_sessions() as session:
        scanned = get_endpoint(session, named)
        untouched = get_endpoint(session, other)
    assert scanned is not None
    assert scanned.schedule.last_scanned_at is not None
    assert untouched is not None
    assert untouched.schedule.last_scanned_at is None


def test_scan_command_all_and_due(
    database_url: str,
    url_sessions: sessionmaker[Session],
    local_server: StartServer,
    pki: Pki,
) -> None:
    server = local_server(chain=pki.chain(pki.leaf))
    add_endpoints(url_sessions, [pinned("www.example.test", server.port)])
    add_endpoints(
        url_sessions,
        [pinned("later.example.test", server.port)],
        now=real_now() + timedelta(days=1),
    )

    due = invoke(database_url, "scan", "--due")
    everything = invoke(database_url, "scan", "--all")

    assert due.exit_code == 0, due.output
    assert "Scanned 1 endpoint" in due.output
    assert everything.exit_code == 0, everything.output
    assert "Scanned 2 endpoints" in everything.output


def test_run_command_needs_once(database_url: str) -> None:
    result = invoke(database_url, "run")

    assert result.exit_code == 2
    assert "certwatch run needs --once" in result.output


def test_run_command_unreachable_store() -> None:
    result = invoke("postgresql://certwatch@127.0.0.1:1/none", "run", "--once")

    assert result.exit_code != 0
    assert "Cannot open the inventory database" in result.output


def test_run_command_rejects_sqlite_in_memory() -> None:
    result = invoke("sqlite://", "run", "--once")

    # A ClickException, which `certwatch.cli.main` turns into exit code 3.
    assert result.exit_code == 1, result.output
    assert (
        "CERTWATCH_DATABASE_URL='sqlite://' names an in-memory SQLite database"
        in result.output
    )
    assert "Scanned" not in result.output


def test_run_command_rejects_bad_interval(database_url: str) -> None:
    result = invoke(
        database_url, "run", "--once", env={"CERTWATCH_DEFAULT_INTERVAL": "6x"}
    )

    assert result.exit_code == 2
    assert "CERTWATCH_DEFAULT_INTERVAL: Invalid duration '6x'" in result.output


def test_run_command_once(
    database_url: str,
    url_sessions: sessionmaker[Session],
    local_server: StartServer,
    pki: Pki,
) -> None:
    server = local_server(chain=pki.chain(pki.leaf))
    add_endpoints(url_sessions, [pinned("www.example.test", server.port)])

    first = invoke(database_url, "run", "--once")
    second = invoke(database_url, "run", "--once")

    assert first.exit_code == 0, first.output
    assert "Scanned 1 endpoint and 0 file sources" in first.output
    assert "Scanned 0 endpoints and 0 file sources" in second.output
    assert count_observations(url_sessions) == 1


# Real processes


def test_run_once_killed_mid_cycle(
    database_url: str,
    url_sessions: sessionmaker[Session],
    local_server: StartServer,
    pki: Pki,
    tmp_path: Path,
) -> None:
    fast = local_server(chain=pki.chain(pki.leaf))
    stalling = local_server(mode=Mode.STALL)
    start = real_now()
    fast_ids = add_endpoints(
        url_sessions,
        [pinned(f"fast{i}.example.test", fast.port) for i in range(4)],
        now=start - timedelta(hours=2),
    )
    stalled_ids = add_endpoints(
        url_sessions,
        [pinned(f"stall{i}.example.test", stalling.port) for i in range(2)],
        now=start - timedelta(hours=1),
    )

    process = start_certwatch(
        database_url,
        tmp_path / "run.log",
        "run",
        "--once",
        "--batch-size",
        "2",
        "--timeout",
        "60",
    )
    try:
        wait_for(lambda: stalling.accepted == 2)
        killed_at = real_now()
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()

    assert count_observations(url_sessions) == 4
    with url_sessions() as session:
        rows = {row.id: row for row in session.scalars(select(EndpointRow))}
    for endpoint_id in fast_ids:
        assert rows[endpoint_id].lease_expires_at is None
        # A first scan puts the next one at a random point of the interval.
        assert rows[endpoint_id].next_scan_at > start
    expiries = [rows[i].lease_expires_at for i in stalled_ids]
    assert all(e is not None and e <= killed_at + DEFAULT_LEASE for e in expiries)
    lease_end = max(e for e in expiries if e is not None)
    with url_sessions() as session:
        held = claim_due_endpoints(
            session, now=lease_end - timedelta(seconds=1), limit=10, lease=LEASE
        )
        session.rollback()
        freed = claim_due_endpoints(session, now=lease_end, limit=10, lease=LEASE)
        session.rollback()
    # The fast endpoints may come due again at any point of their interval.
    assert [c.endpoint_id for c in held if c.endpoint_id in stalled_ids] == []
    assert sorted(c.endpoint_id for c in freed if c.endpoint_id in stalled_ids) == (
        stalled_ids
    )


def test_run_once_killed_keeps_finished_scans(
    database_url: str,
    url_sessions: sessionmaker[Session],
    local_server: StartServer,
    pki: Pki,
    tmp_path: Path,
) -> None:
    fast = local_server(chain=pki.chain(pki.leaf))
    stalling = local_server(mode=Mode.STALL)
    start = real_now()
    # Both endpoints fall in one batch, since the default batch size is 500.
    fast_id, stalled_id = add_endpoints(
        url_sessions,
        [
            pinned("fast.example.test", fast.port),
            pinned("stall.example.test", stalling.port),
        ],
        now=start - timedelta(hours=1),
    )

    process = start_certwatch(
        database_url, tmp_path / "run.log", "run", "--once", "--timeout", "60"
    )
    try:
        wait_for(lambda: count_observations(url_sessions) == 1)
        wait_for(lambda: stalling.accepted == 1)
        running_when_killed = process.poll() is None
        killed_at = real_now()
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()

    assert running_when_killed
    assert count_observations(url_sessions) == 1
    with url_sessions() as session:
        fast_observed = latest_observations(session, endpoint_id=fast_id)
        stalled_observed = latest_observations(session, endpoint_id=stalled_id)
        rows = {row.id: row for row in session.scalars(select(EndpointRow))}
    assert [o.address for o in fast_observed] == ["127.0.0.1"]
    assert fast_observed[0].chain == (pki.leaf.sha256, pki.intermediate.sha256)
    assert stalled_observed == []
    assert rows[fast_id].lease_expires_at is None
    assert rows[fast_id].next_scan_at > fast_observed[0].observed_at
    lease_end = rows[stalled_id].lease_expires_at
    assert lease_end is not None
    assert lease_end <= killed_at + DEFAULT_LEASE
    with url_sessions() as session:
        held = claim_due_endpoints(
            session, now=lease_end - timedelta(seconds=1), limit=10, lease=LEASE
        )
        session.rollback()
        freed = claim_due_endpoints(session, now=lease_end, limit=10, lease=LEASE)
        session.rollback()
    # The fast endpoint may come due again at any point of its interval.
    assert [c.endpoint_id for c in held if c.endpoint_id == stalled_id] == []
    assert [c.endpoint_id for c in freed if c.endpoint_id == stalled_id] == [stalled_id]


@pytest.mark.slow
def test_run_once_concurrent_never_twice(
    postgres_only_url: str,
    local_server: StartServer,
    pki: Pki,
    tmp_path: Path,
) -> None:
    engine = create_store_engine(postgres_only_url)
    sessions = session_factory(engine)
    fast = local_server(chain=pki.chain(pki.leaf))
    stalling = local_server(mode=Mode.STALL)
    start = real_now() - timedelta(hours=1)
    # Every batch of two contains one endpoint that times out after a second,
    # so the two processes are sure to claim while the other one runs.
    for i in range(10):
        add_endpoints(sessions, [pinned(f"fast{i}.example.test", fast.port)], now=start)
        add_endpoints(
            sessions, [pinned(f"stall{i}.example.test", stalling.port)], now=start
        )
        start += timedelta(seconds=1)

    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    arguments = ("run", "--once", "--batch-size", "2", "--timeout", "1")
    processes = [start_certwatch(postgres_only_url, log, *arguments) for log in logs]
    codes = [process.wait(timeout=60) for process in processes]

    with sessions() as session:
        per_endpoint = Counter(
            session.scalars(select(ObservationRow.endpoint_id)).all()
        )
    engine.dispose()
    scanned = [
        int(re.search(r"Scanned (\d+) endpoints", log.read_text()).group(1))  # type: ignore[union-attr]
        for log in logs
    ]
    assert codes == [0, 0]
    assert len(per_endpoint) == 20
    assert set(per_endpoint.values()) == {1}
    assert Counter(fast.server_names) == {f"fast{i}.example.test": 1 for i in range(10)}
    assert stalling.accepted == 10
    assert sum(scanned) == 20
    assert min(scanned) > 0


@pytest.mark.slow
def test_serve_stops_on_sigterm(
    database_url: str,
    url_sessions: sessionmaker[Session],
    local_server: StartServer,
    tmp_path: Path,
) -> None:
    stalling = local_server(mode=Mode.STALL)
    add_endpoints(url_sessions, [pinned("www.example.test", stalling.port)])
    log = tmp_path / "serve.log"

    process = start_certwatch(database_url, log, "serve", "--timeout", "3")
    try:
        wait_for(lambda: stalling.accepted == 1)
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    text = log.read_text()
    assert code == 0, text
    assert "monitor started" in text
    assert "received SIGTERM: stopping after the current batch" in text
    assert "127.0.0.1 unknown (timeout)" in text
    assert "monitor stopped after 1 cycle\n" in text
    assert count_observations(url_sessions) == 1


@pytest.mark.slow
def test_serve_exits_at_once_on_second_sigterm(
    database_url: str,
    url_sessions: sessionmaker[Session],
    local_server: StartServer,
    tmp_path: Path,
) -> None:
    stalling = local_server(mode=Mode.STALL)
    add_endpoints(url_sessions, [pinned("www.example.test", stalling.port)])
    log = tmp_path / "serve.log"

    # The probe would wait 60 s for the stalled handshake; the second signal
    # must end the process long before that.
    process = start_certwatch(database_url, log, "serve", "--timeout", "60")
    try:
        wait_for(lambda: stalling.accepted == 1)
        process.send_signal(signal.SIGTERM)
        wait_for(lambda: "stopping after the current batch" in log.read_text())
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    text = log.read_text()
    assert code == 128 + signal.SIGTERM, text
    assert "received SIGTERM again: exiting without waiting" in text
    with url_sessions() as session:
        leased = session.scalar(
            select(func.count())
            .select_from(EndpointRow)
            .where(EndpointRow.lease_token.is_not(None))
        )
    assert leased == 0
