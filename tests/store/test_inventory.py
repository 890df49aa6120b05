"""Teams, endpoints and file sources: upserts, listings, removal, export."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from tests.store.builders import LATER, NOW, endpoint, make_pki, network_result

from certwatch.store.database import create_store_engine, upgrade
from certwatch.store.errors import StoreError
from certwatch.store.export import export_inventory, import_inventory
from certwatch.store.inventory import (
    DEFAULT_INTERVAL,
    InventoryFilter,
    SourceSettings,
    list_endpoints,
    list_file_sources,
    list_teams,
    remove_endpoint,
    remove_file_source,
    upsert_endpoint,
    upsert_file_source,
)
from certwatch.store.models import EndpointRow, EndpointTagRow, ObservationRow
from certwatch.store.observations import CompletedScan, record_observations
from certwatch.targets import apply_overrides


def test_upsert_endpoint_twice_updates_one_row(session: Session) -> None:
    first = upsert_endpoint(
        session,
        endpoint("www.example.test"),
        now=NOW,
        settings=SourceSettings(tags=["web", "prod"]),
    )
    second = upsert_endpoint(
        session,
        endpoint("https://www.example.test/health"),
        now=LATER,
        settings=SourceSettings(
            team="payments", tags=["web"], interval=timedelta(minutes=30)
        ),
    )
    session.commit()

    assert first.created is True
    assert second.created is False
    assert second.record.id == first.record.id
    assert session.scalar(select(func.count()).select_from(EndpointRow)) == 1
    assert second.record.endpoint.target == "https://www.example.test/health"
    assert second.record.team == "payments"
    assert second.record.tags == ("web",)
    assert second.record.interval == timedelta(minutes=30)
    assert second.record.schedule.next_scan_at == NOW


def test_upsert_endpoint_keeps_unset_settings(session: Session) -> None:
    upsert_endpoint(
        session,
        endpoint(),
        now=NOW,
        settings=SourceSettings(
            team="payments", tags=["web"], enabled=False, notes="behind the WAF"
        ),
    )

    again = upsert_endpoint(session, endpoint(), now=LATER).record

    assert again.team == "payments"
    assert again.tags == ("web",)
    assert again.enabled is False
    assert again.notes == "behind the WAF"


def test_upsert_endpoint_defaults(session: Session) -> None:
    record = upsert_endpoint(session, endpoint("192.0.2.7:8443"), now=NOW).record

    assert record.team == "default"
    assert record.tags == ()
    assert record.interval == DEFAULT_INTERVAL
    assert record.enabled is True
    assert record.endpoint.server_name is None
    assert record.endpoint.address is None
    assert record.schedule.consecutive_failures == 0
    assert record.schedule.last_scanned_at is None


def test_upsert_endpoint_pinned_address_is_distinct(session: Session) -> None:
    plain = endpoint()
    pinned = apply_overrides(plain, {("www.example.test", 443): "127.0.0.1"})

    upsert_endpoint(session, plain, now=NOW)
    record = upsert_endpoint(session, pinned, now=NOW).record

    assert record.endpoint.address == "127.0.0.1"
    assert len(list_endpoints(session)) == 2


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (SourceSettings(tags=[" "]), "Invalid tag ' '"),
        (SourceSettings(team=""), "Invalid team name ''"),
        (SourceSettings(interval=timedelta(0)), "Invalid scan interval"),
    ],
)
def test_upsert_endpoint_rejects(
    session: Session, settings: SourceSettings, message: str
) -> None:
    with pytest.raises(StoreError, match=message):
        upsert_endpoint(session, endpoint(), now=NOW, settings=settings)


def test_list_endpoints_filters(session: Session) -> None:
    upsert_endpoint(
        session,
        endpoint("www.example.test"),
        now=NOW,
        settings=SourceSettings(team="web", tags=["prod", "public"]),
    )
    upsert_endpoint(
        session,
        endpoint("mail.example.test:465"),
        now=NOW,
        settings=SourceSettings(team="mail", tags=["prod"], enabled=False),
    )
    upsert_endpoint(session, endpoint("dev.example.test"), now=NOW)

    def hosts(filters: InventoryFilter) -> list[str]:
        return [r.endpoint.host for r in list_endpoints(session, filters)]

    assert hosts(InventoryFilter()) == [
        "dev.example.test",
        "mail.example.test",
        "www.example.test",
    ]
    assert hosts(InventoryFilter(tags=("prod",))) == [
        "mail.example.test",
        "www.example.test",
    ]
    assert hosts(InventoryFilter(tags=("prod", "public"))) == ["www.example.test"]
    assert hosts(InventoryFilter(team="mail")) == ["mail.example.test"]
    assert hosts(InventoryFilter(enabled=False)) == ["mail.example.test"]
    assert hosts(InventoryFilter(search="DEV.")) == ["dev.example.test"]
    assert list_teams(session) == ["default", "mail", "web"]


def test_remove_endpoint_by_identity_and_id(session: Session) -> None:
    www = upsert_endpoint(
        session, endpoint(), now=NOW, settings=SourceSettings(tags=["web"])
    ).record
    mail = upsert_endpoint(session, endpoint("mail.example.test"), now=NOW).record
    pki = make_pki()
    scan = CompletedScan(
        scanned_at=NOW,
        results=(network_result(www.endpoint, "192.0.2.1", [pki.leaf.der]),),
        endpoint_id=www.id,
    )
    record_observations(session, [scan])
    session.commit()

    assert remove_endpoint(session, endpoint()) is True
    assert remove_endpoint(session, mail.id) is True
    assert remove_endpoint(session, mail.id) is False
    session.commit()

    assert list_endpoints(session) == []
    assert session.scalar(select(func.count()).select_from(ObservationRow)) == 0
    assert session.scalar(select(func.count()).select_from(EndpointTagRow)) == 0


def test_file_source_upsert_list_remove(session: Session) -> None:
    first = upsert_file_source(session, "/etc/ssl/site.pem", now=NOW)
    second = upsert_file_source(
        session,
        "/etc/ssl/site.pem",
        now=LATER,
        settings=SourceSettings(tags=["disk"], team="ops"),
    )
    upsert_file_source(session, "/srv/keystores", now=NOW)

    assert first.created is True
    assert second.created is False
    assert second.record.tags == ("disk",)
    assert [s.path for s in list_file_sources(session)] == [
        "/etc/ssl/site.pem",
        "/srv/keystores",
    ]
    assert [
        s.path for s in list_file_sources(session, InventoryFilter(team="ops"))
    ] == ["/etc/ssl/site.pem"]
    assert remove_file_source(session, "/srv/keystores") is True
    assert remove_file_source(session, first.record.id) is True
    assert list_file_sources(session) == []


def test_export_import_round_trip(session: Session, tmp_path: Path) -> None:
    pinned = apply_overrides(endpoint(), {("www.example.test", 443): "127.0.0.1"})
    upsert_endpoint(
        session,
        pinned,
        now=NOW,
        settings=SourceSettings(
            team="web",
            tags=["prod"],
            interval=timedelta(minutes=15),
            notes="canary",
        ),
    )
    upsert_endpoint(
        session,
        endpoint("[2001:db8::1]:8443"),
        now=NOW,
        settings=SourceSettings(enabled=False),
    )
    upsert_file_source(
        session, "/etc/ssl/site.pem", now=NOW, settings=SourceSettings(tags=["disk"])
    )
    session.commit()
    exported = export_inventory(session)

    other = create_store_engine(f"sqlite:///{tmp_path / 'copy.db'}")
    try:
        upgrade(other)
        with Session(other) as copy:
            counts = import_inventory(copy, exported, now=LATER)
            again = import_inventory(copy, exported, now=LATER)
            copy.commit()
            rebuilt = export_inventory(copy)
    finally:
        other.dispose()

    assert counts.created == 3
    assert again.created == 0
    assert again.updated == 3
    assert rebuilt == exported
    assert exported["teams"] == ["default", "web"]
    assert exported["endpoints"][1]["address"] == "127.0.0.1"


def test_import_inventory_rejects_unknown_version(session: Session) -> None:
    with pytest.raises(StoreError, match="Unsupported inventory version 7"):
        import_inventory(session, {"version": 7}, now=NOW)


def test_import_inventory_rejects_bad_port(session: Session) -> None:
    document = {
        "version": 1,
        "endpoints": [{"target": "x", "host": "x.example.test", "port": 0}],
    }

    with pytest.raises(StoreError, match="Invalid port 0"):
        import_inventory(session, document, now=NOW)

    assert list_endpoints(session) == []
