"""`changed` notices: one per change event, in the team's message, never resent.

Scans are recorded as a monitoring cycle records them (change detection,
observations, stale findings), with the clock moved by hand; the alerting
step runs as after a cycle and delivers to a real local HTTP receiver.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker
from tests.alerts.conftest import HttpReceiver, http_receiver  # noqa: F401
from tests.certs import Issued
from tests.monitor.test_alerting import (
    INTERMEDIATE,
    NOT_AFTER,
    SETTINGS,
    add_contact,
    add_endpoint,
    before_expiry,
    one_year_leaf,
)
from tests.store.builders import endpoint, network_result

from certwatch.alerts.cycle import alert_after_cycle
from certwatch.alerts.settings import DeliverySettings
from certwatch.monitor.changes import detect_changes
from certwatch.store.changes import insert_changes
from certwatch.store.observations import CompletedScan, record_observations
from certwatch.store.stale import record_stale_findings

NAME = "www.example.test"


def scan(
    sessions: sessionmaker[Session],
    endpoint_id: int,
    served: Sequence[tuple[str, Issued]],
    at: datetime,
) -> None:
    """Record one scan with its change events, as a monitoring cycle does."""
    results = tuple(
        network_result(endpoint(NAME), address, [leaf.der, INTERMEDIATE.der])
        for address, leaf in served
    )
    completed = CompletedScan(at, results, endpoint_id=endpoint_id)
    with sessions() as session:
        changes = detect_changes(session, [completed])
        record_observations(session, [completed])
        insert_changes(session, changes)
        record_stale_findings(session, [completed], now=at)
        session.commit()


def cycle(sessions: sessionmaker[Session], at: datetime) -> None:
    alert_after_cycle(
        sessions, now_fn=lambda: at, settings=SETTINGS, delivery=DeliverySettings()
    )


def changed_items(receiver: HttpReceiver) -> list[dict[str, Any]]:
    return [
        item
        for request in receiver.requests
        for item in request.json()["items"]
        if item["event"] == "changed"
    ]


def test_renewal_sends_one_changed_item(
    sessions: sessionmaker[Session],
    http_receiver: HttpReceiver,  # noqa: F811
) -> None:
    old = one_year_leaf(dns_names=[NAME])
    new = one_year_leaf(NOT_AFTER + timedelta(days=365), dns_names=[NAME])
    addresses = ["192.0.2.1", "192.0.2.2"]
    with sessions() as session:
        add_contact(session, "default", f"webhook:{http_receiver.url('/hook')}")
        endpoint_id = add_endpoint(session, NAME)
    at = before_expiry(10)
    scan(sessions, endpoint_id, [(a, old) for a in addresses], at)
    cycle(sessions, at)

    at += timedelta(hours=6)
    scan(sessions, endpoint_id, [(a, new) for a in addresses], at)
    cycle(sessions, at)
    # Restarted process, same store: the change is recorded as reported.
    at += timedelta(hours=6)
    scan(sessions, endpoint_id, [(a, new) for a in addresses], at)
    cycle(sessions, at)

    first, second = (request.json() for request in http_receiver.requests)
    assert [item["event"] for item in first["items"]] == ["expiring"]
    # One message for the cycle, with the change and the resolved expiry.
    assert [item["event"] for item in second["items"]] == ["changed", "resolved"]
    [changed] = changed_items(http_receiver)
    assert changed["fingerprint"] == old.sha256
    assert changed["new_fingerprint"] == new.sha256
    assert [place["address"] for place in changed["places"]] == addresses
    assert changed["severity"] == "info"


def test_alternating_certificates_send_no_repeats(
    sessions: sessionmaker[Session],
    http_receiver: HttpReceiver,  # noqa: F811
) -> None:
    first = one_year_leaf(NOT_AFTER + timedelta(days=200), dns_names=[NAME])
    second = one_year_leaf(NOT_AFTER + timedelta(days=300), dns_names=[NAME])
    with sessions() as session:
        add_contact(session, "default", f"webhook:{http_receiver.url('/hook')}")
        endpoint_id = add_endpoint(session, NAME)
    at = before_expiry(100)
    for step in range(6):
        leaf = second if step % 2 else first
        scan(sessions, endpoint_id, [("192.0.2.1", leaf)], at)
        cycle(sessions, at)
        at += timedelta(hours=1)

    # The second certificate appears once as a change; its returns and the
    # first certificate's returns within the change window are alternation.
    [changed] = changed_items(http_receiver)
    assert changed["new_fingerprint"] == second.sha256
    assert len(http_receiver.requests) == 1
