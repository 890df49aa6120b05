"""API tokens in the store: made once, kept hashed, scoped to a team, revocable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from certwatch.store.accounts import create_user
from certwatch.store.api_tokens import (
    LAST_USED_PRECISION,
    ApiTokenError,
    create_api_token,
    find_api_token,
    list_api_tokens,
    record_token_use,
    revoke_api_token,
    token_sha256,
)
from certwatch.store.inventory import ensure_team
from certwatch.store.models import ApiTokenRow

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def make_teams(session: Session) -> tuple[int, int, int]:
    """Two teams and a user; return their ids."""
    alpha = ensure_team(session, "alpha", now=NOW)
    beta = ensure_team(session, "beta", now=NOW)
    user = create_user(session, "owner@example.test", "unused", now=NOW)
    session.commit()
    return alpha, beta, user.id


def test_create_api_token_stores_hash(session: Session) -> None:
    alpha, _, user = make_teams(session)

    token, secret = create_api_token(
        session, alpha, name=" deploy ", role="member", created_by=user, now=NOW
    )
    session.commit()

    assert secret.startswith("cw_")
    assert len(secret) == 3 + 43
    assert token.name == "deploy"
    assert token.prefix == secret[:10]
    assert token.created_by == "owner@example.test"
    row = session.scalar(select(ApiTokenRow).where(ApiTokenRow.id == token.id))
    assert row is not None
    assert row.token_sha256 == token_sha256(secret)
    assert secret not in (row.prefix, row.token_sha256, row.name)


def test_create_api_token_invalid(session: Session) -> None:
    alpha, _, user = make_teams(session)

    with pytest.raises(ApiTokenError, match="Invalid token role 'owner'"):
        create_api_token(
            session, alpha, name="x", role="owner", created_by=user, now=NOW
        )
    with pytest.raises(ApiTokenError, match="Invalid token name ' '"):
        create_api_token(
            session, alpha, name=" ", role="viewer", created_by=user, now=NOW
        )


def test_find_api_token_grant_and_use(session: Session) -> None:
    alpha, _, user = make_teams(session)
    _, secret = create_api_token(
        session, alpha, name="ci", role="viewer", created_by=user, now=NOW
    )
    session.commit()

    grant = find_api_token(session, secret, now=NOW)
    soon = find_api_token(session, secret, now=NOW + timedelta(seconds=30))
    session.commit()
    [listed] = list_api_tokens(session, alpha)

    assert grant is not None
    assert grant.team_id == alpha
    assert grant.role == "viewer"
    assert soon == grant
    # Uses within a minute of the recorded one are not written again.
    assert listed.last_used_at == NOW
    find_api_token(session, secret, now=NOW + LAST_USED_PRECISION)
    session.commit()
    assert list_api_tokens(session, alpha)[0].last_used_at == NOW + LAST_USED_PRECISION


def test_find_api_token_read_only(session: Session) -> None:
    alpha, _, user = make_teams(session)
    _, secret = create_api_token(
        session, alpha, name="ci", role="viewer", created_by=user, now=NOW
    )
    session.commit()

    grant = find_api_token(session, secret, now=NOW, record_use=False)
    session.commit()

    assert grant is not None
    assert grant.use_due is True
    assert list_api_tokens(session, alpha)[0].last_used_at is None
    record_token_use(session, grant.token_id, now=NOW)
    session.commit()
    assert list_api_tokens(session, alpha)[0].last_used_at == NOW
    again = find_api_token(session, secret, now=NOW, record_use=False)
    assert again is not None
    assert again.use_due is False


def test_find_api_token_rejects(session: Session) -> None:
    alpha, _, user = make_teams(session)
    _, secret = create_api_token(
        session, alpha, name="ci", role="member", created_by=user, now=NOW
    )
    session.commit()

    assert find_api_token(session, secret[:-1] + "x", now=NOW) is None
    assert find_api_token(session, secret[3:], now=NOW) is None
    assert find_api_token(session, "", now=NOW) is None


def test_revoke_api_token_team_scoped(session: Session) -> None:
    alpha, beta, user = make_teams(session)
    token, secret = create_api_token(
        session, alpha, name="ci", role="member", created_by=user, now=NOW
    )
    session.commit()

    assert not revoke_api_token(session, beta, token.id, now=NOW)
    assert find_api_token(session, secret, now=NOW) is not None
    assert revoke_api_token(session, alpha, token.id, now=NOW)
    assert revoke_api_token(session, alpha, token.id, now=NOW + timedelta(hours=1))
    session.commit()

    assert find_api_token(session, secret, now=NOW) is None
    [listed] = list_api_tokens(session, alpha)
    assert listed.revoked_at == NOW
    assert list_api_tokens(session, beta) == []


def test_list_api_tokens_working_first(session: Session) -> None:
    alpha, _, user = make_teams(session)
    old, _ = create_api_token(
        session, alpha, name="old", role="member", created_by=user, now=NOW
    )
    create_api_token(
        session,
        alpha,
        name="new",
        role="viewer",
        created_by=user,
        now=NOW + timedelta(days=1),
    )
    revoke_api_token(session, alpha, old.id, now=NOW + timedelta(days=2))
    create_api_token(
        session,
        alpha,
        name="newest",
        role="viewer",
        created_by=None,
        now=NOW + timedelta(days=3),
    )
    session.commit()

    listed = list_api_tokens(session, alpha)

    assert [t.name for t in listed] == ["newest", "new", "old"]
    assert listed[0].created_by is None
