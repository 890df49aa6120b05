"""Authentication, roles and request limits of the JSON API callers.

A request authenticates with `Authorization: Bearer cw_...` (an API token:
its team and role) or with the login session cookie of the pages (the
user's teams and roles). A browser sends the cookie with requests that
another site makes it send, so a cookie-authenticated write must also
carry the session's CSRF token in the `X-CSRF-Token` header, which only
pages of this site can read. A bearer token is never sent by the browser
on its own, so bearer requests need no such header.

Every API request counts against `requests_per_minute` of its user or
token. The POST forms of the pages count per login session, or per client
address before login (`limit_form_posts`).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import APIKeyCookie, APIKeyHeader, HTTPBearer
from sqlalchemy.orm import Session

from certwatch.store.accounts import LoginSession, team_role, user_teams
from certwatch.store.api_tokens import TokenGrant, find_api_token, record_token_use
from certwatch.store.models import ROLES
from certwatch.web.auth import SESSION_COOKIE, login_session, session_csrf_token
from certwatch.web.dependencies import Context, WebContext, web_context
from certwatch.web.ratelimit import RequestLimiter

CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
API_PREFIX = "/api"

# The security schemes declare the credentials in the OpenAPI document, so
# that /docs offers an Authorize button. They never reject a request
# (auto_error=False): `api_caller` reads the headers itself and keeps its
# own error messages.
BEARER_SCHEME = HTTPBearer(
    scheme_name="apiToken",
    description="An API token from your team's Tokens page, sent as "
    "`Authorization: Bearer cw_...`.",
    auto_error=False,
)
SESSION_SCHEME = APIKeyCookie(
    name=SESSION_COOKIE,
    scheme_name="sessionCookie",
    description="The login session of the web pages. A write (POST, PATCH, "
    f"DELETE) with it also needs the {CSRF_HEADER} header.",
    auto_error=False,
)
CSRF_SCHEME = APIKeyHeader(
    name=CSRF_HEADER,
    scheme_name="csrfToken",
    description="The session's CSRF token (the csrf_token field of the site's "
    "forms), required with the session cookie on writes.",
    auto_error=False,
)


class ApiError(Exception):
    """An API failure, returned as JSON `{"detail": message}` with a status."""

    def __init__(
        self, status_code: int, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.headers = headers or {}


def not_found(what: str, value: object) -> ApiError:
    """Return the 404 for an id that does not exist or belongs to another team."""
    return ApiError(
        404,
        f"{what} {value!r} not found in your teams: check the id against the "
        "list that the API returns for your teams.",
    )


@dataclass(frozen=True)
class ApiCaller:
    """The user (by login session) or API token behind an API request."""

    login: LoginSession | None = None
    token: TokenGrant | None = None

    @property
    def rate_key(self) -> str:
        """The key that the request limit counts this caller under."""
        if self.token is not None:
            return f"token:{self.token.token_id}"
        assert self.login is not None
        return f"user:{self.login.user_id}"

    @property
    def actor(self) -> str:
        """Who acts, as recorded on an acknowledgement."""
        if self.token is not None:
            return f"API token {self.token.token_id}"
        assert self.login is not None
        return self.login.email

    def team_roles(self, session: Session) -> dict[int, str]:
        """Return the caller's role in each team it may see, by team id."""
        if self.token is not None:
            return {self.token.team_id: self.token.role}
        assert self.login is not None
        return {m.team_id: m.role for m in user_teams(session, self.login.user_id)}

    def role_in(self, session: Session, team_id: int) -> str | None:
        """Return the caller's role in a team, `None` when not a member."""
        if self.token is not None:
            return self.token.role if self.token.team_id == team_id else None
        assert self.login is not None
        return team_role(session, self.login.user_id, team_id)

    def require(self, session: Session, team_id: int, role: str, what: str) -> None:
        """Raise unless the caller has at least `role` in the team.

        Raises:
            ApiError: 404 when the caller is not in the team, as for an id
                that does not exist (`what` names the kind of id); 403 when
                the role is too low.
        """
        found = self.role_in(session, team_id)
        if found is None:
            raise not_found(what, team_id)
        if ROLES.index(found) > ROLES.index(role):
            raise ApiError(
                403,
                f"This needs the {role} role in the team, and your "
                f"{'token' if self.token else 'account'} has the {found} role: "
                "ask a team owner for a token or membership with that role.",
            )


def api_caller(
    request: Request,
    context: Context,
    _bearer: Annotated[object, Depends(BEARER_SCHEME)],
    _session: Annotated[object, Depends(SESSION_SCHEME)],
    _csrf: Annotated[object, Depends(CSRF_SCHEME)],
) -> ApiCaller:
    """Authenticate an API request, check its CSRF header and count it.

    The three scheme parameters only declare the credentials in the OpenAPI
    document; the checks below read the request's headers and cookie.

    Raises:
        ApiError: 401 without valid credentials, 403 for a cookie write
            without the CSRF header, 429 over the request limit.
    """
    header = request.headers.get("authorization")
    if header is not None:
        caller = ApiCaller(token=_bearer_grant(header, context))
    else:
        login = login_session(request, context)
        if login is None:
            raise ApiError(
                401,
                "Authentication required: send 'Authorization: Bearer TOKEN' "
                "with an API token from your team's Tokens page, or log in.",
                {"WWW-Authenticate": "Bearer"},
            )
        if request.method not in SAFE_METHODS:
            _check_csrf_header(request, login)
        caller = ApiCaller(login=login)
    wait = request_limiter(request).admit(caller.rate_key, context.now_fn())
    if wait is not None:
        raise too_many_requests(request_limiter(request).limit, wait)
    return caller


