"""Account emails: address verification, password reset and invitation emails.

Each test serves the application with uvicorn on SQLite and PostgreSQL and
sends its emails to a real aiosmtpd server on 127.0.0.1, which runs in its
own thread with its own event loop. The tests read each received message,
take the link out of it and follow it through the application with httpx.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from email.message import EmailMessage

import httpx
import pytest
from aiosmtpd.smtp import SMTP
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker
from tests.alerts.conftest import SmtpHandler
from tests.monitor.helpers import Clock
from tests.web.test_accounts import (
    ADMIN,
    OTHER_PASSWORD,
    PASSWORD,
    Browser,
    default_team_id,
    error_text,
    invitation_token,
)

from certwatch.alerts.settings import SmtpSecurity, SmtpSettings
from certwatch.store.accounts import find_user
from certwatch.store.models import AccountTokenRow, SessionRow, UserRow
from certwatch.web.account_emails import configure_account_mail
from certwatch.web.app import create_app
from certwatch.web.server import WebServer
from certwatch.web.settings import WebSettings

MEMBER = "member@example.test"
_LINK = re.compile(r"^(http://\S+)\r?$", re.MULTILINE)


class ThreadedSmtp:
    """A plain aiosmtpd server on 127.0.0.1 in a thread with its own event loop."""

    def __init__(self) -> None:
        self.handler = SmtpHandler()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    def start(self) -> ThreadedSmtp:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        self._server = future.result(timeout=5)
        return self

    async def _listen(self) -> asyncio.Server:
        def protocol() -> SMTP:
            return SMTP(self.handler, hostname="localhost", timeout=5)

        return await self._loop.create_server(protocol, "127.0.0.1", 0)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def settings(self) -> SmtpSettings:
        return SmtpSettings(
            host="127.0.0.1",
            sender="certwatch <certwatch@example.test>",
            port=self.port,
            security=SmtpSecurity.PLAIN,
            timeout=5.0,
        )

    def messages(self, recipient: str | None = None) -> list[EmailMessage]:
        return [
            received.message
            for received in self.handler.received
            if recipient is None or recipient in received.recipients
        ]

    def wait(self, recipient: str, count: int) -> list[EmailMessage]:
        """Return the messages to `recipient` once there are `count` of them.

        Password reset emails go out after the response, so a test waits.
        """
        deadline = time.monotonic() + 5
        while len(self.messages(recipient)) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.messages(recipient)

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
                await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()


@pytest.fixture
def mailbox() -> Iterator[ThreadedSmtp]:
    """A running SMTP server that keeps every message; closed after the test."""
    server = ThreadedSmtp().start()
    yield server
    server.stop()


def closed_port_settings() -> SmtpSettings:
    """SMTP settings for a loopback port where nothing listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return SmtpSettings(
        host="127.0.0.1",
        sender="certwatch@example.test",
        port=port,
        security=SmtpSecurity.PLAIN,
        timeout=5.0,
    )


@dataclass
class Site:
    """A served application, its base URL, and its browsers."""

    base_url: str
    browsers: list[Browser]

    def browser(self) -> Browser:
        opened = Browser(self.base_url)
        self.browsers.append(opened)
        return opened


StartSite = Callable[..., Site]


@pytest.fixture
def start_site(sessions: sessionmaker[Session], clock: Clock) -> Iterator[StartSite]:
    """Serve the app with the given SMTP settings; its public URL is its address."""
    with contextlib.ExitStack() as stack:
        browsers: list[Browser] = []

        def start(smtp: SmtpSettings | None, signup: str = "invite") -> Site:
            settings = WebSettings(port=0, signup=signup)
            app = create_app(sessions, settings, now_fn=clock)
            configure_account_mail(app, smtp)
            server = WebServer(app, settings)
            base_url = f"http://{server.host}:{server.port}"
            # The port is known only once the socket is bound, and emailed
            # links start with the public URL.
            context = app.state.certwatch
            public = replace(settings, public_url=base_url)
            app.state.certwatch = replace(context, settings=public)
            stack.enter_context(server.running(threading.Event()))
            return Site(base_url, browsers)

        yield start
        for browser in browsers:
            browser.client.close()


