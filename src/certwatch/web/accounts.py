"""Sign-up, login, logout, address verification and password reset pages.

The first account becomes the administrator and owner of the default team.
After it, `CERTWATCH_WEB_SIGNUP=invite` (the default) lets only holders of
an invitation link sign up, and `open` lets anyone.

On a site with a mail server, a new account gets a link that verifies its
address (`/verify`), and `/password-reset` sends a link that sets a new
password. Both links work once. Opening a link shows a button: only the
POST acts, so a mail scanner that fetches links acts on nothing. An
account made through an invitation counts as verified, and so does the
first account of a site without a mail server. Until verified, an account
can do all its roles allow except send invitations, because those make
the site email an address of the sender's choice.

A password reset request gets the same response whether the address has
an account or not. The email goes out after the response, so the response
takes about as long either way.

A failed login returns one message whether the email address is unknown,
the password wrong or the account locked, and takes as long in each case,
so the page does not tell which addresses have accounts. Five failed
logins for an account within 15 minutes lock it for 15 minutes, and
`ADDRESS_FAILURE_LIMIT` failures from one client address within 15
minutes stop its logins for the rest of that window.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy.orm import Session

from certwatch.store.accounts import (
    MAX_TEAM_NAME_LENGTH,
    AccountError,
    Invitation,
    LoginSession,
    User,
    accept_invitation,
    adopt_teams_without_members,
    count_users,
    create_account_token,
    create_session,
    create_team,
    create_user,
    delete_session,
    find_account_token,
    find_invitation,
    find_session,
    find_user,
    latest_account_token_at,
    mark_email_verified,
    normalize_email,
    record_failed_login,
    record_login,
    reset_password,
    use_account_token,
)
from certwatch.web.account_emails import (
    RESEND_INTERVAL,
    RESET_LIFETIME,
    VERIFY_LIFETIME,
    Mail,
    account_mail,
    send_reset_link,
    send_verification,
    verification_pending,
)
from certwatch.web.auth import (
    SESSION_LIFETIME,
    CurrentUser,
    FormBody,
    OptionalLogin,
    anonymous_csrf_token,
    check_csrf,
    clear_session_cookie,
    session_csrf_token,
    set_csrf_cookie,
    set_session_cookie,
)
from certwatch.web.dependencies import Context, WebContext
from certwatch.web.pages import TEMPLATES
from certwatch.web.passwords import (
    MAX_PASSWORD_LENGTH,
    MIN_PASSWORD_LENGTH,
    hash_password,
    needs_rehash,
    password_problem,
    verify_password,
)

FAILED_LOGIN_LIMIT = 5
FAILED_LOGIN_WINDOW = timedelta(minutes=15)
LOCK_DURATION = timedelta(minutes=15)
MAX_EMAIL_LENGTH = 254

HOME = "/dashboard"
"""The page that login and sign-up lead to when no other page was requested."""
MAX_NEXT_LENGTH = 2000

LOGIN_FAILED = (
    "The email address or password is wrong, or the account is locked for "
    "15 minutes after repeated failed logins."
)
ADDRESS_BLOCKED = (
    "Too many failed logins came from your network address: wait 15 minutes, "
    "then try again."
)
INVITE_ONLY = (
    "This site is open to invited people only: ask a team owner for an "
    "invitation link, and open it to sign up."
)
INVITATION_INVALID = (
    "This invitation link is invalid, used or expired: ask the team owner for "
    "a new one."
)
VERIFY_LINK_INVALID = (
    "This verification link is invalid, used or expired: log in and ask for a "
    "new one with the button at the top of the page."
)
RESET_LINK_INVALID = (
    "This password reset link is invalid, used or expired: ask for a new one "
    "on the password reset page."
)
RESET_LIMITED = (
    "Too many password reset requests came for this address or from your "
    "network address: wait an hour, then try again."
)
NO_MAIL_SERVER = (
    "This site has no mail server, so it cannot send password reset links: "
    "ask the operator of the site for help."
)

# Enough to catch a typing slip; the mail server is the judge of the rest.
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")

router = APIRouter(include_in_schema=False)


def render(
    request: Request,
    context: WebContext,
    template: str,
    values: dict[str, Any],
    *,
    login: LoginSession | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """Render a page with the CSRF token that its forms carry.

    Without a login session, the double-submit token is also set as a
    cookie. Pages are not cached, because they show the user's own data.
    """
    if login is not None:
        token = session_csrf_token(login)
    else:
        token = anonymous_csrf_token(request)
    notice = verification_pending(account_mail(request), login)
    response = TEMPLATES.TemplateResponse(
        request,
        template,
        {**values, "login": login, "csrf_token": token, "verify_notice": notice},
        status_code=status_code,
    )
    if login is None:
        set_csrf_cookie(response, request, context, token)
    response.headers["Cache-Control"] = "no-store"
    return response


def email_problem(email: str) -> str | None:
    """Return why an email address is not accepted, `None` when it is."""
    if len(email) > MAX_EMAIL_LENGTH or not _EMAIL.fullmatch(email):
        return f"{email!r} is not an email address: give one such as name@example.test."
    return None


@router.get("/signup", response_class=HTMLResponse, response_model=None)
def signup_page(
    request: Request, context: Context, login: OptionalLogin, invitation: str = ""
) -> HTMLResponse | RedirectResponse:
    """Show the sign-up form, or the reason why sign-up is closed.

    A logged-in user who opens an invitation link is sent to the page that
    accepts it for the existing account.
    """
    if login is not None and invitation:
        return RedirectResponse(
            f"/invitations/accept?invitation={quote(invitation)}", status_code=303
        )
    with context.sessions() as session:
        first = count_users(session) == 0
        found = _invitation(session, invitation, context)
    closed = _closed(context, first, invitation, found)
    if closed is not None:
        return render_message(request, context, login, "Sign-up is closed", closed)
    return _signup_form(
        request,
        context,
        first=first,
        invitation=found,
        invitation_token=invitation,
        email=found.email if found else "",
    )


@router.post("/signup", response_class=HTMLResponse, response_model=None)
def signup(
    request: Request, context: Context, form: FormBody
) -> HTMLResponse | RedirectResponse:
    """Create an account from the sign-up form and log it in."""
    check_csrf(request, form, None)
    email = normalize_email(form.get("email"))
    password = form.get("password")
    invitation_token = form.get("invitation")
    now = context.now_fn()

    with context.sessions() as session:
        first = count_users(session) == 0
        found = _invitation(session, invitation_token, context)
    closed = _closed(context, first, invitation_token, found)
    if closed is not None:
        return render_message(request, context, None, "Sign-up is closed", closed)

    problem = _signup_problem(email, password, form.get("password_confirm"), found)
    if problem is not None:
        return _signup_form(
            request,
            context,
            first=first,
            invitation=found,
            invitation_token=invitation_token,
            email=email,
            error=problem,
        )

    password_hash = hash_password(password)
    smtp = account_mail(request).smtp
    try:
        with context.sessions() as session, session.begin():
            user = create_user(session, email, password_hash, now=now)
            if found is not None:
                accept_invitation(session, found, user.id, now=now)
            elif context.settings.signup == "open" and not user.is_admin:
                create_own_team(session, user, now=now)
            if user.is_admin:
                # Teams made from the shell before anyone signed up.
                adopt_teams_without_members(session, now=now)
            # The invitation link reached the invited address; the first
            # account of a site without a mail server has no way to verify.
            verified = found is not None or (user.is_admin and smtp is None)
            if verified:
                mark_email_verified(session, user.id, now=now)
            token = create_session(session, user.id, now=now, lifetime=SESSION_LIFETIME)
    except AccountError as exc:
        return _signup_form(
            request,
            context,
            first=first,
            invitation=found,
            invitation_token=invitation_token,
            email=email,
            error=f"{exc} Log in, or sign up with another address.",
        )
    if smtp is None or verified:
        return _logged_in(request, context, token)

    # The account is committed before the email is tried, so a mail server
    # that is down costs the user the email, not the account.
    outcome = send_verification(context, smtp, user.id, user.email)
    with context.sessions() as session:
        login = find_session(session, token, now=now)
    state = "sent" if outcome.delivered else "failed"
    values = {"state": state, "email": user.email, "reason": outcome.reason}
    response = _verify_page(request, context, login, values)
    set_session_cookie(response, request, context, token)
    return response


@router.get("/login", response_class=HTMLResponse, response_model=None)
def login_page(
    request: Request, context: Context, login: OptionalLogin, next: str = ""
) -> HTMLResponse | RedirectResponse:
    """Show the login form, or send a logged-in user on to the page asked for."""
    if login is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    values = {"email": "", "error": None, "next": safe_next(next)}
    return render(request, context, "login.html", values)


@router.post("/login", response_class=HTMLResponse, response_model=None)
def login(
    request: Request, context: Context, form: FormBody
) -> HTMLResponse | RedirectResponse:
    """Check an email address and password, and start a login session."""
    check_csrf(request, form, None)
    email = normalize_email(form.get("email"))
    password = form.get("password")
    now = context.now_fn()
    client = request.client.host if request.client else ""

    if context.login_addresses.blocked(client, now):
        return _login_failed(
            request, context, email, ADDRESS_BLOCKED, 429, form.get("next")
        )

    with context.sessions() as session:
        user = find_user(session, email) if email else None
    locked = (
        user is not None and user.locked_until is not None and user.locked_until > now
    )
    checked_hash = user.password_hash if user is not None and not locked else None
    if user is None or not verify_password(checked_hash, password):
        context.login_addresses.failed(client, now)
        if user is not None and not locked:
            with context.sessions() as session, session.begin():
                record_failed_login(
                    session,
                    user.id,
                    now=now,
                    limit=FAILED_LOGIN_LIMIT,
                    window=FAILED_LOGIN_WINDOW,
                    lock_for=LOCK_DURATION,
                )
        return _login_failed(
            request, context, email, LOGIN_FAILED, 403, form.get("next")
        )

    rehashed = hash_password(password) if needs_rehash(user.password_hash) else None
    with context.sessions() as session, session.begin():
        record_login(session, user.id, new_password_hash=rehashed)
        token = create_session(session, user.id, now=now, lifetime=SESSION_LIFETIME)
    return _logged_in(request, context, token, form.get("next"))


@router.post("/logout", response_model=None)
def logout(
    request: Request, context: Context, login: OptionalLogin, form: FormBody
) -> RedirectResponse:
    """End the login session and return to the login page."""
    if login is not None:
        check_csrf(request, form, login)
        with context.sessions() as session, session.begin():
            delete_session(session, login.token_sha256)
    response = RedirectResponse("/login", status_code=303)
    clear_session_cookie(response, request, context)
    return response


def _invitation(session: Session, token: str, context: WebContext) -> Invitation | None:
    if not token:
        return None
    return find_invitation(session, token, now=context.now_fn())


def create_own_team(session: Session, user: User, *, now: datetime) -> int:
    """Create a team named after the user's address, with the user as owner.

    An account of open sign-up that came without an invitation would join
    no team and could add nothing. When another team has the name already,
    the new team's name gets a random suffix, so nobody can make a newcomer
    join a team by creating it first under the newcomer's address.
    """
    # The address check lets through control and format characters, which
    # team names reject. Unicode category C contains all of them.
    printable = "".join(
        char for char in user.email if not unicodedata.category(char).startswith("C")
    )
    try:
        with session.begin_nested():
            return create_team(
                session, printable[:MAX_TEAM_NAME_LENGTH], user.id, now=now
            )
    except AccountError:
        suffix = f" ({secrets.token_hex(4)})"
        name = printable[: MAX_TEAM_NAME_LENGTH - len(suffix)] + suffix
        return create_team(session, name, user.id, now=now)


def _closed(
    context: WebContext, first: bool, token: str, found: Invitation | None
) -> str | None:
    """Return why sign-up is closed to this request, `None` when it is open."""
    if token and found is None:
        return INVITATION_INVALID
    if first or found is not None or context.settings.signup == "open":
        return None
    return INVITE_ONLY


def _signup_problem(
    email: str, password: str, confirmation: str, invitation: Invitation | None
) -> str | None:
    problem = email_problem(email) or password_problem(password)
    if problem is not None:
        return problem
    if password != confirmation:
        return "The two passwords differ: type the same password twice."
    if invitation is not None and invitation.email != email:
        return (
            f"This invitation is for {invitation.email}: sign up with that "
            "address, or ask the team owner to invite this one."
        )
    return None


def _signup_form(
    request: Request,
    context: WebContext,
    *,
    first: bool,
    invitation: Invitation | None,
    invitation_token: str,
    email: str,
    error: str | None = None,
) -> HTMLResponse:
    values = {
        "first": first,
        "invitation": invitation,
        "invitation_token": invitation_token if invitation else "",
        "email": email,
        "error": error,
        "min_length": MIN_PASSWORD_LENGTH,
        "max_length": MAX_PASSWORD_LENGTH,
        "mail_off": account_mail(request).smtp is None,
    }
    status_code = 200 if error is None else 400
    return render(request, context, "signup.html", values, status_code=status_code)


def _login_failed(
    request: Request,
    context: WebContext,
    email: str,
    error: str,
    status_code: int,
    next_path: str = "",
) -> HTMLResponse:
    values = {"email": email, "error": error, "next": safe_next(next_path)}
    return render(request, context, "login.html", values, status_code=status_code)


def render_message(
    request: Request,
    context: WebContext,
    login: LoginSession | None,
    heading: str,
    message: str,
    *,
    status_code: int = 403,
) -> HTMLResponse:
    """Render a page with a heading and one message, with status 403 unless given."""
    values = {"heading": heading, "message": message}
    return render(
        request,
        context,
        "message.html",
        values,
        login=login,
        status_code=status_code,
    )


def safe_next(path: str) -> str:
    """Return `path` when it is a page of this site, else the dashboard.

    Only a path that starts with one `/` is followed, so a crafted login
    link cannot send the browser to another site after login.
    """
    if (
        path.startswith("/")
        and not path.startswith("//")
        and "\\" not in path
        and path.isprintable()
        and len(path) <= MAX_NEXT_LENGTH
    ):
        return path
    return HOME


def _logged_in(
    request: Request, context: WebContext, token: str, next_path: str = ""
) -> RedirectResponse:
    response = RedirectResponse(safe_next(next_path), status_code=303)
    set_session_cookie(response, request, context, token)
    return response


# --- Address verification ------------------------------------------------


@router.get("/verify", response_class=HTMLResponse)
def verify_page(
    request: Request, context: Context, login: OptionalLogin, token: str = ""
) -> HTMLResponse:
    """Show the button that verifies the address of a verification link."""
    with context.sessions() as session:
        found = find_account_token(session, token, "verify", now=context.now_fn())
    if found is None:
        return render_message(
            request, context, login, "Verify your address", VERIFY_LINK_INVALID
        )
    values = {"state": "confirm", "email": found.email, "token": token}
    return _verify_page(request, context, login, values)


@router.post("/verify", response_class=HTMLResponse)
def verify(
    request: Request, context: Context, login: OptionalLogin, form: FormBody
) -> HTMLResponse:
    """Mark the address of a verification link verified; the link works once."""
    check_csrf(request, form, login)
    now = context.now_fn()
    try:
        with context.sessions() as session, session.begin():
            found = find_account_token(session, form.get("token"), "verify", now=now)
            if found is not None:
                use_account_token(session, found, now=now)
                mark_email_verified(session, found.user_id, now=now)
    except AccountError:
        found = None
    if found is None:
        return render_message(
            request, context, login, "Verify your address", VERIFY_LINK_INVALID
        )
    if login is not None and login.user_id == found.user_id:
        login = replace(login, email_verified_at=now)
    values = {"state": "done", "email": found.email}
    return _verify_page(request, context, login, values)


@router.post("/verify/resend", response_class=HTMLResponse)
def resend_verification(
    request: Request, context: Context, login: CurrentUser, mail: Mail, form: FormBody
) -> HTMLResponse:
    """Send the logged-in user a new verification link, at most every 5 minutes."""
    check_csrf(request, form, login)
    now = context.now_fn()
    if mail.smtp is None or login.email_verified_at is not None:
        message = f"The address {login.email} needs no verification."
        return render_message(
            request, context, login, "Verify your address", message, status_code=200
        )
    with context.sessions() as session:
        latest = latest_account_token_at(session, login.user_id, "verify")
    if latest is not None and now - latest < RESEND_INTERVAL:
        allowed = (latest + RESEND_INTERVAL).strftime("%H:%M:%S UTC")
        message = (
            f"A verification link was sent to {login.email} a moment ago: look "
            f"for it in your mailbox, or ask again from {allowed}."
        )
        return render_message(
            request, context, login, "Verify your address", message, status_code=429
        )
    outcome = send_verification(context, mail.smtp, login.user_id, login.email)
    state = "sent" if outcome.delivered else "failed"
    values = {"state": state, "email": login.email, "reason": outcome.reason}
    return _verify_page(request, context, login, values)


def _verify_page(
    request: Request,
    context: WebContext,
    login: LoginSession | None,
    values: dict[str, Any],
) -> HTMLResponse:
    hours = int(VERIFY_LIFETIME.total_seconds() // 3600)
    status_code = 503 if values["state"] == "failed" else 200
    return render(
        request,
        context,
        "verify.html",
        {"reason": "", "hours": hours, **values},
        login=login,
        status_code=status_code,
    )


# --- Password reset --------------------------------------------------------


@router.get("/password-reset", response_class=HTMLResponse)
def password_reset_page(
    request: Request, context: Context, login: OptionalLogin, mail: Mail
) -> HTMLResponse:
    """Show the form that requests a password reset link."""
    if mail.smtp is None:
        return render_message(
            request, context, login, "Reset your password", NO_MAIL_SERVER
        )
    return _reset_request_page(request, context, login, {})


@router.post("/password-reset", response_class=HTMLResponse)
def request_password_reset(
    request: Request,
    context: Context,
    login: OptionalLogin,
    mail: Mail,
    form: FormBody,
    background: BackgroundTasks,
) -> HTMLResponse:
    """Send a reset link if the address has an account; respond the same anyway."""
    check_csrf(request, form, login)
    if mail.smtp is None:
        return render_message(
            request, context, login, "Reset your password", NO_MAIL_SERVER
        )
    email = normalize_email(form.get("email"))
    problem = email_problem(email)
    if problem is not None:
        values = {"email": email, "error": problem}
        return _reset_request_page(request, context, login, values, status_code=400)

    now = context.now_fn()
    client = request.client.host if request.client else ""
    limited = mail.reset_addresses.blocked(email, now) or mail.reset_clients.blocked(
        client, now
    )
    if limited:
        values = {"email": email, "error": RESET_LIMITED}
        return _reset_request_page(request, context, login, values, status_code=429)
    # The limiters count requests here, not failures.
    mail.reset_addresses.failed(email, now)
    mail.reset_clients.failed(client, now)

    with context.sessions() as session, session.begin():
        user = find_user(session, email)
        token = None
        if user is not None:
            token = create_account_token(
                session, user.id, "reset", user.email, now=now, lifetime=RESET_LIFETIME
            )
    if user is not None and token is not None:
        background.add_task(
            send_reset_link, context, mail.smtp, user.id, user.email, token
        )
    sent: dict[str, Any] = {"sent": True, "email": email}
    return _reset_request_page(request, context, login, sent)


@router.get("/password-reset/confirm", response_class=HTMLResponse)
def password_reset_form(
    request: Request, context: Context, login: OptionalLogin, token: str = ""
) -> HTMLResponse:
    """Show the form that sets a new password with a reset link."""
    with context.sessions() as session:
        found = find_account_token(session, token, "reset", now=context.now_fn())
    if found is None:
        return render_message(
            request, context, login, "Reset your password", RESET_LINK_INVALID
        )
    return _new_password_page(request, context, login, found.email, token, None)


@router.post(
    "/password-reset/confirm", response_class=HTMLResponse, response_model=None
)
def confirm_password_reset(
    request: Request, context: Context, login: OptionalLogin, form: FormBody
) -> HTMLResponse | RedirectResponse:
    """Set the new password, end every other login session and log in."""
    check_csrf(request, form, login)
    token = form.get("token")
    password = form.get("password")
    now = context.now_fn()
    with context.sessions() as session:
        found = find_account_token(session, token, "reset", now=now)
    if found is None:
        return render_message(
            request, context, login, "Reset your password", RESET_LINK_INVALID
        )
    problem = password_problem(password)
    if problem is None and password != form.get("password_confirm"):
        problem = "The two passwords differ: type the same password twice."
    if problem is not None:
        return _new_password_page(request, context, login, found.email, token, problem)

    password_hash = hash_password(password)
    try:
        with context.sessions() as session, session.begin():
            use_account_token(session, found, now=now)
            reset_password(session, found.user_id, password_hash, now=now)
            session_token = create_session(
                session, found.user_id, now=now, lifetime=SESSION_LIFETIME
            )
    except AccountError:
        return render_message(
            request, context, login, "Reset your password", RESET_LINK_INVALID
        )
    return _logged_in(request, context, session_token)


def _reset_request_page(
    request: Request,
    context: WebContext,
    login: LoginSession | None,
    values: dict[str, Any],
    *,
    status_code: int = 200,
) -> HTMLResponse:
    minutes = int(RESET_LIFETIME.total_seconds() // 60)
    defaults: dict[str, Any] = {
        "email": "",
        "error": None,
        "sent": False,
        "minutes": minutes,
    }
    return render(
        request,
        context,
        "password_reset.html",
        {**defaults, **values},
        login=login,
        status_code=status_code,
    )


def _new_password_page(
    request: Request,
    context: WebContext,
    login: LoginSession | None,
    email: str,
    token: str,
    error: str | None,
) -> HTMLResponse:
    values = {
        "email": email,
        "token": token,
        "error": error,
        "min_length": MIN_PASSWORD_LENGTH,
        "max_length": MAX_PASSWORD_LENGTH,
    }
    status_code = 200 if error is None else 400
    return render(
        request,
        context,
        "password_reset_confirm.html",
        values,
        login=login,
        status_code=status_code,
    )
