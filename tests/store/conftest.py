"""Database fixtures: every store test runs on SQLite and on PostgreSQL.

PostgreSQL is the server on 127.0.0.1:5432 with trust authentication. The
session creates a throwaway database there and drops it at the end. When
the server cannot be reached the PostgreSQL tests fail, because CI must
really run them; set CERTWATCH_TEST_SKIP_POSTGRES=1 to skip them instead.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from certwatch.store.database import create_store_engine, upgrade

SKIP_VARIABLE = "CERTWATCH_TEST_SKIP_POSTGRES"
POSTGRES_HOST = "127.0.0.1"
POSTGRES_PORT = 5432
POSTGRES_SERVER = f"{POSTGRES_HOST}:{POSTGRES_PORT}"
POSTGRES_USERS = ("postgres", "root")

# Every table except teams and alembic_version, emptied before each test.
_DATA_TABLES = (
    "findings, observation_certificates, observations, certificate_names, "
    "certificates, endpoint_tags, file_source_tags, endpoints, file_sources, "
    "certificate_changes, outbox, alert_thresholds, alerts, contacts, "
    "team_calendars, invitations, account_tokens, api_tokens, site_secrets, "
    "memberships, sessions, users"
)


class PostgresServer:
    """Creates and drops throwaway databases on the local PostgreSQL server."""

    def __init__(self, user: str) -> None:
        self.user = user
        self.created: list[str] = []

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{self.user}@{POSTGRES_SERVER}/{database}"

    def create_database(self) -> str:
        name = f"certwatch_test_{uuid.uuid4().hex[:12]}"
        with self._admin() as connection:
            connection.execute(
                sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
            )
        self.created.append(name)
        return name

    def drop_database(self, name: str) -> None:
        with self._admin() as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(name)
                )
            )
        self.created.remove(name)

    def _admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            host=POSTGRES_HOST,
            port=POSTGRES_PORT,
            user=self.user,
            dbname="postgres",
            autocommit=True,
            connect_timeout=3,
        )


def _find_postgres() -> PostgresServer | str:
    problems = []
    for user in POSTGRES_USERS:
        server = PostgresServer(user)
        try:
            server._admin().close()
        except psycopg.OperationalError as exc:
            problems.append(f"as {user}: {str(exc).strip()}")
            continue
        return server
    return "; ".join(problems)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The local PostgreSQL server; fails the test when it is unreachable."""
    found = _find_postgres()
    if isinstance(found, str):
        message = (
            f"PostgreSQL at {POSTGRES_SERVER} is unreachable ({found}). Start it, "
            f"or set {SKIP_VARIABLE}=1 to skip the PostgreSQL store tests."
        )
        if os.environ.get(SKIP_VARIABLE) == "1":
            pytest.skip(message)
        pytest.fail(message)
    yield found
    for name in list(found.created):
        found.drop_database(name)


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """A migrated PostgreSQL database shared by the session's tests."""
    url = postgres_server.url(postgres_server.create_database())
    upgrade(url)
    return url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file that each test copies, to skip re-migrating."""
    path = tmp_path_factory.mktemp("template") / "store.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a migrated database holding only the default team."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "store.db"
        shutil.copyfile(template, path)
        return f"sqlite:///{path}"

    return _emptied(request.getfixturevalue("postgres_url"))


@pytest.fixture
def postgres_only_url(postgres_url: str) -> str:
    """The migrated PostgreSQL database, for tests of row locking."""
    return _emptied(postgres_url)


def _emptied(url: str) -> str:
    engine = create_store_engine(url)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(
                f"TRUNCATE {_DATA_TABLES} RESTART IDENTITY CASCADE"
            )
            connection.exec_driver_sql("DELETE FROM teams WHERE name <> 'default'")
            connection.exec_driver_sql(
                "UPDATE teams SET reminder_schedule = NULL, "
                "escalate_after_seconds = NULL, digest_sent_at = NULL, "
                "endpoint_limit = NULL"
            )
            connection.exec_driver_sql(
                "UPDATE monitor_heartbeats SET last_cycle_at = NULL"
            )
    finally:
        engine.dispose()
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a database with no tables at all."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = server.create_database()
    yield server.url(name)
    server.drop_database(name)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on the test database, disposed after the test."""
    engine = create_store_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    """A session on the test database; the test commits what it needs."""
    with Session(engine, expire_on_commit=False) as session:
        yield session


@pytest.fixture
def open_session(engine: Engine) -> Iterator[Callable[[], Session]]:
    """Open further sessions on the test database, all closed after the test."""
    sessions: list[Session] = []

    def open_one() -> Session:
        opened = Session(engine, expire_on_commit=False)
        sessions.append(opened)
        return opened

    yield open_one
    for opened in sessions:
        opened.close()
