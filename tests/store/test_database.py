"""Database URLs, engine settings and migrations."""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from click.testing import CliRunner
from sqlalchemy import Engine, MetaData, insert, inspect, select, text
from sqlalchemy.exc import OperationalError, StatementError
from sqlalchemy.orm import Session

from certwatch.cli import cli
from certwatch.store import database
from certwatch.store.database import (
    HEAD_REVISION,
    _alembic_config,
    create_store_engine,
    database_url,
    default_database_path,
    normalize_url,
    upgrade,
)
from certwatch.store.errors import StoreError
from certwatch.store.models import DEFAULT_TEAM, Base, EndpointRow, TeamRow

TABLES = {
    "account_tokens",
    "alembic_version",
    "api_tokens",
    "alert_thresholds",
    "alerts",
    "contacts",
    "monitor_heartbeats",
    "outbox",
    "sessions",
    "site_secrets",
    "certificate_changes",
    "certificate_names",
    "certificates",
    "endpoint_tags",
    "endpoints",
    "file_source_tags",
    "file_sources",
    "findings",
    "invitations",
    "memberships",
    "observation_certificates",
    "observations",
    "team_calendars",
    "teams",
    "users",
}


def test_default_database_path_uses_xdg_data_home() -> None:
    environ = {"XDG_DATA_HOME": "/srv/data", "HOME": "/home/ops"}

    path = default_database_path(environ)

    assert path == Path("/srv/data/certwatch/certwatch.db")


def test_default_database_path_falls_back_to_home() -> None:
    environ = {"XDG_DATA_HOME": "relative/ignored", "HOME": "/home/ops"}

    path = default_database_path(environ)

    assert path == Path("/home/ops/.local/share/certwatch/certwatch.db")


def test_database_url_prefers_environment() -> None:
    environ = {"CERTWATCH_DATABASE_URL": "postgresql://ops@db.example.test/cw"}

    assert database_url(environ) == "postgresql://ops@db.example.test/cw"


def test_database_url_defaults_to_sqlite_file() -> None:
    environ = {"HOME": "/home/ops", "CERTWATCH_DATABASE_URL": "  "}

    url = database_url(environ)

    assert url == "sqlite:////home/ops/.local/share/certwatch/certwatch.db"


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://",
        "sqlite+pysqlite://",
        "sqlite:///:memory:",
        "sqlite:///file::memory:?uri=true",
        "sqlite:///file:store.db?mode=memory&uri=true",
        "sqlite:///file:store.db?mode=ro&mode=memory&uri=1",
    ],
)
def test_database_url_rejects_sqlite_in_memory(url: str) -> None:
    environ = {"CERTWATCH_DATABASE_URL": url}

    with pytest.raises(
        StoreError,
        match=rf"CERTWATCH_DATABASE_URL='{re.escape(url)}' names an in-memory "
        r"SQLite database, which keeps nothing after the command: give a file such "
        r"as sqlite:////var/lib/certwatch/certwatch\.db, or unset "
        r"CERTWATCH_DATABASE_URL for the default file\.",
    ):
        database_url(environ)


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:////srv/certwatch/memory.db",
        "sqlite:///file:store.db?mode=ro&uri=true",
        # Without uri=true, SQLite takes the name as a plain file name.
        "sqlite:///file::memory:",
    ],
)
def test_database_url_accepts_sqlite_file(url: str) -> None:
    assert database_url({"CERTWATCH_DATABASE_URL": url}) == url


def test_normalize_url_selects_psycopg() -> None:
    url = normalize_url("postgresql://ops:secret@db.example.test/cw")

    assert url.drivername == "postgresql+psycopg"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://ops@db.example.test/cw", "Unsupported database 'mysql'"),
        ("postgresql+asyncpg://ops@db.example.test/cw", "Unsupported PostgreSQL"),
        ("not a url", "Invalid database URL"),
    ],
)
def test_normalize_url_rejects(url: str, message: str) -> None:
    with pytest.raises(StoreError, match=message):
        normalize_url(url)


def test_normalize_url_hides_password() -> None:
    with pytest.raises(StoreError) as caught:
        normalize_url("mysql://ops:hunter2@db.example.test/cw")

    assert "hunter2" not in str(caught.value)


def test_sqlite_engine_pragmas(tmp_path: Path) -> None:
    engine = create_store_engine(f"sqlite:///{tmp_path / 'nested' / 'store.db'}")
    try:
        with engine.connect() as connection:
            journal = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
            foreign_keys = connection.exec_driver_sql("PRAGMA foreign_keys").scalar()
            timeout = connection.exec_driver_sql("PRAGMA busy_timeout").scalar()
    finally:
        engine.dispose()

    assert journal == "wal"
    assert foreign_keys == 1
    assert timeout == 30_000


