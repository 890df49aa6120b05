"""The web service and the monitor in one process, served by real uvicorn.

`run_web_and_monitor` runs in a test thread here, with the monitor in that
thread and uvicorn in its own, as `certwatch serve` runs them. One test
starts a separate Python process and stops it with SIGTERM, to show the
signal path of `certwatch serve`.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker
from tests.monitor.helpers import Clock, Pki, settings
from tests.servers import LocalServer
from tests.web.helpers import add_endpoint, fetch_metrics

from certwatch.store.database import upgrade
from certwatch.store.inventory import get_endpoint
from certwatch.web.app import create_app
from certwatch.web.heartbeat import last_cycle_completed
from certwatch.web.server import (
    WebServer,
    WebServerError,
    bind_listener,
    run_web_and_monitor,
)
from certwatch.web.settings import WebSettings

StartServer = Callable[..., LocalServer]
# Generous bounds for a thread or process to reach a state; the tests wait
# for events and end as soon as the state is reached.
WAIT_SECONDS = 30


@contextmanager
def listening_socket() -> Iterator[int]:
    """Yield the port of a socket that another program listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def refuses_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            return False
    except ConnectionRefusedError:
        return True


class Run:
    """`run_web_and_monitor` in a thread, with events for its milestones."""

    def __init__(
        self, sessions: sessionmaker[Session], pki: Pki, clock: Clock, web: WebSettings
    ) -> None:
        self.stop = threading.Event()
        self.listening = threading.Event()
        self.cycle_done = threading.Event()
        self.port: int | None = None
        self.cycles: int | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(sessions, pki, clock, web)
        )

    def _run(
        self, sessions: sessionmaker[Session], pki: Pki, clock: Clock, web: WebSettings
    ) -> None:
        def on_listening(host: str, port: int) -> None:
            self.port = port
            self.listening.set()

        try:
            self.cycles = run_web_and_monitor(
                sessions,
                web=web,
                now_fn=clock,
                settings=settings(),
                policy=pki.policy,
                stop=self.stop,
                after_cycle=lambda _: self.cycle_done.set(),
                on_listening=on_listening,
            )
        except BaseException as exc:
            self.error = exc

    def start(self) -> Run:
        self._thread.start()
        return self

    def finish(self) -> None:
        self.stop.set()
        self._thread.join(WAIT_SECONDS)
        assert not self._thread.is_alive()


def test_run_serves_while_monitoring(
    sessions: sessionmaker[Session],
    local_server: StartServer,
    pki: Pki,
    clock: Clock,
) -> None:
    server = local_server(chain=pki.chain(pki.leaf))
    add_endpoint(sessions, "www.example.test", server.port, clock=clock)
    run = Run(sessions, pki, clock, WebSettings(port=0)).start()
    try:
        assert run.listening.wait(WAIT_SECONDS)
        assert run.cycle_done.wait(WAIT_SECONDS)
        base_url = f"http://127.0.0.1:{run.port}"
        samples = fetch_metrics(base_url)
        health = httpx.get(f"{base_url}/healthz")
    finally:
        run.finish()

    assert run.error is None
    assert run.cycles is not None
    assert run.cycles >= 1
    [success] = samples["certwatch_probe_success"]
    assert success.value == 1
    [last_cycle] = samples["certwatch_monitor_last_cycle_timestamp_seconds"]
    assert last_cycle.value == clock().timestamp()
    assert health.json()["last_cycle_at"] == "2026-06-01T12:00:00Z"
    assert run.port is not None
    assert refuses_connections(run.port)


def test_run_port_taken_starts_nothing(
    sessions: sessionmaker[Session], pki: Pki, clock: Clock
) -> None:
    endpoint_id = add_endpoint(sessions, "www.example.test", 1, clock=clock)
    stop = threading.Event()
    called: list[object] = []

    with listening_socket() as port, pytest.raises(WebServerError) as caught:
        run_web_and_monitor(
            sessions,
            web=WebSettings(port=port),
            now_fn=clock,
            settings=settings(),
            policy=pki.policy,
            stop=stop,
            after_cycle=called.append,
        )

    assert str(caught.value) == (
        f"The web service cannot listen on '127.0.0.1' port {port}: the port is "
        "in use by another program; set CERTWATCH_WEB_PORT to a free port, or "
        "stop the other program."
    )
    assert called == []
    with sessions() as session:
        assert last_cycle_completed(session) is None
        endpoint = get_endpoint(session, endpoint_id)
    assert endpoint is not None
    assert endpoint.schedule.last_scanned_at is None


def test_run_web_disabled_monitors_only(
    sessions: sessionmaker[Session], pki: Pki, clock: Clock
) -> None:
    run = Run(sessions, pki, clock, WebSettings(port=0, disabled=True)).start()
    try:
        assert run.cycle_done.wait(WAIT_SECONDS)
    finally:
        run.finish()

    assert run.error is None
    assert not run.listening.is_set()
    with sessions() as session:
        assert last_cycle_completed(session) == clock()


def test_web_server_failure_sets_stop(sessions: sessionmaker[Session]) -> None:
    settings = WebSettings(port=0)
    server = WebServer(create_app(sessions, settings), settings)
    # A listening socket closed under uvicorn makes its start-up fail.
    server._listener.close()
    stop = threading.Event()

    with server.running(stop):
        stopped = stop.wait(WAIT_SECONDS)

    assert stopped
    assert server.failure is not None


def test_bind_listener_port_taken() -> None:
    with (
        listening_socket() as port,
        pytest.raises(
            WebServerError,
            match=f"port {port}: the port is in use .* CERTWATCH_WEB_PORT",
        ),
    ):
        bind_listener("127.0.0.1", port)


def test_bind_listener_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("this Python has no IPv6 support")
    try:
        listener = bind_listener("::1", 0)
    except WebServerError as exc:
        pytest.skip(f"::1 is not available here: {exc}")
    with listener:
        assert listener.family == socket.AF_INET6
        assert listener.getsockname()[0] == "::1"


# The signal handling of `certwatch serve` around `run_web_and_monitor`.
SERVE_SCRIPT = """
import sys, threading
from datetime import UTC, datetime
from certwatch.commands.monitor import _stop_on_signals
from certwatch.monitor.settings import MonitorSettings
from certwatch.store.database import create_store_engine, session_factory
from certwatch.web.server import run_web_and_monitor
from certwatch.web.settings import WebSettings
from certwatch.x509.model import AnalysisPolicy

engine = create_store_engine(sys.argv[1])
stop = threading.Event()
with _stop_on_signals(stop):
    cycles = run_web_and_monitor(
        session_factory(engine),
        web=WebSettings(port=0),
        now_fn=lambda: datetime.now(UTC),
        settings=MonitorSettings(workers=0),
        policy=AnalysisPolicy(roots=()),
        stop=stop,
        after_cycle=lambda _: print("cycle", flush=True),
        on_listening=lambda host, port: print(port, flush=True),
    )
print("cycles", cycles, flush=True)
"""


def test_serve_process_stops_on_sigterm(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    process = subprocess.Popen(
        [sys.executable, "-c", SERVE_SCRIPT, url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        # The first cycle has run once its line is printed.
        assert process.stdout.readline() == "cycle\n"
        health = httpx.get(f"http://127.0.0.1:{port}/healthz")
        process.send_signal(signal.SIGTERM)
        remaining, errors = process.communicate(timeout=WAIT_SECONDS)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode == 0, errors
    assert health.status_code == 200
    assert health.json()["last_cycle_at"] is not None
    assert remaining.splitlines()[-1] == "cycles 1"
    assert refuses_connections(port)