def link_in(message: EmailMessage) -> str:
    """Return the one link of an account email, checked in both parts."""
    text_part = message.get_body(("plain",))
    html_part = message.get_body(("html",))
    assert text_part is not None
    assert html_part is not None
    found = _LINK.findall(text_part.get_content())
    assert len(found) == 1, text_part.get_content()
    assert f'href="{html.escape(found[0])}"' in html_part.get_content()
    return str(found[0])


def path_of(link: str, site: Site) -> str:
    assert link.startswith(site.base_url + "/"), link
    return link.removeprefix(site.base_url)


def confirm_token(page: httpx.Response) -> str:
    found = re.search(r'name="token" value="([^"]+)"', page.text)
    assert found is not None, page.text
    return found.group(1)


def verify(browser: Browser, site: Site, link: str) -> httpx.Response:
    """Open a verification link and press its button."""
    page = browser.client.get(path_of(link, site))
    assert page.status_code == 200, page.text
    return browser.client.post(
        "/verify",
        data={
            "csrf_token": browser.csrf(path_of(link, site)),
            "token": confirm_token(page),
        },
    )


def request_reset(browser: Browser, email: str) -> httpx.Response:
    return browser.client.post(
        "/password-reset",
        data={"csrf_token": browser.csrf("/password-reset"), "email": email},
    )


def set_password(
    browser: Browser, site: Site, link: str, password: str, confirmation: str = ""
) -> httpx.Response:
    page = browser.client.get(path_of(link, site))
    assert page.status_code == 200, page.text
    return browser.client.post(
        "/password-reset/confirm",
        data={
            "csrf_token": browser.csrf(path_of(link, site)),
            "token": confirm_token(page),
            "password": password,
            "password_confirm": confirmation or password,
        },
    )


def verified_at(sessions: sessionmaker[Session], email: str) -> object:
    with sessions() as session:
        user = find_user(session, email)
    assert user is not None
    return user.email_verified_at


def status_text(response: httpx.Response) -> str:
    found = re.findall(r'<p role="status">([^<]*)</p>', response.text)
    assert found, response.text
    return html.unescape(" ".join(found))


# --- Verification ------------------------------------------------------------


def test_verification_link_works_once(
    start_site: StartSite,
    mailbox: ThreadedSmtp,
    sessions: sessionmaker[Session],
    clock: Clock,
) -> None:
    site = start_site(mailbox.settings())
    browser = site.browser()

    signed_up = browser.sign_up(ADMIN)
    teams = browser.client.get("/teams")
    [message] = mailbox.messages(ADMIN)
    link = link_in(message)
    opened = browser.client.get(path_of(link, site))
    still_unverified = verified_at(sessions, ADMIN)
    confirmed = verify(browser, site, link)
    again = browser.client.get(path_of(link, site))
    teams_after = browser.client.get("/teams")

    assert signed_up.status_code == 200
    assert f"We sent a link to {ADMIN}" in status_text(signed_up)
    assert message["Subject"] == "Verify your email address for certwatch"
    assert message["To"] == ADMIN
    assert link.startswith(f"{site.base_url}/verify?token=")
    assert "is not verified yet" in teams.text
    assert "Send the link again" in teams.text
    assert f"Verify {ADMIN}" in opened.text
    assert still_unverified is None
    assert confirmed.status_code == 200
    assert f"The address {ADMIN} is verified." in status_text(confirmed)
    assert verified_at(sessions, ADMIN) == clock()
    assert again.status_code == 403
    assert "invalid, used or expired" in again.text
    assert "is not verified yet" not in teams_after.text


def test_verification_link_from_other_browser_needs_csrf(
    start_site: StartSite, mailbox: ThreadedSmtp, sessions: sessionmaker[Session]
) -> None:
    site = start_site(mailbox.settings())
    site.browser().sign_up(ADMIN)
    link = link_in(mailbox.messages(ADMIN)[0])
    other = site.browser()

    page = other.client.get(path_of(link, site))
    forged = other.client.post(
        "/verify", data={"csrf_token": "forged", "token": confirm_token(page)}
    )
    confirmed = verify(other, site, link)

    assert forged.status_code == 403
    assert confirmed.status_code == 200
    assert verified_at(sessions, ADMIN) is not None


