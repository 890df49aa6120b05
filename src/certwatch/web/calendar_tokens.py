"""The secret tokens in the URLs of the team calendar feeds.

A token is 32 random bytes in URL-safe base64. The store keeps only its
SHA-256, so the URL is shown once, when the token is made. Making a new
token (rotation) replaces the old one, whose URL then stops working. A plain hash
suffices, unlike for passwords, because the token is random and too long
to guess.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from certwatch.store.models import TeamCalendarRow

TOKEN_BYTES = 32


def token_sha256(token: str) -> str:
    """Return the hex SHA-256 under which the store keeps `token`."""
    return hashlib.sha256(token.encode()).hexdigest()


def issue_calendar_token(session: Session, team_id: int, *, now: datetime) -> str:
    """Make a new calendar token for the team, replacing any old one; return it.

    The caller commits. The token is not stored and cannot be shown again.
    """
    token = secrets.token_urlsafe(TOKEN_BYTES)
    session.execute(delete(TeamCalendarRow).where(TeamCalendarRow.team_id == team_id))
    session.add(
        TeamCalendarRow(
            team_id=team_id, token_sha256=token_sha256(token), created_at=now
        )
    )
    session.flush()
    return token


def has_calendar(session: Session, team_id: int) -> bool:
    """Tell whether the team has a calendar token."""
    found = session.scalar(
        select(TeamCalendarRow.team_id).where(TeamCalendarRow.team_id == team_id)
    )
    return found is not None


def calendar_team(session: Session, token: str) -> int | None:
    """Return the id of the team whose calendar token this is, if any."""
    return session.scalar(
        select(TeamCalendarRow.team_id).where(
            TeamCalendarRow.token_sha256 == token_sha256(token)
        )
    )


def calendar_url(base_url: str, token: str) -> str:
    """Return the feed URL of a token under the service's base URL."""
    return f"{base_url.rstrip('/')}/calendar/{token}.ics"
