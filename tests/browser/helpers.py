"""Steps a user takes in the browser, and checks shared by the browser tests."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect
from sqlalchemy.orm import Session, sessionmaker

from certwatch.alerts.evaluate import AlertSettings, EvaluationReport, evaluate_alerts
from certwatch.store.alerts import add_contact, find_team
from certwatch.store.models import DEFAULT_TEAM
from certwatch.web.app import utc_now

EMAIL = "admin@example.test"
PASSWORD = "correct horse battery staple"


def sign_up(page: Page, email: str = EMAIL, password: str = PASSWORD) -> None:
    """Make an account through the sign-up form, which logs the browser in."""
    page.goto("/signup")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_label("Password again").fill(password)
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()


def log_in(page: Page, email: str = EMAIL, password: str = PASSWORD) -> None:
    """Fill the login form and send it."""
    page.goto("/login")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def log_out(page: Page) -> None:
    """Press the Log out button of the site's navigation."""
    page.get_by_role("navigation", name="Site").get_by_role(
        "button", name="Log out"
    ).click()
    expect(page).to_have_url(re.compile(r"/login$"))


def horizontal_overflow(page: Page) -> int:
    """Return how many CSS pixels the page is wider than its viewport.

    0 means the body cannot scroll sideways. The widest of the document
    element and the body counts, because either can overflow.
    """
    overflow = page.evaluate(
        """() => Math.max(
            document.documentElement.scrollWidth, document.body.scrollWidth
        ) - document.documentElement.clientWidth"""
    )
    assert isinstance(overflow, int)
    return overflow


def add_endpoint(page: Page, target: str) -> None:
    """Paste `target` into the add page's form and wait for the instant report."""
    page.goto("/endpoints/new")
    page.get_by_label("Targets, one per line").fill(target)
    page.get_by_role("button", name="Add and scan").click()
    expect(page.get_by_role("heading", name="Instant report")).to_be_visible()


def evaluate_alerts_now(sessions: sessionmaker[Session]) -> EvaluationReport:
    """Run one alert evaluation over the store at the current time, and commit it.

    `certwatch serve` runs the same evaluation after its monitor cycles.
    """
    with sessions.begin() as session:
        # Reminders are recorded only for a team whose alerts reach someone.
        team_id = find_team(session, DEFAULT_TEAM)
        assert team_id is not None
        add_contact(
            session,
            team_id,
            kind="email",
            address="ops@example.test",
            escalation=False,
            now=utc_now(),
        )
        return evaluate_alerts(session, now=utc_now(), settings=AlertSettings())
