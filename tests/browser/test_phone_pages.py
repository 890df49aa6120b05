"""Pages at phone width: the chart's text, unbroken addresses, compact alerts.

Each test saves screenshots under the artifacts folder, so a person can
look at what the assertions measure.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from tests.browser.conftest import Site, TlsEndpoint
from tests.browser.helpers import add_endpoint, evaluate_alerts_now, sign_up

from certwatch.store.alerts import add_contact
from certwatch.store.inventory import ensure_team

pytestmark = pytest.mark.browser

MIN_TEXT_PX = 12

# Each text of the chart's SVG: its content, its font size in CSS pixels
# after the SVG is scaled to the page, and its box relative to the SVG's.
CHART_TEXTS = """() => {
    const svg = document.querySelector('.chart svg');
    const frame = svg.getBoundingClientRect();
    const scale = frame.width / svg.viewBox.baseVal.width;
    return Array.from(svg.querySelectorAll('text'))
        .filter(t => t.textContent.trim())
        .map(t => {
            const box = t.getBoundingClientRect();
            return {
                text: t.textContent.trim(),
                px: parseFloat(getComputedStyle(t).fontSize) * scale,
                left: box.left - frame.left, right: frame.right - box.right,
                top: box.top - frame.top, bottom: frame.bottom - box.bottom,
                x: box.left, width: box.width, y: box.top,
                axis: t.closest('.axis.x') !== null
                    && t.closest('.guides') !== null,
            };
        });
}"""

# Inline code elements in tables that wrapped over several lines. Long
# fingerprints may wrap; addresses, targets and contacts must not.
WRAPPED_CODES = """() => Array.from(document.querySelectorAll('table code'))
    .filter(c => !c.classList.contains('fingerprint'))
    .filter(c => c.getClientRects().length > 1)
    .map(c => c.textContent)"""


def test_chart_text_readable_on_phone(
    page: Page,
    site: Site,
    tls_endpoint: TlsEndpoint,
    open_phone_page: Callable[[Page], Page],
    artifacts: Path,
) -> None:
    sign_up(page)
    add_endpoint(page, tls_endpoint.target)
    phone = open_phone_page(page)
    phone.goto("/dashboard")
    chart = phone.locator(".chart")
    chart.scroll_into_view_if_needed()
    chart.screenshot(path=artifacts / "chart-phone.png")

    texts = phone.evaluate(CHART_TEXTS)
    labels = sorted((t for t in texts if t["axis"]), key=lambda t: t["x"])

    assert min(t["px"] for t in texts) >= MIN_TEXT_PX
    for text in texts:
        assert min(text["left"], text["right"], text["top"], text["bottom"]) >= 0, text
    assert [t["text"] for t in labels] == ["<0", *(str(7 * w) for w in range(13))]
    for left, right in itertools.pairwise(labels):
        assert left["x"] + left["width"] <= right["x"], (left, right)
    legend = {t["text"] for t in texts} & {"Critical", "Warning", "Unknown", "OK"}
    assert legend == {"Critical", "Warning", "Unknown", "OK"}


def test_addresses_unbroken_on_phone(
    page: Page,
    site: Site,
    tls_endpoint: TlsEndpoint,
    open_phone_page: Callable[[Page], Page],
    artifacts: Path,
) -> None:
    sign_up(page)
    with site.sessions.begin() as session:
        team_id = ensure_team(session, "default", now=datetime.now(UTC))
        add_contact(
            session,
            team_id,
            kind="email",
            address="operations-team@example.test",
            escalation=False,
            now=datetime.now(UTC),
        )
    phone = open_phone_page(page)
    phone.goto("/endpoints/new")
    phone.get_by_label("Targets, one per line").fill(tls_endpoint.target)
    phone.get_by_role("button", name="Add and scan").click()
    expect(phone.get_by_role("heading", name="Instant report")).to_be_visible()
    phone.screenshot(path=artifacts / "add-report-phone-codes.png", full_page=True)
    wrapped = {"add report": phone.evaluate(WRAPPED_CODES)}

    endpoint = phone.get_by_role("link", name=tls_endpoint.target).first
    endpoint.click()
    expect(phone).to_have_url(re.compile(r"/endpoints/\d+$"))
    phone.screenshot(path=artifacts / "endpoint-phone-codes.png", full_page=True)
    wrapped["endpoint"] = phone.evaluate(WRAPPED_CODES)

    phone.goto(f"/teams/{team_id}/settings")
    expect(
        phone.get_by_role("code").filter(has_text="operations-team@")
    ).to_be_visible()
    phone.screenshot(path=artifacts / "team-settings-phone-codes.png", full_page=True)
    wrapped["team settings"] = phone.evaluate(WRAPPED_CODES)

    assert wrapped == {"add report": [], "endpoint": [], "team settings": []}


def test_alerts_compact_and_nav_on_one_line(
    page: Page,
    site: Site,
    tls_endpoint: TlsEndpoint,
    artifacts: Path,
) -> None:
    sign_up(page)
    add_endpoint(page, tls_endpoint.target)
    report = evaluate_alerts_now(site.sessions)
    page.goto("/alerts")
    page.screenshot(path=artifacts / "alerts-compact-desktop.png", full_page=True)
    sections = page.locator("section.alert")
    heights = sections.evaluate_all(
        "items => items.map(s => s.getBoundingClientRect().height)"
    )
    delivery_tables = page.get_by_role("table", name=re.compile("^Details of alert"))

    assert report.opened >= 1
    assert len(heights) == report.opened
    assert max(heights) < 260
    expect(delivery_tables.first).to_be_hidden()
    page.locator("section.alert summary").first.click()
    expect(delivery_tables.first).to_be_visible()

    page.goto("/teams")
    nav = page.get_by_role("navigation", name="Site")
    dashboard = nav.get_by_role("link", name="Dashboard").bounding_box()
    log_out = nav.get_by_role("button", name="Log out").bounding_box()
    page.screenshot(path=artifacts / "teams-desktop-layout.png", full_page=True)
    assert dashboard is not None and log_out is not None
    assert (
        abs(
            (dashboard["y"] + dashboard["height"] / 2)
            - (log_out["y"] + log_out["height"] / 2)
        )
        < dashboard["height"]
    )


def test_endpoint_page_actions(
    page: Page, site: Site, tls_endpoint: TlsEndpoint, artifacts: Path
) -> None:
    sign_up(page)
    add_endpoint(page, tls_endpoint.target)
    page.get_by_role("link", name=tls_endpoint.target).first.click()
    accepted = tls_endpoint.server.accepted

    page.get_by_role("button", name="Scan now").click()
    expect(page.get_by_role("status")).to_contain_text("Scanned now")
    assert tls_endpoint.server.accepted > accepted
    page.get_by_text("Change tags, scan interval or scanning").click()
    page.get_by_label("Tags").fill("web, trial")
    page.get_by_label("Scan interval").fill("30m")
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_role("status")).to_contain_text("The settings are saved")
    page.screenshot(path=artifacts / "endpoint-actions-desktop.png", full_page=True)
    expect(page.locator("dl.facts")).to_contain_text("every 30m")
    expect(page.locator("dl.facts")).to_contain_text("trial, web")

    page.get_by_role("link", name="Remove this endpoint…").click()
    page.screenshot(path=artifacts / "endpoint-remove-desktop.png", full_page=True)
    page.get_by_role("button", name=re.compile("^Remove ")).click()
    expect(page).to_have_url(re.compile(r"/dashboard$"))
    expect(page.get_by_role("link", name=tls_endpoint.target)).to_have_count(0)