def test_upgrade_empty_database(empty_database_url: str) -> None:
    upgrade(empty_database_url)
    upgrade(empty_database_url)  # a second run finds the schema current

    engine = create_store_engine(empty_database_url)
    try:
        assert set(inspect(engine).get_table_names()) == TABLES
        with Session(engine) as session:
            teams = session.execute(select(TeamRow.name, TeamRow.created_at)).all()
            version = session.execute(text("SELECT version_num FROM alembic_version"))
            assert version.scalar_one() == HEAD_REVISION
    finally:
        engine.dispose()

    assert [name for name, _ in teams] == [DEFAULT_TEAM]
    assert isinstance(teams[0][1], datetime)
    assert teams[0][1].tzinfo is not None


def test_head_revision_names_newest_migration() -> None:
    scripts = ScriptDirectory.from_config(_alembic_config())

    assert scripts.get_current_head() == HEAD_REVISION


def test_upgrade_at_head_skips_migrations(
    empty_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    upgrade(empty_database_url)
    engine = create_store_engine(empty_database_url)

    def no_migrations() -> None:
        raise AssertionError("the migration scripts were loaded")

    monkeypatch.setattr(database, "_alembic_config", no_migrations)
    try:
        upgrade(engine)
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = '0008'"))
        with pytest.raises(AssertionError, match="scripts were loaded"):
            upgrade(engine)
    finally:
        engine.dispose()


def test_upgrade_matches_models(database_url: str) -> None:
    engine = create_store_engine(database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True}
            )
            differences = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()

    assert differences == []


def test_utc_datetime_rejects_naive(session: Session) -> None:
    session.add(TeamRow(name="ops", created_at=datetime(2026, 6, 1, 12, 0)))

    with pytest.raises(StatementError, match="Naive datetime"):
        session.flush()


def test_normalize_url_postgres_alias() -> None:
    url = normalize_url("postgres://certwatch@db.example.test:5432/certwatch")

    assert url.drivername == "postgresql+psycopg"
    assert url.database == "certwatch"


def test_upgrade_failure_leaves_no_tables_on_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "foreign.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE endpoints (x)")

    with pytest.raises(OperationalError, match="already exists"):
        upgrade(f"sqlite:///{path}")

    with sqlite3.connect(path) as connection:
        tables = {
            row[0]
            for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type='table'"
            )
        }
    assert tables == {"endpoints"}


def test_upgrade_to_0003_copies_latest_scan_onto_sources(
    empty_database_url: str,
) -> None:
    """Revision 0003 fills last_status and not_after from stored observations."""
    upgrade(empty_database_url, "0002")
    engine = create_store_engine(empty_database_url)
    soon = datetime(2027, 1, 10, tzinfo=UTC)
    later = datetime(2027, 6, 1, tzinfo=UTC)
    seen = datetime(2026, 12, 1, tzinfo=UTC)
    try:
        with engine.begin() as connection:
            tables = MetaData()
            tables.reflect(connection)
            team_id = connection.execute(select(tables.tables["teams"].c.id)).scalar()
            schedule = {
                "team_id": team_id,
                "interval_seconds": 3600,
                "enabled": True,
                "notes": "",
                "created_at": seen,
                "updated_at": seen,
                "next_scan_at": seen,
                "consecutive_failures": 0,
            }
            endpoint = {"protocol": "https", "port": 443, "address": ""}
            connection.execute(
                insert(tables.tables["endpoints"]),
                [
                    {**schedule, **endpoint, "id": i, "target": n, "host": n}
                    | {"server_name": n}
                    for i, n in ((1, "a.example.test"), (2, "b.example.test"))
                ],
            )
            connection.execute(
                insert(tables.tables["certificates"]),
                [
                    {"sha256": sha, "der": b"x", "dns_names": [], "ip_addresses": []}
                    | {"not_after": not_after, "first_seen_at": seen}
                    for sha, not_after in (("1" * 64, soon), ("2" * 64, later))
                ],
            )
            observation = {"endpoint_id": 1, "observed_at": seen}
            connection.execute(
                insert(tables.tables["observations"]),
                [
                    # An earlier scan that no longer counts, then two addresses.
                    {**observation, "id": 1, "status": "critical", "latest": False},
                    {**observation, "id": 2, "status": "ok", "latest": True},
                    {**observation, "id": 3, "status": "warning", "latest": True},
                ],
            )
            connection.execute(
                insert(tables.tables["observation_certificates"]),
                [
                    {
                        "observation_id": 1,
                        "position": 0,
                        "certificate_sha256": "1" * 64,
                    },
                    {
                        "observation_id": 2,
                        "position": 0,
                        "certificate_sha256": "2" * 64,
                    },
                    # An intermediate does not count for an endpoint.
                    {
                        "observation_id": 3,
                        "position": 1,
                        "certificate_sha256": "1" * 64,
                    },
                    {
                        "observation_id": 3,
                        "position": 0,
                        "certificate_sha256": "2" * 64,
                    },
                ],
            )

        upgrade(empty_database_url)

        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT id, last_status FROM endpoints ORDER BY id")
            ).all()
        with Session(engine) as session:
            query = select(EndpointRow.id, EndpointRow.not_after)
            expiry = {row[0]: row[1] for row in session.execute(query)}
    finally:
        engine.dispose()

    assert [tuple(row) for row in rows] == [(1, "warning"), (2, None)]
    assert expiry == {1: later, 2: None}


