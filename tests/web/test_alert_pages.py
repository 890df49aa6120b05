"""The alerts page: listing by state, delivery status, acknowledge and snooze.

The alerts come from real scans of local TLS servers and a real alert
evaluation, 55 days after the first scan, when the test PKI's leaf has 5
days left. Its messages go to a local HTTP receiver and to a port where
nothing listens. Acknowledgements made on the page are compared with
those that `certwatch alerts ack` makes on the same store.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from click.testing import Result as CliResult
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker
from tests.alerts.conftest import HttpReceiver, http_receiver  # noqa: F401
from tests.monitor.helpers import Clock, Pki
from tests.servers import LocalServer, closed_port
from tests.web.conftest import ServeApp
from tests.web.helpers import scan_due
from tests.web.page_helpers import (  # noqa: F401
    Inventory,
    Visitor,
    Visitors,
    build_inventory,
    visitors,
)

from certwatch.alerts.cycle import alert_after_cycle
from certwatch.alerts.evaluate import AlertSettings
from certwatch.alerts.settings import DeliverySettings
from certwatch.cli import cli
from certwatch.store.alerts import add_contact, newest_threshold
from certwatch.store.models import AlertRow
from certwatch.web.alert_pages import threshold_text

StartServer = Callable[..., LocalServer]

SECRET_PATH = "/hooks/T0KEN-s3cret-value"
ALERT_HEADING = re.compile(r'id="alert-(\d+)-title"')


@dataclass(frozen=True)
class Alerted:
    """The inventory after alerting, with the ids of web's alerts by identity."""

    inventory: Inventory
    alerts: dict[str, int]


@pytest.fixture
def alerted(
    sessions: sessionmaker[Session],
    clock: Clock,
    pki: Pki,
    local_server: StartServer,
    tmp_path: Path,
    http_receiver: HttpReceiver,  # noqa: F811
) -> Iterator[Alerted]:
    """Team web has alerts about pki.leaf and pki.other, each sent to two contacts.

    One webhook reaches the receiver; the other points at a closed port,
    so its delivery is being retried.
    """
    inventory = build_inventory(sessions, clock, pki, local_server, tmp_path)
    with closed_port() as down:
        with sessions.begin() as session:
            for url in (http_receiver.url(SECRET_PATH), f"http://127.0.0.1:{down}/x/y"):
                add_contact(
                    session,
                    inventory.web,
                    kind="webhook",
                    address=url,
                    escalation=False,
                    now=clock(),
                )
        clock.advance(timedelta(days=55))
        scan_due(sessions, clock, pki)
        alert_after_cycle(
            sessions,
            now_fn=clock,
            settings=AlertSettings(),
            delivery=DeliverySettings(),
        )
    with sessions() as session:
        rows = session.execute(
            select(AlertRow.identity, AlertRow.id).where(
                AlertRow.team_id == inventory.web
            )
        ).all()
    yield Alerted(inventory, {identity: alert_id for identity, alert_id in rows})


def alert_ids(text: str) -> list[int]:
    return [int(found) for found in ALERT_HEADING.findall(text)]


def stored(sessions: sessionmaker[Session], alert_id: int) -> AlertRow:
    with sessions() as session:
        row = session.get(AlertRow, alert_id)
        assert row is not None
        session.expunge(row)
    return row


def web_visitor(
    serve_app: ServeApp, users: Visitors, alerted: Alerted, role: str
) -> Visitor:
    """Serve the pages and log in `ROLE@example.test` with `role` in team web."""
    base_url = serve_app()
    return users.make(base_url, f"{role}@example.test", {alerted.inventory.web: role})


def acknowledgement(row: AlertRow) -> tuple[str | None, datetime | None, str | None]:
    return (row.acknowledged_threshold, row.acknowledged_until, row.acknowledged_by)


def assert_not_acknowledged(sessions: sessionmaker[Session], alert_id: int) -> None:
    row = stored(sessions, alert_id)
    assert row.acknowledged_threshold is None
    assert row.acknowledged_until is None


def ack_on_web_then_cli(
    sessions: sessionmaker[Session],
    database_url: str,
    alert_id: int,
    web_ack: Callable[[], httpx.Response],
    *cli_options: str,
) -> tuple[httpx.Response, AlertRow, AlertRow, CliResult]:
    """Acknowledge on the web, clear that, then acknowledge with `alerts ack`.

    Returns the web response, the stored alert after each acknowledgement,
    and the CLI's outcome.
    """
    response = web_ack()
    by_web = stored(sessions, alert_id)
    with sessions.begin() as session:
        session.execute(
            update(AlertRow)
            .where(AlertRow.id == alert_id)
            .values(
                acknowledged_threshold=None,
                acknowledged_until=None,
                acknowledged_by=None,
            )
        )
    outcome = run_certwatch(database_url, "alerts", "ack", str(alert_id), *cli_options)
    return response, by_web, stored(sessions, alert_id), outcome


