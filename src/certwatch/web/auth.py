"""Login sessions, CSRF tokens, form bodies and team roles for the HTML pages.

A logged-in browser keeps a random session token in the cookie
`certwatch_session`; the store keeps its SHA-256. Every POST form carries
a CSRF token: after login, an HMAC of the session's `csrf_secret`; before
login, the value of the `certwatch_csrf` cookie (double submit). Another
site can make a browser send the cookies but cannot read them, so it
cannot forge the token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import Depends, HTTPException, Request, Response
from sqlalchemy.orm import Session

from certwatch.store.accounts import LoginSession, find_session, team_role
from certwatch.store.models import ROLES
from certwatch.web.dependencies import Context, WebContext

SESSION_COOKIE = "certwatch_session"
CSRF_COOKIE = "certwatch_csrf"
CSRF_FIELD = "csrf_token"
SESSION_LIFETIME = timedelta(days=14)
# The forms hold a few short fields; a larger body is rejected unread.
MAX_FORM_BYTES = 64 * 1024
FORM_TYPE = "application/x-www-form-urlencoded"


class LoginRequired(Exception):
    """Raised by `current_user` without a valid session, to redirect to login."""


@dataclass(frozen=True)
class Form:
    """The fields of a URL-encoded form; a repeated field keeps its first value."""

    fields: dict[str, str]

    def get(self, name: str) -> str:
        """Return the field's value, "" when it is missing."""
        return self.fields.get(name, "")


async def read_form(request: Request) -> Form:
    """Parse the request body as a URL-encoded form.

    Raises:
        HTTPException: 415 for another content type, 413 for a body over
            `MAX_FORM_BYTES`, 400 for a body that is not UTF-8.
    """
    content_type = request.headers.get("content-type", "").split(";")[0].strip()
    if content_type.lower() != FORM_TYPE:
        raise HTTPException(415, f"Send the form as {FORM_TYPE}.")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_FORM_BYTES:
            raise HTTPException(413, "The form is too large.")
    try:
        pairs = parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError as exc:
        raise HTTPException(400, "The form is not UTF-8 text.") from exc
    fields: dict[str, str] = {}
    for name, value in pairs:
        fields.setdefault(name, value)
    return Form(fields)


FormBody = Annotated[Form, Depends(read_form)]
"""A handler parameter of this type receives the parsed form of a POST."""


def session_csrf_token(login: LoginSession) -> str:
    """Return the CSRF token that forms of this login session carry."""
    key = bytes.fromhex(login.csrf_secret)
    return hmac.new(key, b"certwatch csrf", hashlib.sha256).hexdigest()


def anonymous_csrf_token(request: Request) -> str:
    """Return the double-submit CSRF token of a browser without a session.

    A browser without the `certwatch_csrf` cookie gets a new token, which
    `set_csrf_cookie` must then store in the response.
    """
    return request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)


def check_csrf(request: Request, form: Form, login: LoginSession | None) -> None:
    """Reject a form whose CSRF token does not match its session or cookie.

    Raises:
        HTTPException: 403 when the token is missing or wrong.
    """
    sent = form.get(CSRF_FIELD)
    if login is not None:
        expected = session_csrf_token(login)
    else:
        expected = request.cookies.get(CSRF_COOKIE, "")
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise HTTPException(
            403,
            "The form has expired or did not come from this site: reload the "
            "page and send it again.",
        )


def cookie_secure(request: Request, context: WebContext) -> bool:
    """Tell whether cookies must be limited to HTTPS.

    They are when the request came over HTTPS, as uvicorn reports it, or
    when the public URL is an https URL (a TLS proxy in front).
    """
    public_url = context.settings.public_url or ""
    return request.url.scheme == "https" or public_url.startswith("https://")


def set_csrf_cookie(
    response: Response, request: Request, context: WebContext, token: str
) -> None:
    """Store the double-submit CSRF token in the browser, if it is new."""
    if request.cookies.get(CSRF_COOKIE) == token:
        return
    response.set_cookie(
        CSRF_COOKIE,
        token,
        httponly=True,
        samesite="lax",
        secure=cookie_secure(request, context),
        path="/",
    )


def set_session_cookie(
    response: Response, request: Request, context: WebContext, token: str
) -> None:
    """Store a login session token in the browser for `SESSION_LIFETIME`."""
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(SESSION_LIFETIME.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=cookie_secure(request, context),
        path="/",
    )


def clear_session_cookie(
    response: Response, request: Request, context: WebContext
) -> None:
    """Delete the session cookie from the browser."""
    response.delete_cookie(
        SESSION_COOKIE,
        httponly=True,
        samesite="lax",
        secure=cookie_secure(request, context),
        path="/",
    )


def login_session(request: Request, context: Context) -> LoginSession | None:
    """Return the request's valid login session, `None` without one."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    with context.sessions() as session:
        return find_session(session, token, now=context.now_fn())


OptionalLogin = Annotated[LoginSession | None, Depends(login_session)]
"""A handler parameter of this type receives the login session, or `None`."""


def current_user(login: OptionalLogin) -> LoginSession:
    """Return the login session of the request.

    Raises:
        LoginRequired: the request has no valid session, so the
            application redirects to the login page.
    """
    if login is None:
        raise LoginRequired
    return login


CurrentUser = Annotated[LoginSession, Depends(current_user)]
"""A handler parameter of this type receives the login session, or redirects."""


def require_role(session: Session, login: LoginSession, team_id: int, role: str) -> str:
    """Return the user's role in the team when it allows at least `role`.

    Raises:
        HTTPException: 404 when the user is not a member of the team, so
            that the response for another team's id is the same as for an id
            that does not exist; 403 when the member's role is below `role`.
    """
    member_role = team_role(session, login.user_id, team_id)
    if member_role is None:
        raise HTTPException(404, "Not Found")
    if ROLES.index(member_role) > ROLES.index(role):
        raise HTTPException(403, f"This needs the {role} role in the team.")
    return member_role
