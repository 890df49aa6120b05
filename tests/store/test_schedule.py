"""Claiming due sources, leases, rescheduling and backoff."""

from __future__ import annotations

import random
import threading
from datetime import timedelta

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session
from tests.store.builders import LATER, NOW, endpoint

from certwatch.store.database import create_store_engine
from certwatch.store.inventory import (
    DEFAULT_INTERVAL,
    SourceSettings,
    get_endpoint,
    upsert_endpoint,
    upsert_file_source,
)
from certwatch.store.schedule import (
    Release,
    SchedulePolicy,
    abandon,
    claim_due_endpoints,
    claim_due_file_sources,
    next_scan_time,
    release,
)

LEASE = timedelta(minutes=10)
NO_JITTER = SchedulePolicy(jitter=0)


def add_endpoints(session: Session, count: int) -> list[int]:
    ids = [
        upsert_endpoint(session, endpoint(f"host{i}.example.test"), now=NOW).record.id
        for i in range(count)
    ]
    session.commit()
    return ids


def test_claim_due_endpoints_sets_lease(session: Session) -> None:
    ids = add_endpoints(session, 3)
    upsert_endpoint(
        session,
        endpoint("off.example.test"),
        now=NOW,
        settings=SourceSettings(enabled=False),
    )
    upsert_endpoint(session, endpoint("later.example.test"), now=LATER)
    session.commit()

    claims = claim_due_endpoints(session, now=NOW, limit=10, lease=LEASE)
    session.commit()
    again = claim_due_endpoints(session, now=NOW + LEASE / 2, limit=10, lease=LEASE)

    assert sorted(c.endpoint_id for c in claims) == ids
    assert {c.lease.expires_at for c in claims} == {NOW + LEASE}
    assert len({c.lease.token for c in claims}) == 1
    assert claims[0].endpoint.host.endswith(".example.test")
    assert again == []
    stored = get_endpoint(session, ids[0])
    assert stored is not None
    assert stored.schedule.lease_expires_at == NOW + LEASE


def test_claim_respects_limit_and_order(session: Session) -> None:
    ids = add_endpoints(session, 5)

    first = claim_due_endpoints(session, now=NOW, limit=2, lease=LEASE)
    session.commit()
    second = claim_due_endpoints(session, now=NOW, limit=10, lease=LEASE)
    session.commit()

    assert [c.endpoint_id for c in first] == ids[:2]
    assert [c.endpoint_id for c in second] == ids[2:]


def test_expired_lease_is_reclaimable(session: Session) -> None:
    [endpoint_id] = add_endpoints(session, 1)
    [stale] = claim_due_endpoints(session, now=NOW, limit=1, lease=LEASE)
    session.commit()

    [fresh] = claim_due_endpoints(session, now=NOW + LEASE, limit=1, lease=LEASE)
    session.commit()
    late = release(
        session,
        [Release(stale, scanned_at=NOW, failed=False)],
        now=NOW + LEASE,
        policy=NO_JITTER,
        rng=random.Random(1),
    )

    assert fresh.endpoint_id == endpoint_id
    assert fresh.lease.token != stale.lease.token
    assert late == 0
    stored = get_endpoint(session, endpoint_id)
    assert stored is not None
    assert stored.schedule.lease_expires_at == NOW + 2 * LEASE


def test_release_reschedules_with_interval(session: Session) -> None:
    [endpoint_id] = add_endpoints(session, 1)
    [claim] = claim_due_endpoints(session, now=NOW, limit=1, lease=LEASE)
    finished = NOW + timedelta(seconds=30)

    released = release(
        session,
        [Release(claim, scanned_at=NOW, failed=False)],
        now=finished,
        policy=NO_JITTER,
        rng=random.Random(1),
    )
    session.commit()
    stored = get_endpoint(session, endpoint_id)

    assert released == 1
    assert stored is not None
    assert stored.schedule.next_scan_at == finished + DEFAULT_INTERVAL
    assert stored.schedule.last_scanned_at == NOW
    assert stored.schedule.lease_expires_at is None
    assert stored.schedule.consecutive_failures == 0
    assert claim_due_endpoints(session, now=finished, limit=1, lease=LEASE) == []


def test_release_backs_off_after_failures(session: Session) -> None:
    [endpoint_id] = add_endpoints(session, 1)
    moment = NOW
    delays = []
    for _ in range(3):
        [claim] = claim_due_endpoints(session, now=moment, limit=1, lease=LEASE)
        release(
            session,
            [Release(claim, scanned_at=moment, failed=True)],
            now=moment,
            policy=NO_JITTER,
            rng=random.Random(1),
        )
        session.commit()
        stored = get_endpoint(session, endpoint_id)
        assert stored is not None
        delays.append(stored.schedule.next_scan_at - moment)
        moment = stored.schedule.next_scan_at

    assert delays == [
        timedelta(minutes=5),
        timedelta(minutes=10),
        timedelta(minutes=20),
    ]
    assert stored.schedule.consecutive_failures == 3


def test_abandon_makes_source_due_again(session: Session) -> None:
    add_endpoints(session, 2)
    claims = claim_due_endpoints(session, now=NOW, limit=2, lease=LEASE)
    session.commit()

    dropped = abandon(session, claims)
    session.commit()
    again = claim_due_endpoints(session, now=NOW, limit=2, lease=LEASE)

    assert dropped == 2
    assert len(again) == 2


