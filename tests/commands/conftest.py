"""Fixtures for the inventory commands: a database per test and a CLI runner.

The database fixtures come from the store tests, so every command test runs
on SQLite and on the local PostgreSQL server. The commands read the real
clock, so certificates here are dated relative to `datetime.now(UTC)`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from click.testing import Result as CliResult
from tests.certs import Issued, make_intermediate, make_leaf, make_root, seconds
from tests.servers import Chain, LocalServer
from tests.store import conftest as store_conftest
from tests.store.conftest import PostgresServer

from certwatch.cli import cli

StartServer = Callable[..., LocalServer]

# The database fixtures of the store tests, found by pytest under these names.
database_url = store_conftest.database_url
postgres_server = store_conftest.postgres_server
postgres_url = store_conftest.postgres_url
sqlite_template = store_conftest.sqlite_template

ROOT = make_root()
INTERMEDIATE = make_intermediate(ROOT)

# Added to every leaf's remaining time, so whole days left stay the same
# while a test runs.
HALF_DAY = timedelta(hours=12)


class Certwatch:
    """Runs `certwatch` commands in-process against one database."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> CliResult:
        environment = {"CERTWATCH_DATABASE_URL": self.database_url, **(env or {})}
        return CliRunner().invoke(cli, list(args), env=environment)

    def json(self, *args: str) -> Any:
        """Run a command with `--json` that must succeed; return its document."""
        outcome = self(*args, "--json")
        assert outcome.exit_code == 0, outcome.output
        return json.loads(outcome.stdout)


@pytest.fixture
def certwatch(database_url: str) -> Certwatch:
    """`certwatch` on a migrated database holding only the default team."""
    return Certwatch(database_url)


@pytest.fixture
def other_certwatch(
    request: pytest.FixtureRequest, database_url: str, tmp_path: Path
) -> Certwatch:
    """`certwatch` on a second, empty database of the same kind (no tables)."""
    if database_url.startswith("sqlite"):
        return Certwatch(f"sqlite:///{tmp_path / 'other.db'}")
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return Certwatch(server.url(server.create_database()))


def fresh_leaf(
    *dns_names: str, days_left: int = 60, lifetime_days: int = 90, **options: Any
) -> Issued:
    """Issue a leaf with `days_left` whole days left by the real clock."""
    not_after = seconds(datetime.now(UTC)) + timedelta(days=days_left) + HALF_DAY
    return make_leaf(
        INTERMEDIATE,
        dns_names=dns_names or ("www.example.test",),
        not_before=not_after - timedelta(days=lifetime_days),
        not_after=not_after,
        **options,
    )


def serve(local_server: StartServer, leaf: Issued, *, port: int = 0) -> LocalServer:
    """Serve `leaf` and the intermediate on 127.0.0.1."""
    chain = Chain.from_pems(leaf.key_pem(), leaf.pem, INTERMEDIATE.pem)
    return local_server(chain=chain, port=port)


def target(server: LocalServer) -> str:
    return f"{server.host}:{server.port}"
