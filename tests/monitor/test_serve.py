"""`serve`: the loop stops when the SQLite file it opened goes away."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import text
from tests.certs import NOW
from tests.monitor.helpers import Clock, Pki, settings

from certwatch.monitor.serve import SqliteFileWatch, serve
from certwatch.store.database import create_store_engine, session_factory, upgrade
from certwatch.store.errors import StoreError


def test_file_watch_deleted_and_replaced(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    path.write_bytes(b"")
    watch = SqliteFileWatch(path)
    unchanged = watch.problem()

    # The new file exists before the old one goes, so it has its own inode.
    other = tmp_path / "other.db"
    other.write_bytes(b"")
    other.replace(path)
    replaced = watch.problem()
    path.unlink()
    deleted = watch.problem()

    assert unchanged is None
    assert deleted == (
        f"the database file {path} was deleted; restore it or restart "
        "certwatch to create a new one"
    )
    assert replaced is not None
    assert "was replaced by another file" in replaced


def test_serve_stops_on_deleted_file(tmp_path: Path, pki: Pki) -> None:
    path = tmp_path / "store.db"
    url = f"sqlite:///{path}"
    upgrade(url)
    engine = create_store_engine(url)
    try:
        watch = SqliteFileWatch(path)
        path.unlink()
        with pytest.raises(StoreError, match="was deleted"):
            serve(
                session_factory(engine),
                now_fn=Clock(NOW),
                settings=settings(),
                policy=pki.policy,
                stop=threading.Event(),
                store_problem=watch.problem,
            )
    finally:
        engine.dispose()


def test_serve_gives_sqlite_statistics(tmp_path: Path, pki: Pki) -> None:
    """After its first cycle, `serve` has ANALYZE fill `sqlite_stat1`."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    engine = create_store_engine(url)
    stop = threading.Event()
    try:
        sessions = session_factory(engine)
        with sessions() as session:
            before = session.execute(
                text("SELECT name FROM sqlite_master WHERE name = 'sqlite_stat1'")
            ).all()

        def stop_after_cycle(_sessions: object) -> None:
            stop.set()

        serve(
            sessions,
            now_fn=Clock(NOW),
            settings=settings(),
            policy=pki.policy,
            stop=stop,
            after_cycle=stop_after_cycle,
        )
        with sessions() as session:
            indexes = session.scalars(text("SELECT idx FROM sqlite_stat1")).all()
    finally:
        engine.dispose()

    assert before == []
    # ANALYZE leaves out empty tables; the default team's row is there.
    assert "sqlite_autoindex_teams_1" in indexes
