"""Teams, endpoints and file sources: upserts, listings, removal, export."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from tests.store.builders import LATER, NOW, endpoint, make_pki, network_result

from certwatch.store.alerts import (
    add_contact,
    list_contacts,
    team_summaries,
    update_team_settings,
)
from certwatch.store.database import create_store_engine, upgrade
from certwatch.store.errors import StoreError
from certwatch.store.export import (
    InventoryImportError,
    export_inventory,
    import_inventory,
)
from certwatch.store.inventory import (
    InventoryFilter,
    SourceSettings,
    ensure_team,
    list_endpoints,
    list_file_sources,
    list_teams,
    remove_endpoint,
    remove_file_source,
    upsert_endpoint,
    upsert_file_source,
)
from certwatch.store.models import EndpointRow, EndpointTagRow, ObservationRow, TeamRow
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
    assert record.interval is None
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
        session,
        "/etc/ssl/site.pem",
        now=NOW,
        settings=SourceSettings(tags=["disk"], reminders="20,5"),
    )
    ops = ensure_team(session, "ops", now=NOW)
    update_team_settings(
        session, ops, reminder_schedule="60,30", escalate_after=timedelta(hours=4)
    )
    session.get_one(TeamRow, ops).endpoint_limit = 50
    add_contact(
        session,
        ops,
        kind="webhook",
        address="https://hooks.example.test/secret-token",
        escalation=True,
        now=NOW,
    )
    add_contact(
        session,
        ops,
        kind="email",
        address="ops@example.test",
        escalation=False,
        now=NOW,
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
    assert [team["name"] for team in exported["teams"]] == ["default", "ops", "web"]
    assert exported["teams"][1] == {
        "name": "ops",
        "reminders": "60,30",
        "escalate_after_seconds": 4 * 3600,
        "endpoint_limit": 50,
        "contacts": [
            {
                "kind": "webhook",
                "address": "https://hooks.example.test/secret-token",
                "escalation": True,
            },
            {"kind": "email", "address": "ops@example.test", "escalation": False},
        ],
    }
    assert exported["endpoints"][1]["address"] == "127.0.0.1"
    assert exported["endpoints"][0]["interval_seconds"] is None
    assert exported["file_sources"][0]["reminders"] == "20,5"


def test_import_inventory_rejects_unknown_version(session: Session) -> None:
    with pytest.raises(StoreError, match="Unsupported inventory version 7"):
        import_inventory(session, {"version": 7}, now=NOW)


def test_import_inventory_updates_existing_team(session: Session) -> None:
    ops = ensure_team(session, "ops", now=NOW)
    add_contact(
        session,
        ops,
        kind="email",
        address="ops@example.test",
        escalation=False,
        now=NOW,
    )
    document = {
        "version": 2,
        "teams": [
            {
                "name": "ops",
                "reminders": "10",
                "escalate_after_seconds": 3600,
                "endpoint_limit": None,
                "contacts": [
                    {
                        "kind": "email",
                        "address": "ops@example.test",
                        "escalation": True,
                    },
                    {"kind": "slack", "address": "https://hooks.slack.example.test/x"},
                ],
            }
        ],
    }

    import_inventory(session, document, now=NOW)
    import_inventory(session, document, now=NOW)

    [summary] = [team for team in team_summaries(session) if team.name == "ops"]
    contacts = list_contacts(session, ops)
    assert summary.reminder_schedule == "10"
    assert summary.escalate_after == timedelta(hours=1)
    assert [(c.kind, c.address, c.escalation) for c in contacts] == [
        ("email", "ops@example.test", True),
        ("slack", "https://hooks.slack.example.test/x", False),
    ]


def test_import_inventory_lists_every_bad_entry(session: Session) -> None:
    document = {
        "version": 2,
        "teams": [
            {"name": "ops", "contacts": [{"kind": "fax", "address": "123"}]},
            {"name": "web", "escalate_after_seconds": 0},
        ],
        "endpoints": [
            {"target": "x", "host": "x.example.test", "port": 0},
            {"target": "y", "host": "y.example.test", "port": 443, "team": "web"},
        ],
        "file_sources": [{"path": "relative.pem", "team": "ops"}],
    }

    with pytest.raises(InventoryImportError) as caught:
        import_inventory(session, document, now=NOW)

    problems = caught.value.problems
    assert len(problems) == 4
    assert problems[0].startswith("teams[0]: ")
    assert problems[1].startswith("teams[1]: Invalid escalate_after_seconds 0")
    assert problems[2].startswith("endpoints[0]: Invalid port 0")
    assert problems[3].startswith("file_sources[0]: Invalid file source path")
    assert list_teams(session) == ["default"]
    assert list_endpoints(session) == []


def test_import_inventory_rejects_bad_port(session: Session) -> None:
    document = {
        "version": 1,
        "endpoints": [{"target": "x", "host": "x.example.test", "port": 0}],
    }

    with pytest.raises(StoreError, match="Invalid port 0"):
        import_inventory(session, document, now=NOW)

    assert list_endpoints(session) == []
