"""The pages of a user's teams: members, roles and invitations.

A team that the user is not a member of returns 404, as an id that does
not exist does, so that ids reveal nothing about other teams.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from certwatch.store.accounts import (
    MAX_TEAM_NAME_LENGTH,
    AccountError,
    Invitation,
    LoginSession,
    accept_invitation,
    add_membership,
    create_invitation,
    create_team,
    find_invitation,
    normalize_email,
    owned_team_count,
    team_members,
    team_name,
    team_role,
    user_teams,
)
from certwatch.store.models import ROLES
from certwatch.store.users import lock_team, owner_count, remove_membership
from certwatch.web.account_emails import (
    AccountMail,
    Mail,
    invitation_email,
    link_base,
    send_account_email,
    unverified_problem,
)
from certwatch.web.accounts import (
    INVITATION_INVALID,
    email_problem,
    render,
    render_message,
)
from certwatch.web.auth import CurrentUser, FormBody, check_csrf, require_role
from certwatch.web.dependencies import Context, WebContext
from certwatch.web.ids import require_row_ids

INVITATION_LIFETIME = timedelta(days=7)

# Each team has its own endpoint limit, so teams without bound would lift
# it. NOTE: a fixed number; an operator setting would suit larger sites.
MAX_OWNED_TEAMS = 10

router = APIRouter(include_in_schema=False)


@router.get("/teams", response_class=HTMLResponse)
def teams_page(request: Request, context: Context, login: CurrentUser) -> HTMLResponse:
    """Show the teams of the logged-in user, and the form that creates one."""
    return _teams_page(request, context, login, {})


@router.post("/teams", response_class=HTMLResponse, response_model=None)
def create_team_form(
    request: Request, context: Context, login: CurrentUser, form: FormBody
) -> HTMLResponse | RedirectResponse:
    """Create a team with the user as its owner, and open its page."""
    check_csrf(request, form, login)
    name = form.get("name")
    try:
        with context.sessions() as session, session.begin():
            if owned_team_count(session, login.user_id) >= MAX_OWNED_TEAMS:
                raise AccountError(
                    f"You own {MAX_OWNED_TEAMS} teams, the most one account may "
                    "own: add the endpoints to one of those teams instead."
                )
            team_id = create_team(session, name, login.user_id, now=context.now_fn())
    except AccountError as exc:
        values = {"error": str(exc), "name": name}
        return _teams_page(request, context, login, values, status_code=400)
    return RedirectResponse(f"/teams/{team_id}", status_code=303)


@router.get("/teams/{team_id}", response_class=HTMLResponse)
def team_page(
    request: Request, context: Context, login: CurrentUser, team_id: int
) -> HTMLResponse:
    """Show a team's members, and for owners the invitation form."""
    return _team_page(request, context, login, team_id, {})


@router.post("/teams/{team_id}/members/{user_id}", response_class=HTMLResponse)
def change_member(
    request: Request,
    context: Context,
    login: CurrentUser,
    form: FormBody,
    team_id: int,
    user_id: int,
) -> HTMLResponse:
    """Change a member's role or take the member out of the team; owners only.

    The team's last owner keeps the role, so that a team always has someone
    who can invite and change settings.
    """
    check_csrf(request, form, login)
    require_row_ids(team_id, user_id)
    action = form.get("action")
    role = form.get("role")
    if action not in ("role", "remove") or (action == "role" and role not in ROLES):
        return _team_page(
            request,
            context,
            login,
            team_id,
            {"error": f"Unknown change {action!r}: change the role or remove."},
            status_code=400,
        )
    with context.sessions() as session, session.begin():
        # Locked before any role is read, so that both roles and the owner
        # count are read after a concurrent change of the team commits.
        lock_team(session, team_id)
        require_role(session, login, team_id, "owner")
        current = team_role(session, user_id, team_id)
        if current is None:
            raise HTTPException(404, "Not Found")
        members = {m.user_id: m.email for m in team_members(session, team_id)}
        email = members[user_id]
        leaves_owner = current == "owner" and (action == "remove" or role != "owner")
        if leaves_owner and owner_count(session, team_id) == 1:
            problem = (
                f"{email} is the team's only owner: make another member owner "
                "first, so that someone can still manage the team."
            )
        else:
            problem = None
            if action == "remove":
                remove_membership(session, user_id, team_id)
                notice = f"{email} is no longer a member of the team."
            else:
                add_membership(session, user_id, team_id, role, now=context.now_fn())
                notice = f"{email} is now {role} of the team."
    if problem is not None:
        return _team_page(
            request, context, login, team_id, {"error": problem}, status_code=400
        )
    return _team_page(request, context, login, team_id, {"member_notice": notice})


