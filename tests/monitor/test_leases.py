"""Claims on named sources, lease renewal and the next due time."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker
from tests.certs import NOW
from tests.monitor.helpers import LEASE, add_endpoints
from tests.store.builders import endpoint

from certwatch.store.inventory import (
    SourceSettings,
    get_endpoint,
    upsert_endpoint,
    upsert_file_source,
)
from certwatch.store.leases import (
    claim_endpoints,
    claim_file_sources,
    enabled_source_ids,
    next_due_at,
    renew_leases,
)
from certwatch.store.schedule import claim_due_endpoints

LATER = NOW + timedelta(days=1)


def test_claim_endpoints_named_not_due(sessions: sessionmaker[Session]) -> None:
    ids = add_endpoints(
        sessions, [endpoint(f"host{i}.example.test") for i in range(3)], now=LATER
    )

    with sessions() as session:
        claims = claim_endpoints(session, [ids[2], ids[0], 999], now=NOW, lease=LEASE)
        session.commit()
        again = claim_endpoints(session, ids, now=NOW, lease=LEASE)
        session.commit()

    assert [claim.endpoint_id for claim in claims] == [ids[0], ids[2]]
    assert claims[0].lease.expires_at == NOW + LEASE
    assert [claim.endpoint_id for claim in again] == [ids[1]]


def test_claim_endpoints_after_lease_expiry(sessions: sessionmaker[Session]) -> None:
    [endpoint_id] = add_endpoints(sessions, [endpoint()])

    with sessions() as session:
        first = claim_endpoints(session, [endpoint_id], now=NOW, lease=LEASE)
        session.commit()
        during = claim_endpoints(
            session, [endpoint_id], now=NOW + LEASE / 2, lease=LEASE
        )
        after = claim_endpoints(session, [endpoint_id], now=NOW + LEASE, lease=LEASE)
        session.commit()

    assert len(first) == 1
    assert during == []
    assert [claim.endpoint_id for claim in after] == [endpoint_id]
    assert after[0].lease.token != first[0].lease.token


def test_claim_file_sources_includes_disabled(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        source = upsert_file_source(
            session,
            "/srv/certs/site.pem",
            now=NOW,
            settings=SourceSettings(enabled=False),
        ).record
        session.commit()
        claims = claim_file_sources(session, [source.id], now=NOW, lease=LEASE)
        session.commit()

    assert [claim.path for claim in claims] == ["/srv/certs/site.pem"]


def test_renew_leases_moves_expiry(sessions: sessionmaker[Session]) -> None:
    ids = add_endpoints(sessions, [endpoint(f"host{i}.example.test") for i in range(2)])
    with sessions() as session:
        mine = claim_due_endpoints(session, now=NOW, limit=1, lease=LEASE)
        session.commit()
        # The second endpoint is taken over by another scanner's claim.
        theirs = claim_due_endpoints(session, now=NOW, limit=1, lease=LEASE)
        session.commit()

        renewed = renew_leases(session, mine, now=NOW + LEASE / 2, lease=LEASE)
        session.commit()
        first = get_endpoint(session, ids[0])
        second = get_endpoint(session, ids[1])

    assert [claim.endpoint_id for claim in theirs] == [ids[1]]
    assert renewed == 1
    assert first is not None
    assert first.schedule.lease_expires_at == NOW + LEASE / 2 + LEASE
    assert second is not None
    assert second.schedule.lease_expires_at == NOW + LEASE


def test_renew_leases_skips_lost_lease(sessions: sessionmaker[Session]) -> None:
    [endpoint_id] = add_endpoints(sessions, [endpoint()])
    with sessions() as session:
        lost = claim_due_endpoints(session, now=NOW, limit=1, lease=LEASE)
        session.commit()
        taken = claim_due_endpoints(session, now=NOW + LEASE, limit=1, lease=LEASE)
        session.commit()

        renewed = renew_leases(session, lost, now=NOW + LEASE, lease=LEASE * 10)
        session.commit()
        record = get_endpoint(session, endpoint_id)

    assert [claim.endpoint_id for claim in taken] == [endpoint_id]
    assert renewed == 0
    assert record is not None
    assert record.schedule.lease_expires_at == NOW + 2 * LEASE


def test_next_due_at(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        assert next_due_at(session) is None

    add_endpoints(sessions, [endpoint("later.example.test")], now=LATER)
    with sessions() as session:
        upsert_endpoint(
            session,
            endpoint("off.example.test"),
            now=NOW,
            settings=SourceSettings(enabled=False),
        )
        upsert_file_source(session, "/srv/certs/a.pem", now=LATER + LEASE)
        session.commit()
        assert next_due_at(session) == LATER

        claim_due_endpoints(session, now=LATER, limit=1, lease=LEASE)
        session.commit()
        assert next_due_at(session) == LATER + LEASE


def test_enabled_source_ids(sessions: sessionmaker[Session]) -> None:
    [on] = add_endpoints(sessions, [endpoint("on.example.test")])
    with sessions() as session:
        upsert_endpoint(
            session,
            endpoint("off.example.test"),
            now=NOW,
            settings=SourceSettings(enabled=False),
        )
        source = upsert_file_source(session, "/srv/certs/a.pem", now=NOW).record
        session.commit()
        found = enabled_source_ids(session)

    assert found == ([on], [source.id])


def test_claim_endpoints_rejects_bad_lease(sessions: sessionmaker[Session]) -> None:
    with sessions() as session, pytest.raises(ValueError, match="Invalid lease"):
        claim_endpoints(session, [1], now=NOW, lease=timedelta(0))
