"""The alerts page in compact form, its wording and its links to removed endpoints.

The alerts come from the same real scans and evaluation as in
test_alert_pages.py: team web has two expiry alerts and one
hostname_mismatch alert, each sent to a reachable and an unreachable
webhook.
"""

from __future__ import annotations

import html
import re

from sqlalchemy.orm import Session, sessionmaker
from tests.monitor.helpers import Pki
from tests.web.conftest import ServeApp
from tests.web.page_helpers import Visitors, visitors  # noqa: F401
from tests.web.test_alert_pages import (  # noqa: F401
    Alerted,
    alerted,
    http_receiver,
)

from certwatch.commands.monitor import EVALUATE_EVERY
from certwatch.store.inventory import remove_endpoint
from certwatch.web.alert_pages import EVALUATION_INTERVAL_MINUTES


def alert_section(page: str, alert_id: int) -> str:
    return page.split(f'id="alert-{alert_id}"', 1)[1].split("</section>", 1)[0]


def text_of(markup: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", markup)).split())


def test_alerts_summary_line_then_details(
    serve_app: ServeApp,
    visitors: Visitors,  # noqa: F811
    alerted: Alerted,  # noqa: F811
    pki: Pki,
) -> None:
    owner = visitors.make(
        serve_app(), "owner@example.test", {alerted.inventory.web: "owner"}
    )
    expiry = alerted.alerts[f"expiry:{pki.leaf.sha256}"]

    section = alert_section(owner.client.get("/alerts").text, expiry)
    summary, details = section.split("<details>", 1)

    assert "badge-critical" in summary
    assert f"Alert {expiry}: expiring_soon" in text_of(summary)
    assert f'href="/endpoints/{alerted.inventory.www}"' in summary
    assert "Last threshold: 7 days before not_after." in text_of(summary)
    assert "/acknowledge" in summary
    assert "/snooze" in summary
    assert "Details and delivery to 2 contacts" in text_of(details)
    assert "Delivery of the latest message to each contact" in details
    assert "Details of alert" in details
    assert "1 failed attempt," in text_of(details)
    assert "1 failed attempts" not in text_of(details)


def test_alerts_finding_acknowledgement_wording(
    serve_app: ServeApp,
    visitors: Visitors,  # noqa: F811
    alerted: Alerted,  # noqa: F811
    pki: Pki,
) -> None:
    member = visitors.make(
        serve_app(), "member@example.test", {alerted.inventory.web: "member"}
    )
    finding = alerted.alerts[f"finding:hostname_mismatch:{pki.leaf.sha256}"]

    response = member.post(f"/alerts/{finding}/acknowledge", {"state": "open"})
    shown = text_of(member.client.get(response.headers["location"]).text)

    assert response.status_code == 303
    assert (
        f"Alert {finding} is acknowledged by member@example.test: no more messages "
        "are sent about it until the problem clears (a resolved message) or "
        "returns after clearing (a new alert)."
    ) in shown
    assert "reminder threshold after found" not in shown


def test_alerts_removed_endpoint_not_linked(
    serve_app: ServeApp,
    visitors: Visitors,  # noqa: F811
    alerted: Alerted,  # noqa: F811
    sessions: sessionmaker[Session],
    pki: Pki,
) -> None:
    owner = visitors.make(
        serve_app(), "owner@example.test", {alerted.inventory.web: "owner"}
    )
    expiry = alerted.alerts[f"expiry:{pki.leaf.sha256}"]
    with sessions.begin() as session:
        assert remove_endpoint(session, alerted.inventory.www)

    section = alert_section(owner.client.get("/alerts").text, expiry)

    assert f'href="/endpoints/{alerted.inventory.www}"' not in section
    assert "www.example.test" in text_of(section)
    assert f'href="/endpoints/{alerted.inventory.api}"' in section


def test_alerts_open_tab_states_evaluation_interval(
    serve_app: ServeApp,
    visitors: Visitors,  # noqa: F811
) -> None:
    visitor = visitors.make(serve_app(), "new@example.test", {})

    page = text_of(visitor.client.get("/alerts").text)

    assert EVALUATE_EVERY.total_seconds() == EVALUATION_INTERVAL_MINUTES * 60
    assert "No open alerts." in page
    assert "at most every 5 minutes" in page
    assert "appear within about 5 minutes" in page
