"""Accounts of the web service: users, login sessions, memberships, invitations.

Login sessions, invitations and the links sent by email (to verify an
address or reset a password) are identified by random tokens that only
their holder has. The store keeps the SHA-256 of each token, which is
enough because the tokens are too long to guess, so a copy of the database
lets nobody log in or join a team. The caller commits.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from certwatch.store.errors import StoreError
from certwatch.store.models import (
    DEFAULT_TEAM,
    ROLES,
    AccountTokenRow,
    InvitationRow,
    MembershipRow,
    SessionRow,
    TeamRow,
    UserRow,
)

TOKEN_BYTES = 32

MAX_TEAM_NAME_LENGTH = 200
"""The maximum length of a team name, the size of the `teams.name` column."""

# Names go into messages, calendar feeds and terminals, where a direction
# override misleads the reader. The same set as the inventory's team rule.
_BIDI_CONTROLS = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")

TOKEN_PURPOSES = ("verify", "reset")
"""`verify` links confirm an email address, `reset` links set a new password."""


class AccountError(StoreError):
    """An account request that the store rejects, such as a taken email address."""


@dataclass(frozen=True)
class User:
    """An account. `locked_until` is `None` unless failed logins locked it.

    `email_verified_at` is `None` until the address is verified.
    """

    id: int
    email: str
    password_hash: str
    is_admin: bool
    locked_until: datetime | None
    email_verified_at: datetime | None = None


@dataclass(frozen=True)
class LoginSession:
    """A valid login session with its user.

    `email_verified_at` is `None` while the user's address is not verified.
    """

    token_sha256: str
    user_id: int
    email: str
    is_admin: bool
    csrf_secret: str
    expires_at: datetime
    email_verified_at: datetime | None = None


@dataclass(frozen=True)
class TeamMembership:
    """A team of a user, with the user's role in it."""

    team_id: int
    team: str
    role: str


@dataclass(frozen=True)
class Member:
    """A member of a team."""

    user_id: int
    email: str
    role: str


@dataclass(frozen=True)
class Invitation:
    """An invitation that can still be accepted."""

    id: int
    team_id: int
    team: str
    email: str
    role: str
    expires_at: datetime


def token_sha256(token: str) -> str:
    """Return the hex SHA-256 that the store keeps of a session or invitation token."""
    return hashlib.sha256(token.encode()).hexdigest()


def normalize_email(email: str) -> str:
    """Return the address as the store keeps it: without outer spaces, lower case."""
    return email.strip().lower()


def count_users(session: Session) -> int:
    """Return the number of accounts."""
    return session.scalar(select(func.count()).select_from(UserRow)) or 0


def create_user(
    session: Session, email: str, password_hash: str, *, now: datetime
) -> User:
    """Store a new account; the first account becomes administrator.

    The first account is also made owner of the default team. The default
    team's row is locked first (on PostgreSQL), so that of two sign-ups at
    the same moment only one can see no account and become administrator.

    Raises:
        AccountError: an account with this email address exists.
    """
    address = normalize_email(email)
    default_team = session.scalar(
        select(TeamRow.id).where(TeamRow.name == DEFAULT_TEAM).with_for_update()
    )
    if session.scalar(select(UserRow.id).where(UserRow.email == address)):
        raise AccountError(f"An account for {address!r} exists already.")
    first = count_users(session) == 0
    row = UserRow(
        email=address,
        password_hash=password_hash,
        is_admin=first,
        created_at=now,
        failed_logins=0,
    )
    session.add(row)
    session.flush()
    if first and default_team is not None:
        add_membership(session, row.id, default_team, "owner", now=now)
    return _user(row)


def adopt_teams_without_members(session: Session, *, now: datetime) -> list[str]:
    """Make every administrator owner of each team that has no member yet.

    Teams made from the shell (`certwatch add --team`, `team add`,
    `import`) have no member. Their administrators own them, so the
    people who run certwatch see them on the web site and can invite
    their members. Returns the names of the teams adopted.
    """
    admins = list(session.scalars(select(UserRow.id).where(UserRow.is_admin)))
    if not admins:
        return []
    orphans = session.execute(
        select(TeamRow.id, TeamRow.name)
        .where(
            ~select(MembershipRow.user_id)
            .where(MembershipRow.team_id == TeamRow.id)
            .exists()
        )
        .order_by(TeamRow.name)
    ).all()
    for team_id, _name in orphans:
        for user_id in admins:
            add_membership(session, user_id, team_id, "owner", now=now)
    return [name for _team_id, name in orphans]


