"""Add an endpoint in chromium, then find it on the dashboard and its own page.

The endpoint is a local TLS server whose certificate has `DAYS_LEFT` days
left. The add page probes it at once and records the scan, so the
dashboard and the endpoint page show it without a monitor cycle.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect
from tests.browser.conftest import DAYS_LEFT, TlsEndpoint
from tests.browser.helpers import add_endpoint, horizontal_overflow, sign_up

pytestmark = pytest.mark.browser


def not_after_text(endpoint: TlsEndpoint) -> str:
    """Return the leaf's not_after as the pages write it."""
    return endpoint.leaf.cert.not_valid_after_utc.strftime("%Y-%m-%d %H:%M UTC")


def endpoint_row(page: Page, endpoint: TlsEndpoint) -> Locator:
    """Return the dashboard's table row of `endpoint`."""
    table = page.get_by_role("region", name="Endpoints", exact=True)
    return table.get_by_role("row").filter(
        has=page.get_by_role("link", name=endpoint.target, exact=True)
    )


def test_add_page_instant_report(page: Page, tls_endpoint: TlsEndpoint) -> None:
    sign_up(page)
    page.get_by_role("navigation", name="Site").get_by_role(
        "link", name="Add endpoints"
    ).click()
    expect(page.get_by_role("heading", name="Add endpoints", level=1)).to_be_visible()

    add_endpoint(page, tls_endpoint.target)

    expect(page.get_by_role("status").first).to_contain_text("1 endpoint added")
    results = page.get_by_role("region", name=f"Results for {tls_endpoint.target}")
    row = results.get_by_role("row").filter(has_text="127.0.0.1")
    expect(row).to_have_count(1)
    expect(row.get_by_role("cell", name=str(DAYS_LEFT), exact=True)).to_be_visible()
    expect(row).to_contain_text(not_after_text(tls_endpoint))
    expect(row).to_contain_text(f"in {DAYS_LEFT} days, within the warning threshold")
    expect(page.get_by_role("link", name=tls_endpoint.target)).to_have_attribute(
        "href", re.compile(r"^/endpoints/\d+$")
    )


def test_dashboard_lists_endpoint_days_left(
    page: Page,
    tls_endpoint: TlsEndpoint,
    open_phone_page: Callable[[Page], Page],
    artifacts: Path,
) -> None:
    sign_up(page)
    add_endpoint(page, tls_endpoint.target)

    page.get_by_role("navigation", name="Site").get_by_role(
        "link", name="Dashboard"
    ).click()
    expect(page.get_by_role("heading", name="Dashboard", level=1)).to_be_visible()
    row = endpoint_row(page, tls_endpoint)
    expect(row).to_have_count(1)
    expect(row.get_by_role("cell", name=str(DAYS_LEFT), exact=True)).to_be_visible()
    expect(row).to_contain_text(not_after_text(tls_endpoint))
    expect(row).to_contain_text("default")

    timeline = page.get_by_role("region", name="Expiring in the next 90 days")
    chart = timeline.get_by_role("img", name="Expiring in the next 90 days")
    expect(chart).to_be_visible()
    expect(chart.locator("svg")).to_be_visible()
    expect(timeline).to_contain_text("1 certificate of the listed sources")
    assert above(page, "Endpoints", "Expiring in the next 90 days")
    counts = page.get_by_role("table", name="Certificates by days left and status")
    expect(counts).to_be_hidden()
    page.get_by_text("The numbers behind the chart", exact=True).click()
    bucket = counts.get_by_role("row").filter(has_text=re.compile(r"\b1\s*$"))
    expect(bucket).to_have_count(1)
    page.screenshot(path=artifacts / "dashboard-numbers-desktop.png", full_page=True)

    phone = open_phone_page(page)
    phone.goto("/dashboard")
    expect(endpoint_row(phone, tls_endpoint)).to_have_count(1)
    assert horizontal_overflow(phone) == 0
    assert smallest_chart_text(phone) >= 11.5
    phone.screenshot(path=artifacts / "dashboard-phone.png", full_page=True)


def above(page: Page, first: str, second: str) -> bool:
    """Tell whether heading `first` is drawn above heading `second`."""
    first_box = page.get_by_role("heading", name=first, exact=True).bounding_box()
    second_box = page.get_by_role("heading", name=second, exact=True).bounding_box()
    assert first_box is not None
    assert second_box is not None
    return first_box["y"] < second_box["y"]


def smallest_chart_text(page: Page) -> float:
    """Return the height in CSS pixels of the smallest font in the dashboard chart.

    The chart's SVG scales with its column, so a label's font size in SVG
    units is multiplied by the ratio of drawn width to viewBox width.
    """
    size = page.evaluate(
        """() => {
            const svg = document.querySelector('.chart svg');
            const scale = svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
            const sizes = [...svg.querySelectorAll('text')]
                .filter(text => text.textContent.trim() !== '')
                .map(text => parseFloat(getComputedStyle(text).fontSize) * scale);
            return Math.min(...sizes);
        }"""
    )
    assert isinstance(size, int | float)
    return float(size)


def test_endpoint_page_shows_chain(page: Page, tls_endpoint: TlsEndpoint) -> None:
    sign_up(page)
    add_endpoint(page, tls_endpoint.target)
    page.goto("/dashboard")

    endpoint_row(page, tls_endpoint).get_by_role(
        "link", name=tls_endpoint.target
    ).click()

    expect(page).to_have_url(re.compile(r"/endpoints/\d+$"))
    expect(page.get_by_role("heading", level=1)).to_have_text(
        f"Endpoint {tls_endpoint.target}"
    )
    facts = page.get_by_role("definition")
    expect(facts.filter(has_text=re.compile(rf"^{DAYS_LEFT}$"))).to_have_count(1)
    expect(page.get_by_role("heading", name="Address 127.0.0.1")).to_be_visible()

    chain = page.get_by_role("table", name="The chain as presented, leaf first")
    leaf = chain.get_by_role("row").filter(
        has=page.get_by_role("rowheader", name="leaf")
    )
    expect(leaf).to_contain_text("www.example.test")
    expect(leaf.get_by_role("cell", name=str(DAYS_LEFT), exact=True)).to_be_visible()
    expect(leaf.get_by_role("link", name=tls_endpoint.leaf.sha256)).to_be_visible()
    expect(chain.get_by_role("row")).to_have_count(3)

    served = page.get_by_role("table", name=re.compile("^Each leaf certificate"))
    expect(served).to_contain_text("(served now)")
    expect(page.get_by_text("What to do:").first).to_be_visible()
