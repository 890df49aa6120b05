"""`certwatch user`: the web site's accounts, from the operator's shell.

A site without a mail server cannot send password reset links, and a team
whose only owner left has nobody to invite others. These commands let the
operator, who can open the store, list the accounts, set a password and
change who belongs to which team.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

import click
from sqlalchemy.orm import Session

from certwatch.commands.store import open_store
from certwatch.store.accounts import (
    User,
    add_membership,
    find_user,
    reset_password,
    team_role,
)
from certwatch.store.alerts import find_team
from certwatch.store.models import ROLES
from certwatch.store.users import (
    list_users,
    lock_team,
    owner_count,
    remove_membership,
)
from certwatch.web.passwords import hash_password, password_problem


@click.group("user")
def user_group() -> None:
    """List the web site's accounts, set passwords and change team members."""


@user_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def user_list_command(as_json: bool) -> None:
    """List every account with its teams and roles."""
    with open_store() as sessions, sessions() as session:
        users = list_users(session)
    if as_json:
        document = [
            {
                "email": user.email,
                "administrator": user.is_admin,
                "verified": user.verified,
                "locked_until": user.locked_until.isoformat()
                if user.locked_until
                else None,
                "teams": [{"team": team, "role": role} for team, role in user.teams],
            }
            for user in users
        ]
        click.echo(json.dumps(document, indent=2))
        return
    if not users:
        click.echo("No accounts: the first person to sign up becomes administrator.")
        return
    for user in users:
        notes = []
        if user.is_admin:
            notes.append("administrator")
        if not user.verified:
            notes.append("address not verified")
        if user.locked_until is not None and user.locked_until > datetime.now(UTC):
            notes.append(f"locked until {user.locked_until:%Y-%m-%d %H:%M} UTC")
        teams = ", ".join(f"{team} ({role})" for team, role in user.teams)
        suffix = f" [{'; '.join(notes)}]" if notes else ""
        click.echo(f"{user.email}{suffix}: {teams or 'no team'}")


@user_group.command("set-password")
@click.argument("email")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the new password from the first line of standard input "
    "instead of asking for it twice.",
)
def user_set_password_command(email: str, password_stdin: bool) -> None:
    """Set an account's password, unlock it and end its login sessions."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt(
            "New password", hide_input=True, confirmation_prompt=True
        )
    problem = password_problem(password)
    if problem is not None:
        raise click.UsageError(problem)
    password_hash = hash_password(password)
    with open_store() as sessions, sessions.begin() as session:
        user = find_user(session, email)
        if user is None:
            raise click.ClickException(_no_account(email))
        reset_password(session, user.id, password_hash, now=datetime.now(UTC))
    click.echo(f"Password of {user.email} set; its login sessions have ended.")


@user_group.command("add-member")
@click.argument("email")
@click.argument("team")
@click.argument("role", type=click.Choice(ROLES))
def user_add_member_command(email: str, team: str, role: str) -> None:
    """Make an account a member of TEAM with ROLE, or change its role there."""
    with open_store() as sessions, sessions.begin() as session:
        user, team_id = _user_and_team(session, email, team)
        if role != "owner" and _last_owner(session, user.id, team_id):
            raise click.ClickException(_last_owner_message(user.email, team))
        add_membership(session, user.id, team_id, role, now=datetime.now(UTC))
    click.echo(f"{user.email} is now {role} of team {team!r}.")


@user_group.command("remove-member")
@click.argument("email")
@click.argument("team")
def user_remove_member_command(email: str, team: str) -> None:
    """Take an account out of TEAM."""
    with open_store() as sessions, sessions.begin() as session:
        user, team_id = _user_and_team(session, email, team)
        if _last_owner(session, user.id, team_id):
            raise click.ClickException(_last_owner_message(user.email, team))
        if not remove_membership(session, user.id, team_id):
            raise click.ClickException(
                f"{user.email} is not a member of team {team!r}: run 'certwatch "
                "user list' to see the members of each team."
            )
    click.echo(f"{user.email} is no longer a member of team {team!r}.")


def _user_and_team(session: Session, email: str, team: str) -> tuple[User, int]:
    """Return the account of `email` and the id of `team`, or stop with why not."""
    user = find_user(session, email)
    if user is None:
        raise click.ClickException(_no_account(email))
    team_id = find_team(session, team)
    if team_id is None:
        raise click.ClickException(
            f"Team {team!r} not found: run 'certwatch team list' to see the teams."
        )
    return user, team_id


def _last_owner(session: Session, user_id: int, team_id: int) -> bool:
    """Tell whether the user is the team's only owner, with the team locked."""
    lock_team(session, team_id)
    role = team_role(session, user_id, team_id)
    return role == "owner" and owner_count(session, team_id) == 1


def _last_owner_message(email: str, team: str) -> str:
    return (
        f"{email} is the only owner of team {team!r}, which would then have "
        f"nobody to manage it: first make another member owner with 'certwatch "
        f"user add-member EMAIL {team} owner'."
    )


def _no_account(email: str) -> str:
    return (
        f"No account with the email address {email!r}: run 'certwatch user "
        "list' to see the accounts."
    )


USER_COMMANDS = (user_group,)
