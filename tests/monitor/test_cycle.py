"""Monitoring cycles against local TLS servers: record, reschedule, back off."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from tests.certs import NOW
from tests.monitor.helpers import (
    INTERVAL,
    LEASE,
    Clock,
    Pki,
    add_endpoints,
    pinned,
    settings,
)
from tests.servers import LocalServer, Mode, ServerOptions, closed_port

from certwatch.monitor.cycle import FlushPolicy, Selection, _loggable, run_cycle
from certwatch.probe.model import ErrorReason, ProbeSettings
from certwatch.probe.resolve import StaticResolver
from certwatch.result import Status
from certwatch.store.inventory import (
    SourceSettings,
    get_endpoint,
    remove_endpoint,
    upsert_endpoint,
    upsert_file_source,
)
from certwatch.store.models import ObservationRow
from certwatch.store.observations import CompletedScan, latest_observations
from certwatch.store.schedule import claim_due_endpoints
from certwatch.targets import parse_target

StartServer = Callable[..., LocalServer]


def observation_count(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(ObservationRow)) or 0


def test_run_cycle_records_and_reschedules(
    sessions: sessionmaker[Session], local_server: StartServer, pki: Pki
) -> None:
    server = local_server(chain=pki.chain(pki.leaf))
    names = ["www.example.test", "a.example.test", "b.example.test"]
    ids = add_endpoints(sessions, [pinned(name, server.port) for name in names])

    report = run_cycle(sessions, now_fn=Clock(), settings=settings(), policy=pki.policy)

    assert report.endpoints == 3
    assert report.observations == 3
    assert report.failed == 0
    assert report.batches == 1
    assert report.started_at == NOW
    assert sorted(name or "" for name in server.server_names) == sorted(names)
    with sessions() as session:
        www = latest_observations(session, endpoint_id=ids[0])
        record = get_endpoint(session, ids[0])
    assert [o.address for o in www] == ["127.0.0.1"]
    assert www[0].chain == (pki.leaf.sha256, pki.intermediate.sha256)
    assert www[0].status is Status.OK
    assert www[0].observed_at == NOW
    assert record is not None
    # The first success spreads the next scan over the coming interval.
    assert NOW < record.schedule.next_scan_at <= NOW + INTERVAL
    assert record.schedule.last_scanned_at == NOW
    assert record.schedule.lease_expires_at is None
    assert record.schedule.consecutive_failures == 0


def test_run_cycle_commits_per_batch(
    sessions: sessionmaker[Session], local_server: StartServer, pki: Pki
) -> None:
    server = local_server(chain=pki.chain(pki.leaf))
    add_endpoints(
        sessions, [pinned(f"host{i}.example.test", server.port) for i in range(5)]
    )

    report = run_cycle(
        sessions, now_fn=Clock(), settings=settings(batch_size=2), policy=pki.policy
    )

    assert report.batches == 3
    assert report.endpoints == 5
    assert observation_count(sessions) == 5


def test_run_cycle_backs_off_after_failures(
    sessions: sessionmaker[Session], pki: Pki
) -> None:
    clock = Clock()
    with closed_port() as port:
        [endpoint_id] = add_endpoints(sessions, [pinned("www.example.test", port)])
        first = run_cycle(
            sessions, now_fn=clock, settings=settings(), policy=pki.policy
        )
        with sessions() as session:
            after_first = get_endpoint(session, endpoint_id)
            observed = latest_observations(session, endpoint_id=endpoint_id)
        clock.advance(timedelta(minutes=5))
        second = run_cycle(
            sessions, now_fn=clock, settings=settings(), policy=pki.policy
        )
        with sessions() as session:
            after_second = get_endpoint(session, endpoint_id)

    assert first.failed == 1
    assert second.failed == 1
    assert observed[0].error_reason is ErrorReason.CONNECTION_REFUSED
    assert after_first is not None
    assert after_first.schedule.consecutive_failures == 1
    assert after_first.schedule.next_scan_at == NOW + timedelta(minutes=5)
    assert after_second is not None
    assert after_second.schedule.consecutive_failures == 2
    assert after_second.schedule.next_scan_at == NOW + timedelta(minutes=15)


def test_run_cycle_restart_waits_until_due(
    sessions: sessionmaker[Session], local_server: StartServer, pki: Pki
) -> None:
    server = local_server(chain=pki.chain(pki.leaf))
    add_endpoints(
        sessions, [pinned(f"host{i}.example.test", server.port) for i in range(3)]
    )
    clock = Clock()

    run_cycle(sessions, now_fn=clock, settings=settings(), policy=pki.policy)
    # The first success spreads the next scans over one interval; after
    # it, every scan waits one whole interval.
    clock.advance(INTERVAL)
    first = run_cycle(sessions, now_fn=clock, settings=settings(), policy=pki.policy)
    clock.advance(INTERVAL - timedelta(seconds=1))
    early = run_cycle(sessions, now_fn=clock, settings=settings(), policy=pki.policy)
    clock.advance(timedelta(seconds=1))
    due = run_cycle(sessions, now_fn=clock, settings=settings(), policy=pki.policy)

    assert first.endpoints == 3
    assert early.scans == 0
    assert early.batches == 0
    assert due.endpoints == 3
    assert server.accepted == 9


def test_run_cycle_logs_scans_and_cycle(
    sessions: sessionmaker[Session],
    local_server: StartServer,
    pki: Pki,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = local_server(chain=pki.chain(pki.leaf))
    with closed_port() as port:
        [good, bad] = add_endpoints(
            sessions,
            [pinned("www.example.test", server.port), pinned("www.example.test", port)],
        )
        with caplog.at_level(logging.INFO, logger="certwatch.monitor"):
            run_cycle(sessions, now_fn=Clock(), settings=settings(), policy=pki.policy)

    lines = [
        r.getMessage() for r in caplog.records if r.name == "certwatch.monitor.cycle"
    ]
    assert len(lines) == 3
    assert (
        f"scanned endpoint {good} www.example.test:{server.port}: "
        "127.0.0.1 ok, 60 days left"
    ) in lines
    assert (
        f"scanned endpoint {bad} www.example.test:{port}: "
        "127.0.0.1 unknown (connection_refused)"
    ) in lines
    assert lines[-1].startswith("cycle finished in ")
    assert lines[-1].endswith(
        "endpoints=2 file_sources=0 failed=1 observations=2 changes=0 batches=1 "
        "unknown=1 ok=1"
    )


def test_run_cycle_scans_listed_sources_only(
    sessions: sessionmaker[Session], local_server: StartServer, pki: Pki
) -> None:
    server = local_server(chain=pki.chain(pki.leaf))
    ids = add_endpoints(
        sessions,
        [pinned(f"host{i}.example.test", server.port) for i in range(3)],
        now=NOW + timedelta(days=1),
    )
    with sessions() as session:
        held = claim_due_endpoints(
            session, now=NOW + timedelta(days=1), limit=1, lease=LEASE
        )
        session.commit()

    report = run_cycle(
        sessions,
        now_fn=Clock(),
        settings=settings(),
        policy=pki.policy,
        selection=Selection(endpoint_ids=tuple(ids)),
    )

    assert [claim.endpoint_id for claim in held] == [ids[0]]
    assert report.endpoints == 2
    assert report.busy == 1
    assert sorted(name or "" for name in server.server_names) == [
        "host1.example.test",
        "host2.example.test",
    ]


def test_run_cycle_reads_file_sources(
    sessions: sessionmaker[Session], tmp_path: Path, pki: Pki
) -> None:
    path = tmp_path / "site.pem"
    path.write_bytes(pki.leaf.pem + pki.intermediate.pem)
    with sessions() as session:
        source = upsert_file_source(
            session, str(path), now=NOW, settings=SourceSettings(interval=INTERVAL)
        ).record
        session.commit()

    report = run_cycle(sessions, now_fn=Clock(), settings=settings(), policy=pki.policy)

    assert report.file_sources == 1
    assert report.endpoints == 0
    with sessions() as session:
        [observed] = latest_observations(session, file_source_id=source.id)
    assert observed.path == str(path)
    assert observed.chain == (pki.leaf.sha256, pki.intermediate.sha256)


class BrokenResolver:
    """A resolver that fails in a way the probe does not expect."""

    async def resolve(self, host: str, port: int) -> list[str]:
        raise RuntimeError(f"resolver broke on {host}")


def test_run_cycle_abandons_claims_on_error(
    sessions: sessionmaker[Session], pki: Pki
) -> None:
    [endpoint_id] = add_endpoints(sessions, [parse_target("www.example.test:8443")])

    with pytest.raises(RuntimeError, match=r"resolver broke on www\.example\.test"):
        run_cycle(
            sessions,
            now_fn=Clock(),
            settings=settings(),
            policy=pki.policy,
            resolver=BrokenResolver(),
        )

    with sessions() as session:
        record = get_endpoint(session, endpoint_id)
        again = claim_due_endpoints(session, now=NOW, limit=5, lease=LEASE)
    assert record is not None
    assert record.schedule.lease_expires_at is None
    assert [claim.endpoint_id for claim in again] == [endpoint_id]


def test_run_cycle_short_interval_ends(
    sessions: sessionmaker[Session], local_server: StartServer, pki: Pki
) -> None:
    server = local_server(chain=pki.chain(pki.leaf))
    add_endpoints(
        sessions,
        [pinned(f"host{i}.example.test", server.port) for i in range(3)],
        interval=timedelta(seconds=1),
    )

    class SteppingClock(Clock):
        def __call__(self) -> datetime:
            self.advance(timedelta(seconds=10))
            return self.now

    report = run_cycle(
        sessions,
        now_fn=SteppingClock(),
        settings=settings(batch_size=1),
        policy=pki.policy,
    )

    assert report.endpoints == 3
    assert server.accepted == 3


def test_run_cycle_renews_leases(
    sessions: sessionmaker[Session],
    local_server: StartServer,
    pki: Pki,
    caplog: pytest.LogCaptureFixture,
) -> None:
    stalling = local_server(mode=Mode.STALL)
    add_endpoints(sessions, [pinned("www.example.test", stalling.port)])
    short = settings(
        lease=timedelta(seconds=0.3),
        probe=settings().probe.__class__(timeout=1.0, concurrency=5),
    )

    with caplog.at_level(logging.DEBUG, logger="certwatch.monitor.cycle"):
        report = run_cycle(sessions, now_fn=Clock(), settings=short, policy=pki.policy)

    renewals = [r for r in caplog.records if r.getMessage() == "renewed 1 of 1 leases"]
    assert report.failed == 1
    assert len(renewals) >= 2


def test_run_cycle_static_resolver_addresses(
    sessions: sessionmaker[Session],
    local_servers_on_one_port: Callable[..., list[LocalServer]],
    pki: Pki,
) -> None:
    from tests.servers import ServerOptions

    servers = local_servers_on_one_port(
        ServerOptions(chain=pki.chain(pki.leaf), host="127.0.0.1"),
        ServerOptions(chain=pki.chain(pki.leaf), host="127.0.0.2"),
    )
    target = parse_target(f"www.example.test:{servers[0].port}")
    with sessions() as session:
        endpoint_id = upsert_endpoint(session, target, now=NOW).record.id
        session.commit()
    resolver = StaticResolver({"www.example.test": ["127.0.0.1", "127.0.0.2"]})

    report = run_cycle(
        sessions,
        now_fn=Clock(),
        settings=settings(),
        policy=pki.policy,
        resolver=resolver,
    )

    assert report.observations == 2
    with sessions() as session:
        observed = latest_observations(session, endpoint_id=endpoint_id)
    assert [o.address for o in observed] == ["127.0.0.1", "127.0.0.2"]


def test_run_cycle_keeps_batch_when_source_removed(
    sessions: sessionmaker[Session], local_server: StartServer, pki: Pki
) -> None:
    server = local_server(chain=pki.chain(pki.leaf))
    names = ["kept.example.test", "gone.example.test"]
    ids = add_endpoints(
        sessions, [parse_target(f"{name}:{server.port}") for name in names]
    )

    class RemovingResolver(StaticResolver):
        """Removes the second endpoint while the batch is being scanned."""

        async def resolve(self, host: str, port: int) -> list[str]:
            if host == "gone.example.test":
                with sessions() as session:
                    remove_endpoint(session, ids[1])
                    session.commit()
            return await super().resolve(host, port)

    resolver = RemovingResolver({name: ["127.0.0.1"] for name in names})

    report = run_cycle(
        sessions,
        now_fn=Clock(),
        settings=settings(),
        policy=pki.policy,
        resolver=resolver,
    )

    assert report.batches == 1
    with sessions() as session:
        kept = latest_observations(session, endpoint_id=ids[0])
        count = session.scalar(select(func.count()).select_from(ObservationRow))
    assert len(kept) == 1
    assert count == 1


def test_run_cycle_records_finished_scan_early(
    sessions: sessionmaker[Session], local_server: StartServer, pki: Pki
) -> None:
    fast = local_server(chain=pki.chain(pki.leaf))
    stalling = local_server(mode=Mode.STALL)
    fast_id, stalled_id = add_endpoints(
        sessions,
        [
            pinned("fast.example.test", fast.port),
            pinned("stall.example.test", stalling.port),
        ],
    )
    seen_while_stalled: list[tuple[int, bool, bool]] = []

    def inspect_store(scan: CompletedScan) -> None:
        if scan.endpoint_id != fast_id:
            return
        with sessions() as session:
            fast_record = get_endpoint(session, fast_id)
            stalled_record = get_endpoint(session, stalled_id)
            stalled_observed = latest_observations(session, endpoint_id=stalled_id)
        assert fast_record is not None and stalled_record is not None
        seen_while_stalled.append(
            (
                len(stalled_observed),
                fast_record.schedule.lease_expires_at is None,
                stalled_record.schedule.lease_expires_at is None,
            )
        )
        # Closing the server ends the stalled handshake, and with it the batch.
        stalling.close()

    report = run_cycle(
        sessions,
        now_fn=Clock(),
        settings=settings(probe=ProbeSettings(timeout=30.0, concurrency=5)),
        policy=pki.policy,
        on_scan=inspect_store,
    )

    assert seen_while_stalled == [(0, True, False)]
    assert report.endpoints == 2
    assert report.batches == 1
    assert report.writes == 2
    with sessions() as session:
        stalled_observed = latest_observations(session, endpoint_id=stalled_id)
        stalled_record = get_endpoint(session, stalled_id)
    assert len(stalled_observed) == 1
    assert stalled_observed[0].error_reason is not None
    assert stalled_record is not None
    assert stalled_record.schedule.lease_expires_at is None


def test_run_cycle_large_batch_few_writes(
    sessions: sessionmaker[Session],
    local_server: StartServer,
    pki: Pki,
    caplog: pytest.LogCaptureFixture,
) -> None:
    servers = [local_server(chain=pki.chain(pki.leaf)) for _ in range(3)]
    add_endpoints(
        sessions,
        [pinned(f"host{i}.example.test", servers[i % 3].port) for i in range(50)],
    )

    with caplog.at_level(logging.DEBUG, logger="certwatch.monitor.cycle"):
        report = run_cycle(
            sessions,
            now_fn=Clock(),
            settings=settings(batch_size=50),
            policy=pki.policy,
            flush=FlushPolicy(max_scans=20, max_wait=600.0),
        )

    writes = [
        r.getMessage()
        for r in caplog.records
        if r.getMessage().endswith(" s") and "in one transaction" in r.getMessage()
    ]
    assert report.endpoints == 50
    assert report.batches == 1
    assert report.writes == 3
    assert [line.split(" in one")[0] for line in writes] == [
        "recorded 20 scans",
        "recorded 20 scans",
        "recorded 10 scans",
    ]
    assert observation_count(sessions) == 50
    assert sum(server.accepted for server in servers) == 50


def test_run_cycle_waits_for_every_address(
    sessions: sessionmaker[Session],
    local_servers_on_one_port: Callable[..., list[LocalServer]],
    pki: Pki,
) -> None:
    servers = local_servers_on_one_port(
        ServerOptions(chain=pki.chain(pki.leaf), host="127.0.0.1"),
        ServerOptions(mode=Mode.STALL, host="127.0.0.2"),
    )
    target = parse_target(f"www.example.test:{servers[0].port}")
    with sessions() as session:
        endpoint_id = upsert_endpoint(session, target, now=NOW).record.id
        session.commit()
    resolver = StaticResolver({"www.example.test": ["127.0.0.1", "127.0.0.2"]})
    scans: list[CompletedScan] = []

    report = run_cycle(
        sessions,
        now_fn=Clock(),
        settings=settings(probe=ProbeSettings(timeout=1.0, concurrency=5)),
        policy=pki.policy,
        resolver=resolver,
        on_scan=scans.append,
        flush=FlushPolicy(max_wait=0.01),
    )

    assert report.writes == 1
    assert [scan.endpoint_id for scan in scans] == [endpoint_id]
    assert [result.address for result in scans[0].results] == [
        "127.0.0.1",
        "127.0.0.2",
    ]
    with sessions() as session:
        observed = latest_observations(session, endpoint_id=endpoint_id)
    assert [o.error_reason for o in observed] == [None, ErrorReason.TIMEOUT]


class SlowBrokenResolver:
    """A resolver that fails in a way the probe does not expect, after a pause."""

    async def resolve(self, host: str, port: int) -> list[str]:
        await asyncio.sleep(0.2)
        raise RuntimeError(f"resolver broke on {host}")


def test_run_cycle_error_keeps_recorded_scans(
    sessions: sessionmaker[Session], local_server: StartServer, pki: Pki
) -> None:
    server = local_server(chain=pki.chain(pki.leaf))
    fast_id, broken_id = add_endpoints(
        sessions,
        [
            pinned("fast.example.test", server.port),
            parse_target("broken.example.test:8443"),
        ],
    )
    scans: list[CompletedScan] = []

    with pytest.raises(RuntimeError, match=r"resolver broke on broken\.example"):
        run_cycle(
            sessions,
            now_fn=Clock(),
            settings=settings(),
            policy=pki.policy,
            resolver=SlowBrokenResolver(),
            on_scan=scans.append,
        )

    with sessions() as session:
        fast_observed = latest_observations(session, endpoint_id=fast_id)
        fast_record = get_endpoint(session, fast_id)
        again = claim_due_endpoints(session, now=NOW, limit=5, lease=LEASE)
    assert [scan.endpoint_id for scan in scans] == [fast_id]
    assert len(fast_observed) == 1
    assert fast_record is not None
    assert fast_record.schedule.lease_expires_at is None
    assert fast_record.schedule.next_scan_at > NOW
    assert [claim.endpoint_id for claim in again] == [broken_id]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"max_scans": 0}, r"Invalid max_scans 0: give at least 1\."),
        ({"max_wait": 0.0}, r"Invalid max_wait 0\.0: give a positive number"),
    ],
)
def test_flush_policy_rejects_invalid_bounds(
    changes: dict[str, float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        FlushPolicy(**changes)  # type: ignore[arg-type]


def test_scan_log_escapes_control_characters() -> None:
    forged = "www.example.test\n2026-12-04 INFO scanned endpoint 9: ok\x1b[2K"

    assert _loggable(forged) == (
        "www.example.test\\n2026-12-04 INFO scanned endpoint 9: ok\\x1b[2K"
    )
    assert _loggable("plain text") == "plain text"