def test_verification_link_expires(
    start_site: StartSite,
    mailbox: ThreadedSmtp,
    sessions: sessionmaker[Session],
    clock: Clock,
) -> None:
    site = start_site(mailbox.settings())
    browser = site.browser()
    browser.sign_up(ADMIN)
    link = link_in(mailbox.messages(ADMIN)[0])

    clock.advance(timedelta(hours=48) - timedelta(seconds=1))
    in_time = browser.client.get(path_of(link, site))
    clock.advance(timedelta(seconds=1))
    late = browser.client.get(path_of(link, site))

    assert in_time.status_code == 200
    assert late.status_code == 403
    assert "invalid, used or expired" in late.text
    assert verified_at(sessions, ADMIN) is None


def test_links_rejected_for_other_purpose(
    start_site: StartSite, mailbox: ThreadedSmtp, sessions: sessionmaker[Session]
) -> None:
    site = start_site(mailbox.settings())
    browser = site.browser()
    browser.sign_up(ADMIN)
    verify_link = link_in(mailbox.messages(ADMIN)[0])
    verify_token = verify_link.split("token=", 1)[1]
    request_reset(site.browser(), ADMIN)
    reset_link = link_in(mailbox.wait(ADMIN, 2)[1])
    reset_token = reset_link.split("token=", 1)[1]

    as_reset = browser.client.get(f"/password-reset/confirm?token={verify_token}")
    as_verify = browser.client.get(f"/verify?token={reset_token}")
    posted = browser.client.post(
        "/verify",
        data={"csrf_token": browser.csrf("/teams"), "token": reset_token},
    )

    assert as_reset.status_code == 403
    assert "password reset link is invalid" in as_reset.text
    assert as_verify.status_code == 403
    assert "verification link is invalid" in as_verify.text
    assert posted.status_code == 403
    assert verified_at(sessions, ADMIN) is None


def test_resend_limited_to_one_per_5_minutes(
    start_site: StartSite, mailbox: ThreadedSmtp, clock: Clock
) -> None:
    site = start_site(mailbox.settings())
    browser = site.browser()
    browser.sign_up(ADMIN)

    def resend() -> httpx.Response:
        return browser.client.post(
            "/verify/resend", data={"csrf_token": browser.csrf("/teams")}
        )

    clock.advance(timedelta(minutes=5) - timedelta(seconds=1))
    early = resend()
    clock.advance(timedelta(seconds=1))
    sent = resend()
    again = resend()
    messages = mailbox.messages(ADMIN)

    assert early.status_code == 429
    assert "ask again from" in early.text
    assert sent.status_code == 200
    assert f"We sent a link to {ADMIN}" in status_text(sent)
    assert again.status_code == 429
    assert len(messages) == 2
    assert link_in(messages[0]) != link_in(messages[1])


def test_signup_without_smtp_turns_verification_off(
    start_site: StartSite, sessions: sessionmaker[Session], clock: Clock
) -> None:
    site = start_site(None, signup="open")
    admin = site.browser()
    member = site.browser()

    page = admin.client.get("/signup")
    admin_signed_up = admin.sign_up(ADMIN)
    member_signed_up = member.sign_up(MEMBER)
    teams = member.client.get("/teams")
    reset_page = member.client.get("/password-reset")

    assert "has no mail server, so it does not verify email addresses" in page.text
    assert admin_signed_up.status_code == 303
    assert member_signed_up.status_code == 303
    assert verified_at(sessions, ADMIN) == clock()
    assert verified_at(sessions, MEMBER) is None
    assert "is not verified yet" not in teams.text
    assert reset_page.status_code == 403
    assert "cannot send password reset links" in reset_page.text


def test_signup_with_smtp_down_keeps_account(
    start_site: StartSite, sessions: sessionmaker[Session]
) -> None:
    site = start_site(closed_port_settings())
    browser = site.browser()

    signed_up = browser.sign_up(ADMIN)
    teams = browser.client.get("/teams")

    assert signed_up.status_code == 503
    assert "the verification email to" in error_text(signed_up)
    assert "refused the connection" in error_text(signed_up)
    assert teams.status_code == 200
    assert ">default</a> (owner)" in teams.text
    with sessions() as session:
        assert find_user(session, ADMIN) is not None
        tokens = session.scalar(select(func.count()).select_from(AccountTokenRow))
    assert tokens == 0


# --- Password reset ----------------------------------------------------------


