"""Sign-up, login and logout pages.

The first account becomes the administrator and owner of the default team.
After it, `CERTWATCH_WEB_SIGNUP=invite` (the default) lets only holders of
an invitation link sign up, and `open` lets anyone.

A failed login returns one message whether the email address is unknown,
the password wrong or the account locked, and takes as long in each case,
so the page does not tell which addresses have accounts. Five failed
logins for an account within 15 minutes lock it for 15 minutes, and
`ADDRESS_FAILURE_LIMIT` failures from one client address within 15
minutes stop its logins for the rest of that window.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy.orm import Session

from certwatch.store.accounts import (
    AccountError,
    Invitation,
    LoginSession,
    accept_invitation,
    count_users,
    create_session,
    create_user,
    delete_session,
    find_invitation,
    find_user,
    normalize_email,
    record_failed_login,
    record_login,
)
from certwatch.web.auth import (
    SESSION_LIFETIME,
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
    response = TEMPLATES.TemplateResponse(
        request,
        template,
        {**values, "login": login, "csrf_token": token},
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
    try:
        with context.sessions() as session, session.begin():
            user = create_user(session, email, password_hash, now=now)
            if found is not None:
                accept_invitation(session, found, user.id, now=now)
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
    return _logged_in(request, context, token)


@router.get("/login", response_class=HTMLResponse, response_model=None)
def login_page(
    request: Request, context: Context, login: OptionalLogin
) -> HTMLResponse | RedirectResponse:
    """Show the login form, or send a logged-in user to the teams page."""
    if login is not None:
        return RedirectResponse("/teams", status_code=303)
    return render(request, context, "login.html", {"email": "", "error": None})


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
        return _login_failed(request, context, email, ADDRESS_BLOCKED, 429)

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
        return _login_failed(request, context, email, LOGIN_FAILED, 403)

    rehashed = hash_password(password) if needs_rehash(user.password_hash) else None
    with context.sessions() as session, session.begin():
        record_login(session, user.id, new_password_hash=rehashed)
        token = create_session(session, user.id, now=now, lifetime=SESSION_LIFETIME)
    return _logged_in(request, context, token)


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
    }
    status_code = 200 if error is None else 400
    return render(request, context, "signup.html", values, status_code=status_code)


def _login_failed(
    request: Request, context: WebContext, email: str, error: str, status_code: int
) -> HTMLResponse:
    values = {"email": email, "error": error}
    return render(request, context, "login.html", values, status_code=status_code)


def render_message(
    request: Request,
    context: WebContext,
    login: LoginSession | None,
    heading: str,
    message: str,
) -> HTMLResponse:
    """Render a page with a heading and one message, with status 403."""
    values = {"heading": heading, "message": message}
    return render(
        request, context, "message.html", values, login=login, status_code=403
    )


def _logged_in(request: Request, context: WebContext, token: str) -> RedirectResponse:
    response = RedirectResponse("/teams", status_code=303)
    set_session_cookie(response, request, context, token)
    return response
