"""Accounts as the operator sees them: every user with the teams and roles.

The `certwatch user` commands use these to list accounts and to change
memberships from the shell, such as when the only owner of a team has left.
The caller commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from certwatch.store.models import MembershipRow, TeamRow, UserRow


@dataclass(frozen=True)
class UserSummary:
    """An account with its teams, as pairs of team name and role."""

    id: int
    email: str
    is_admin: bool
    verified: bool
    locked_until: datetime | None
    teams: tuple[tuple[str, str], ...]


def list_users(session: Session) -> list[UserSummary]:
    """Return every account, by email address, with its teams by name."""
    teams: dict[int, list[tuple[str, str]]] = {}
    for user_id, team, role in session.execute(
        select(MembershipRow.user_id, TeamRow.name, MembershipRow.role)
        .join(TeamRow, TeamRow.id == MembershipRow.team_id)
        .order_by(TeamRow.name)
    ):
        teams.setdefault(user_id, []).append((team, role))
    return [
        UserSummary(
            id=row.id,
            email=row.email,
            is_admin=row.is_admin,
            verified=row.email_verified_at is not None,
            locked_until=row.locked_until,
            teams=tuple(teams.get(row.id, ())),
        )
        for row in session.scalars(select(UserRow).order_by(UserRow.email))
    ]


def lock_team(session: Session, team_id: int) -> None:
    """Lock the team's row until the transaction ends, to serialize owner changes.

    Two owners demoting each other at once would each count two owners and
    leave the team with none. On PostgreSQL this takes `SELECT ... FOR
    UPDATE` on the team, so a second transaction waits here and counts after
    the first commits. SQLAlchemy leaves FOR UPDATE out on SQLite, where a
    writing transaction starts with BEGIN IMMEDIATE and so runs alone.
    """
    session.execute(select(TeamRow.id).where(TeamRow.id == team_id).with_for_update())


def owner_count(session: Session, team_id: int) -> int:
    """Return how many members own the team, after locking it with `lock_team`."""
    lock_team(session, team_id)
    return (
        session.scalar(
            select(func.count())
            .select_from(MembershipRow)
            .where(MembershipRow.team_id == team_id, MembershipRow.role == "owner")
        )
        or 0
    )


def remove_membership(session: Session, user_id: int, team_id: int) -> bool:
    """Take the user out of the team; return whether the user was a member."""
    result = session.execute(
        delete(MembershipRow).where(
            MembershipRow.user_id == user_id, MembershipRow.team_id == team_id
        )
    )
    return bool(getattr(result, "rowcount", 0))
