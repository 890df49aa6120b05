"""Open the inventory store for a command."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import click
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from certwatch import __version__
from certwatch.store.database import (
    UnknownRevisionError,
    create_store_engine,
    database_url,
    session_factory,
    upgrade,
)
from certwatch.store.errors import StoreError

logger = logging.getLogger(__name__)


@contextmanager
def open_store(
    environ: Mapping[str, str] = os.environ,
) -> Iterator[sessionmaker[Session]]:
    """Open the store named by `CERTWATCH_DATABASE_URL` (or the default file).

    The schema is created or upgraded first. Yields a session factory and
    disposes of the engine afterwards.

    Raises:
        click.ClickException: the URL is invalid or the database cannot be
            reached; `certwatch.cli.main` prints it and exits 3.
    """
    with _store_errors():
        url = database_url(environ)
        _warn_relative_sqlite_path(url)
        engine = create_store_engine(url)
        try:
            upgrade(engine)
        except BaseException:
            # The connections opened to check the schema close with it.
            engine.dispose()
            raise
    try:
        yield session_factory(engine)
    finally:
        engine.dispose()


@contextmanager
def _store_errors() -> Iterator[None]:
    """Turn the failures of opening the store into command errors."""
    try:
        yield
    except UnknownRevisionError as exc:
        # Alembic cannot find the database's revision among ours: a newer
        # certwatch wrote it. Nothing has been changed.
        raise click.ClickException(
            f"The inventory database has schema revision unknown to certwatch "
            f"{__version__} ({_first_line(exc)}): it was written by a newer "
            "version, so upgrade certwatch."
        ) from exc
    except StoreError as exc:
        raise click.ClickException(str(exc)) from exc
    except (SQLAlchemyError, OSError) as exc:
        # An unreachable server, a missing file permission or a locked
        # database all arrive here.
        raise click.ClickException(
            f"Cannot open the inventory database ({exc.__class__.__name__}: "
            f"{_first_line(exc)}): check CERTWATCH_DATABASE_URL."
        ) from exc


def _warn_relative_sqlite_path(url: str) -> None:
    """Warn when a SQLite URL names a path relative to the current folder.

    `sqlite:///tmp/x.db` (three slashes) is `tmp/x.db` under the current
    folder, which is rarely what was meant and silently opens a new, empty
    inventory when run from elsewhere.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        return  # create_store_engine reports the invalid URL
    path = parsed.database
    if parsed.get_backend_name() != "sqlite" or not path or path == ":memory:":
        return
    if not os.path.isabs(path):
        click.echo(
            f"Warning: the SQLite database path {path!r} is relative to the "
            f"current folder ({os.getcwd()}); for the absolute path /{path} "
            f"write four slashes: sqlite:////{path}.",
            err=True,
        )


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else "no message"
