"""The request body limit, against the application served by uvicorn.

A body over the limit must get 413 before any handler reads it, whether
`Content-Length` announces it or a chunked body grows past it. The
oversized requests go over a raw socket, because a client library would
try to send the whole body first. Without the limit the server waits for
the rest of the body, and the socket's timeout fails the test.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker
from tests.monitor.helpers import Clock
from tests.web.conftest import ServeApp
from tests.web.helpers import add_endpoint

from certwatch.store.accounts import create_user
from certwatch.store.api_tokens import create_api_token
from certwatch.store.inventory import ensure_team
from certwatch.web.body_limit import MAX_API_BODY_BYTES, MAX_PAGE_BODY_BYTES

CHUNK = 64 * 1024
# Long enough for any response on a loaded machine; reached only when the
# server waits for a body that never comes.
SOCKET_TIMEOUT = 20


def member_token(sessions: sessionmaker[Session], clock: Clock) -> str:
    with sessions.begin() as session:
        team_id = ensure_team(session, "default", now=clock())
        user = create_user(session, "owner@example.test", "unused", now=clock())
        _, token = create_api_token(
            session, team_id, name="ci", role="member", created_by=user.id, now=clock()
        )
    return token


def send_raw(base_url: str, head: str, body: Iterable[bytes] = ()) -> bytes:
    """Send a request head and body parts; return all the server sent back."""
    parts = urlsplit(base_url)
    assert parts.hostname is not None and parts.port is not None
    with socket.create_connection(
        (parts.hostname, parts.port), timeout=SOCKET_TIMEOUT
    ) as sock:
        sock.sendall(head.encode("latin-1"))
        for part in body:
            sock.sendall(part)
        received = bytearray()
        while chunk := sock.recv(CHUNK):
            received.extend(chunk)
    return bytes(received)


def chunked(total: int) -> Iterator[bytes]:
    """Yield a chunked body of `total` bytes without its final empty chunk."""
    left = total
    while left > 0:
        size = min(CHUNK, left)
        yield f"{size:x}\r\n".encode() + b"[" * size + b"\r\n"
        left -= size


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def test_body_limit_announced_api_body(serve_app: ServeApp) -> None:
    """An unauthenticated 300 MB body is rejected from its headers alone."""
    base_url = serve_app()

    response = send_raw(
        base_url,
        "POST /api/endpoints HTTP/1.1\r\nHost: certwatch.test\r\n"
        "Content-Type: application/json\r\nContent-Length: 314572800\r\n\r\n",
    )

    assert status_of(response) == 413
    assert b"connection: close" in response.lower()
    assert b"The 314572800-byte body is over" in response
    assert f"limit of {MAX_API_BODY_BYTES} bytes".encode() in response


def test_body_limit_announced_page_body(serve_app: ServeApp) -> None:
    base_url = serve_app()
    size = MAX_PAGE_BODY_BYTES + 1

    response = send_raw(
        base_url,
        "POST /teams/1/members/2 HTTP/1.1\r\nHost: certwatch.test\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {size}\r\n\r\n",
    )

    assert status_of(response) == 413
    assert f"limit of {MAX_PAGE_BODY_BYTES} bytes".encode() in response


def test_body_limit_chunked_api_body(serve_app: ServeApp) -> None:
    """A chunked body is read only up to the limit, then rejected."""
    base_url = serve_app()

    response = send_raw(
        base_url,
        "POST /api/endpoints HTTP/1.1\r\nHost: certwatch.test\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        chunked(MAX_API_BODY_BYTES + 1),
    )

    assert status_of(response) == 413
    assert b"connection: close" in response.lower()
    assert b"The request body is over" in response


def test_body_limit_chunked_at_limit_read(
    serve_app: ServeApp, sessions: sessionmaker[Session], clock: Clock
) -> None:
    """A chunked body of exactly the limit reaches the handler."""
    base_url = serve_app()
    token = member_token(sessions, clock)
    padding = MAX_API_BODY_BYTES - len('{"targets": [""], "team_id": 1}')
    body = '{"targets": ["' + " " * padding + '"], "team_id": 1}'
    assert len(body) == MAX_API_BODY_BYTES

    def parts() -> Iterator[bytes]:
        data = body.encode()
        for start in range(0, len(data), CHUNK):
            yield data[start : start + CHUNK]

    with httpx.Client(base_url=base_url) as client:
        response = client.post(
            "/api/endpoints",
            content=parts(),
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",
            },
        )

    # The handler read the body: its one target is blank, so nothing is added.
    assert response.status_code == 422
    assert response.json() == {"added": [], "rejected": []}


@pytest.mark.parametrize("chunked_body", [False, True])
def test_body_limit_normal_request_works(
    serve_app: ServeApp,
    sessions: sessionmaker[Session],
    clock: Clock,
    chunked_body: bool,
) -> None:
    base_url = serve_app()
    token = member_token(sessions, clock)
    endpoint_id = add_endpoint(sessions, "www.example.test", 443, clock=clock)
    body = b'{"enabled": false, "tags": ["web"]}'
    content = iter([body]) if chunked_body else body

    with httpx.Client(base_url=base_url) as client:
        response = client.patch(
            f"/api/endpoints/{endpoint_id}",
            content=content,
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",
            },
        )

    assert response.status_code == 200
    assert response.json()["enabled"] is False
    assert response.json()["tags"] == ["web"]
