"""Endpoints that share a target and differ in the pinned address, on the pages.

One certificate, renewed for `lb.test`, is served by three local TLS
servers on one port at 127.0.0.21, .22 and .23, and the team watches
`lb.test:PORT` pinned to each. A fourth endpoint serves another
certificate. The monitor scans them for real, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker
from tests.certs import NOW, Issued, make_leaf
from tests.monitor.helpers import INTERVAL, Clock, Pki, pinned
from tests.servers import Chain, LocalServer, ServerOptions
from tests.web.conftest import ServeApp
from tests.web.helpers import scan_due
from tests.web.page_helpers import Visitor, Visitors, make_team, visitors  # noqa: F401
from tests.web.test_dashboard import endpoint_rows, timeline_rows

from certwatch.alerts.cycle import alert_after_cycle
from certwatch.alerts.evaluate import AlertSettings
from certwatch.alerts.settings import DeliverySettings
from certwatch.store.inventory import SourceSettings, upsert_endpoint

ADDRESSES = ("127.0.0.21", "127.0.0.22", "127.0.0.23")


@dataclass(frozen=True)
class PinnedInventory:
    """The team, its three pinned lb.test endpoints and the fourth one."""

    team: int
    port: int
    pinned_ids: tuple[int, ...]
    servers: list[LocalServer]
    shared: Issued
    other: Issued


def chain_of(pki: Pki, leaf: Issued) -> Chain:
    return Chain.from_pems(leaf.key_pem(), leaf.pem, pki.intermediate.pem)


def store_pinned(
    sessions: sessionmaker[Session], clock: Clock, name: str, port: int, address: str
) -> int:
    with sessions.begin() as session:
        stored = upsert_endpoint(
            session,
            pinned(name, port, address),
            now=clock(),
            settings=SourceSettings(team="web", interval=INTERVAL),
        )
        return stored.record.id


@pytest.fixture
def inventory(
    sessions: sessionmaker[Session],
    clock: Clock,
    pki: Pki,
    local_servers_on_one_port: Callable[..., list[LocalServer]],
    local_server: Callable[..., LocalServer],
) -> PinnedInventory:
    shared = make_leaf(
        pki.intermediate, dns_names=["lb.test"], not_after=NOW + timedelta(days=30)
    )
    other = make_leaf(
        pki.intermediate,
        dns_names=["www.example.test"],
        not_after=NOW + timedelta(days=40),
    )
    servers = local_servers_on_one_port(
        *(ServerOptions(chain=chain_of(pki, shared), host=a) for a in ADDRESSES)
    )
    other_server = local_server(chain=chain_of(pki, other))
    team = make_team(sessions, "web", clock)
    port = servers[0].port
    ids = tuple(store_pinned(sessions, clock, "lb.test", port, a) for a in ADDRESSES)
    store_pinned(sessions, clock, "www.example.test", other_server.port, "127.0.0.1")
    scan_due(sessions, clock, pki)
    return PinnedInventory(team, port, ids, servers, shared, other)


def member(
    serve_app: ServeApp,
    visitors: Visitors,  # noqa: F811
    inventory: PinnedInventory,
) -> Visitor:
    return visitors.make(serve_app(), "web@example.test", {inventory.team: "member"})


def test_dashboard_rows_show_pinned_address(
    serve_app: ServeApp,
    visitors: Visitors,  # noqa: F811
    inventory: PinnedInventory,
) -> None:
    user = member(serve_app, visitors, inventory)

    page = user.client.get("/dashboard")

    assert page.status_code == 200
    targets = sorted(row[0] for row in endpoint_rows(page.text))
    lb = f"lb.test:{inventory.port}"
    assert targets[:3] == [f"{lb} (at {address})" for address in ADDRESSES]
    assert targets[3].startswith("www.example.test:")
    assert targets[3].endswith(" (at 127.0.0.1)")


def test_endpoint_page_title_shows_pinned_address(
    serve_app: ServeApp,
    visitors: Visitors,  # noqa: F811
    inventory: PinnedInventory,
) -> None:
    user = member(serve_app, visitors, inventory)

    page = user.client.get(f"/endpoints/{inventory.pinned_ids[1]}")
    remove = user.client.get(f"/endpoints/{inventory.pinned_ids[1]}/remove")

    lb = f"lb.test:{inventory.port}"
    assert page.status_code == 200
    assert f"<title>Endpoint {lb} (at 127.0.0.22)" in page.text
    assert f"<code>{lb}</code> (at <code>127.0.0.22</code>)</h1>" in page.text
    assert remove.status_code == 200
    assert f"<title>Remove endpoint {lb} (at 127.0.0.22)" in remove.text


def test_certificates_page_places_show_address(
    serve_app: ServeApp,
    visitors: Visitors,  # noqa: F811
    inventory: PinnedInventory,
) -> None:
    user = member(serve_app, visitors, inventory)

    page = user.client.get("/certificates")

    assert page.status_code == 200
    for endpoint_id, address in zip(inventory.pinned_ids, ADDRESSES, strict=True):
        place = re.search(
            rf'<a href="/endpoints/{endpoint_id}">lb\.test:{inventory.port}</a>'
            rf' <span class="hint">at {re.escape(address)}</span>',
            page.text,
        )
        assert place is not None, address


def test_alerts_unreachable_place_shows_pinned_address(
    serve_app: ServeApp,
    visitors: Visitors,  # noqa: F811
    inventory: PinnedInventory,
    sessions: sessionmaker[Session],
    clock: Clock,
    pki: Pki,
) -> None:
    inventory.servers[2].close()
    clock.advance(INTERVAL)
    scan_due(sessions, clock, pki)
    alert_after_cycle(
        sessions,
        now_fn=clock,
        settings=AlertSettings(unreachable_after=1),
        delivery=DeliverySettings(),
    )
    user = member(serve_app, visitors, inventory)

    page = user.client.get("/alerts")

    assert page.status_code == 200
    assert "unreachable" in page.text
    place = re.search(
        rf'<a href="/endpoints/{inventory.pinned_ids[2]}">lb\.test:{inventory.port}'
        r'</a> <span class="hint">at <code>127\.0\.0\.23</code></span>',
        page.text,
    )
    assert place is not None, page.text


def test_dashboard_chart_counts_certificates_once(
    serve_app: ServeApp,
    visitors: Visitors,  # noqa: F811
    inventory: PinnedInventory,
) -> None:
    user = member(serve_app, visitors, inventory)

    page = user.client.get("/dashboard").text
    counts = timeline_rows(page)

    assert counts["28-34"]["Total"] == "1"
    assert counts["35-41"]["Total"] == "1"
    assert sum(int(row["Total"]) for row in counts.values()) == 2
    assert "2 certificates of the listed sources" in page
    svg = page.split('<div class="chart"', 1)[1].split("</svg>", 1)[0]
    bar_values = re.findall(r'<desc class="value">(\d+)</desc>', svg)
    assert sorted(int(value) for value in bar_values if value != "0") == [1, 1]


def test_dashboard_chart_keeps_failed_place_certificate(
    serve_app: ServeApp,
    visitors: Visitors,  # noqa: F811
    inventory: PinnedInventory,
    sessions: sessionmaker[Session],
    clock: Clock,
    pki: Pki,
) -> None:
    for server in inventory.servers:
        server.close()
    clock.advance(INTERVAL)
    scan_due(sessions, clock, pki)
    user = member(serve_app, visitors, inventory)

    page = user.client.get("/dashboard").text
    counts = timeline_rows(page)

    # Every lb.test address failed, so the shared certificate is known only
    # from the not_after the endpoints kept, and it still counts once.
    assert counts["28-34"]["Total"] == "1"
    assert counts["28-34"]["Unknown"] == "1"
    assert sum(int(row["Total"]) for row in counts.values()) == 2
