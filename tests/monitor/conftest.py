"""Fixtures for the monitor tests: the store's databases and a fixed PKI.

The database fixtures come from the store tests, so every monitor test that
uses `database_url` runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from tests.monitor.helpers import Pki, make_pki
from tests.store.conftest import (  # noqa: F401
    database_url,
    engine,
    postgres_only_url,
    postgres_server,
    postgres_url,
    sqlite_template,
)

from certwatch.store.database import session_factory


@pytest.fixture
def sessions(engine: Engine) -> Iterator[sessionmaker[Session]]:  # noqa: F811
    """A session factory on the test database, as the commands get one."""
    yield session_factory(engine)


@pytest.fixture(scope="session")
def pki() -> Pki:
    """A root, an intermediate and leaves for www.example.test."""
    return make_pki()


@pytest.fixture(autouse=True)
def check_logger_level() -> Iterator[None]:
    """Restore the check engine's log level, which the commands lower."""
    logger = logging.getLogger("certwatch.check")
    level = logger.level
    yield
    logger.setLevel(level)
