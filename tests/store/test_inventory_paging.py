"""Listings for the dashboard: team-id filters, offsets and undated-first order."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from tests.store.builders import (
    NOW,
    endpoint,
    failed_result,
    make_pki,
    network_result,
)

from certwatch.probe.model import ErrorReason
from certwatch.store.inventory import (
    InventoryFilter,
    SourceSettings,
    count_endpoints,
    ensure_team,
    filter_endpoints,
    list_endpoints,
    list_file_sources,
    upsert_endpoint,
    upsert_file_source,
)
from certwatch.store.models import EndpointRow
from certwatch.store.observations import CompletedScan, record_observations


def _add(session: Session, text: str, team: str = "default") -> int:
    stored = upsert_endpoint(
        session, endpoint(text), now=NOW, settings=SourceSettings(team=team)
    )
    return stored.record.id


def _hosts(session: Session, filters: InventoryFilter, **options: object) -> list[str]:
    records = list_endpoints(session, filters, **options)  # type: ignore[arg-type]
    return [record.endpoint.host for record in records]


def test_team_ids_filter(session: Session) -> None:
    _add(session, "a.example.test", "web")
    _add(session, "b.example.test", "mail")
    _add(session, "c.example.test")
    web = ensure_team(session, "web", now=NOW)
    mail = ensure_team(session, "mail", now=NOW)
    session.commit()

    assert _hosts(session, InventoryFilter(team_ids=(web,))) == ["a.example.test"]
    assert _hosts(session, InventoryFilter(team_ids=(web, mail))) == [
        "a.example.test",
        "b.example.test",
    ]
    assert _hosts(session, InventoryFilter(team_ids=())) == []
    assert count_endpoints(session, InventoryFilter(team_ids=())) == 0
    assert count_endpoints(session, InventoryFilter(team_ids=None)) == 3


def test_list_endpoints_offset_and_limit(session: Session) -> None:
    for number in range(7):
        _add(session, f"host{number}.example.test")
    session.commit()

    page = _hosts(session, InventoryFilter(), limit=3, offset=3)
    rest = _hosts(session, InventoryFilter(), offset=6)

    assert page == ["host3.example.test", "host4.example.test", "host5.example.test"]
    assert rest == ["host6.example.test"]


def test_list_endpoints_undated_first(session: Session) -> None:
    pki = make_pki()
    dated = _add(session, "dated.example.test")
    later = _add(session, "later.example.test")
    down = _add(session, "down.example.test")
    _add(session, "new.example.test")
    scans = [
        CompletedScan(
            NOW,
            (
                network_result(
                    endpoint("dated.example.test"), "192.0.2.1", [pki.leaf.der]
                ),
            ),
            endpoint_id=dated,
        ),
        CompletedScan(
            NOW,
            (
                network_result(
                    endpoint("later.example.test"), "192.0.2.2", [pki.renewed.der]
                ),
            ),
            endpoint_id=later,
        ),
        CompletedScan(
            NOW,
            (
                failed_result(
                    endpoint("down.example.test"),
                    "192.0.2.3",
                    ErrorReason.TIMEOUT,
                    "timed out",
                ),
            ),
            endpoint_id=down,
        ),
    ]
    record_observations(session, scans)
    session.commit()
    assert pki.leaf.cert.not_valid_after_utc < pki.renewed.cert.not_valid_after_utc

    first = _hosts(session, InventoryFilter(), by_expiry=True, undated_first=True)
    last = _hosts(session, InventoryFilter(), by_expiry=True)

    assert first == [
        "down.example.test",
        "new.example.test",
        "dated.example.test",
        "later.example.test",
    ]
    assert last == [
        "dated.example.test",
        "later.example.test",
        "down.example.test",
        "new.example.test",
    ]


def test_list_file_sources_offset_undated_first(session: Session) -> None:
    for name in ("a.pem", "b.pem", "c.pem"):
        upsert_file_source(session, f"/certs/{name}", now=NOW)
    session.commit()

    paths = [
        record.path
        for record in list_file_sources(
            session, by_expiry=True, undated_first=True, limit=1, offset=1
        )
    ]

    assert paths == ["/certs/b.pem"]


def test_filter_endpoints_on_aggregate(session: Session) -> None:
    _add(session, "a.example.test", "web")
    _add(session, "b.example.test", "web")
    _add(session, "c.example.test")
    web = ensure_team(session, "web", now=NOW)
    session.commit()
    aggregate = select(func.count(EndpointRow.id))

    counted = session.scalar(
        filter_endpoints(aggregate, InventoryFilter(team_ids=(web,)))
    )

    assert counted == 2