def test_password_reset_ends_other_sessions(
    start_site: StartSite, mailbox: ThreadedSmtp, sessions: sessionmaker[Session]
) -> None:
    site = start_site(mailbox.settings())
    site.browser().sign_up(ADMIN)
    elsewhere = site.browser()
    assert elsewhere.log_in(ADMIN).status_code == 303
    resetting = site.browser()

    login_page = resetting.client.get("/login")
    requested = request_reset(resetting, ADMIN)
    [_, message] = mailbox.wait(ADMIN, 2)
    link = link_in(message)
    changed = set_password(resetting, site, link, OTHER_PASSWORD)
    own_teams = resetting.client.get("/teams")
    other_teams = elsewhere.client.get("/teams")
    reused = resetting.client.get(path_of(link, site))

    assert 'href="/password-reset"' in login_page.text
    assert requested.status_code == 200
    assert f"If an account exists for {ADMIN}" in status_text(requested)
    assert message["Subject"] == "Reset your certwatch password"
    assert changed.status_code == 303
    assert own_teams.status_code == 200
    assert other_teams.status_code == 303
    assert other_teams.headers["location"] == "/login?next=%2Fteams"
    assert reused.status_code == 403
    assert site.browser().log_in(ADMIN, PASSWORD).status_code == 403
    assert site.browser().log_in(ADMIN, OTHER_PASSWORD).status_code == 303
    with sessions() as session:
        sessions_left = session.scalar(select(func.count()).select_from(SessionRow))
    # The resetting browser's new session and the last successful login.
    assert sessions_left == 2
    assert verified_at(sessions, ADMIN) is not None


def test_password_reset_unlocks_account(
    start_site: StartSite, mailbox: ThreadedSmtp, sessions: sessionmaker[Session]
) -> None:
    site = start_site(mailbox.settings())
    site.browser().sign_up(ADMIN)
    guesser = site.browser()
    for _ in range(5):
        guesser.log_in(ADMIN, "wrong password, again")
    locked = site.browser().log_in(ADMIN)
    resetting = site.browser()
    request_reset(resetting, ADMIN)

    changed = set_password(
        resetting, site, link_in(mailbox.wait(ADMIN, 2)[-1]), OTHER_PASSWORD
    )
    logged_in = site.browser().log_in(ADMIN, OTHER_PASSWORD)

    assert locked.status_code == 403
    assert changed.status_code == 303
    assert logged_in.status_code == 303
    with sessions() as session:
        user = session.scalar(select(UserRow).where(UserRow.email == ADMIN))
    assert user is not None
    assert user.locked_until is None


def test_password_reset_unknown_address_same_answer(
    start_site: StartSite, mailbox: ThreadedSmtp
) -> None:
    site = start_site(mailbox.settings())
    site.browser().sign_up(ADMIN)
    unknown = "nobody-here@example.test"

    known_answer = request_reset(site.browser(), ADMIN)
    unknown_answer = request_reset(site.browser(), unknown)

    assert known_answer.status_code == unknown_answer.status_code == 200
    assert known_answer.text.replace(ADMIN, "ADDRESS") == unknown_answer.text.replace(
        unknown, "ADDRESS"
    )
    assert len(mailbox.wait(ADMIN, 2)) == 2
    assert mailbox.messages(unknown) == []


def test_password_reset_link_expires(
    start_site: StartSite, mailbox: ThreadedSmtp, clock: Clock
) -> None:
    site = start_site(mailbox.settings())
    site.browser().sign_up(ADMIN)
    browser = site.browser()
    request_reset(browser, ADMIN)
    link = link_in(mailbox.wait(ADMIN, 2)[-1])

    clock.advance(timedelta(hours=1))
    late = browser.client.get(path_of(link, site))

    assert late.status_code == 403
    assert "password reset link is invalid, used or expired" in late.text


def test_password_reset_checks_new_password(
    start_site: StartSite, mailbox: ThreadedSmtp
) -> None:
    site = start_site(mailbox.settings())
    site.browser().sign_up(ADMIN)
    browser = site.browser()
    request_reset(browser, ADMIN)
    link = link_in(mailbox.wait(ADMIN, 2)[-1])

    short = set_password(browser, site, link, "short")
    differ = set_password(
        browser, site, link, OTHER_PASSWORD, "something else entirely"
    )
    changed = set_password(browser, site, link, OTHER_PASSWORD)

    assert short.status_code == 400
    assert "too short" in error_text(short)
    assert differ.status_code == 400
    assert "The two passwords differ" in error_text(differ)
    assert changed.status_code == 303


