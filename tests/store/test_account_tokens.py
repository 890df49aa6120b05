"""Email link tokens and site secrets in the store, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from certwatch.store.accounts import (
    AccountError,
    create_account_token,
    create_session,
    create_user,
    find_account_token,
    find_user,
    latest_account_token_at,
    reset_password,
    use_account_token,
)
from certwatch.store.database import session_factory
from certwatch.store.models import SessionRow, SiteSecretRow, UserRow
from certwatch.store.secrets import find_site_secret, site_secret

NOW = datetime(2027, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


def make_user(session: Session, email: str = "user@example.test") -> int:
    user = create_user(session, email, "argon2-hash", now=NOW)
    session.commit()
    return user.id


def test_account_token_found_until_expiry(session: Session) -> None:
    user_id = make_user(session)
    token = create_account_token(
        session, user_id, "reset", "User@Example.test", now=NOW, lifetime=HOUR
    )
    session.commit()

    found = find_account_token(
        session, token, "reset", now=NOW + HOUR - timedelta(seconds=1)
    )
    expired = find_account_token(session, token, "reset", now=NOW + HOUR)
    other_purpose = find_account_token(session, token, "verify", now=NOW)
    unknown = find_account_token(session, token + "x", "reset", now=NOW)

    assert found is not None
    assert found.user_id == user_id
    assert found.email == "user@example.test"
    assert expired is None
    assert other_purpose is None
    assert unknown is None
    assert latest_account_token_at(session, user_id, "reset") == NOW
    assert latest_account_token_at(session, user_id, "verify") is None


def test_account_token_works_once(session: Session) -> None:
    user_id = make_user(session)
    token = create_account_token(
        session, user_id, "verify", "user@example.test", now=NOW, lifetime=HOUR
    )
    found = find_account_token(session, token, "verify", now=NOW)
    assert found is not None

    use_account_token(session, found, now=NOW)
    session.commit()

    assert find_account_token(session, token, "verify", now=NOW) is None
    with pytest.raises(AccountError, match="used already"):
        use_account_token(session, found, now=NOW)


def test_account_token_stops_when_address_changes(session: Session) -> None:
    user_id = make_user(session)
    token = create_account_token(
        session, user_id, "verify", "user@example.test", now=NOW, lifetime=HOUR
    )
    row = session.get(UserRow, user_id)
    assert row is not None
    row.email = "new@example.test"
    session.commit()

    assert find_account_token(session, token, "verify", now=NOW) is None


def test_account_token_purpose_checked(session: Session) -> None:
    user_id = make_user(session)

    with pytest.raises(ValueError, match="Unknown link purpose 'login'"):
        create_account_token(
            session, user_id, "login", "user@example.test", now=NOW, lifetime=HOUR
        )


def test_reset_password_ends_sessions_and_links(session: Session) -> None:
    user_id = make_user(session)
    other_id = make_user(session, "other@example.test")
    for owner in (user_id, user_id, other_id):
        create_session(session, owner, now=NOW, lifetime=HOUR)
    first = create_account_token(
        session, user_id, "reset", "user@example.test", now=NOW, lifetime=HOUR
    )
    second = create_account_token(
        session, user_id, "reset", "user@example.test", now=NOW, lifetime=HOUR
    )
    row = session.get(UserRow, user_id)
    assert row is not None
    row.locked_until = NOW + HOUR
    row.failed_logins = 3
    session.commit()

    reset_password(session, user_id, "new-hash", now=NOW)
    session.commit()
    user = find_user(session, "user@example.test")
    sessions_left = session.scalars(select(SessionRow.user_id)).all()

    assert user is not None
    assert user.password_hash == "new-hash"
    assert user.locked_until is None
    assert user.email_verified_at == NOW
    assert sessions_left == [other_id]
    assert find_account_token(session, first, "reset", now=NOW) is None
    assert find_account_token(session, second, "reset", now=NOW) is None


def test_site_secret_made_once(session: Session) -> None:
    made: list[str] = []

    def make() -> str:
        made.append(f"key-{len(made)}")
        return made[-1]

    missing = find_site_secret(session, "signing")
    first = site_secret(session, "signing", now=NOW, make=make)
    session.commit()
    second = site_secret(session, "signing", now=NOW, make=make)
    default = site_secret(session, "other", now=NOW)

    assert missing is None
    assert first == second == "key-0"
    # SQLite makes a value on each call and drops it when the key exists.
    assert made[0] == "key-0"
    assert len(default) == 64
    assert find_site_secret(session, "signing") == "key-0"


def test_site_secret_rejects_bad_names(session: Session) -> None:
    with pytest.raises(ValueError, match="Invalid secret name ''"):
        site_secret(session, "", now=NOW)
    with pytest.raises(ValueError, match="has 129 characters"):
        site_secret(session, "long", now=NOW, make=lambda: "x" * 129)


def test_site_secret_race_keeps_one_key(engine: Engine) -> None:
    """Two transactions that both find no key store one and both read it."""
    sessions = session_factory(engine)
    # On SQLite `sessions.begin()` takes the write lock first, so the second
    # transaction starts after the first commits and cannot wait for it here.
    parties = 2 if engine.dialect.name == "postgresql" else 1
    both_read = threading.Barrier(parties, timeout=10)
    results: list[str] = []
    errors: list[BaseException] = []

    def make_after_both_looked(name: str) -> Callable[[], str]:
        def make() -> str:
            # Both transactions have seen no key when they make theirs.
            both_read.wait()
            return name

        return make

    def run(name: str) -> None:
        try:
            with sessions.begin() as session:
                results.append(
                    site_secret(
                        session, "race", now=NOW, make=make_after_both_looked(name)
                    )
                )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)

    assert errors == []
    assert len(results) == 2
    assert results[0] == results[1]
    with sessions() as session:
        stored = session.scalar(select(func.count()).select_from(SiteSecretRow))
    assert stored == 1