def find_user(session: Session, email: str) -> User | None:
    """Return the account with this email address, in any case, if there is one."""
    row = session.scalar(select(UserRow).where(UserRow.email == normalize_email(email)))
    return None if row is None else _user(row)


def record_failed_login(
    session: Session,
    user_id: int,
    *,
    now: datetime,
    limit: int,
    window: timedelta,
    lock_for: timedelta,
) -> None:
    """Count a failed login, and lock the account at the `limit`-th within `window`."""
    row = session.get(UserRow, user_id, with_for_update=True)
    if row is None:
        return
    if row.first_failed_at is None or now - row.first_failed_at >= window:
        row.failed_logins = 0
        row.first_failed_at = now
    row.failed_logins += 1
    if row.failed_logins >= limit:
        row.locked_until = now + lock_for
        row.failed_logins = 0
        row.first_failed_at = None
    session.flush()


def record_login(
    session: Session, user_id: int, *, new_password_hash: str | None = None
) -> None:
    """Clear the failed logins of an account, and store a rehashed password if given."""
    values: dict[str, object] = {
        "failed_logins": 0,
        "first_failed_at": None,
        "locked_until": None,
    }
    if new_password_hash is not None:
        values["password_hash"] = new_password_hash
    session.execute(update(UserRow).where(UserRow.id == user_id).values(**values))


def create_session(
    session: Session, user_id: int, *, now: datetime, lifetime: timedelta
) -> str:
    """Store a login session for the user and return its token.

    Expired sessions of every user are deleted on the way, so the table
    holds only sessions that can still be used.
    """
    session.execute(delete(SessionRow).where(SessionRow.expires_at <= now))
    token = secrets.token_urlsafe(TOKEN_BYTES)
    session.add(
        SessionRow(
            id=token_sha256(token),
            user_id=user_id,
            created_at=now,
            expires_at=now + lifetime,
            csrf_secret=secrets.token_hex(TOKEN_BYTES),
        )
    )
    session.flush()
    return token


def find_session(session: Session, token: str, *, now: datetime) -> LoginSession | None:
    """Return the login session of a token, `None` when unknown or expired."""
    found = session.execute(
        select(SessionRow, UserRow)
        .join(UserRow, UserRow.id == SessionRow.user_id)
        .where(SessionRow.id == token_sha256(token), SessionRow.expires_at > now)
    ).first()
    if found is None:
        return None
    login, user = found
    return LoginSession(
        token_sha256=login.id,
        user_id=user.id,
        email=user.email,
        is_admin=user.is_admin,
        csrf_secret=login.csrf_secret,
        expires_at=login.expires_at,
        email_verified_at=user.email_verified_at,
    )


def delete_session(session: Session, token_hash: str) -> None:
    """Delete a login session by the SHA-256 of its token."""
    session.execute(delete(SessionRow).where(SessionRow.id == token_hash))


def add_membership(
    session: Session, user_id: int, team_id: int, role: str, *, now: datetime
) -> None:
    """Make the user a member of the team with `role`, or change the user's role."""
    _check_role(role)
    row = session.get(MembershipRow, (user_id, team_id))
    if row is None:
        session.add(
            MembershipRow(user_id=user_id, team_id=team_id, role=role, created_at=now)
        )
    else:
        row.role = role
    session.flush()


def team_role(session: Session, user_id: int, team_id: int) -> str | None:
    """Return the user's role in the team, `None` when the user is not a member."""
    return session.scalar(
        select(MembershipRow.role).where(
            MembershipRow.user_id == user_id, MembershipRow.team_id == team_id
        )
    )


def user_teams(session: Session, user_id: int) -> list[TeamMembership]:
    """Return the teams of a user, by team name."""
    rows = session.execute(
        select(TeamRow.id, TeamRow.name, MembershipRow.role)
        .join(MembershipRow, MembershipRow.team_id == TeamRow.id)
        .where(MembershipRow.user_id == user_id)
        .order_by(TeamRow.name)
    )
    return [TeamMembership(team_id, name, role) for team_id, name, role in rows]


