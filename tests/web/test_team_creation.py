"""Creating teams: the form on /teams, and the own team of open sign-up.

Each test serves the application with uvicorn on SQLite and PostgreSQL and
drives it with httpx clients, one per browser, which keep their cookies.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from tests.web.conftest import ServeApp
from tests.web.test_accounts import (
    ADMIN,
    Browser,
    default_team_id,
    error_text,
    invitation_token,
    open_browser,
)

from certwatch.store.accounts import find_user, user_teams
from certwatch.store.models import TeamRow
from certwatch.web.settings import WebSettings
from certwatch.web.teams import MAX_OWNED_TEAMS

_TEAM_PATH = re.compile(r"^/teams/(\d+)$")


@pytest.fixture
def browsers(serve_app: ServeApp) -> Iterator[list[Browser]]:
    """Browsers on the application, closed after the test."""
    opened: list[Browser] = []
    yield opened
    for browser in opened:
        browser.client.close()


def create_team(browser: Browser, name: str) -> tuple[int, str]:
    """Send the create-team form; return the status and the redirect or error."""
    response = browser.client.post(
        "/teams", data={"csrf_token": browser.csrf("/teams"), "name": name}
    )
    if response.status_code == 303:
        return 303, response.headers["location"]
    return response.status_code, error_text(response)


def teams_of(sessions: sessionmaker[Session], email: str) -> dict[str, str]:
    """Return the user's role in each of the user's teams, by team name."""
    with sessions() as session:
        user = find_user(session, email)
        assert user is not None
        return {team.team: team.role for team in user_teams(session, user.id)}


def team_names(sessions: sessionmaker[Session]) -> list[str]:
    with sessions() as session:
        return list(session.scalars(select(TeamRow.name).order_by(TeamRow.name)))


def test_teams_create_makes_owner(
    serve_app: ServeApp, browsers: list[Browser], sessions: sessionmaker[Session]
) -> None:
    admin = open_browser(browsers, serve_app())
    admin.sign_up(ADMIN)

    status, location = create_team(admin, "  Platform team  ")
    found = _TEAM_PATH.match(location)
    assert found is not None
    page = admin.client.get(location)
    listing = admin.client.get("/teams")

    assert status == 303
    assert page.status_code == 200
    assert "<h1>Team Platform team</h1>" in page.text
    assert "Your role: owner." in page.text
    assert f'<a href="{location}">Platform team</a> (owner)' in listing.text
    assert teams_of(sessions, ADMIN)["Platform team"] == "owner"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "Invalid team name '': give 1 to 200 characters, not only spaces."),
        ("   ", "Invalid team name '   ': give 1 to 200 characters"),
        ("x" * 201, "give 1 to 200 characters"),
        ("a\u202eb", "control and text-direction characters are not allowed"),
        ("a\u2066b", "control and text-direction characters are not allowed"),
        ("a\x1bb", "control and text-direction characters are not allowed"),
        ("a\tb", "control and text-direction characters are not allowed"),
    ],
    ids=["empty", "spaces", "too-long", "rlo", "isolate", "escape", "tab"],
)
def test_teams_create_rejects_invalid_name(
    serve_app: ServeApp,
    browsers: list[Browser],
    sessions: sessionmaker[Session],
    name: str,
    message: str,
) -> None:
    admin = open_browser(browsers, serve_app())
    admin.sign_up(ADMIN)
    before = team_names(sessions)

    status, error = create_team(admin, name)

    assert status == 400
    assert message in error
    assert team_names(sessions) == before


def test_teams_create_taken_name_says_only_taken(
    serve_app: ServeApp, browsers: list[Browser], sessions: sessionmaker[Session]
) -> None:
    base_url = serve_app(WebSettings(port=0, signup="open"))
    open_browser(browsers, base_url).sign_up(ADMIN)
    owner = open_browser(browsers, base_url)
    owner.sign_up("owner@example.test")
    assert create_team(owner, "payments")[0] == 303
    other = open_browser(browsers, base_url)
    other.sign_up("other@example.test")

    status, error = create_team(other, "payments")

    assert status == 400
    assert error == "The team name 'payments' is taken: choose another name."
    assert "payments" not in teams_of(sessions, "other@example.test")


def test_teams_create_limit_per_account(
    serve_app: ServeApp, browsers: list[Browser], sessions: sessionmaker[Session]
) -> None:
    base_url = serve_app(WebSettings(port=0, signup="open"))
    open_browser(browsers, base_url).sign_up(ADMIN)
    user = open_browser(browsers, base_url)
    user.sign_up("many@example.test")
    owned = len(teams_of(sessions, "many@example.test"))
    for number in range(MAX_OWNED_TEAMS - owned):
        assert create_team(user, f"many {number}")[0] == 303

    status, error = create_team(user, "one too many")

    assert status == 400
    assert error.startswith(f"You own {MAX_OWNED_TEAMS} teams, the most")
    assert "one too many" not in team_names(sessions)


def test_teams_create_needs_csrf(
    serve_app: ServeApp, browsers: list[Browser], sessions: sessionmaker[Session]
) -> None:
    admin = open_browser(browsers, serve_app())
    admin.sign_up(ADMIN)
    before = team_names(sessions)

    response = admin.client.post("/teams", data={"name": "forged"})

    assert response.status_code == 403
    assert team_names(sessions) == before


def test_signup_open_account_owns_team(
    serve_app: ServeApp, browsers: list[Browser], sessions: sessionmaker[Session]
) -> None:
    base_url = serve_app(WebSettings(port=0, signup="open"))
    open_browser(browsers, base_url).sign_up(ADMIN)
    visitor = open_browser(browsers, base_url)

    response = visitor.sign_up("visitor@example.test")
    add_page = visitor.client.get("/endpoints/new")

    assert response.status_code == 303
    assert teams_of(sessions, "visitor@example.test") == {
        "visitor@example.test": "owner"
    }
    assert add_page.status_code == 200
    assert '<option value="' in add_page.text
    assert "needs the owner or member role" not in add_page.text
    assert teams_of(sessions, ADMIN) == {"default": "owner"}


def test_signup_open_squatted_name_gets_new_team(
    serve_app: ServeApp, browsers: list[Browser], sessions: sessionmaker[Session]
) -> None:
    """A team made first under a newcomer's address never receives the newcomer."""
    base_url = serve_app(WebSettings(port=0, signup="open"))
    open_browser(browsers, base_url).sign_up(ADMIN)
    squatter = open_browser(browsers, base_url)
    squatter.sign_up("squatter@example.test")
    assert create_team(squatter, "victim@example.test")[0] == 303
    victim = open_browser(browsers, base_url)

    response = victim.sign_up("victim@example.test")

    assert response.status_code == 303
    [(name, role)] = teams_of(sessions, "victim@example.test").items()
    assert re.fullmatch(r"victim@example\.test \([0-9a-f]{8}\)", name)
    assert role == "owner"
    assert (
        "victim@example.test"
        not in teams_of(sessions, "squatter@example.test").values()
    )


def test_signup_invited_account_gets_no_own_team(
    serve_app: ServeApp, browsers: list[Browser], sessions: sessionmaker[Session]
) -> None:
    base_url = serve_app(WebSettings(port=0, signup="open"))
    admin = open_browser(browsers, base_url)
    admin.sign_up(ADMIN)
    team_id = default_team_id(sessions)
    token = invitation_token(admin.invite(team_id, "bob@example.test", "member"))

    response = open_browser(browsers, base_url).sign_up(
        "bob@example.test", invitation=token
    )

    assert response.status_code == 303
    assert teams_of(sessions, "bob@example.test") == {"default": "member"}


def test_signup_invite_only_gets_no_own_team(
    serve_app: ServeApp, browsers: list[Browser], sessions: sessionmaker[Session]
) -> None:
    base_url = serve_app()
    admin = open_browser(browsers, base_url)
    admin.sign_up(ADMIN)
    token = invitation_token(
        admin.invite(default_team_id(sessions), "carol@example.test", "viewer")
    )

    open_browser(browsers, base_url).sign_up("carol@example.test", invitation=token)

    assert teams_of(sessions, "carol@example.test") == {"default": "viewer"}
    assert "carol@example.test" not in team_names(sessions)
