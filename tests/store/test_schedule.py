"""Claiming due sources, leases, rescheduling and backoff."""

from __future__ import annotations

import random
import threading
from collections import Counter
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session
from tests.store.builders import LATER, NOW, endpoint

from certwatch.store.database import create_store_engine
from certwatch.store.inventory import (
    DEFAULT_INTERVAL,
    FOLLOW_DEFAULT,
    SourceSettings,
    get_endpoint,
    upsert_endpoint,
    upsert_file_source,
)
from certwatch.store.models import EndpointRow
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


def scan_once(session: Session, *, now: datetime, failed: bool = False) -> None:
    """Claim the due endpoints at `now` and release them as scanned then."""
    claims = claim_due_endpoints(session, now=now, limit=10, lease=LEASE)
    assert claims
    release(
        session,
        [Release(claim, scanned_at=now, failed=failed) for claim in claims],
        now=now,
        policy=NO_JITTER,
        rng=random.Random(1),
    )
    session.commit()


def test_release_reschedules_with_interval(session: Session) -> None:
    [endpoint_id] = add_endpoints(session, 1)
    scan_once(session, now=NOW)
    first = get_endpoint(session, endpoint_id)
    assert first is not None
    second_scan = first.schedule.next_scan_at
    [claim] = claim_due_endpoints(session, now=second_scan, limit=1, lease=LEASE)
    finished = second_scan + timedelta(seconds=30)

    released = release(
        session,
        [Release(claim, scanned_at=second_scan, failed=False)],
        now=finished,
        policy=NO_JITTER,
        rng=random.Random(1),
    )
    session.commit()
    stored = get_endpoint(session, endpoint_id)

    assert released == 1
    assert stored is not None
    assert stored.schedule.next_scan_at == finished + DEFAULT_INTERVAL
    assert stored.schedule.last_scanned_at == second_scan
    assert stored.schedule.lease_expires_at is None
    assert stored.schedule.consecutive_failures == 0
    assert claim_due_endpoints(session, now=finished, limit=1, lease=LEASE) == []


def test_first_success_spreads_next_scan(session: Session) -> None:
    """Sources imported together get next scans spread evenly over the interval."""
    count = 1000
    for i in range(count):
        upsert_endpoint(session, endpoint(f"host{i}.example.test"), now=NOW)
    session.commit()
    claims = claim_due_endpoints(session, now=NOW, limit=count, lease=LEASE)
    assert len(claims) == count

    release(
        session,
        [Release(claim, scanned_at=NOW, failed=False) for claim in claims],
        now=NOW,
        policy=SchedulePolicy(),
        rng=random.Random(7),
    )
    session.commit()
    delays = [
        next_scan - NOW
        for next_scan in session.scalars(select(EndpointRow.next_scan_at))
    ]

    assert len(delays) == count
    assert min(delays) > timedelta(0)
    assert max(delays) <= DEFAULT_INTERVAL
    tenths = Counter(int(delay / DEFAULT_INTERVAL * 10) for delay in delays)
    assert set(tenths) <= set(range(11))
    # A tenth of the interval may hold at most twice its even share.
    assert max(tenths.values()) <= 2 * count // 10


def test_success_after_failure_spreads_next_scan(session: Session) -> None:
    [endpoint_id] = add_endpoints(session, 1)
    scan_once(session, now=NOW, failed=True)
    retry = get_endpoint(session, endpoint_id)
    assert retry is not None
    moment = retry.schedule.next_scan_at

    delays = set()
    for seed in range(5):
        [claim] = claim_due_endpoints(session, now=moment, limit=1, lease=LEASE)
        release(
            session,
            [Release(claim, scanned_at=moment, failed=False)],
            now=moment,
            policy=NO_JITTER,
            rng=random.Random(seed),
        )
        stored = get_endpoint(session, endpoint_id)
        assert stored is not None
        delays.add(stored.schedule.next_scan_at - moment)
        session.rollback()

    assert all(timedelta(0) < delay <= DEFAULT_INTERVAL for delay in delays)
    assert len(delays) == 5