def create_team(session: Session, name: str, owner_id: int, *, now: datetime) -> int:
    """Create a team called `name` with the user as its owner; return its id.

    The name follows the rules of `certwatch.store.inventory.ensure_team`,
    but an existing team is never joined: its name is taken.

    Raises:
        AccountError: the name is invalid or taken. For a taken name the
            message states only that, not who owns the team.
    """
    clean = name.strip()
    if not clean or len(clean) > MAX_TEAM_NAME_LENGTH:
        raise AccountError(
            f"Invalid team name {name[:MAX_TEAM_NAME_LENGTH]!r}: give 1 to "
            f"{MAX_TEAM_NAME_LENGTH} characters, not only spaces."
        )
    if not clean.isprintable() or _BIDI_CONTROLS.search(clean):
        raise AccountError(
            f"Invalid team name {name!r}: control and text-direction characters "
            "are not allowed; give printable text."
        )
    taken = AccountError(f"The team name {clean!r} is taken: choose another name.")
    if session.scalar(select(TeamRow.id).where(TeamRow.name == clean)) is not None:
        raise taken
    row = TeamRow(name=clean, created_at=now)
    try:
        # Two requests for one name at the same moment: the unique index
        # rejects the second, which rolls back only this savepoint.
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        raise taken from None
    add_membership(session, owner_id, row.id, "owner", now=now)
    return row.id


def owned_team_count(session: Session, user_id: int) -> int:
    """Return the number of teams in which the user has the owner role."""
    count = session.scalar(
        select(func.count()).where(
            MembershipRow.user_id == user_id, MembershipRow.role == "owner"
        )
    )
    return count or 0


def team_name(session: Session, team_id: int) -> str | None:
    """Return the name of a team, `None` when there is no such team."""
    return session.scalar(select(TeamRow.name).where(TeamRow.id == team_id))


def team_members(session: Session, team_id: int) -> list[Member]:
    """Return the members of a team, owners first, then by email address."""
    rows = session.execute(
        select(UserRow.id, UserRow.email, MembershipRow.role)
        .join(MembershipRow, MembershipRow.user_id == UserRow.id)
        .where(MembershipRow.team_id == team_id)
    )
    members = [Member(user_id, email, role) for user_id, email, role in rows]
    return sorted(members, key=lambda member: (ROLES.index(member.role), member.email))


def create_invitation(
    session: Session,
    team_id: int,
    email: str,
    role: str,
    *,
    invited_by: int | None,
    now: datetime,
    lifetime: timedelta,
) -> str:
    """Store an invitation to the team for an email address and return its token."""
    _check_role(role)
    token = secrets.token_urlsafe(TOKEN_BYTES)
    session.add(
        InvitationRow(
            team_id=team_id,
            email=normalize_email(email),
            role=role,
            token_sha256=token_sha256(token),
            invited_by=invited_by,
            created_at=now,
            expires_at=now + lifetime,
        )
    )
    session.flush()
    return token


def find_invitation(
    session: Session, token: str, *, now: datetime
) -> Invitation | None:
    """Return the invitation of a token, `None` when unknown, used or expired."""
    found = session.execute(
        select(InvitationRow, TeamRow.name)
        .join(TeamRow, TeamRow.id == InvitationRow.team_id)
        .where(
            InvitationRow.token_sha256 == token_sha256(token),
            InvitationRow.accepted_at.is_(None),
            InvitationRow.expires_at > now,
        )
    ).first()
    if found is None:
        return None
    row, name = found
    return Invitation(row.id, row.team_id, name, row.email, row.role, row.expires_at)


def accept_invitation(
    session: Session, invitation: Invitation, user_id: int, *, now: datetime
) -> None:
    """Mark the invitation used and make the user a member of its team.

    Raises:
        AccountError: the invitation was accepted meanwhile.
    """
    used = session.execute(
        update(InvitationRow)
        .where(InvitationRow.id == invitation.id, InvitationRow.accepted_at.is_(None))
        .values(accepted_at=now)
    )
    if used.rowcount != 1:  # type: ignore[attr-defined]
        raise AccountError("This invitation has been used already.")
    add_membership(session, user_id, invitation.team_id, invitation.role, now=now)


@dataclass(frozen=True)
class AccountToken:
    """A link sent by email that can still be used, with its account."""

    id: int
    user_id: int
    purpose: str
    email: str
    expires_at: datetime


