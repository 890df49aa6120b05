"""Open the inventory database: choose its URL, build engines, run migrations.

The embedded default is a SQLite file under the XDG data folder. Setting
`CERTWATCH_DATABASE_URL` selects another file or a PostgreSQL server, which
is reached through psycopg 3.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from certwatch.store.errors import StoreError

if TYPE_CHECKING:
    from alembic.config import Config

logger = logging.getLogger(__name__)

DATABASE_URL_VARIABLE = "CERTWATCH_DATABASE_URL"

# How long a SQLite connection waits for another writer before it raises
# "database is locked". A scan batch of a few thousand observations commits
# in well under a second, so 30 seconds covers any normal wait.
SQLITE_BUSY_TIMEOUT_MS = 30_000
WAL_RETRY_SECONDS = 0.05

_MIGRATIONS = "certwatch.store.migrations"

# The connection execution option that makes `_begin_sqlite` start the
# transaction with BEGIN IMMEDIATE. `StoreSession.begin` sets it.
SQLITE_BEGIN_OPTION = "certwatch_sqlite_begin"


def default_database_path(environ: Mapping[str, str] = os.environ) -> Path:
    """Return the default SQLite file: `$XDG_DATA_HOME/certwatch/certwatch.db`.

    `XDG_DATA_HOME` defaults to `~/.local/share`, as the XDG base directory
    specification defines.
    """
    data_home = environ.get("XDG_DATA_HOME") or ""
    base = Path(data_home) if Path(data_home).is_absolute() else None
    if base is None:
        base = Path(environ.get("HOME") or Path.home()) / ".local" / "share"
    return base / "certwatch" / "certwatch.db"


def database_url(environ: Mapping[str, str] = os.environ) -> str:
    """Return `CERTWATCH_DATABASE_URL` when set, else the default SQLite file.

    Raises:
        StoreError: the variable names an in-memory SQLite database, which
            each command would create empty and throw away.
    """
    configured = environ.get(DATABASE_URL_VARIABLE, "").strip()
    if not configured:
        return f"sqlite:///{default_database_path(environ)}"
    if _is_sqlite_in_memory(configured):
        # A SQLite URL has no password to hide, so it is shown as given.
        raise StoreError(
            f"{DATABASE_URL_VARIABLE}={configured!r} names an in-memory "
            "SQLite database, which keeps nothing after the command: give a file "
            "such as sqlite:////var/lib/certwatch/certwatch.db, or unset "
            f"{DATABASE_URL_VARIABLE} for the default file."
        )
    return configured


def _is_sqlite_in_memory(url: str) -> bool:
    """Tell whether `url` names an in-memory SQLite database.

    That is `sqlite://`, `sqlite:///:memory:`, or a URI filename
    (`?uri=true`) that is `file::memory:` or has `mode=memory`.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        return False  # normalize_url reports the invalid URL
    if parsed.get_backend_name() != "sqlite":
        return False
    if parsed.database in (None, "", ":memory:"):
        return True
    if not {"true", "1"} & _query_values(parsed, "uri"):
        return False
    return parsed.database.startswith("file::memory:") or (
        "memory" in _query_values(parsed, "mode")
    )


def _query_values(url: URL, key: str) -> set[str]:
    """Return the values of a query parameter, which may be given repeatedly."""
    value = url.query.get(key, ())
    values = (value,) if isinstance(value, str) else value
    return {item.lower() for item in values}