def test_claim_due_file_sources(session: Session) -> None:
    upsert_file_source(session, "/etc/ssl/site.pem", now=NOW)
    session.commit()

    [claim] = claim_due_file_sources(session, now=NOW, limit=5, lease=LEASE)
    released = release(
        session,
        [Release(claim, scanned_at=NOW, failed=False)],
        now=NOW,
        policy=NO_JITTER,
        rng=random.Random(1),
    )
    session.commit()

    assert claim.path == "/etc/ssl/site.pem"
    assert released == 1
    assert claim_due_file_sources(session, now=NOW, limit=5, lease=LEASE) == []


def test_claim_skip_locked_concurrent_sessions(postgres_only_url: str) -> None:
    engine = create_store_engine(postgres_only_url)
    try:
        with Session(engine) as setup:
            add_endpoints(setup, 10)
        with Session(engine) as first, Session(engine) as second:
            # The first transaction stays open, so its rows stay locked while
            # the second claims: SKIP LOCKED must pass over them. Without it
            # the second would wait, so the lock timeout turns a regression
            # into an error instead of a hang.
            held = claim_due_endpoints(first, now=NOW, limit=4, lease=LEASE)
            second.execute(text("SET LOCAL lock_timeout = '5s'"))
            other = claim_due_endpoints(second, now=NOW, limit=10, lease=LEASE)
            second.commit()
            first.commit()
    finally:
        engine.dispose()

    held_ids = {c.endpoint_id for c in held}
    other_ids = {c.endpoint_id for c in other}
    assert len(held_ids) == 4
    assert len(other_ids) == 6
    assert held_ids.isdisjoint(other_ids)


def test_claim_from_threads_never_duplicates(engine: Engine, session: Session) -> None:
    ids = add_endpoints(session, 60)
    claimed: list[int] = []
    lock = threading.Lock()
    failures: list[BaseException] = []

    def worker() -> None:
        try:
            with Session(engine) as own:
                while True:
                    batch = claim_due_endpoints(own, now=NOW, limit=3, lease=LEASE)
                    own.commit()
                    if not batch:
                        return
                    with lock:
                        claimed.extend(c.endpoint_id for c in batch)
        except BaseException as exc:  # reported by the assert below
            failures.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert failures == []
    assert sorted(claimed) == ids


def test_next_scan_time_jitter_is_seeded() -> None:
    policy = SchedulePolicy(jitter=0.1)

    first = next_scan_time(
        NOW,
        interval=timedelta(hours=1),
        consecutive_failures=0,
        policy=policy,
        rng=random.Random(7),
    )
    second = next_scan_time(
        NOW,
        interval=timedelta(hours=1),
        consecutive_failures=0,
        policy=policy,
        rng=random.Random(7),
    )

    assert first == second
    assert NOW + timedelta(minutes=54) <= first <= NOW + timedelta(minutes=66)
    assert first != NOW + timedelta(hours=1)


def test_next_scan_time_backoff_is_capped() -> None:
    policy = SchedulePolicy(
        jitter=0, retry_delay=timedelta(minutes=5), max_retry_delay=timedelta(hours=2)
    )

    delays = [
        next_scan_time(
            NOW,
            interval=timedelta(days=1),
            consecutive_failures=failures,
            policy=policy,
            rng=random.Random(1),
        )
        - NOW
        for failures in (1, 2, 5, 6, 10_000)
    ]

    assert delays == [
        timedelta(minutes=5),
        timedelta(minutes=10),
        timedelta(minutes=80),
        timedelta(hours=2),
        timedelta(hours=2),
    ]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"jitter": 1.0}, "Invalid schedule jitter 1.0"),
        ({"retry_delay": timedelta(0)}, "Invalid retry delays"),
    ],
)
def test_schedule_policy_rejects(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SchedulePolicy(**options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("limit", "lease", "message"),
    [(0, LEASE, "Invalid claim limit 0"), (1, timedelta(0), "Invalid lease")],
)
def test_claim_rejects_bad_arguments(
    session: Session, limit: int, lease: timedelta, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        claim_due_endpoints(session, now=NOW, limit=limit, lease=lease)


def test_changed_interval_moves_next_scan(session: Session) -> None:
    [endpoint_id] = add_endpoints(session, 1)
    [claim] = claim_due_endpoints(session, now=NOW, limit=1, lease=LEASE)
    release(
        session,
        [Release(claim, scanned_at=NOW, failed=False)],
        now=NOW,
        policy=NO_JITTER,
        rng=random.Random(1),
    )
    target = endpoint("host0.example.test")

    def next_scan_after(interval: timedelta, now: timedelta) -> object:
        settings = SourceSettings(interval=interval)
        upsert_endpoint(session, target, now=NOW + now, settings=settings)
        stored = get_endpoint(session, endpoint_id)
        assert stored is not None
        return stored.schedule.next_scan_at

    shorter = next_scan_after(timedelta(hours=1), timedelta(minutes=10))
    overdue = next_scan_after(timedelta(minutes=5), timedelta(minutes=20))
    longer = next_scan_after(timedelta(days=1), timedelta(minutes=30))
    same = next_scan_after(timedelta(days=1), timedelta(minutes=40))

    assert shorter == NOW + timedelta(hours=1)
    assert overdue == NOW + timedelta(minutes=20)
    assert longer == NOW + timedelta(days=1)
    assert same == NOW + timedelta(days=1)