Caller = Annotated[ApiCaller, Depends(api_caller)]
"""A handler parameter of this type receives the authenticated caller."""


def _bearer_grant(header: str, context: WebContext) -> TokenGrant:
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            401,
            "Invalid Authorization header: send 'Authorization: Bearer TOKEN' "
            "with an API token that starts with cw_.",
            {"WWW-Authenticate": "Bearer"},
        )
    now = context.now_fn()
    # The lookup only reads, so a burst of API requests does not queue for
    # SQLite's write lock; the last-used time is written once a minute.
    with context.sessions() as session:
        grant = find_api_token(session, token.strip(), now=now, record_use=False)
    if grant is not None and grant.use_due:
        with context.sessions() as session, session.begin():
            record_token_use(session, grant.token_id, now=now)
    if grant is None:
        # The token itself is a secret and stays out of the message.
        raise ApiError(
            401,
            "The API token is unknown or revoked: make a new one on your "
            "team's Tokens page.",
            {"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    return grant


def _check_csrf_header(request: Request, login: LoginSession) -> None:
    sent = request.headers.get(CSRF_HEADER, "")
    expected = session_csrf_token(login)
    if not hmac.compare_digest(sent.encode(), expected.encode()):
        raise ApiError(
            403,
            f"A write with the login cookie needs the {CSRF_HEADER} header with "
            "the session's CSRF token (the csrf_token field of the site's "
            "forms); scripts should send an API token instead.",
        )


def too_many_requests(limit: int, wait: int) -> ApiError:
    """Return the 429 for a caller over the request limit."""
    return ApiError(
        429,
        f"More than {limit} requests in a minute: wait {wait} s and send the "
        "request again, or ask the operator to raise "
        "CERTWATCH_WEB_REQUESTS_PER_MINUTE.",
        {"Retry-After": str(wait)},
    )


def request_limiter(request: Request) -> RequestLimiter:
    """Return the application's request limiter, made by `install_limits`."""
    limiter = request.app.state.request_limiter
    assert isinstance(limiter, RequestLimiter)
    return limiter


def install_limits(app: FastAPI) -> None:
    """Add the request limiter, the API error handler and the form post limit.

    It also makes the OpenAPI document state which credentials each API
    operation accepts, with `openapi_security`.
    """
    context = app.state.certwatch
    assert isinstance(context, WebContext)
    app.state.request_limiter = RequestLimiter(context.settings.requests_per_minute)
    app.add_exception_handler(ApiError, _api_error)
    app.middleware("http")(limit_form_posts)
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        return openapi_security(generate())

    # FastAPI documents replacing `app.openapi` to change the document.
    app.openapi = openapi  # type: ignore[method-assign]


def openapi_security(document: dict[str, Any]) -> dict[str, Any]:
    """Require a token, or the session cookie (with the CSRF header on writes).

    FastAPI lists the three schemes of `api_caller` as alternatives, which
    would offer the CSRF header alone. Each operation that lists them gets
    the real requirements instead. The document is changed in place, which
    also updates FastAPI's cached copy, and returned.
    """
    for operations in document.get("paths", {}).values():
        for method, operation in operations.items():
            if "security" not in operation:
                continue
            session: dict[str, list[str]] = {SESSION_SCHEME.scheme_name: []}
            if method.upper() not in SAFE_METHODS:
                session[CSRF_SCHEME.scheme_name] = []
            operation["security"] = [{BEARER_SCHEME.scheme_name: []}, session]
    return document


def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return JSONResponse(
        {"detail": exc.message}, status_code=exc.status_code, headers=exc.headers
    )


async def limit_form_posts(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """Return 429 for a page POST over the limit of its session or address.

    The API counts its requests per user or token in `api_caller`. Here a
    logged-in browser counts by its session cookie, which needs no
    database query, and others by their client address.
    """
    if request.method != "POST" or request.url.path.startswith(API_PREFIX):
        return await call_next(request)
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        key = "session:" + hashlib.sha256(cookie.encode()).hexdigest()
    else:
        key = "address:" + (request.client.host if request.client else "unknown")
    limiter = request_limiter(request)
    wait = limiter.admit(key, web_context(request).now_fn())
    if wait is None:
        return await call_next(request)
    error = too_many_requests(limiter.limit, wait)
    return HTMLResponse(
        f"<!doctype html><title>Too many requests</title><p>{error.message}</p>",
        status_code=429,
        headers=error.headers,
    )
