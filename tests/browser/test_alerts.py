"""Acknowledge an alert in chromium.

The endpoint added through the form has a certificate inside its warning
window. One alert evaluation over the store, as `certwatch serve` runs
after a monitor cycle, opens its expiry alert.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Locator, Page, expect
from tests.browser.conftest import DAYS_LEFT, Site, TlsEndpoint
from tests.browser.helpers import EMAIL, add_endpoint, evaluate_alerts_now, sign_up

pytestmark = pytest.mark.browser


def alert_section(page: Page, code: str) -> Locator:
    """Return the section of the alert with finding code `code`."""
    heading = page.get_by_role("heading", name=re.compile(rf"^\w+ Alert \d+: {code}$"))
    return page.get_by_role("region").filter(has=heading)


def state_tab(page: Page, state: str) -> Locator:
    """Return the link to the alerts in `state`, whose name ends in their count."""
    tabs = page.get_by_role("navigation", name="Alert states")
    return tabs.get_by_role("link", name=re.compile(rf"^{state} \(\d+\)$"))


def test_alerts_acknowledge_expiry_alert(
    page: Page, site: Site, tls_endpoint: TlsEndpoint
) -> None:
    sign_up(page)
    add_endpoint(page, tls_endpoint.target)
    report = evaluate_alerts_now(site.sessions)
    assert report.opened >= 1

    page.get_by_role("navigation", name="Site").get_by_role(
        "link", name="Alerts"
    ).click()
    open_count = report.opened
    expect(state_tab(page, "Open")).to_have_text(f"Open ({open_count})")
    expect(state_tab(page, "Acknowledged")).to_have_text("Acknowledged (0)")
    expiry = alert_section(page, "expiring_soon")
    expect(expiry).to_have_count(1)
    expect(expiry).to_contain_text(f"in {DAYS_LEFT} days")
    expect(expiry.get_by_role("link", name=tls_endpoint.target)).to_be_visible()

    expiry.get_by_role("button", name=re.compile(r"^Acknowledge alert \d+")).click()

    expect(page).to_have_url(re.compile(r"state=acknowledged"))
    expect(page.get_by_role("status")).to_contain_text(
        f"is acknowledged by {EMAIL}: no more reminders are sent until"
    )
    expect(state_tab(page, "Open")).to_have_text(f"Open ({open_count - 1})")
    expect(state_tab(page, "Acknowledged")).to_have_text("Acknowledged (1)")
    acknowledged = alert_section(page, "expiring_soon")
    expect(acknowledged).to_have_count(1)
    expect(acknowledged.locator(".alert-facts")).to_contain_text(
        f"Acknowledged by {EMAIL}"
    )
    acknowledged.locator("summary").click()
    expect(
        acknowledged.get_by_role("row").filter(
            has=page.get_by_role("rowheader", name="Acknowledged")
        )
    ).to_contain_text(EMAIL)


def test_alerts_snooze_until_date(
    page: Page, site: Site, tls_endpoint: TlsEndpoint
) -> None:
    sign_up(page)
    add_endpoint(page, tls_endpoint.target)
    evaluate_alerts_now(site.sessions)
    until = (datetime.now(UTC) + timedelta(days=3)).date()
    page.goto("/alerts")
    expiry = alert_section(page, "expiring_soon")

    expiry.get_by_label(re.compile(r"^Snooze alert \d+ until")).fill(until.isoformat())
    expiry.get_by_role("button", name="Snooze").click()

    expect(page.get_by_role("status")).to_contain_text(
        f"is acknowledged until {until.isoformat()} 00:00 UTC"
    )
    expect(state_tab(page, "Acknowledged")).to_have_text("Acknowledged (1)")
    expect(alert_section(page, "expiring_soon")).to_have_count(1)
