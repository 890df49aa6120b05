"""Error responses as HTML pages for browsers and as JSON for programs.

A browser that follows a stale link or posts an expired form should see a
page of the site with a way back, not FastAPI's `{"detail": ...}`. The
API, the metrics, the health check and the calendar feeds keep JSON (or
their own format), and so does any client whose Accept header prefers
JSON to HTML.
"""

from __future__ import annotations

import logging
import math
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from certwatch.store.accounts import LoginSession
from certwatch.web.auth import login_session, session_csrf_token
from certwatch.web.dependencies import web_context
from certwatch.web.pages import TEMPLATES

logger = logging.getLogger(__name__)

MACHINE_PREFIXES = ("/api", "/metrics", "/healthz", "/calendar")
"""Paths whose clients are programs, which always get JSON errors."""

# Shown instead of Starlette's bare reason phrases, which tell a reader
# what happened but not what to do.
_MESSAGES = {
    400: "The request is invalid.",
    403: "You are not allowed to do this.",
    404: (
        "There is no such page, or it belongs to a team you are not a member "
        "of. Check the address, or go back to the start page."
    ),
    405: "This address does not accept that kind of request.",
    413: "The request is too large.",
    415: "The request has a content type that this address does not accept.",
    429: "Too many requests: wait a minute, then try again.",
    500: "Something went wrong on the server. Try again; if it persists, tell "
    "the operator of this site.",
    503: "The service is unavailable right now; try again later.",
}
INTERNAL_ERROR = _MESSAGES[500]


def install_error_pages(app: FastAPI) -> None:
    """Register the handlers that return HTML error pages to browsers."""
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _internal_error)


def wants_html(request: Request) -> bool:
    """Tell whether an error response to this request should be an HTML page.

    Paths of programs (`MACHINE_PREFIXES`) get JSON. Elsewhere a client
    gets HTML unless its Accept header ranks a JSON type above HTML.
    """
    path = request.url.path
    for prefix in MACHINE_PREFIXES:
        if path == prefix or path.startswith(f"{prefix}/"):
            return False
    return _html_preferred(request.headers.get("accept", ""))


def error_response(
    request: Request,
    status_code: int,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
) -> Response:
    """Return an error as an HTML page or as `{"detail": ...}`, as the client wants."""
    if not wants_html(request):
        return JSONResponse(
            {"detail": detail}, status_code=status_code, headers=headers
        )
    return html_error(request, status_code, detail, headers=headers)


def html_error(
    request: Request,
    status_code: int,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
) -> Response:
    """Render error.html with the status, its title and the message."""
    try:
        title = HTTPStatus(status_code).phrase
    except ValueError:
        title = "Error"
    login = _login_or_none(request)
    values = {
        "status_code": status_code,
        "title": title,
        "message": _message(status_code, detail),
        "login": login,
        "csrf_token": "" if login is None else session_csrf_token(login),
    }
    response = TEMPLATES.TemplateResponse(
        request, "error.html", values, status_code=status_code, headers=headers
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers) if exc.headers else None
    if exc.status_code < 400 or not wants_html(request):
        return JSONResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=headers
        )
    return html_error(request, exc.status_code, str(exc.detail), headers=headers)


def _validation_error(request: Request, exc: Exception) -> Response:
    """Return FastAPI's 422 body, with non-finite numbers written as text.

    A JSON body may hold `1e999`, which Python reads as infinity. FastAPI's
    own handler repeats the input in the error, and JSON cannot encode
    infinity, so its response failed with a 500.
    """
    assert isinstance(exc, RequestValidationError)
    errors = _finite(jsonable_encoder(exc.errors()))
    return JSONResponse({"detail": errors}, status_code=422)


def _finite(value: Any) -> Any:
    """Return `value` with every infinite or NaN float replaced by its text."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


def _internal_error(request: Request, exc: Exception) -> Response:
    """Return 500 for an unhandled exception; uvicorn logs its traceback."""
    return error_response(request, 500, INTERNAL_ERROR)


def _message(status_code: int, detail: str) -> str:
    """Return the message to show: the handler's own, or the status's default.

    Starlette's default detail is the bare reason phrase ("Not Found"),
    which the status's default message replaces.
    """
    try:
        phrase = HTTPStatus(status_code).phrase
    except ValueError:
        phrase = ""
    if detail and detail != phrase:
        return detail
    return _MESSAGES.get(status_code, detail or "The request failed.")


def _login_or_none(request: Request) -> LoginSession | None:
    """Return the login session for the page header; `None` when it cannot be read.

    The error page must render even when the database behind the session
    is the reason for the error.
    """
    try:
        return login_session(request, web_context(request))
    except SQLAlchemyError:
        logger.debug("The error page is shown without the login header", exc_info=True)
        return None


def _html_preferred(accept: str) -> bool:
    """Tell whether an Accept header ranks HTML at least as high as JSON.

    An empty header, `*/*` and every browser's header prefer HTML. A header
    that names a JSON type and no HTML type, such as `application/json` or
    `application/json, */*`, prefers JSON.
    """
    if not accept.strip():
        return True
    html_quality = 0.0
    json_quality = 0.0
    for entry in accept.split(","):
        media_type, _, parameters = entry.strip().partition(";")
        media_type = media_type.strip().lower()
        quality = _quality(parameters)
        if media_type in ("text/html", "application/xhtml+xml"):
            html_quality = max(html_quality, quality)
        elif media_type == "application/json" or media_type.endswith("+json"):
            json_quality = max(json_quality, quality)
    return json_quality == 0 or html_quality >= json_quality


def _quality(parameters: str) -> float:
    for parameter in parameters.split(";"):
        name, _, value = parameter.strip().partition("=")
        if name.strip().lower() == "q":
            try:
                return min(max(float(value), 0.0), 1.0)
            except ValueError:
                return 0.0
    return 1.0