@router.post("/teams/{team_id}/invitations", response_class=HTMLResponse)
def invite(
    request: Request,
    context: Context,
    login: CurrentUser,
    mail: Mail,
    form: FormBody,
    team_id: int,
) -> HTMLResponse:
    """Make an invitation to the team, show its link and email it; owners only.

    On a site with a mail server, an owner whose address is not verified
    cannot invite, because the invitation email goes to an address of the
    owner's choice.
    """
    check_csrf(request, form, login)
    require_row_ids(team_id)
    email = normalize_email(form.get("email"))
    role = form.get("role")
    problem = email_problem(email)
    if problem is None and role not in ROLES:
        problem = f"Unknown role {role!r}: choose one of {', '.join(ROLES)}."
    if problem is None:
        problem = unverified_problem(mail, login)

    with context.sessions() as session, session.begin():
        require_role(session, login, team_id, "owner")
        if problem is not None:
            token = None
        else:
            token = create_invitation(
                session,
                team_id,
                email,
                role,
                invited_by=login.user_id,
                now=context.now_fn(),
                lifetime=INVITATION_LIFETIME,
            )
    if token is None:
        return _team_page(
            request, context, login, team_id, {"error": problem}, status_code=400
        )
    values = {
        "invitation_url": f"{_base_url(request, context)}/signup?invitation="
        f"{quote(token)}",
        "invited_email": email,
        "invitation_days": INVITATION_LIFETIME.days,
        "invitation_mail": _send_invitation(
            context, mail, login, team_id, email, role, token
        ),
    }
    return _team_page(request, context, login, team_id, values)


def _send_invitation(
    context: WebContext,
    mail: AccountMail,
    login: LoginSession,
    team_id: int,
    email: str,
    role: str,
    token: str,
) -> str:
    """Email the invitation link if the site has a mail server; describe the outcome."""
    if mail.smtp is None:
        return (
            "This site has no mail server, so no email was sent: send them the "
            "link yourself."
        )
    with context.sessions() as session:
        team = team_name(session, team_id) or ""
    link = f"{link_base(context)}/signup?invitation={quote(token)}"
    message = invitation_email(link, team, role, login.email, INVITATION_LIFETIME.days)
    outcome = send_account_email(mail.smtp, email, message, now=context.now_fn())
    if outcome.delivered:
        return f"The link was sent by email to {email}."
    return (
        f"The invitation email to {email} could not be sent ({outcome.reason}): "
        "send them the link yourself."
    )


@router.get("/invitations/accept", response_class=HTMLResponse)
def invitation_page(
    request: Request, context: Context, login: CurrentUser, invitation: str = ""
) -> HTMLResponse:
    """Show the form that accepts an invitation with the logged-in account."""
    with context.sessions() as session:
        found = find_invitation(session, invitation, now=context.now_fn())
    problem = _acceptance_problem(found, login)
    if problem is not None:
        return render_message(request, context, login, "Invitation", problem)
    values = {"invitation": found, "invitation_token": invitation}
    return render(request, context, "invitation.html", values, login=login)


@router.post("/invitations/accept", response_class=HTMLResponse, response_model=None)
def accept(
    request: Request, context: Context, login: CurrentUser, form: FormBody
) -> HTMLResponse | RedirectResponse:
    """Join the invitation's team with the logged-in account."""
    check_csrf(request, form, login)
    now = context.now_fn()
    try:
        with context.sessions() as session, session.begin():
            found = find_invitation(session, form.get("invitation"), now=now)
            problem = _acceptance_problem(found, login)
            if found is not None and problem is None:
                accept_invitation(session, found, login.user_id, now=now)
    except AccountError:
        problem = INVITATION_INVALID
    if found is None or problem is not None:
        message = problem or INVITATION_INVALID
        return render_message(request, context, login, "Invitation", message)
    return RedirectResponse(f"/teams/{found.team_id}", status_code=303)


def _teams_page(
    request: Request,
    context: WebContext,
    login: LoginSession,
    extra: dict[str, Any],
    *,
    status_code: int = 200,
) -> HTMLResponse:
    with context.sessions() as session:
        teams = user_teams(session, login.user_id)
    values = {
        "teams": teams,
        "error": None,
        "name": "",
        "max_name_length": MAX_TEAM_NAME_LENGTH,
        **extra,
    }
    return render(
        request, context, "teams.html", values, login=login, status_code=status_code
    )


def _acceptance_problem(found: Invitation | None, login: LoginSession) -> str | None:
    if found is None:
        return INVITATION_INVALID
    if found.email != login.email:
        return (
            f"This invitation is for {found.email}, and you are logged in as "
            f"{login.email}: log out, then open the link again."
        )
    return None


def _team_page(
    request: Request,
    context: WebContext,
    login: LoginSession,
    team_id: int,
    extra: dict[str, Any],
    *,
    status_code: int = 200,
) -> HTMLResponse:
    require_row_ids(team_id)
    with context.sessions() as session:
        role = require_role(session, login, team_id, "viewer")
        name = team_name(session, team_id)
        members = team_members(session, team_id)
    if name is None:
        raise HTTPException(404, "Not Found")
    values = {
        "team_id": team_id,
        "team": name,
        "role": role,
        "members": members,
        "roles": ROLES,
        "error": None,
        **extra,
    }
    return render(
        request, context, "team.html", values, login=login, status_code=status_code
    )


def _base_url(request: Request, context: WebContext) -> str:
    """Return the URL that links start with: the public URL, else the request's."""
    if context.settings.public_url is not None:
        return context.settings.public_url.rstrip("/")
    return str(request.base_url).rstrip("/")
