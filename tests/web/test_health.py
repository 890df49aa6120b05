"""`/healthz` over real HTTP: 200 with the last cycle, 503 without a database."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker
from tests.monitor.helpers import Clock
from tests.servers import closed_port
from tests.store.conftest import PostgresServer
from tests.web.conftest import ServeApp

from certwatch import __version__
from certwatch.store.database import create_store_engine, session_factory
from certwatch.web.app import create_app
from certwatch.web.heartbeat import record_cycle_completed
from certwatch.web.server import WebServer
from certwatch.web.settings import WebSettings


def test_healthz_ok_before_first_cycle(serve_app: ServeApp) -> None:
    response = httpx.get(f"{serve_app()}/healthz")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "database": "ok",
        "last_cycle_at": None,
        "version": __version__,
    }


def test_healthz_reports_last_cycle(
    sessions: sessionmaker[Session], serve_app: ServeApp, clock: Clock
) -> None:
    with sessions.begin() as session:
        record_cycle_completed(session, now=clock())

    response = httpx.get(f"{serve_app()}/healthz")

    assert response.status_code == 200
    assert response.json()["last_cycle_at"] == "2026-06-01T12:00:00Z"


def test_healthz_head(serve_app: ServeApp) -> None:
    response = httpx.head(f"{serve_app()}/healthz")

    assert response.status_code == 200
    assert response.content == b""


@pytest.fixture(params=["sqlite", "postgresql"])
def unreachable_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL whose every query fails: no file, or no server."""
    if request.param == "sqlite":
        # A folder where the file should be cannot be opened as a database.
        folder = tmp_path / "store.db"
        folder.mkdir()
        yield f"sqlite:///{folder}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    with closed_port() as port:
        yield f"postgresql+psycopg://{server.user}@127.0.0.1:{port}/certwatch"


def test_healthz_unreachable_database(
    unreachable_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    engine = create_store_engine(unreachable_url)
    settings = WebSettings(port=0)
    server = WebServer(create_app(session_factory(engine), settings), settings)
    try:
        with server.running(threading.Event()), caplog.at_level(logging.ERROR):
            url = f"http://{server.host}:{server.port}/healthz"
            first = httpx.get(url)
            second = httpx.get(url)
    finally:
        engine.dispose()

    assert first.status_code == 503
    assert first.json() == {
        "status": "unavailable",
        "database": "unreachable",
        "last_cycle_at": None,
        "version": __version__,
    }
    assert second.status_code == 503
    failures = [r for r in caplog.records if "cannot read the inventory" in r.message]
    # The second failure within a minute is counted, not logged again.
    assert len(failures) == 1
    assert failures[0].message.startswith("/healthz cannot read the inventory database")