def normalize_url(url: str | URL) -> URL:
    """Parse a database URL and select psycopg 3 for plain `postgresql://`.

    Raises:
        StoreError: the URL cannot be parsed or names another database.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(
            f"Invalid database URL {_safe(url)!r}: {exc}. Use sqlite:///PATH or "
            "postgresql://USER@HOST:PORT/DATABASE."
        ) from exc

    if parsed.drivername == "postgres":
        # libpq and many hosting providers write postgres://, an alias that
        # SQLAlchemy 2 no longer accepts.
        parsed = parsed.set(drivername="postgresql")
    backend = parsed.get_backend_name()
    driver = parsed.get_driver_name()
    if backend == "postgresql" and parsed.drivername == "postgresql":
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "postgresql" and driver != "psycopg":
        raise StoreError(
            f"Unsupported PostgreSQL driver {driver!r} in {_safe(url)!r}: use "
            "postgresql:// or postgresql+psycopg://, which select psycopg 3."
        )
    if backend not in ("sqlite", "postgresql"):
        raise StoreError(
            f"Unsupported database {backend!r} in {_safe(url)!r}: use "
            "sqlite:///PATH or postgresql://USER@HOST:PORT/DATABASE."
        )
    return parsed


def create_store_engine(url: str | URL, **options: Any) -> Engine:
    """Build an engine for `url`, with the SQLite settings the store relies on.

    For a SQLite file the parent folder is created, and every connection
    turns on write-ahead logging (readers do not block the writer), foreign
    keys (the schema's cascades need them) and a busy timeout. Keyword
    options go to `sqlalchemy.create_engine`.
    """
    parsed = normalize_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, **options)

    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed, **options)
    event.listen(engine, "connect", _configure_sqlite)
    event.listen(engine, "begin", _begin_sqlite)
    return engine


class StoreSession(Session):
    """A session whose explicit transactions take SQLite's write lock first.

    In WAL mode SQLite does not call the busy handler when a transaction
    that has read tries to write while another connection writes: the
    write fails at once with "database is locked". A transaction begun
    with `begin()` (or `sessionmaker.begin()`) is one that means to write,
    so on SQLite it starts with BEGIN IMMEDIATE and waits up to the busy
    timeout for the lock. A session used without `begin()` starts a
    deferred transaction on first use, so readers still run side by side.
    PostgreSQL connections are left as they are.
    """

    def begin(self, nested: bool = False) -> SessionTransaction:
        """Begin a transaction; on SQLite, take the write lock at once."""
        starts_root = self._transaction is None and not nested
        transaction = super().begin(nested=nested)
        if starts_root and self.get_bind().dialect.name == "sqlite":
            # The connection is acquired here rather than on the first
            # statement, so the option is set before SQLAlchemy emits BEGIN.
            self.connection(execution_options={SQLITE_BEGIN_OPTION: "IMMEDIATE"})
        return transaction


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Return a session factory whose objects stay readable after commit.

    Its sessions are `StoreSession`s, so `with sessions.begin() as session:`
    waits for SQLite's write lock instead of failing when another
    connection writes.
    """
    factory: sessionmaker[Session] = sessionmaker(
        engine, class_=StoreSession, expire_on_commit=False
    )
    return factory


def upgrade(url: str | URL | Engine, revision: str = "head") -> None:
    """Create or migrate the schema to `revision` with the packaged migrations.

    Users never run the `alembic` command: the CLI and the service call this
    at start-up, and it does nothing when the schema is already current.
    """
    engine = url if isinstance(url, Engine) else create_store_engine(url)
    try:
        if revision == "head" and _at_head(engine):
            # Loading the migration scripts costs every command about a
            # tenth of a second; a current schema needs none of them.
            return
        # Alembic reads the schema's revision before it writes, so on SQLite
        # the migration takes the write lock first, as `StoreSession` does.
        with engine.connect().execution_options(
            **{SQLITE_BEGIN_OPTION: "IMMEDIATE"}
        ) as connection:
            sqlite = connection.dialect.name == "sqlite"
            if sqlite:
                # A migration that rebuilds a table on SQLite drops the old
                # one. With foreign keys enforced, that drop deletes every
                # row that references it through ON DELETE CASCADE. The
                # pragma has no effect inside a transaction, so it is set
                # before, and the references are checked before the commit.
                _outside_transaction(connection, "PRAGMA foreign_keys=OFF")
            try:
                with connection.begin():
                    # Alembic is imported here: a command on a current
                    # store does without its tenth of a second of imports.
                    from alembic import command
                    from alembic.util.exc import CommandError

                    config = _alembic_config()
                    config.attributes["connection"] = connection
                    before = _schema_revision(connection)
                    try:
                        command.upgrade(config, revision)
                    except CommandError as exc:
                        raise UnknownRevisionError(str(exc)) from exc
                    # The check reads every table, so it runs only when a
                    # migration did.
                    if sqlite and _schema_revision(connection) != before:
                        _check_foreign_keys(connection)
            finally:
                if sqlite:
                    _outside_transaction(connection, "PRAGMA foreign_keys=ON")
    finally:
        if engine is not url:
            engine.dispose()
    logger.debug("database schema at revision %s", revision)


class UnknownRevisionError(StoreError):
    """The database's schema revision is not among the packaged migrations."""


# The newest migration's revision; tests/store/test_database.py checks that
# it names the head of the packaged migrations.
HEAD_REVISION = "0009"


def _at_head(engine: Engine) -> bool:
    """Tell whether the schema is at `HEAD_REVISION`, without taking a lock."""
    try:
        with engine.connect() as connection:
            found = connection.execute(
                text("SELECT version_num FROM alembic_version")
            ).all()
    except SQLAlchemyError:
        # No database or no schema yet: Alembic creates it.
        return False
    return [row[0] for row in found] == [HEAD_REVISION]


def _schema_revision(connection: Connection) -> str | None:
    """Return the schema's Alembic revision, `None` for an empty database."""
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def _outside_transaction(connection: Connection, statement: str) -> None:
    """Run `statement` on the SQLite connection itself, outside any transaction.

    SQLAlchemy would begin a transaction first, and SQLite ignores
    `PRAGMA foreign_keys` inside one.
    """
    cursor = connection.connection.cursor()
    try:
        cursor.execute(statement)
    finally:
        cursor.close()


def _check_foreign_keys(connection: Connection) -> None:
    """Raise when a migration left a row whose reference points nowhere.

    Raises:
        StoreError: `PRAGMA foreign_key_check` found such rows; the
            migration's transaction is rolled back.
    """
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
    if broken:
        tables = sorted({str(row[0]) for row in broken})
        raise StoreError(
            f"Migrating the SQLite database left {len(broken)} rows in "
            f"{', '.join(tables)} that refer to missing rows; nothing was "
            "changed. Report this with the database's schema."
        )


# Rows that ANALYZE reads per index on SQLite: enough for the planner to
# tell a selective index from an unselective one, and bounded, so that a
# refresh stays short on a large store.
SQLITE_ANALYSIS_LIMIT = 1000


def refresh_statistics(sessions: Callable[[], Session]) -> None:
    """Give SQLite's query planner row statistics; PostgreSQL keeps its own.

    Without them SQLite reads a dashboard page of a team through the
    `team_id` index and sorts every row of the team, instead of walking
    the `not_after` index: 22 against 12 ms for 10,000 endpoints.
    """
    with sessions() as session, session.begin():
        if session.get_bind().dialect.name != "sqlite":
            return
        session.execute(text(f"PRAGMA analysis_limit={SQLITE_ANALYSIS_LIMIT}"))
        session.execute(text("ANALYZE"))


def _alembic_config() -> Config:
    from alembic.config import Config

    location = resources.files(_MIGRATIONS)
    config = Config()
    config.set_main_option("script_location", str(location))
    return config


def _use_wal(cursor: Any) -> None:
    """Put the database file in WAL mode, which it keeps once set.

    Switching a new file to WAL can fail with "database is locked" at once,
    without waiting for the busy timeout, while another connection opens the
    same new file. So the switch is tried again for up to the busy timeout.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(WAL_RETRY_SECONDS)


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        _use_wal(cursor)
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()
    # Python's sqlite3 module (3.11) commits DDL outside any transaction, so
    # a migration killed half-way would leave some tables behind. With its
    # own transaction handling off, `_begin_sqlite` starts every transaction
    # and DDL is rolled back with the rest.
    dbapi_connection.isolation_level = None


def _begin_sqlite(connection: Connection) -> None:
    mode = connection.get_execution_options().get(SQLITE_BEGIN_OPTION)
    if mode == "IMMEDIATE":
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        connection.exec_driver_sql("BEGIN")


def _safe(url: str | URL) -> str:
    """Render a URL for a message with its password hidden."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparsable URL>"
