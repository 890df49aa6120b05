"""Build the FastAPI application of the web service.

Each area of the service is one router: `pages` (HTML), `health`,
`metrics`, `calendar_feed`, `accounts` (sign-up, login, logout) and
`teams`. Later areas (the JSON API under `/api`) are further routers
added here. The handlers are plain `def` functions over the store's
blocking sessions, so FastAPI runs them in its thread pool, and a slow
query holds a pool thread, not the event loop.
"""

from __future__ import annotations

import logging
import sqlite3
from datetime import UTC, datetime
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from starlette.middleware.gzip import GZipMiddleware

from certwatch import __version__
from certwatch.web import (
    accounts,
    ack_links,
    alert_pages,
    api,
    api_tokens,
    calendar_feed,
    certificate_pages,
    dashboard,
    endpoint_new,
    endpoint_pages,
    health,
    metrics,
    pages,
    team_settings,
    teams,
)
from certwatch.web.auth import LoginRequired
from certwatch.web.body_limit import BodyLimitMiddleware
from certwatch.web.dependencies import Clock, SessionFactory, WebContext, web_context
from certwatch.web.errors import error_response, install_error_pages
from certwatch.web.settings import WebSettings

logger = logging.getLogger(__name__)

# SQLite's result codes for a lock that another connection holds, which
# Python's sqlite3 module (3.11 and later) exposes as `sqlite_errorname`.
_SQLITE_BUSY_ERRORS = frozenset(
    {"SQLITE_BUSY", "SQLITE_BUSY_SNAPSHOT", "SQLITE_BUSY_TIMEOUT", "SQLITE_LOCKED"}
)
# PostgreSQL's lock_not_available, deadlock_detected and
# serialization_failure: the same request can succeed when retried.
_POSTGRES_BUSY_STATES = frozenset({"55P03", "40P01", "40001"})

# Responses smaller than this are sent as they are: compressing them saves
# less than the Content-Encoding header costs.
GZIP_MINIMUM_SIZE = 1024
# Level 5 compressed the 45 MiB of /metrics for 100,000 endpoints in 0.4 s,
# level 9 (Starlette's default) in 1.0 s, to 8 and 7 MiB.
GZIP_LEVEL = 5


def utc_now() -> datetime:
    """Return the current time in UTC, the clock of the web service."""
    return datetime.now(UTC)


def create_app(
    sessions: SessionFactory, settings: WebSettings, *, now_fn: Clock = utc_now
) -> FastAPI:
    """Build the web application over a store session factory.

    The application keeps no state beyond these arguments, so several
    applications (one per test, say) can live in one process.
    """
    app = FastAPI(
        title="certwatch",
        version=__version__,
        summary="Watch TLS certificates so that none expires unnoticed.",
        # /docs is served by api_docs.py from a local copy of Swagger UI.
        docs_url=None,
        redoc_url=None,
        # A trailing-slash redirect would be built from the Host header,
        # which a client chooses.
        redirect_slashes=False,
    )
    app.state.certwatch = WebContext(
        sessions=sessions, settings=settings, now_fn=now_fn
    )
    # /metrics of a large inventory runs to tens of megabytes, which
    # Prometheus accepts gzip-compressed.
    app.add_middleware(
        GZipMiddleware, minimum_size=GZIP_MINIMUM_SIZE, compresslevel=GZIP_LEVEL
    )
    # Added before `api.install` adds the form post limit, so this runs
    # inside it: that middleware reads the body in a task group, which
    # would wrap the limit's 413 in an ExceptionGroup that FastAPI's body
    # parsing turns into a 400.
    app.add_middleware(BodyLimitMiddleware)
    app.add_exception_handler(SQLAlchemyError, _database_unavailable)
    app.add_exception_handler(LoginRequired, _login_required)
    install_error_pages(app)
    for router in (
        pages.router,
        health.router,
        metrics.router,
        calendar_feed.router,
        accounts.router,
        teams.router,
        certificate_pages.router,
        alert_pages.router,
        team_settings.router,
        dashboard.router,
        endpoint_pages.router,
        endpoint_new.router,
        ack_links.router,
    ):
        app.include_router(router)
    api.install(app)
    app.include_router(api_tokens.router)
    return app


def _database_unavailable(request: Request, exc: Exception) -> Response:
    """Return 503 when a handler's query fails, and log the error only.

    The message of a database error can name servers, users and SQL, which
    a client of the web service has no business seeing.
    """
    assert isinstance(exc, SQLAlchemyError)
    # The route's template, not the URL: a calendar URL contains its secret.
    route = request.scope.get("route")
    where = getattr(route, "path", "a request")
    if _is_busy(exc):
        logger.warning(
            "%s gave up waiting for a database lock (%s); the request can be retried",
            where,
            type(exc.__cause__ or exc).__name__,
        )
        return error_response(
            request,
            503,
            "The inventory database is busy with other changes; retry the "
            "request in a few seconds.",
        )
    web_context(request).failures.failed(where, exc)
    return error_response(
        request, 503, "The inventory database cannot be read; try again later."
    )


def _is_busy(exc: SQLAlchemyError) -> bool:
    """Tell whether `exc` is a lock wait that gave up, not a database fault."""
    if not isinstance(exc, OperationalError):
        return False
    cause = exc.orig
    if isinstance(cause, sqlite3.OperationalError):
        return getattr(cause, "sqlite_errorname", "") in _SQLITE_BUSY_ERRORS
    return getattr(cause, "sqlstate", None) in _POSTGRES_BUSY_STATES


def _login_required(request: Request, exc: Exception) -> RedirectResponse:
    """Send a browser without a valid login session to the login page.

    A GET names the page in `next`, so that the login leads back to it.
    """
    if request.method != "GET":
        return RedirectResponse("/login", status_code=303)
    page = request.url.path
    if request.url.query:
        page += "?" + request.url.query
    return RedirectResponse(f"/login?next={quote(page, safe='')}", status_code=303)
