"""Fixtures for the web service: a store per test and the app served for real.

The database fixtures come from the store tests, so every test that uses
`database_url` runs on SQLite and on PostgreSQL. `serve_app` runs the
application with uvicorn on 127.0.0.1, on a port the system picks.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Engine, delete, update
from sqlalchemy.orm import Session, sessionmaker
from tests.monitor.helpers import Clock, Pki, make_pki
from tests.store.conftest import (  # noqa: F401
    database_url,
    engine,
    postgres_server,
    postgres_url,
    sqlite_template,
)

from certwatch.store.database import session_factory
from certwatch.store.models import MonitorHeartbeatRow, TeamCalendarRow
from certwatch.web.app import create_app
from certwatch.web.server import WebServer
from certwatch.web.settings import WebSettings

ServeApp = Callable[..., str]
"""Serve an app for `sessions` with the given settings; return its base URL."""


@pytest.fixture
def sessions(engine: Engine) -> Iterator[sessionmaker[Session]]:  # noqa: F811
    """A session factory on the test database, without web state of earlier tests.

    The PostgreSQL database is shared by the session's tests, and the store
    fixtures empty only the tables they know of.
    """
    factory = session_factory(engine)
    with factory.begin() as session:
        session.execute(delete(TeamCalendarRow))
        session.execute(update(MonitorHeartbeatRow).values(last_cycle_at=None))
    yield factory


@pytest.fixture(scope="session")
def pki() -> Pki:
    """A root, an intermediate and leaves for www.example.test."""
    return make_pki()


@pytest.fixture
def clock() -> Clock:
    """The clock of the monitor and the web service, set by hand."""
    return Clock()


@pytest.fixture
def serve_app(sessions: sessionmaker[Session], clock: Clock) -> Iterator[ServeApp]:
    """Start the app with real uvicorn; every server stops after the test."""
    with contextlib.ExitStack() as stack:

        def start(settings: WebSettings | None = None) -> str:
            chosen = settings or WebSettings(port=0)
            server = WebServer(create_app(sessions, chosen, now_fn=clock), chosen)
            stack.enter_context(server.running(threading.Event()))
            return f"http://{server.host}:{server.port}"

        yield start


@pytest.fixture(autouse=True)
def check_logger_level() -> Iterator[None]:
    """Restore the check engine's log level, which the monitor lowers."""
    logger = logging.getLogger("certwatch.check")
    level = logger.level
    yield
    logger.setLevel(level)