def create_account_token(
    session: Session,
    user_id: int,
    purpose: str,
    email: str,
    *,
    now: datetime,
    lifetime: timedelta,
) -> str:
    """Store a `verify` or `reset` link for the account and return its token.

    `email` is the address the link goes to; the link stops working when
    the account's address is no longer this one.
    """
    _check_purpose(purpose)
    token = secrets.token_urlsafe(TOKEN_BYTES)
    session.add(
        AccountTokenRow(
            user_id=user_id,
            purpose=purpose,
            token_sha256=token_sha256(token),
            email=normalize_email(email),
            created_at=now,
            expires_at=now + lifetime,
        )
    )
    session.flush()
    return token


def find_account_token(
    session: Session, token: str, purpose: str, *, now: datetime
) -> AccountToken | None:
    """Return the link of a token for `purpose`, `None` when it cannot be used.

    A link cannot be used when it is unknown, made for the other purpose,
    used, expired, or sent to an address that the account no longer has.
    """
    _check_purpose(purpose)
    if not token:
        return None
    row = session.scalar(
        select(AccountTokenRow)
        .join(UserRow, UserRow.id == AccountTokenRow.user_id)
        .where(
            AccountTokenRow.token_sha256 == token_sha256(token),
            AccountTokenRow.purpose == purpose,
            AccountTokenRow.used_at.is_(None),
            AccountTokenRow.expires_at > now,
            AccountTokenRow.email == UserRow.email,
        )
    )
    if row is None:
        return None
    return AccountToken(row.id, row.user_id, row.purpose, row.email, row.expires_at)


def use_account_token(session: Session, token: AccountToken, *, now: datetime) -> None:
    """Mark the link used, so that it works once.

    Raises:
        AccountError: the link was used meanwhile, by another request.
    """
    used = session.execute(
        update(AccountTokenRow)
        .where(AccountTokenRow.id == token.id, AccountTokenRow.used_at.is_(None))
        .values(used_at=now)
    )
    if used.rowcount != 1:  # type: ignore[attr-defined]
        raise AccountError("This link has been used already.")


def delete_account_token(session: Session, token: str) -> None:
    """Delete a link that was never delivered, so it neither works nor counts."""
    session.execute(
        delete(AccountTokenRow).where(
            AccountTokenRow.token_sha256 == token_sha256(token)
        )
    )


def latest_account_token_at(
    session: Session, user_id: int, purpose: str
) -> datetime | None:
    """Return when the account's latest link for `purpose` was made, if any."""
    _check_purpose(purpose)
    return session.scalar(
        select(func.max(AccountTokenRow.created_at)).where(
            AccountTokenRow.user_id == user_id, AccountTokenRow.purpose == purpose
        )
    )


def mark_email_verified(session: Session, user_id: int, *, now: datetime) -> None:
    """Record that the account's address is verified, unless it is already."""
    session.execute(
        update(UserRow)
        .where(UserRow.id == user_id, UserRow.email_verified_at.is_(None))
        .values(email_verified_at=now)
    )


def reset_password(
    session: Session, user_id: int, password_hash: str, *, now: datetime
) -> None:
    """Store a new password hash, end every login session and unlock the account.

    The account's other unused reset links stop working too. A reset link
    reached the account's mailbox, so the address also counts as verified.
    """
    session.execute(
        update(UserRow)
        .where(UserRow.id == user_id)
        .values(
            password_hash=password_hash,
            failed_logins=0,
            first_failed_at=None,
            locked_until=None,
        )
    )
    mark_email_verified(session, user_id, now=now)
    session.execute(delete(SessionRow).where(SessionRow.user_id == user_id))
    session.execute(
        update(AccountTokenRow)
        .where(
            AccountTokenRow.user_id == user_id,
            AccountTokenRow.purpose == "reset",
            AccountTokenRow.used_at.is_(None),
        )
        .values(used_at=now)
    )


def _check_purpose(purpose: str) -> None:
    if purpose not in TOKEN_PURPOSES:
        raise ValueError(
            f"Unknown link purpose {purpose!r}: use one of {', '.join(TOKEN_PURPOSES)}."
        )


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise AccountError(f"Unknown role {role!r}: use one of {', '.join(ROLES)}.")


def _user(row: UserRow) -> User:
    return User(
        row.id,
        row.email,
        row.password_hash,
        row.is_admin,
        row.locked_until,
        row.email_verified_at,
    )