def insert_endpoint_with_history(engine: Engine, seen: datetime) -> None:
    """Store one endpoint with a tag and an observation, in the schema of 0007."""
    with engine.begin() as connection:
        tables = MetaData()
        tables.reflect(connection)
        team_id = connection.execute(select(tables.tables["teams"].c.id)).scalar()
        connection.execute(
            insert(tables.tables["endpoints"]),
            {
                "id": 1,
                "target": "a.example.test",
                "host": "a.example.test",
                "server_name": "a.example.test",
                "protocol": "https",
                "port": 443,
                "address": "",
                "team_id": team_id,
                "interval_seconds": 6 * 3600,
                "enabled": True,
                "notes": "",
                "created_at": seen,
                "updated_at": seen,
                "next_scan_at": seen,
                "consecutive_failures": 0,
            },
        )
        connection.execute(
            insert(tables.tables["endpoint_tags"]),
            {"endpoint_id": 1, "tag": "web"},
        )
        connection.execute(
            insert(tables.tables["observations"]),
            {
                "endpoint_id": 1,
                "observed_at": seen,
                "status": "ok",
                "latest": True,
            },
        )


def test_upgrade_to_0009_keeps_rows_and_allows_null_interval(
    empty_database_url: str,
) -> None:
    """Revision 0009 drops NOT NULL without losing rows that reference endpoints."""
    upgrade(empty_database_url, "0008")
    engine = create_store_engine(empty_database_url)
    seen = datetime(2026, 12, 1, tzinfo=UTC)
    try:
        insert_endpoint_with_history(engine, seen)

        upgrade(engine)

        with engine.begin() as connection:
            observations = connection.execute(
                text("SELECT count(*) FROM observations")
            ).scalar()
            tags = connection.execute(
                text("SELECT count(*) FROM endpoint_tags")
            ).scalar()
            interval = connection.execute(
                text("SELECT interval_seconds FROM endpoints")
            ).scalar()
            connection.execute(text("UPDATE endpoints SET interval_seconds = NULL"))
        columns = {
            column["name"]: column
            for column in inspect(engine).get_columns("file_sources")
        }
    finally:
        engine.dispose()

    assert observations == 1
    assert tags == 1
    assert interval == 6 * 3600
    assert columns["interval_seconds"]["nullable"] is True


def test_upgrade_from_0007_keeps_rows_that_reference_endpoints(
    empty_database_url: str,
) -> None:
    """Revision 0008 rebuilds `endpoints` on SQLite; rows referring to it stay."""
    upgrade(empty_database_url, "0007")
    engine = create_store_engine(empty_database_url)
    try:
        insert_endpoint_with_history(engine, datetime(2026, 12, 1, tzinfo=UTC))

        upgrade(engine)

        with engine.begin() as connection:
            observations = connection.execute(
                text("SELECT count(*) FROM observations")
            ).scalar()
            tags = connection.execute(
                text("SELECT count(*) FROM endpoint_tags")
            ).scalar()
            sqlite = connection.dialect.name == "sqlite"
            if sqlite:
                enforced = connection.execute(text("PRAGMA foreign_keys")).scalar()
    finally:
        engine.dispose()

    assert observations == 1
    assert tags == 1
    if sqlite:
        assert enforced == 1


def test_open_store_newer_revision_names_upgrade(empty_database_url: str) -> None:
    upgrade(empty_database_url)
    engine = create_store_engine(empty_database_url)
    try:
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = 'zz99'"))
    finally:
        engine.dispose()

    outcome = CliRunner().invoke(
        cli, ["list"], env={"CERTWATCH_DATABASE_URL": empty_database_url}
    )

    assert outcome.exit_code != 0
    assert "has schema revision unknown to certwatch" in outcome.output
    assert "so upgrade certwatch" in outcome.output
