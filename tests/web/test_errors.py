"""Error responses: HTML pages for browsers, JSON for programs and the API.

Most cases run against the app served by uvicorn on SQLite and PostgreSQL.
The 429 and 500 cases add routes that raise to an app of `create_app`,
also served by uvicorn.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, HTTPException
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import Request
from tests.monitor.helpers import Clock
from tests.web.conftest import ServeApp
from tests.web.page_helpers import Visitors, visitors  # noqa: F401

from certwatch.store.database import create_store_engine, session_factory
from certwatch.web.app import create_app
from certwatch.web.auth import SESSION_COOKIE
from certwatch.web.errors import wants_html
from certwatch.web.server import WebServer
from certwatch.web.settings import WebSettings

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def is_html(response: httpx.Response) -> bool:
    return response.headers["content-type"].startswith("text/html")


def test_not_found_html_for_browsers(serve_app: ServeApp) -> None:
    base_url = serve_app()

    browser = httpx.get(f"{base_url}/no/such/page", headers={"Accept": BROWSER_ACCEPT})
    default = httpx.get(f"{base_url}/no/such/page")
    program = httpx.get(
        f"{base_url}/no/such/page", headers={"Accept": "application/json"}
    )

    for response in (browser, default):
        assert response.status_code == 404
        assert is_html(response)
        assert "<h1>Not Found</h1>" in response.text
        assert 'href="/"' in response.text
        assert "belongs to a team you are not a member of" in response.text
    assert program.status_code == 404
    assert program.json() == {"detail": "Not Found"}


def test_machine_paths_keep_json(serve_app: ServeApp) -> None:
    base_url = serve_app()

    responses = [
        httpx.get(f"{base_url}/api/no-such-thing", headers={"Accept": BROWSER_ACCEPT}),
        httpx.post(f"{base_url}/healthz", headers={"Accept": BROWSER_ACCEPT}),
        httpx.post(f"{base_url}/metrics", headers={"Accept": BROWSER_ACCEPT}),
        httpx.get(f"{base_url}/calendar/x.ics/y", headers={"Accept": BROWSER_ACCEPT}),
    ]

    for response in responses:
        assert response.status_code in (404, 405), response.request.url
        assert response.headers["content-type"] == "application/json"
        assert "detail" in response.json()


def test_method_and_body_errors_html(serve_app: ServeApp) -> None:
    base_url = serve_app()

    wrong_method = httpx.delete(f"{base_url}/teams")
    too_large = httpx.post(
        f"{base_url}/login",
        content=b"a=" + b"x" * (65 * 1024),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    wrong_type = httpx.post(f"{base_url}/login", json={"email": "a@example.test"})
    wrong_type_json = httpx.post(
        f"{base_url}/login",
        json={"email": "a@example.test"},
        headers={"Accept": "application/json"},
    )

    assert wrong_method.status_code == 405
    assert is_html(wrong_method)
    assert "GET" in wrong_method.headers["allow"]
    assert "does not accept that kind of request" in wrong_method.text
    assert too_large.status_code == 413
    assert is_html(too_large)
    assert "The form is too large." in too_large.text
    assert wrong_type.status_code == 415
    assert is_html(wrong_type)
    assert "Send the form as application/x-www-form-urlencoded." in wrong_type.text
    assert wrong_type_json.status_code == 415
    assert wrong_type_json.json() == {
        "detail": "Send the form as application/x-www-form-urlencoded."
    }


def test_error_page_keeps_login_header(
    serve_app: ServeApp,
    visitors: Visitors,  # noqa: F811
) -> None:
    base_url = serve_app()
    user = visitors.make(base_url, "user@example.test", {})

    response = user.client.get("/certificates/" + "f" * 64)

    assert response.status_code == 404
    assert is_html(response)
    assert "user@example.test" in response.text
    assert f'value="{user.csrf}"' in response.text


@contextlib.contextmanager
def served(app: FastAPI) -> Iterator[httpx.Client]:
    """Serve `app` with uvicorn on 127.0.0.1 and yield a client for it."""
    settings = WebSettings(port=0)
    server = WebServer(app, settings)
    with (
        server.running(threading.Event()),
        httpx.Client(base_url=f"http://{server.host}:{server.port}") as client,
    ):
        yield client


def test_database_unavailable_html_and_json(tmp_path: Path, clock: Clock) -> None:
    # A store file in a folder that does not exist: every query fails.
    engine = create_store_engine(f"sqlite:///{tmp_path / 'missing' / 'store.db'}")
    app = create_app(session_factory(engine), WebSettings(port=0), now_fn=clock)

    with served(app) as client:
        client.cookies.set(SESSION_COOKIE, "some-session-token")
        page = client.get("/certificates", headers={"Accept": BROWSER_ACCEPT})
        program = client.get("/certificates", headers={"Accept": "application/json"})
        health = client.get("/healthz", headers={"Accept": BROWSER_ACCEPT})
    engine.dispose()

    assert page.status_code == 503
    assert page.headers["content-type"].startswith("text/html")
    assert "The inventory database cannot be read" in page.text
    assert program.status_code == 503
    assert program.json() == {
        "detail": "The inventory database cannot be read; try again later."
    }
    assert health.status_code == 503
    assert health.headers["content-type"] == "application/json"


@pytest.fixture
def raising_client(
    sessions: sessionmaker[Session], clock: Clock
) -> Iterator[httpx.Client]:
    """A client of an app with routes that fail with 429 and with a bug."""
    app = create_app(sessions, WebSettings(port=0), now_fn=clock)

    def limited() -> None:
        raise HTTPException(429, headers={"Retry-After": "60"})

    def broken() -> None:
        raise RuntimeError("a bug with <b>markup</b> and a secret path")

    app.add_api_route("/limited", limited)
    app.add_api_route("/broken", broken)
    app.add_api_route("/api/broken", broken)
    with served(app) as client:
        yield client


def test_rate_limit_and_bug_html(raising_client: httpx.Client) -> None:
    # uvicorn closes the connection after an unhandled exception, so each
    # request gets a connection of its own.
    headers = {"Accept": BROWSER_ACCEPT, "Connection": "close"}
    limited = raising_client.get("/limited", headers=headers)
    broken = raising_client.get("/broken", headers=headers)
    broken_api = raising_client.get("/api/broken", headers=headers)

    assert limited.status_code == 429
    assert limited.headers["content-type"].startswith("text/html")
    assert limited.headers["retry-after"] == "60"
    assert "Too many requests" in limited.text
    assert broken.status_code == 500
    assert broken.headers["content-type"].startswith("text/html")
    assert "Something went wrong on the server" in broken.text
    assert "secret path" not in broken.text
    assert broken_api.status_code == 500
    assert broken_api.json() == {
        "detail": "Something went wrong on the server. Try again; if it persists, "
        "tell the operator of this site."
    }


@pytest.mark.parametrize(
    ("accept", "html"),
    [
        ("", True),
        ("*/*", True),
        (BROWSER_ACCEPT, True),
        ("text/html", True),
        ("application/json", False),
        ("application/json, */*", False),
        ("application/problem+json", False),
        ("text/html;q=0.5, application/json", False),
        ("application/json;q=0.5, text/html", True),
        ("text/html, application/json", True),
    ],
)
def test_wants_html_accept_header(accept: str, html: bool) -> None:
    scope = {
        "type": "http",
        "method": "GET",
        "scheme": "http",
        "server": ("testserver", 80),
        "path": "/teams",
        "query_string": b"",
        "headers": [(b"accept", accept.encode())],
    }

    assert wants_html(Request(scope)) is html