def test_password_reset_rate_limited(
    start_site: StartSite, mailbox: ThreadedSmtp, clock: Clock
) -> None:
    site = start_site(mailbox.settings())
    site.browser().sign_up(ADMIN)
    browser = site.browser()

    per_address = [request_reset(browser, ADMIN).status_code for _ in range(4)]
    unknown = [
        request_reset(browser, "nobody-here@example.test").status_code for _ in range(4)
    ]
    # Requests over a limit are not counted, so 6 count so far.
    others = [
        request_reset(browser, f"user{number}@example.test").status_code
        for number in range(4)
    ]
    client_limited = request_reset(browser, "user9@example.test")
    clock.advance(timedelta(hours=1))
    later = request_reset(browser, ADMIN)

    assert per_address == [200, 200, 200, 429]
    # The same limit for an address without an account reveals nothing.
    assert unknown == [200, 200, 200, 429]
    # Ten requests from one client address within the hour, then no more.
    assert others == [200, 200, 200, 200]
    assert client_limited.status_code == 429
    assert "wait an hour" in error_text(client_limited)
    assert later.status_code == 200
    # The signup's verification email and three reset emails, then one more.
    assert len(mailbox.wait(ADMIN, 5)) == 5


# --- Invitations -------------------------------------------------------------


def test_invitation_email_sent(
    start_site: StartSite, mailbox: ThreadedSmtp, sessions: sessionmaker[Session]
) -> None:
    site = start_site(mailbox.settings())
    owner = site.browser()
    owner.sign_up(ADMIN)
    verify(owner, site, link_in(mailbox.messages(ADMIN)[0]))
    team_id = default_team_id(sessions)

    invited = owner.invite(team_id, MEMBER, "viewer")
    [message] = mailbox.messages(MEMBER)
    link = link_in(message)
    member = site.browser()
    signed_up = member.sign_up(MEMBER, invitation=link.split("invitation=", 1)[1])

    assert invited.status_code == 200
    assert f"The link was sent by email to {MEMBER}." in status_text(invited)
    assert link.split("invitation=", 1)[1] == invitation_token(invited)
    assert message["Subject"] == "Invitation to the team default on certwatch"
    text_part = message.get_body(("plain",))
    assert text_part is not None
    assert f"{ADMIN} invites you to the team “default”" in text_part.get_content()
    assert signed_up.status_code == 303
    assert verified_at(sessions, MEMBER) is not None


def test_invitation_needs_verified_owner(
    start_site: StartSite, mailbox: ThreadedSmtp, sessions: sessionmaker[Session]
) -> None:
    site = start_site(mailbox.settings())
    owner = site.browser()
    owner.sign_up(ADMIN)

    invited = owner.invite(default_team_id(sessions), MEMBER, "member")

    assert invited.status_code == 400
    assert f"Your address {ADMIN} is not verified yet" in error_text(invited)
    assert mailbox.messages(MEMBER) == []


def test_invitation_email_failure_shown(
    start_site: StartSite, sessions: sessionmaker[Session], clock: Clock
) -> None:
    site = start_site(closed_port_settings())
    owner = site.browser()
    owner.sign_up(ADMIN)
    with sessions.begin() as session:
        session.execute(update(UserRow).values(email_verified_at=clock()))

    invited = owner.invite(default_team_id(sessions), MEMBER, "member")

    assert invited.status_code == 200
    assert invitation_token(invited)
    assert f"The invitation email to {MEMBER} could not be sent" in status_text(invited)
    assert "refused the connection" in status_text(invited)


def test_invitation_without_smtp_shows_link_only(
    start_site: StartSite, sessions: sessionmaker[Session]
) -> None:
    site = start_site(None)
    owner = site.browser()
    owner.sign_up(ADMIN)

    invited = owner.invite(default_team_id(sessions), MEMBER, "member")

    assert invited.status_code == 200
    assert invitation_token(invited)
    assert "has no mail server, so no email was sent" in status_text(invited)
