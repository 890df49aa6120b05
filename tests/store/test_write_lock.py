"""Transactions that write take SQLite's write lock first; readers stay deferred.

In WAL mode SQLite does not wait for the write lock when a transaction
that has read tries to write while another connection writes: the write
fails at once with "database is locked". These tests hold a real write
lock on a real SQLite file from one thread and write from another.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select
from sqlalchemy.orm import Session, sessionmaker

from certwatch.store.database import create_store_engine, session_factory, upgrade
from certwatch.store.models import TeamRow

NOW = datetime(2026, 6, 1, tzinfo=UTC)
# How long the first writer holds the lock; the second must wait it out.
HOLD_SECONDS = 0.5


@pytest.fixture
def sqlite_engine(tmp_path: Path, sqlite_template: Path) -> Iterator[Engine]:
    """An engine on a migrated SQLite file of the test's own."""
    path = tmp_path / "store.db"
    shutil.copyfile(sqlite_template, path)
    engine = create_store_engine(f"sqlite:///{path}")
    yield engine
    engine.dispose()


def begin_statements(engine: Engine) -> list[str]:
    """Record every BEGIN and SAVEPOINT statement that `engine` sends."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        if statement.startswith(("BEGIN", "SAVEPOINT")):
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    return seen


def hold_write_lock(
    sessions: sessionmaker[Session], locked: threading.Event, name: str
) -> None:
    with sessions.begin() as session:
        session.add(TeamRow(name=name, created_at=NOW))
        session.flush()
        locked.set()
        time.sleep(HOLD_SECONDS)


def team_count(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(TeamRow)) or 0


def test_session_begin_is_immediate_on_sqlite(sqlite_engine: Engine) -> None:
    sessions = session_factory(sqlite_engine)
    seen = begin_statements(sqlite_engine)

    with sessions.begin() as session:
        session.scalar(select(func.count()).select_from(TeamRow))
        with session.begin_nested():
            session.scalar(select(1))
    with sessions() as session, session.begin():
        session.scalar(select(1))
    with sessions() as session:
        session.scalar(select(1))

    assert len(seen) == 4
    assert seen[0] == "BEGIN IMMEDIATE"
    assert seen[1].startswith("SAVEPOINT")
    assert seen[2] == "BEGIN IMMEDIATE"
    assert seen[3] == "BEGIN"


def test_read_then_write_waits_for_writer(sqlite_engine: Engine) -> None:
    """The second transaction reads, then writes, while the first holds the lock."""
    sessions = session_factory(sqlite_engine)
    before = team_count(sessions)
    locked = threading.Event()
    holder = threading.Thread(target=hold_write_lock, args=(sessions, locked, "a"))
    holder.start()
    assert locked.wait(5)

    started = time.monotonic()
    with sessions.begin() as session:
        seen = session.scalar(select(func.count()).select_from(TeamRow))
        session.add(TeamRow(name="b", created_at=NOW))
    waited = time.monotonic() - started
    holder.join()

    assert seen == before + 1
    assert team_count(sessions) == before + 2
    assert waited >= HOLD_SECONDS / 2


def test_concurrent_read_then_write_all_commit(sqlite_engine: Engine) -> None:
    sessions = session_factory(sqlite_engine)
    before = team_count(sessions)
    start = threading.Barrier(8)

    def add(number: int) -> None:
        start.wait()
        with sessions.begin() as session:
            session.scalar(select(func.count()).select_from(TeamRow))
            time.sleep(0.02)
            session.add(TeamRow(name=f"team {number}", created_at=NOW))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(add, range(8)))

    assert team_count(sessions) == before + 8


def test_plain_session_reads_while_writer_holds_lock(sqlite_engine: Engine) -> None:
    sessions = session_factory(sqlite_engine)
    before = team_count(sessions)
    locked = threading.Event()
    holder = threading.Thread(target=hold_write_lock, args=(sessions, locked, "a"))
    holder.start()
    assert locked.wait(5)

    started = time.monotonic()
    seen = team_count(sessions)
    waited = time.monotonic() - started
    holder.join()

    assert seen == before
    assert waited < HOLD_SECONDS / 2


def test_session_begin_on_postgresql(postgres_only_url: str) -> None:
    """PostgreSQL sessions begin as before: no SQLite option, one BEGIN."""
    engine = create_store_engine(postgres_only_url)
    try:
        sessions = session_factory(engine)
        with sessions.begin() as session:
            session.add(TeamRow(name="pg", created_at=NOW))
        with sessions() as session:
            found = session.scalar(select(TeamRow.id).where(TeamRow.name == "pg"))
    finally:
        engine.dispose()

    assert found is not None


def test_concurrent_upgrades_of_new_file(tmp_path: Path) -> None:
    """Services started together migrate one new SQLite file without errors."""
    url = f"sqlite:///{tmp_path / 'new.db'}"
    start = threading.Barrier(4)

    def migrate(_number: int) -> None:
        start.wait()
        upgrade(url)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(migrate, range(4)))

    engine = create_store_engine(url)
    try:
        with session_factory(engine)() as session:
            names = list(session.scalars(select(TeamRow.name)))
    finally:
        engine.dispose()
    assert names == ["default"]
