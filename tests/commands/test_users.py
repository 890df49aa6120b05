"""`certwatch user`: list accounts, set passwords, change team members."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from click.testing import CliRunner
from sqlalchemy import select
from tests.commands.conftest import Certwatch

from certwatch.cli import cli
from certwatch.store.accounts import (
    create_session,
    create_user,
    find_session,
    find_user,
    team_role,
)
from certwatch.store.alerts import find_team
from certwatch.store.database import create_store_engine, session_factory
from certwatch.store.inventory import ensure_team
from certwatch.store.models import UserRow
from certwatch.web.passwords import hash_password, verify_password

NOW = datetime.now(UTC)


def make_account(url: str, email: str) -> str:
    """Make an account with a login session; return the session's token."""
    engine = create_store_engine(url)
    try:
        with session_factory(engine).begin() as session:
            user = create_user(session, email, hash_password("old password 1"), now=NOW)
            return create_session(session, user.id, now=NOW, lifetime=timedelta(days=1))
    finally:
        engine.dispose()


def role_in(url: str, email: str, team: str) -> str | None:
    engine = create_store_engine(url)
    try:
        with session_factory(engine)() as session:
            user = find_user(session, email)
            team_id = find_team(session, team)
            assert user is not None and team_id is not None
            return team_role(session, user.id, team_id)
    finally:
        engine.dispose()


def test_set_password_ends_sessions(certwatch: Certwatch) -> None:
    token = make_account(certwatch.database_url, "admin@example.test")
    engine = create_store_engine(certwatch.database_url)
    with session_factory(engine).begin() as session:
        row = session.scalar(select(UserRow))
        assert row is not None
        row.locked_until = NOW + timedelta(minutes=10)

    outcome = CliRunner().invoke(
        cli,
        ["user", "set-password", "Admin@Example.test", "--password-stdin"],
        env={"CERTWATCH_DATABASE_URL": certwatch.database_url},
        input="a new long password\n",
    )

    assert outcome.exit_code == 0, outcome.output
    assert "Password of admin@example.test set" in outcome.output
    with session_factory(engine)() as session:
        user = find_user(session, "admin@example.test")
        assert user is not None
        assert verify_password(user.password_hash, "a new long password")
        assert user.locked_until is None
        assert find_session(session, token, now=NOW) is None
    engine.dispose()


def test_set_password_rejects_short(certwatch: Certwatch) -> None:
    make_account(certwatch.database_url, "admin@example.test")

    outcome = CliRunner().invoke(
        cli,
        ["user", "set-password", "admin@example.test", "--password-stdin"],
        env={"CERTWATCH_DATABASE_URL": certwatch.database_url},
        input="short\n",
    )

    assert outcome.exit_code != 0
    assert "password" in outcome.output.lower()


def test_set_password_unknown_address(certwatch: Certwatch) -> None:
    outcome = CliRunner().invoke(
        cli,
        ["user", "set-password", "nobody@example.test", "--password-stdin"],
        env={"CERTWATCH_DATABASE_URL": certwatch.database_url},
        input="a new long password\n",
    )

    assert outcome.exit_code != 0
    assert "No account with the email address 'nobody@example.test'" in outcome.output


def test_members_change_and_leave(certwatch: Certwatch) -> None:
    url = certwatch.database_url
    make_account(url, "admin@example.test")
    make_account(url, "ops@example.test")
    engine = create_store_engine(url)
    with session_factory(engine).begin() as session:
        ensure_team(session, "web", now=NOW)
    engine.dispose()

    added = certwatch("user", "add-member", "ops@example.test", "web", "owner")
    assert added.exit_code == 0, added.output
    assert role_in(url, "ops@example.test", "web") == "owner"

    listed = certwatch("user", "list")
    lines = listed.output.splitlines()
    assert lines[0] == (
        "admin@example.test [administrator; address not verified]: default (owner)"
    )
    assert lines[1] == "ops@example.test [address not verified]: web (owner)"

    demoted = certwatch("user", "add-member", "ops@example.test", "web", "viewer")
    assert demoted.exit_code != 0
    assert "only owner of team 'web'" in demoted.output
    assert role_in(url, "ops@example.test", "web") == "owner"

    certwatch("user", "add-member", "admin@example.test", "web", "owner")
    removed = certwatch("user", "remove-member", "ops@example.test", "web")
    assert removed.exit_code == 0, removed.output
    assert role_in(url, "ops@example.test", "web") is None

    again = certwatch("user", "remove-member", "ops@example.test", "web")
    assert again.exit_code != 0
    assert "not a member of team 'web'" in again.output


def test_user_list_json(certwatch: Certwatch) -> None:
    make_account(certwatch.database_url, "admin@example.test")

    [user] = certwatch.json("user", "list")

    assert user["email"] == "admin@example.test"
    assert user["administrator"] is True
    assert user["teams"] == [{"team": "default", "role": "owner"}]
