"""The site navigation and the start page: links that lead somewhere, one layout.

The links depend on the user's roles and the sign-up mode, so each test
serves the application with the store in the state it describes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker
from tests.web.conftest import ServeApp
from tests.web.test_dashboard import Users

from certwatch.web.settings import WebSettings

LOGGED_IN_PAGES = ("/dashboard", "/certificates", "/alerts", "/teams")


@pytest.fixture
def users(serve_app: ServeApp, sessions: sessionmaker[Session]) -> Iterator[Users]:
    accounts = Users(sessions, serve_app())
    yield accounts
    accounts.close()


def navigation(page: str) -> str:
    found = re.search(r'<nav aria-label="Site">(.*?)</nav>', page, re.DOTALL)
    assert found is not None, page
    return found.group(1)


def body_class(page: str) -> str:
    found = re.search(r'<body class="([^"]*)"', page)
    assert found is not None, page
    return found.group(1)


def test_start_page_empty_site_names_administrator(serve_app: ServeApp) -> None:
    with httpx.Client(base_url=serve_app()) as client:
        start = client.get("/")
        login = client.get("/login")

    assert "the first account becomes the administrator" in start.text
    assert "invitation" not in start.text
    assert 'href="/signup"' in start.text
    assert 'href="/signup"' in navigation(login.text)


def test_navigation_hides_signup_when_invite_only(users: Users) -> None:
    users.login("admin@example.test")
    with httpx.Client(base_url=users.base_url) as client:
        login = client.get("/login")

    assert 'href="/signup"' not in navigation(login.text)
    assert 'href="/login"' in navigation(login.text)


def test_navigation_shows_signup_when_open(
    serve_app: ServeApp, sessions: sessionmaker[Session]
) -> None:
    accounts = Users(sessions, serve_app(WebSettings(port=0, signup="open")))
    accounts.login("admin@example.test")
    with httpx.Client(base_url=accounts.base_url) as client:
        start = client.get("/")
        login = client.get("/login")
    accounts.close()

    assert 'href="/signup"' in navigation(login.text)
    assert 'href="/signup"' in start.text


def test_navigation_hides_add_link_from_viewers(users: Users) -> None:
    users.login("admin@example.test")
    viewer = users.login("viewer@example.test", team="payments", role="viewer")
    member = users.login("member@example.test", team="payments", role="member")

    assert 'href="/endpoints/new"' not in navigation(viewer.get("/dashboard").text)
    assert viewer.get("/endpoints/new").status_code == 403
    assert 'href="/endpoints/new"' in navigation(member.get("/dashboard").text)


def test_logged_in_pages_share_layout(users: Users) -> None:
    admin = users.login("admin@example.test")
    team_page = admin.get("/teams")
    team_link = re.search(r'href="(/teams/\d+)"', team_page.text)
    assert team_link is not None
    paths = [*LOGGED_IN_PAGES, team_link.group(1), team_link.group(1) + "/tokens"]

    classes = {path: body_class(admin.get(path).text) for path in paths}

    assert classes == dict.fromkeys(paths, "wide")