def run_certwatch(database_url: str, *args: str) -> CliResult:
    return CliRunner().invoke(
        cli, list(args), env={"CERTWATCH_DATABASE_URL": database_url}
    )


def test_alerts_list_with_deliveries(
    serve_app: ServeApp,
    visitors: Visitors,  # noqa: F811
    alerted: Alerted,
    pki: Pki,
) -> None:
    viewer = web_visitor(serve_app, visitors, alerted, "viewer")
    expiry = alerted.alerts[f"expiry:{pki.leaf.sha256}"]

    page = viewer.client.get("/alerts")
    text = html.unescape(page.text)

    assert page.status_code == 200
    assert set(alert_ids(page.text)) == set(alerted.alerts.values())
    section = text.split(f'id="alert-{expiry}"', 1)[1].split("</section>", 1)[0]
    assert f'href="/endpoints/{alerted.inventory.www}"' in section
    assert f'href="/endpoints/{alerted.inventory.api}"' in section
    assert f'href="/certificates/{pki.leaf.sha256}"' in section
    assert "Critical" in section
    assert "days before not_after" in section
    assert "Delivered" in section
    assert "Retrying" in section
    assert "connection" in section.lower()
    assert "webhook:http://127.0.0.1:" in section
    assert "T0KEN" not in page.text
    assert "s3cret" not in page.text
    # A viewer sees no buttons.
    assert "/acknowledge" not in page.text
    assert "/snooze" not in page.text


def test_alerts_hidden_from_other_team(
    serve_app: ServeApp,
    visitors: Visitors,  # noqa: F811
    alerted: Alerted,
    sessions: sessionmaker[Session],
) -> None:
    base_url = serve_app()
    outsider = visitors.make(
        base_url, "ops@example.test", {alerted.inventory.ops: "owner"}
    )
    alert_id = next(iter(alerted.alerts.values()))
    before = stored(sessions, alert_id)

    pages = [
        outsider.client.get(f"/alerts?state={state}")
        for state in ("open", "acknowledged", "resolved")
    ]
    filtered = outsider.client.get(f"/alerts?team={alerted.inventory.web}")
    acknowledged = outsider.post(f"/alerts/{alert_id}/acknowledge", {})
    snoozed = outsider.post(f"/alerts/{alert_id}/snooze", {"until": "2030-01-01"})

    for page in pages:
        assert page.status_code == 200
        # Team ops has its own alert: ops.example.test serves a certificate
        # for other names.
        assert not set(alert_ids(page.text)) & set(alerted.alerts.values())
        assert "www.example.test:" not in page.text
    assert filtered.status_code == 404
    assert acknowledged.status_code == 404
    assert snoozed.status_code == 404
    after = stored(sessions, alert_id)
    assert after.acknowledged_threshold == before.acknowledged_threshold
    assert after.acknowledged_until == before.acknowledged_until


def test_alert_acknowledge_like_cli(
    serve_app: ServeApp,
    visitors: Visitors,  # noqa: F811
    alerted: Alerted,
    sessions: sessionmaker[Session],
    database_url: str,
    pki: Pki,
) -> None:
    member = web_visitor(serve_app, visitors, alerted, "member")
    alert_id = alerted.alerts[f"expiry:{pki.leaf.sha256}"]
    with sessions() as session:
        threshold = newest_threshold(session, alert_id)
    assert threshold is not None

    response, by_web, by_cli, cli_outcome = ack_on_web_then_cli(
        sessions,
        database_url,
        alert_id,
        lambda: member.post(f"/alerts/{alert_id}/acknowledge", {"state": "open"}),
        "--by",
        member.email,
    )

    assert response.status_code == 303
    assert response.headers["location"] == f"/alerts?state=acknowledged&done={alert_id}"
    assert cli_outcome.exit_code == 0, cli_outcome.output
    assert by_web.acknowledged_threshold == threshold
    assert by_web.acknowledged_until is None
    assert by_web.acknowledged_by == member.email
    assert acknowledgement(by_web) == acknowledgement(by_cli)
    shown = member.client.get(response.headers["location"])
    notice = html.unescape(shown.text)
    assert (
        f"Alert {alert_id} is acknowledged by {member.email}: no more reminders "
        "are sent until the certificate crosses the next threshold after"
    ) in notice
    assert f"after “{threshold_text(threshold)}”, such as fewer days left" in notice
    assert alert_id in alert_ids(shown.text)
    assert alert_id not in alert_ids(member.client.get("/alerts").text)


