"""A size limit on every request body, checked before any handler reads it.

FastAPI reads and parses a JSON body before the handler's dependencies
run, so without this limit a client could make the service hold a body of
any size in memory before authentication rejects it. `BodyLimitMiddleware`
returns 413 at once when `Content-Length` is over the limit, without
reading the body. For a chunked body it counts the bytes as the handler
reads them and stops at the limit, also with 413.

Starlette 1.10's own `max_body_size` checks `Content-Length` only once a
handler reads the body or responds, so the handler still runs first, and
its 413 says "Content Too Large" without the limit.
"""

from __future__ import annotations

from fastapi import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from certwatch.web.endpoint_new import MAX_BODY_BYTES
from certwatch.web.errors import error_response

MAX_API_BODY_BYTES = 1024 * 1024
"""The largest request body under `/api`, in bytes.

The largest request is `POST /api/endpoints` with 100 targets and 20 tags.
Even with every target an 8,000-character URL (the length RFC 9110
recommends that software supports), its JSON stays under 850,000 bytes.
"""

MAX_PAGE_BODY_BYTES = 2 * MAX_BODY_BYTES
"""The largest request body of the pages, in bytes.

The add page reads up to `MAX_BODY_BYTES` (a 1 MiB CSV file and the form
fields) itself, and rejects a larger upload on its own page with advice.
This limit is twice that, so an upload somewhat over the page's limit
still gets that advice. The other forms are far smaller.
"""

API_PREFIX = "/api"
# Closing the connection makes the client to stop sending the rest of the
# body, and keeps uvicorn from reading and discarding it.
_CLOSE = {"Connection": "close"}


class BodyTooLarge(HTTPException):
    """The request body grew past the limit while a handler read it.

    It is FastAPI's `HTTPException`, which FastAPI's body parsing passes on
    instead of turning it into a 400, so the error pages render it.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, _too_large(limit), headers=_CLOSE)


class BodyLimitMiddleware:
    """Reject request bodies over `MAX_API_BODY_BYTES` or `MAX_PAGE_BODY_BYTES`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = body_limit(scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            response = error_response(
                Request(scope), 413, _too_large(limit, declared), headers=_CLOSE
            )
            await response(scope, receive, send)
            return

        received = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except BodyTooLarge as exc:
            # Handlers raise it into the error pages; this catches it only
            # when something between let it through.
            if response_started:
                raise
            response = error_response(
                Request(scope), 413, str(exc.detail), headers=_CLOSE
            )
            await response(scope, receive, send)


def body_limit(path: str) -> int:
    """Return the largest request body in bytes that `path` accepts."""
    if path == API_PREFIX or path.startswith(f"{API_PREFIX}/"):
        return MAX_API_BODY_BYTES
    return MAX_PAGE_BODY_BYTES


def _content_length(scope: Scope) -> int | None:
    """Return the declared body size; uvicorn rejects an invalid header before."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None


def _too_large(limit: int, declared: int | None = None) -> str:
    size = "The request body" if declared is None else f"The {declared}-byte body"
    return (
        f"{size} is over this address's limit of {limit} bytes: send less data "
        "in one request, such as fewer targets or a smaller CSV file."
    )