def test_release_follows_policy_default_interval(session: Session) -> None:
    [endpoint_id] = add_endpoints(session, 1)
    policy = SchedulePolicy(jitter=0, default_interval=timedelta(hours=2))
    scan_once(session, now=NOW)
    first = get_endpoint(session, endpoint_id)
    assert first is not None
    assert first.interval is None
    moment = first.schedule.next_scan_at

    [claim] = claim_due_endpoints(session, now=moment, limit=1, lease=LEASE)
    release(
        session,
        [Release(claim, scanned_at=moment, failed=False)],
        now=moment,
        policy=policy,
        rng=random.Random(1),
    )
    session.commit()
    stored = get_endpoint(session, endpoint_id)

    assert claim.interval is None
    assert stored is not None
    assert stored.schedule.next_scan_at == moment + timedelta(hours=2)


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
    scan_once(session, now=NOW)
    target = endpoint("host0.example.test")

    def next_scan_after(interval: timedelta, now: timedelta) -> datetime:
        settings = SourceSettings(interval=interval)
        upsert_endpoint(
            session, target, now=NOW + now, settings=settings, rng=random.Random(3)
        )
        stored = get_endpoint(session, endpoint_id)
        assert stored is not None
        return stored.schedule.next_scan_at

    shorter = next_scan_after(timedelta(hours=1), timedelta(minutes=10))
    overdue = next_scan_after(timedelta(minutes=5), timedelta(minutes=20))
    longer = next_scan_after(timedelta(days=1), timedelta(minutes=30))
    same = next_scan_after(timedelta(days=1), timedelta(minutes=40))

    # One new interval after the last scan, moved by at most 10 %.
    assert abs(shorter - (NOW + timedelta(hours=1))) <= timedelta(minutes=6)
    assert shorter != NOW + timedelta(hours=1)
    # An overdue scan falls within the next new interval, not at once.
    assert NOW + timedelta(minutes=20) < overdue
    assert overdue <= NOW + timedelta(minutes=25)
    assert abs(longer - (NOW + timedelta(days=1))) <= timedelta(hours=2, minutes=24)
    assert same == longer


def test_changed_interval_spreads_overdue_sources(session: Session) -> None:
    count = 200
    add_endpoints(session, count)
    scan_once_all = claim_due_endpoints(session, now=NOW, limit=count, lease=LEASE)
    release(
        session,
        [Release(claim, scanned_at=NOW, failed=False) for claim in scan_once_all],
        now=NOW,
        policy=NO_JITTER,
        rng=random.Random(1),
    )
    session.commit()
    later = NOW + timedelta(hours=7)
    rng = random.Random(5)

    for i in range(count):
        upsert_endpoint(
            session,
            endpoint(f"host{i}.example.test"),
            now=later,
            settings=SourceSettings(interval=timedelta(hours=1)),
            rng=rng,
        )
    session.commit()
    delays = [
        next_scan - later
        for next_scan in session.scalars(select(EndpointRow.next_scan_at))
    ]

    assert min(delays) > timedelta(0)
    assert max(delays) <= timedelta(hours=1)
    tenths = Counter(int(delay / timedelta(hours=1) * 10) for delay in delays)
    assert max(tenths.values()) <= 2 * count // 10


def test_follow_default_again_keeps_schedule_when_same(session: Session) -> None:
    [endpoint_id] = add_endpoints(session, 1)
    scan_once(session, now=NOW)
    target = endpoint("host0.example.test")
    upsert_endpoint(
        session, target, now=NOW, settings=SourceSettings(interval=DEFAULT_INTERVAL)
    )
    before = get_endpoint(session, endpoint_id)

    upsert_endpoint(
        session, target, now=NOW, settings=SourceSettings(interval=FOLLOW_DEFAULT)
    )
    after = get_endpoint(session, endpoint_id)

    assert before is not None
    assert after is not None
    assert before.interval == DEFAULT_INTERVAL
    assert after.interval is None
    assert after.schedule.next_scan_at == before.schedule.next_scan_at