def test_alert_snooze_like_cli(
    serve_app: ServeApp,
    visitors: Visitors,  # noqa: F811
    alerted: Alerted,
    sessions: sessionmaker[Session],
    database_url: str,
    pki: Pki,
) -> None:
    owner = web_visitor(serve_app, visitors, alerted, "owner")
    alert_id = alerted.alerts[f"expiry:{pki.leaf.sha256}"]

    response, by_web, by_cli, cli_outcome = ack_on_web_then_cli(
        sessions,
        database_url,
        alert_id,
        lambda: owner.post(f"/alerts/{alert_id}/snooze", {"until": "2030-01-10"}),
        "--until",
        "2030-01-10",
        "--by",
        owner.email,
    )

    assert response.status_code == 303
    assert cli_outcome.exit_code == 0, cli_outcome.output
    assert by_web.acknowledged_until == datetime(2030, 1, 10, tzinfo=UTC)
    assert by_web.acknowledged_threshold is None
    assert acknowledgement(by_web) == acknowledgement(by_cli)
    shown = owner.client.get(response.headers["location"])
    assert f"Alert {alert_id} is acknowledged until 2030-01-10 00:00 UTC" in shown.text


@pytest.mark.parametrize(
    ("until", "message"),
    [
        ("soon", "Invalid date 'soon': give a date such as"),
        ("2026-06-02", "'2026-06-02' is not in the future"),
        ("", "Invalid date '': give a date such as"),
    ],
)
def test_alert_snooze_invalid_date(
    serve_app: ServeApp,
    visitors: Visitors,  # noqa: F811
    alerted: Alerted,
    sessions: sessionmaker[Session],
    until: str,
    message: str,
) -> None:
    owner = web_visitor(serve_app, visitors, alerted, "owner")
    alert_id = next(iter(alerted.alerts.values()))

    response = owner.post(f"/alerts/{alert_id}/snooze", {"until": until})

    assert response.status_code == 400
    assert message in html.unescape(response.text)
    assert stored(sessions, alert_id).acknowledged_until is None


def test_alert_viewer_cannot_post(
    serve_app: ServeApp,
    visitors: Visitors,  # noqa: F811
    alerted: Alerted,
    sessions: sessionmaker[Session],
) -> None:
    viewer = web_visitor(serve_app, visitors, alerted, "viewer")
    alert_id = next(iter(alerted.alerts.values()))

    acknowledged = viewer.post(f"/alerts/{alert_id}/acknowledge", {})
    snoozed = viewer.post(f"/alerts/{alert_id}/snooze", {"until": "2030-01-01"})

    assert acknowledged.status_code == 403
    assert snoozed.status_code == 403
    assert "This needs the member role in the team." in acknowledged.text
    assert_not_acknowledged(sessions, alert_id)


def test_alert_post_without_csrf(
    serve_app: ServeApp,
    visitors: Visitors,  # noqa: F811
    alerted: Alerted,
    sessions: sessionmaker[Session],
) -> None:
    owner = web_visitor(serve_app, visitors, alerted, "owner")
    alert_id = next(iter(alerted.alerts.values()))

    missing = owner.client.post(
        f"/alerts/{alert_id}/acknowledge", data={"state": "open"}
    )
    wrong = owner.client.post(
        f"/alerts/{alert_id}/snooze",
        data={"csrf_token": "0" * 64, "until": "2030-01-01"},
    )

    assert missing.status_code == 403
    assert wrong.status_code == 403
    assert "did not come from this site" in wrong.text
    assert wrong.headers["content-type"].startswith("text/html")
    assert_not_acknowledged(sessions, alert_id)


def test_alert_resolved_cannot_be_acknowledged(
    serve_app: ServeApp,
    visitors: Visitors,  # noqa: F811
    alerted: Alerted,
    sessions: sessionmaker[Session],
    clock: Clock,
) -> None:
    alert_id = next(iter(alerted.alerts.values()))
    with sessions.begin() as session:
        session.execute(
            update(AlertRow).where(AlertRow.id == alert_id).values(resolved_at=clock())
        )
    owner = web_visitor(serve_app, visitors, alerted, "owner")

    resolved = owner.client.get("/alerts?state=resolved")
    response = owner.post(f"/alerts/{alert_id}/acknowledge", {"state": "resolved"})
    invalid = owner.client.get("/alerts?state=closed")

    assert alert_ids(resolved.text) == [alert_id]
    assert "/acknowledge" not in resolved.text
    assert response.status_code == 409
    assert f"Alert {alert_id} was resolved on" in response.text
    assert invalid.status_code == 400
    assert "choose one of open, acknowledged, resolved" in invalid.text
    row = stored(sessions, alert_id)
    assert row.acknowledged_threshold is None


def test_alert_huge_id_404(
    serve_app: ServeApp,
    visitors: Visitors,  # noqa: F811
    alerted: Alerted,
) -> None:
    owner = web_visitor(serve_app, visitors, alerted, "owner")

    for alert_id in ("99999999999999999999999", "0", "-1", "abc"):
        response = owner.post(f"/alerts/{alert_id}/acknowledge", {})
        assert response.status_code == 404, alert_id
