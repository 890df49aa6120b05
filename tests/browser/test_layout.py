"""Every page at desktop and phone size: nothing makes the body scroll sideways.

Wide tables may scroll inside their own region, as the pages intend, but
the page itself must fit the 390 CSS pixels of the phone viewport. The
test saves a full-page screenshot of each page at both sizes, so a person
can look at them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from tests.browser.conftest import PHONE, Site, TlsEndpoint
from tests.browser.helpers import (
    add_endpoint,
    evaluate_alerts_now,
    horizontal_overflow,
    sign_up,
)

pytestmark = pytest.mark.browser

PAGES_LOGGED_OUT = {"login": "/login", "signup": "/signup"}


def visit_pages(
    page: Page, paths: dict[str, str], folder: Path, size: str
) -> dict[str, int]:
    """Open and screenshot each page; return how far each is wider than the viewport."""
    overflows = {}
    for name, path in paths.items():
        response = page.goto(path)
        assert response is not None
        assert response.ok, f"{path} returned {response.status}"
        overflows[name] = horizontal_overflow(page)
        page.screenshot(path=folder / f"{name}-{size}.png", full_page=True)
    return overflows


def link_target(page: Page, path: str, pattern: str) -> str:
    """Open `path` and return the first href in its main part matching `pattern`."""
    page.goto(path)
    hrefs = page.locator("main a").evaluate_all(
        "links => links.map(l => l.getAttribute('href'))"
    )
    matching = [href for href in hrefs if re.fullmatch(pattern, href or "")]
    assert matching, f"{path} has no link matching {pattern!r}"
    return str(matching[0])


def test_pages_fit_desktop_and_phone(
    page: Page,
    site: Site,
    tls_endpoint: TlsEndpoint,
    open_phone_page: Callable[[Page], Page],
    artifacts: Path,
) -> None:
    logged_out = open_phone_page(page)
    assert logged_out.viewport_size == PHONE
    phone_out = visit_pages(logged_out, PAGES_LOGGED_OUT, artifacts, "phone")
    desktop_out = visit_pages(page, PAGES_LOGGED_OUT, artifacts, "desktop")

    sign_up(page)
    add_endpoint(page, tls_endpoint.target)
    expect(page.get_by_role("heading", name="Instant report")).to_be_visible()
    page.screenshot(path=artifacts / "add-report-desktop.png", full_page=True)
    evaluate_alerts_now(site.sessions)
    team = link_target(page, "/teams", r"/teams/\d+")
    pages = {
        "dashboard": "/dashboard",
        "endpoint": link_target(page, "/dashboard", r"/endpoints/\d+"),
        "add": "/endpoints/new",
        "certificates": "/certificates",
        "certificate": link_target(
            page, "/certificates", r"/certificates/[0-9a-f]{64}"
        ),
        "alerts": "/alerts",
        "teams": "/teams",
        "team": team,
        "team-settings": f"{team}/settings",
        "tokens": f"{team}/tokens",
    }
    phone = open_phone_page(page)
    phone_in = visit_pages(phone, pages, artifacts, "phone")
    desktop_in = visit_pages(page, pages, artifacts, "desktop")

    assert phone_out == dict.fromkeys(PAGES_LOGGED_OUT, 0)
    assert desktop_out == dict.fromkeys(PAGES_LOGGED_OUT, 0)
    assert phone_in == dict.fromkeys(pages, 0)
    assert desktop_in == dict.fromkeys(pages, 0)
