"""Endpoints per team: two teams may watch the same endpoint, each its own."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import MetaData, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from tests.store.builders import LATER, NOW, endpoint

from certwatch.store.database import create_store_engine, upgrade
from certwatch.store.errors import StoreError
from certwatch.store.export import export_inventory, import_inventory
from certwatch.store.inventory import (
    MAX_TAGS,
    AmbiguousEndpointError,
    SourceSettings,
    ensure_team,
    list_endpoints,
    normalize_tags,
    upsert_endpoint,
)
from certwatch.store.models import EndpointRow


def add(session: Session, team: str | None, *, team_only: bool = True) -> int:
    stored = upsert_endpoint(
        session,
        endpoint("www.example.test"),
        now=NOW,
        settings=SourceSettings(team=team),
        team_only=team_only,
    )
    return stored.record.id


def teams_of_rows(session: Session) -> list[str]:
    return sorted(record.team for record in list_endpoints(session))


def test_upsert_endpoint_team_only_keeps_other_teams(session: Session) -> None:
    alpha = add(session, "alpha")

    beta = add(session, "beta")
    again = upsert_endpoint(
        session,
        endpoint("https://www.example.test/health"),
        now=LATER,
        settings=SourceSettings(team="beta", tags=["shop"]),
        team_only=True,
    )

    assert beta != alpha
    assert again.record.id == beta
    assert again.created is False
    assert teams_of_rows(session) == ["alpha", "beta"]
    assert [r.tags for r in list_endpoints(session)] in (
        [(), ("shop",)],
        [("shop",), ()],
    )


def test_upsert_endpoint_team_only_default_team(session: Session) -> None:
    add(session, "alpha")

    stored = upsert_endpoint(
        session, endpoint("www.example.test"), now=NOW, team_only=True
    )

    assert stored.created is True
    assert stored.record.team == "default"


def test_upsert_endpoint_moves_from_one_other_team(session: Session) -> None:
    alpha = add(session, "alpha")

    moved = add(session, "beta", team_only=False)

    assert moved == alpha
    assert teams_of_rows(session) == ["beta"]


def test_upsert_endpoint_without_team_updates_the_one(session: Session) -> None:
    alpha = add(session, "alpha")

    updated = add(session, None, team_only=False)

    assert updated == alpha
    assert teams_of_rows(session) == ["alpha"]


def test_upsert_endpoint_several_teams_ambiguous(session: Session) -> None:
    add(session, "alpha")
    beta = add(session, "beta")

    with pytest.raises(AmbiguousEndpointError, match="several teams") as unnamed:
        add(session, None, team_only=False)
    with pytest.raises(AmbiguousEndpointError, match="but not by 'gamma'") as other:
        add(session, "gamma", team_only=False)
    named = add(session, "beta", team_only=False)

    assert unnamed.value.teams == ("alpha", "beta")
    assert other.value.teams == ("alpha", "beta")
    assert named == beta
    assert teams_of_rows(session) == ["alpha", "beta"]


def test_import_keeps_same_endpoint_of_two_teams(session: Session) -> None:
    add(session, "alpha")
    add(session, "beta")
    document = export_inventory(session)

    counts = import_inventory(session, document, now=LATER)

    assert (counts.created, counts.updated) == (0, 2)
    assert teams_of_rows(session) == ["alpha", "beta"]
    assert len(document["endpoints"]) == 2


@pytest.mark.parametrize(
    ("tag", "message"),
    [
        ("x\x00y", r"Invalid tag 'x\\x00y': use only letters"),
        ("\x1b[31mred", r"Invalid tag '\\x1b\[31mred'"),
        ("bell\x07", "Invalid tag"),
        ("a\u202eb", r"Invalid tag 'a\\u202eb'"),
        ("a;b", "Invalid tag 'a;b'"),
        ("a,b", "Invalid tag 'a,b'"),
        ("x" * 101, "give 1 to 100 characters"),
    ],
)
def test_normalize_tags_rejects(tag: str, message: str) -> None:
    with pytest.raises(StoreError, match=message):
        normalize_tags([tag])


def test_normalize_tags_accepts_words_of_any_script() -> None:
    tags = [
        "prod",
        "team-web",
        "eu_west.1",
        "ops@example",
        "a/b",
        "R&D",
        "env=prod",
        "+x",
        "Zürich",
        "東京",
    ]

    assert normalize_tags(tags) == tuple(sorted(tags))


def test_normalize_tags_limits_count() -> None:
    many = [f"tag{i}" for i in range(MAX_TAGS + 1)]

    assert len(normalize_tags(many[:MAX_TAGS])) == MAX_TAGS
    with pytest.raises(StoreError, match="give at most 20 tags"):
        normalize_tags(many)


def test_upgrade_to_0008_allows_same_endpoint_per_team(
    empty_database_url: str,
) -> None:
    """Revision 0008 keeps the rows and makes endpoints unique per team."""
    upgrade(empty_database_url, "0007")
    engine = create_store_engine(empty_database_url)
    seen = datetime(2026, 12, 1, tzinfo=UTC)
    row = {
        "interval_seconds": 3600,
        "enabled": True,
        "notes": "",
        "created_at": seen,
        "updated_at": seen,
        "next_scan_at": seen,
        "consecutive_failures": 0,
        "target": "www.example.test",
        "protocol": "https",
        "host": "www.example.test",
        "port": 443,
        "server_name": "www.example.test",
        "address": "",
    }
    try:
        with engine.begin() as connection:
            tables = MetaData()
            tables.reflect(connection)
            default = connection.execute(select(tables.tables["teams"].c.id)).scalar()
            connection.execute(
                insert(tables.tables["endpoints"]), [{**row, "team_id": default}]
            )
        upgrade(empty_database_url)
        with Session(engine) as session:
            other = ensure_team(session, "other", now=seen)
            session.add(EndpointRow(**row, team_id=other))
            session.commit()
            count = session.scalar(select(func.count()).select_from(EndpointRow))
            session.add(EndpointRow(**row, team_id=other))
            with pytest.raises(IntegrityError):
                session.flush()
    finally:
        engine.dispose()

    assert count == 2
