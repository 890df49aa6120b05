"""Bearer tokens of the JSON API, each scoped to one team with a role.

A token is `cw_` and 43 URL-safe characters (32 random bytes). The store
keeps its SHA-256 and its first `PREFIX_LENGTH` characters, which lists
show so that an owner can tell tokens apart. The whole token is returned
once, when it is made. Every function works in the caller's transaction.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from certwatch.store.errors import StoreError
from certwatch.store.models import ROLES, ApiTokenRow, UserRow

TOKEN_PREFIX = "cw_"
TOKEN_BYTES = 32
PREFIX_LENGTH = 10
MAX_NAME_LENGTH = 100
# Recording every use would make each API request a write; a minute is
# precise enough to tell an idle token from one in use.
LAST_USED_PRECISION = timedelta(minutes=1)
# The roles a token may have: an API token never administers its team.
TOKEN_ROLES = ("member", "viewer")


class ApiTokenError(StoreError):
    """An API token request with an invalid name or role."""


@dataclass(frozen=True)
class ApiToken:
    """A stored API token, without its secret.

    `created_by` is the email address of the user who made it, `None`
    once that account is deleted. `last_used_at` is `None` before the
    first use and `revoked_at` while the token works.
    """

    id: int
    team_id: int
    name: str
    role: str
    prefix: str
    created_by: str | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class TokenGrant:
    """The team and role that a valid token grants."""

    token_id: int
    team_id: int
    role: str
    use_due: bool = False
    """Whether the token's last-used time is older than `LAST_USED_PRECISION`
    and was not recorded, because the caller asked `find_api_token` not to."""


def token_sha256(token: str) -> str:
    """Return the hex SHA-256 that the store keeps of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def create_api_token(
    session: Session,
    team_id: int,
    *,
    name: str,
    role: str,
    created_by: int | None,
    now: datetime,
) -> tuple[ApiToken, str]:
    """Store a new token for the team; return it and the whole secret.

    Raises:
        ApiTokenError: the name is empty or too long, or the role is not
            one of `TOKEN_ROLES`.
    """
    clean = name.strip()
    if not clean or len(clean) > MAX_NAME_LENGTH:
        raise ApiTokenError(
            f"Invalid token name {name!r}: give 1 to {MAX_NAME_LENGTH} characters "
            "that say where the token is used, such as 'deploy pipeline'."
        )
    if role not in TOKEN_ROLES:
        raise ApiTokenError(
            f"Invalid token role {role!r}: choose one of {', '.join(TOKEN_ROLES)}."
        )
    secret = TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)
    row = ApiTokenRow(
        team_id=team_id,
        created_by=created_by,
        name=clean,
        role=role,
        prefix=secret[:PREFIX_LENGTH],
        token_sha256=token_sha256(secret),
        created_at=now,
    )
    session.add(row)
    session.flush()
    email = None
    if created_by is not None:
        email = session.scalar(select(UserRow.email).where(UserRow.id == created_by))
    return _token(row, email), secret


def list_api_tokens(session: Session, team_id: int) -> list[ApiToken]:
    """Return the team's tokens, working ones first, then newest first."""
    rows = session.execute(
        select(ApiTokenRow, UserRow.email)
        .outerjoin(UserRow, UserRow.id == ApiTokenRow.created_by)
        .where(ApiTokenRow.team_id == team_id)
        .order_by(
            ApiTokenRow.revoked_at.is_not(None),
            ApiTokenRow.created_at.desc(),
            ApiTokenRow.id.desc(),
        )
    )
    return [_token(row, email) for row, email in rows]


def revoke_api_token(
    session: Session, team_id: int, token_id: int, *, now: datetime
) -> bool:
    """Revoke a token of the team; return whether it existed there.

    Revoking a revoked token keeps its first revocation time.
    """
    row = session.scalar(
        select(ApiTokenRow).where(
            ApiTokenRow.id == token_id, ApiTokenRow.team_id == team_id
        )
    )
    if row is None:
        return False
    if row.revoked_at is None:
        row.revoked_at = now
    return True


def find_api_token(
    session: Session, token: str, *, now: datetime, record_use: bool = True
) -> TokenGrant | None:
    """Return the grant of a working token, and record its use.

    With `record_use` false nothing is written, and the grant's `use_due`
    is true when `record_token_use` should be called: a session that only
    reads does not wait for SQLite's write lock. Returns `None` for an
    unknown, malformed or revoked token.
    """
    if not token.startswith(TOKEN_PREFIX):
        return None
    row = session.scalar(
        select(ApiTokenRow).where(ApiTokenRow.token_sha256 == token_sha256(token))
    )
    # The lookup by hash already matched; comparing again in constant time
    # keeps the check independent of how the database compares strings.
    if row is None or not hmac.compare_digest(row.token_sha256, token_sha256(token)):
        return None
    if row.revoked_at is not None or row.role not in ROLES:
        return None
    due = row.last_used_at is None or now - row.last_used_at >= LAST_USED_PRECISION
    if due and record_use:
        record_token_use(session, row.id, now=now)
    return TokenGrant(
        token_id=row.id,
        team_id=row.team_id,
        role=row.role,
        use_due=due and not record_use,
    )


def record_token_use(session: Session, token_id: int, *, now: datetime) -> None:
    """Store `now` as the token's last-used time."""
    session.execute(
        update(ApiTokenRow).where(ApiTokenRow.id == token_id).values(last_used_at=now)
    )


def _token(row: ApiTokenRow, created_by: str | None) -> ApiToken:
    return ApiToken(
        id=row.id,
        team_id=row.team_id,
        name=row.name,
        role=row.role,
        prefix=row.prefix,
        created_by=created_by,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )
