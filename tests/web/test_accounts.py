"""Accounts and teams: sign-up, login, logout, CSRF, lockout and team pages.

Each test serves the application with uvicorn on SQLite and PostgreSQL and
drives it with httpx clients, one per browser, which keep their cookies.
The web clock is the test's `clock`, so lockouts end when the test advances it.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from argon2 import PasswordHasher
from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from tests.monitor.helpers import Clock
from tests.web.conftest import ServeApp

from certwatch.cli import cli
from certwatch.store.accounts import find_user
from certwatch.store.alerts import find_team
from certwatch.store.inventory import ensure_team
from certwatch.store.models import DEFAULT_TEAM, MembershipRow, SessionRow, UserRow
from certwatch.web.accounts import safe_next
from certwatch.web.auth import CSRF_COOKIE, SESSION_COOKIE
from certwatch.web.passwords import (
    hash_password,
    needs_rehash,
    password_problem,
    verify_password,
)
from certwatch.web.settings import WebSettings, WebSettingsError, load_web_settings

ADMIN = "admin@example.test"
PASSWORD = "correct horse battery"
OTHER_PASSWORD = "another long passphrase"
LOGIN_FAILED = "The email address or password is wrong"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_INVITATION = re.compile(r"<code>(http://[^<]+)</code>")


class Browser:
    """One browser: an httpx client with its own cookies."""

    def __init__(self, base_url: str) -> None:
        self.client = httpx.Client(base_url=base_url)

    def csrf(self, path: str = "/login") -> str:
        """Open a page with a form and return the CSRF token it carries."""
        response = self.client.get(path)
        found = _CSRF.search(response.text)
        assert found is not None, response.text
        return found.group(1)

    def sign_up(
        self,
        email: str,
        password: str = PASSWORD,
        *,
        invitation: str = "",
        confirmation: str | None = None,
    ) -> httpx.Response:
        return self.client.post(
            "/signup",
            data={
                "csrf_token": self.csrf(),
                "email": email,
                "password": password,
                "password_confirm": password if confirmation is None else confirmation,
                "invitation": invitation,
            },
        )

    def log_in(self, email: str, password: str = PASSWORD) -> httpx.Response:
        return self.client.post(
            "/login",
            data={"csrf_token": self.csrf(), "email": email, "password": password},
        )

    def log_out(self) -> httpx.Response:
        return self.client.post("/logout", data={"csrf_token": self.csrf("/teams")})

    def invite(self, team_id: int, email: str, role: str) -> httpx.Response:
        token = self.csrf(f"/teams/{team_id}")
        return self.client.post(
            f"/teams/{team_id}/invitations",
            data={"csrf_token": token, "email": email, "role": role},
        )


@pytest.fixture
def browsers(serve_app: ServeApp) -> Iterator[list[Browser]]:
    """Browsers on the application, closed after the test; `open_browser` adds one."""
    opened: list[Browser] = []
    yield opened
    for browser in opened:
        browser.client.close()


def open_browser(browsers: list[Browser], base_url: str) -> Browser:
    browser = Browser(base_url)
    browsers.append(browser)
    return browser


def default_team_id(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        team_id = find_team(session, DEFAULT_TEAM)
    assert team_id is not None
    return team_id


def invitation_token(response: httpx.Response) -> str:
    found = _INVITATION.search(response.text)
    assert found is not None, response.text
    return found.group(1).split("invitation=", 1)[1]


def error_text(response: httpx.Response) -> str:
    found = re.search(r'<p class="error" role="alert">([^<]*)</p>', response.text)
    assert found is not None, response.text
    return html.unescape(found.group(1))


def test_signup_first_account_becomes_admin(
    serve_app: ServeApp, browsers: list[Browser], sessions: sessionmaker[Session]
) -> None:
    browser = open_browser(browsers, serve_app())

    page = browser.client.get("/signup")
    response = browser.sign_up("Admin@Example.test")
    teams = browser.client.get("/teams")

    assert "becomes the administrator" in page.text
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard"
    assert teams.status_code == 200
    assert ">default</a> (owner)" in teams.text
    with sessions() as session:
        user = session.scalars(select(UserRow)).one()
        membership = session.scalars(select(MembershipRow)).one()
    assert user.email == ADMIN
    assert user.is_admin
    assert user.password_hash.startswith("$argon2id$")
    assert membership.team_id == default_team_id(sessions)
    assert membership.role == "owner"


def test_admin_owns_teams_made_from_the_shell(
    serve_app: ServeApp,
    browsers: list[Browser],
    sessions: sessionmaker[Session],
    database_url: str,
) -> None:
    base_url = serve_app()
    with sessions() as session, session.begin():
        ensure_team(session, "web", now=datetime.now(UTC))
    open_browser(browsers, base_url).sign_up(ADMIN)
    added = CliRunner().invoke(
        cli, ["team", "add", "mail"], env={"CERTWATCH_DATABASE_URL": database_url}
    )
    admin = open_browser(browsers, base_url)
    admin.log_in(ADMIN)

    teams = admin.client.get("/teams")

    assert added.exit_code == 0, added.output
    assert ">web</a> (owner)" in teams.text
    assert ">mail</a> (owner)" in teams.text
    assert ">default</a> (owner)" in teams.text


def test_signup_invite_only_rejects_second_account(
    serve_app: ServeApp, browsers: list[Browser], sessions: sessionmaker[Session]
) -> None:
    base_url = serve_app()
    open_browser(browsers, base_url).sign_up(ADMIN)
    stranger = open_browser(browsers, base_url)

    page = stranger.client.get("/signup")
    response = stranger.sign_up("stranger@example.test")

    assert page.status_code == 403
    assert "open to invited people only" in page.text
    assert response.status_code == 403
    with sessions() as session:
        assert find_user(session, "stranger@example.test") is None


def test_signup_open_mode_makes_plain_account(
    serve_app: ServeApp, browsers: list[Browser], sessions: sessionmaker[Session]
) -> None:
    base_url = serve_app(WebSettings(port=0, signup="open"))
    open_browser(browsers, base_url).sign_up(ADMIN)
    visitor = open_browser(browsers, base_url)

    response = visitor.sign_up("visitor@example.test")
    teams = visitor.client.get("/teams")

    assert response.status_code == 303
    assert ">visitor@example.test</a> (owner)" in teams.text
    assert ">default</a>" not in teams.text
    with sessions() as session:
        user = find_user(session, "visitor@example.test")
    assert user is not None
    assert not user.is_admin


def test_signup_rejects_bad_input(serve_app: ServeApp, browsers: list[Browser]) -> None:
    browser = open_browser(browsers, serve_app(WebSettings(port=0, signup="open")))

    short = browser.sign_up(ADMIN, "too short")
    mismatch = browser.sign_up(ADMIN, confirmation="something else entirely")
    not_email = browser.sign_up("admin.example.test")
    browser.sign_up(ADMIN)
    again = open_browser(browsers, str(browser.client.base_url))
    existing = again.sign_up("ADMIN@example.test")

    assert short.status_code == 400
    assert "The password is too short: use at least 12" in error_text(short)
    assert mismatch.status_code == 400
    assert "The two passwords differ" in error_text(mismatch)
    assert not_email.status_code == 400
    assert "is not an email address" in error_text(not_email)
    assert existing.status_code == 400
    assert "An account for 'admin@example.test' exists already" in error_text(existing)


def test_invitation_flow(
    serve_app: ServeApp,
    browsers: list[Browser],
    sessions: sessionmaker[Session],
    clock: Clock,
) -> None:
    base_url = serve_app()
    owner = open_browser(browsers, base_url)
    owner.sign_up(ADMIN)
    team_id = default_team_id(sessions)

    invited = owner.invite(team_id, "Bob@Example.test", "viewer")
    token = invitation_token(invited)
    bob = open_browser(browsers, base_url)
    form = bob.client.get(f"/signup?invitation={token}")
    wrong_address = bob.sign_up("eve@example.test", invitation=token)
    accepted = bob.sign_up("bob@example.test", invitation=token)
    team_page = bob.client.get(f"/teams/{team_id}")
    bob_invites = bob.invite(team_id, "carol@example.test", "owner")
    reused = open_browser(browsers, base_url).client.get(f"/signup?invitation={token}")

    assert invited.status_code == 200
    assert "for bob@example.test" in invited.text
    assert 'value="bob@example.test"' in form.text
    assert "invited to the team “default” as viewer" in form.text
    assert wrong_address.status_code == 400
    assert "This invitation is for bob@example.test" in error_text(wrong_address)
    assert accepted.status_code == 303
    assert team_page.status_code == 200
    assert "<td>bob@example.test</td><td>viewer</td>" in team_page.text
    assert "Invite someone" not in team_page.text
    assert bob_invites.status_code == 403
    assert reused.status_code == 403
    assert "invalid, used or expired" in reused.text


def test_invitation_accepted_by_existing_account(
    serve_app: ServeApp, browsers: list[Browser], sessions: sessionmaker[Session]
) -> None:
    base_url = serve_app(WebSettings(port=0, signup="open"))
    owner = open_browser(browsers, base_url)
    owner.sign_up(ADMIN)
    team_id = default_team_id(sessions)
    bob = open_browser(browsers, base_url)
    bob.sign_up("bob@example.test")
    carol = open_browser(browsers, base_url)
    carol.sign_up("carol@example.test")
    token = invitation_token(owner.invite(team_id, "bob@example.test", "member"))

    carol_page = carol.client.get(f"/signup?invitation={token}", follow_redirects=True)
    carol_accepts = carol.client.post(
        "/invitations/accept",
        data={"csrf_token": carol.csrf("/teams"), "invitation": token},
    )
    redirect = bob.client.get(f"/signup?invitation={token}")
    page = bob.client.get(redirect.headers["location"])
    bob_token = bob.csrf(redirect.headers["location"])
    accepted = bob.client.post(
        "/invitations/accept", data={"csrf_token": bob_token, "invitation": token}
    )
    team_page = bob.client.get(f"/teams/{team_id}")
    carol_team_page = carol.client.get(f"/teams/{team_id}")

    assert carol_page.status_code == 403
    assert "This invitation is for bob@example.test" in html.unescape(carol_page.text)
    assert carol_accepts.status_code == 403
    assert redirect.status_code == 303
    assert redirect.headers["location"] == f"/invitations/accept?invitation={token}"
    assert "invited to the team “default” as member" in page.text
    assert accepted.status_code == 303
    assert accepted.headers["location"] == f"/teams/{team_id}"
    assert team_page.status_code == 200
    assert "<td>bob@example.test</td><td>member</td>" in team_page.text
    assert carol_team_page.status_code == 404


def test_invitation_expires(
    serve_app: ServeApp,
    browsers: list[Browser],
    sessions: sessionmaker[Session],
    clock: Clock,
) -> None:
    base_url = serve_app()
    owner = open_browser(browsers, base_url)
    owner.sign_up(ADMIN)
    token = invitation_token(
        owner.invite(default_team_id(sessions), "bob@example.test", "member")
    )

    clock.advance(timedelta(days=7))
    response = open_browser(browsers, base_url).sign_up(
        "bob@example.test", invitation=token
    )

    assert response.status_code == 403
    assert "invalid, used or expired" in response.text


def test_login_logout(
    serve_app: ServeApp, browsers: list[Browser], sessions: sessionmaker[Session]
) -> None:
    base_url = serve_app()
    browser = open_browser(browsers, base_url)
    browser.sign_up(ADMIN)
    first_session = browser.client.cookies[SESSION_COOKIE]

    logged_out = browser.log_out()
    after_logout = browser.client.get("/teams")
    logged_in = browser.log_in("ADMIN@example.test")
    teams = browser.client.get("/teams")
    login_page = browser.client.get("/login")
    replay = httpx.get(f"{base_url}/teams", cookies={SESSION_COOKIE: first_session})

    assert logged_out.status_code == 303
    assert logged_out.headers["location"] == "/login"
    assert after_logout.status_code == 303
    assert after_logout.headers["location"] == "/login?next=%2Fteams"
    assert logged_in.status_code == 303
    assert teams.status_code == 200
    assert login_page.status_code == 303
    assert login_page.headers["location"] == "/dashboard"
    assert replay.status_code == 303
    with sessions() as session:
        assert len(session.scalars(select(SessionRow)).all()) == 1


def test_session_expires_after_14_days(
    serve_app: ServeApp, browsers: list[Browser], clock: Clock
) -> None:
    browser = open_browser(browsers, serve_app())
    browser.sign_up(ADMIN)

    clock.advance(timedelta(days=14) - timedelta(seconds=1))
    before = browser.client.get("/teams")
    clock.advance(timedelta(seconds=1))
    after = browser.client.get("/teams")

    assert before.status_code == 200
    assert after.status_code == 303


def test_session_cookie_flags(serve_app: ServeApp, browsers: list[Browser]) -> None:
    browser = open_browser(browsers, serve_app())

    login_page = browser.client.get("/login")
    response = browser.sign_up(ADMIN)

    csrf_cookie = login_page.headers["set-cookie"]
    assert csrf_cookie.startswith(f"{CSRF_COOKIE}=")
    assert "HttpOnly" in csrf_cookie
    session_cookie = response.headers["set-cookie"]
    assert session_cookie.startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in session_cookie
    assert "SameSite=lax" in session_cookie
    assert f"Max-Age={14 * 86400}" in session_cookie
    assert "Secure" not in session_cookie


def test_session_cookie_secure_behind_https(
    serve_app: ServeApp, browsers: list[Browser]
) -> None:
    settings = WebSettings(port=0, public_url="https://certwatch.example.test")
    browser = open_browser(browsers, serve_app(settings))

    login_page = browser.client.get("/login")
    token = _CSRF.search(login_page.text)
    assert token is not None
    # The Secure cookie is not sent back over http, so the test sets it.
    browser.client.cookies.set(CSRF_COOKIE, token.group(1))
    response = browser.client.post(
        "/signup",
        data={
            "csrf_token": token.group(1),
            "email": ADMIN,
            "password": PASSWORD,
            "password_confirm": PASSWORD,
        },
    )

    assert "Secure" in login_page.headers["set-cookie"]
    assert response.status_code == 303
    assert "Secure" in response.headers["set-cookie"]


def test_csrf_token_required(
    serve_app: ServeApp, browsers: list[Browser], sessions: sessionmaker[Session]
) -> None:
    base_url = serve_app()
    browser = open_browser(browsers, base_url)
    browser.sign_up(ADMIN)
    anonymous = open_browser(browsers, base_url)
    anonymous_token = anonymous.csrf()
    team_id = default_team_id(sessions)

    missing = anonymous.client.post(
        "/login", data={"email": ADMIN, "password": PASSWORD}
    )
    wrong = anonymous.client.post(
        "/login", data={"csrf_token": "x" * 43, "email": ADMIN, "password": PASSWORD}
    )
    logout = browser.client.post("/logout", data={"csrf_token": ""})
    foreign = browser.client.post(
        f"/teams/{team_id}/invitations",
        data={"csrf_token": anonymous_token, "email": "bob@example.test"},
    )
    still_in = browser.client.get("/teams")

    assert missing.status_code == 403
    assert wrong.status_code == 403
    assert logout.status_code == 403
    assert foreign.status_code == 403
    assert "did not come from this site" in foreign.text
    assert still_in.status_code == 200


def test_form_content_type_required(
    serve_app: ServeApp, browsers: list[Browser]
) -> None:
    browser = open_browser(browsers, serve_app())
    token = browser.csrf()

    response = browser.client.post(
        "/login", json={"csrf_token": token, "email": ADMIN, "password": PASSWORD}
    )

    assert response.status_code == 415


def test_form_size_and_encoding_checked(
    serve_app: ServeApp, browsers: list[Browser]
) -> None:
    browser = open_browser(browsers, serve_app())
    headers = {"content-type": "application/x-www-form-urlencoded"}

    too_large = browser.client.post(
        "/login", content=b"email=" + b"a" * 70_000, headers=headers
    )
    not_utf8 = browser.client.post("/login", content=b"email=%FF\xff", headers=headers)

    assert too_large.status_code == 413
    assert not_utf8.status_code == 400


def test_login_locks_after_five_failures(
    serve_app: ServeApp,
    browsers: list[Browser],
    sessions: sessionmaker[Session],
    clock: Clock,
) -> None:
    base_url = serve_app()
    open_browser(browsers, base_url).sign_up(ADMIN)
    browser = open_browser(browsers, base_url)

    failures = [browser.log_in(ADMIN, OTHER_PASSWORD) for _ in range(5)]
    locked = browser.log_in(ADMIN)
    clock.advance(timedelta(minutes=15) - timedelta(seconds=1))
    still_locked = browser.log_in(ADMIN)
    clock.advance(timedelta(seconds=1))
    unlocked = browser.log_in(ADMIN)

    assert [failure.status_code for failure in failures] == [403] * 5
    assert locked.status_code == 403
    assert LOGIN_FAILED in error_text(locked)
    assert still_locked.status_code == 403
    assert unlocked.status_code == 303
    with sessions() as session:
        user = session.scalars(select(UserRow)).one()
    assert user.failed_logins == 0
    assert user.locked_until is None


def test_login_failures_outside_window_do_not_lock(
    serve_app: ServeApp, browsers: list[Browser], clock: Clock
) -> None:
    base_url = serve_app()
    open_browser(browsers, base_url).sign_up(ADMIN)
    browser = open_browser(browsers, base_url)

    for _ in range(4):
        browser.log_in(ADMIN, OTHER_PASSWORD)
    clock.advance(timedelta(minutes=15))
    browser.log_in(ADMIN, OTHER_PASSWORD)
    response = browser.log_in(ADMIN)

    assert response.status_code == 303


def test_login_does_not_reveal_accounts(
    serve_app: ServeApp, browsers: list[Browser]
) -> None:
    base_url = serve_app()
    open_browser(browsers, base_url).sign_up(ADMIN)
    browser = open_browser(browsers, base_url)

    wrong_password = browser.log_in(ADMIN, OTHER_PASSWORD)
    unknown = browser.log_in("nobody@example.test", OTHER_PASSWORD)

    assert wrong_password.status_code == unknown.status_code == 403
    assert error_text(wrong_password) == error_text(unknown)


def test_login_limited_per_client_address(
    serve_app: ServeApp, browsers: list[Browser]
) -> None:
    base_url = serve_app()
    open_browser(browsers, base_url).sign_up(ADMIN)
    browser = open_browser(browsers, base_url)

    for number in range(20):
        browser.log_in(f"guess{number}@example.test", OTHER_PASSWORD)
    blocked = browser.log_in(ADMIN)

    assert blocked.status_code == 429
    assert "Too many failed logins came from your network address" in blocked.text


def test_team_of_other_user_is_not_found(
    serve_app: ServeApp, browsers: list[Browser], sessions: sessionmaker[Session]
) -> None:
    base_url = serve_app(WebSettings(port=0, signup="open"))
    open_browser(browsers, base_url).sign_up(ADMIN)
    team_id = default_team_id(sessions)
    other = open_browser(browsers, base_url)
    other.sign_up("other@example.test")

    page = other.client.get(f"/teams/{team_id}")
    token = other.csrf("/teams")
    invite = other.client.post(
        f"/teams/{team_id}/invitations",
        data={"csrf_token": token, "email": "x@example.test", "role": "owner"},
    )
    missing = other.client.get(f"/teams/{team_id + 1000}")

    assert page.status_code == 404
    assert invite.status_code == 404
    assert missing.status_code == 404
    assert page.text == missing.text


def test_teams_page_requires_login(serve_app: ServeApp) -> None:
    response = httpx.get(f"{serve_app()}/teams")

    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Fteams"


def test_pages_have_labels_and_no_scripts(
    serve_app: ServeApp, browsers: list[Browser], sessions: sessionmaker[Session]
) -> None:
    base_url = serve_app()
    anonymous = open_browser(browsers, base_url)
    owner = open_browser(browsers, base_url)
    pages = {
        "/login": anonymous.client.get("/login").text,
        "/signup": anonymous.client.get("/signup").text,
    }
    owner.sign_up(ADMIN)
    pages["/teams/ID"] = owner.client.get(f"/teams/{default_team_id(sessions)}").text

    for path, page in pages.items():
        input_ids = re.findall(r'<(?:input|select) id="([^"]+)"', page)
        assert input_ids, path
        for input_id in input_ids:
            label = f'<label for="{input_id}"[ >]'
            assert re.search(label, page), (path, input_id)
        assert 'name="viewport"' in page
        assert "<script" not in page
        assert "http" not in page.replace('lang="en"', "")


def test_password_problem_limits() -> None:
    assert password_problem("x" * 11) is not None
    assert password_problem("x" * 12) is None
    assert password_problem("x" * 1024) is None
    too_long = password_problem("x" * 1025)
    assert too_long is not None
    assert "at most 1024" in too_long


def test_password_hash_and_verify() -> None:
    stored = hash_password(PASSWORD)

    assert verify_password(stored, PASSWORD)
    assert not verify_password(stored, OTHER_PASSWORD)
    assert not verify_password(None, PASSWORD)
    assert not verify_password("not a hash", PASSWORD)
    assert not needs_rehash(stored)


def test_password_rehash_after_parameter_change() -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)
    stored = hash_password(PASSWORD, weak)

    assert verify_password(stored, PASSWORD)
    assert needs_rehash(stored)
    assert not needs_rehash(stored, weak)


def test_login_rehashes_old_password_hash(
    serve_app: ServeApp, browsers: list[Browser], sessions: sessionmaker[Session]
) -> None:
    browser = open_browser(browsers, serve_app())
    browser.sign_up(ADMIN)
    weak = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)
    with sessions.begin() as session:
        user = session.scalars(select(UserRow)).one()
        user.password_hash = hash_password(PASSWORD, weak)

    response = open_browser(browsers, str(browser.client.base_url)).log_in(ADMIN)

    assert response.status_code == 303
    with sessions() as session:
        stored = session.scalars(select(UserRow.password_hash)).one()
    assert not needs_rehash(stored)
    assert verify_password(stored, PASSWORD)


def test_load_web_settings_signup() -> None:
    assert load_web_settings({}).signup == "invite"
    assert load_web_settings({"CERTWATCH_WEB_SIGNUP": " Open "}).signup == "open"
    with pytest.raises(WebSettingsError, match="CERTWATCH_WEB_SIGNUP='anyone'"):
        load_web_settings({"CERTWATCH_WEB_SIGNUP": "anyone"})


@pytest.mark.parametrize(
    ("asked", "followed"),
    [
        ("/endpoints/3?tab=chain", "/endpoints/3?tab=chain"),
        ("", "/dashboard"),
        ("//evil.example/x", "/dashboard"),
        ("https://evil.example/", "/dashboard"),
        ("/\\evil.example", "/dashboard"),
        ("/a\r\nSet-Cookie: x=y", "/dashboard"),
    ],
)
def test_safe_next_stays_on_site(asked: str, followed: str) -> None:
    assert safe_next(asked) == followed


def test_login_leads_back_to_page(serve_app: ServeApp, browsers: list[Browser]) -> None:
    browser = open_browser(browsers, serve_app())
    browser.sign_up(ADMIN)
    browser.client.post("/logout", data={"csrf_token": browser.csrf("/teams")})

    asked = browser.client.get("/alerts?state=acknowledged")
    form = browser.client.get(asked.headers["location"])
    logged_in = browser.client.post(
        "/login",
        data={
            "csrf_token": browser.csrf(asked.headers["location"]),
            "email": ADMIN,
            "password": PASSWORD,
            "next": "/alerts?state=acknowledged",
        },
    )

    assert asked.status_code == 303
    assert asked.headers["location"] == "/login?next=%2Falerts%3Fstate%3Dacknowledged"
    assert 'name="next" value="/alerts?state=acknowledged"' in form.text
    assert logged_in.status_code == 303
    assert logged_in.headers["location"] == "/alerts?state=acknowledged"


def test_owner_changes_and_removes_members(
    serve_app: ServeApp, browsers: list[Browser], sessions: sessionmaker[Session]
) -> None:
    base_url = serve_app()
    owner = open_browser(browsers, base_url)
    owner.sign_up(ADMIN)
    team_id = default_team_id(sessions)
    token = invitation_token(owner.invite(team_id, "bob@example.test", "viewer"))
    bob = open_browser(browsers, base_url)
    bob.sign_up("bob@example.test", invitation=token)
    with sessions() as session:
        admin = find_user(session, ADMIN)
        bob_user = find_user(session, "bob@example.test")
    assert admin is not None and bob_user is not None

    def change(browser: Browser, user_id: int, **fields: str) -> httpx.Response:
        data = {"csrf_token": browser.csrf(f"/teams/{team_id}"), **fields}
        return browser.client.post(f"/teams/{team_id}/members/{user_id}", data=data)

    by_viewer = change(bob, admin.id, action="remove")
    promoted = change(owner, bob_user.id, action="role", role="member")
    last_owner = change(owner, admin.id, action="role", role="viewer")
    unknown = change(owner, bob_user.id + 1000, action="remove")
    forged = bob.client.post(
        f"/teams/{team_id}/members/{bob_user.id}", data={"action": "remove"}
    )
    removed = change(owner, bob_user.id, action="remove")
    bob_team = bob.client.get(f"/teams/{team_id}")

    assert by_viewer.status_code == 403
    assert promoted.status_code == 200
    assert "bob@example.test is now member of the team." in html.unescape(promoted.text)
    assert last_owner.status_code == 400
    assert "the team's only owner" in error_text(last_owner)
    assert unknown.status_code == 404
    assert forged.status_code == 403
    assert removed.status_code == 200
    assert bob_team.status_code == 404
    with sessions() as session:
        roles = {
            row.user_id: row.role for row in session.scalars(select(MembershipRow))
        }
    assert roles == {admin.id: "owner"}
