"""Certificate change events: what changed, and quiet alternation."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker
from tests.certs import NOW, Issued, make_key, make_leaf
from tests.monitor.helpers import INTERVAL, Clock, Pki, add_endpoints, pinned, settings
from tests.servers import LocalServer, ServerOptions
from tests.store.builders import file_result, network_result

from certwatch.monitor.changes import detect_changes, previous_leaf
from certwatch.monitor.cycle import run_cycle
from certwatch.store.changes import insert_changes, list_changes
from certwatch.store.inventory import upsert_file_source
from certwatch.store.observations import CompletedScan, record_observations
from certwatch.targets import Endpoint

WINDOW = timedelta(days=7)
ADDRESS = "192.0.2.10"


def scan_leaf(
    sessions: sessionmaker[Session],
    endpoint_id: int,
    endpoint: Endpoint,
    leaf: Issued,
    pki: Pki,
    at: datetime,
) -> int:
    """Record one scan that found `leaf` at ADDRESS, as a cycle batch does."""
    result = network_result(endpoint, ADDRESS, [leaf.der, pki.intermediate.der])
    scan = CompletedScan(at, (result,), endpoint_id=endpoint_id)
    with sessions() as session:
        changes = detect_changes(session, [scan], window=WINDOW)
        record_observations(session, [scan])
        insert_changes(session, changes)
        session.commit()
    return len(changes)


def test_run_cycle_records_change_with_details(
    sessions: sessionmaker[Session], pki: Pki
) -> None:
    clock = Clock()
    with LocalServer(ServerOptions(chain=pki.chain(pki.leaf))) as before:
        port = before.port
        [endpoint_id] = add_endpoints(sessions, [pinned("www.example.test", port)])
        first = run_cycle(
            sessions, now_fn=clock, settings=settings(), policy=pki.policy
        )
    clock.advance(INTERVAL)
    renewed_chain = pki.chain(pki.renewed)
    with LocalServer(ServerOptions(chain=renewed_chain, port=port)):
        second = run_cycle(
            sessions, now_fn=clock, settings=settings(), policy=pki.policy
        )

    with sessions() as session:
        [change] = list_changes(session, endpoint_id=endpoint_id)
    assert first.changes == 0
    assert second.changes == 1
    assert change.endpoint_id == endpoint_id
    assert change.address == "127.0.0.1"
    assert change.file_source_id is None
    assert change.detected_at == NOW + INTERVAL
    assert change.old_last_seen_at == NOW
    assert change.old_sha256 == pki.leaf.sha256
    assert change.new_sha256 == pki.renewed.sha256
    assert change.old_not_after == pki.leaf.cert.not_valid_after_utc
    assert change.new_not_after == pki.renewed.cert.not_valid_after_utc
    assert change.names_added == ("api.example.test",)
    assert change.names_removed == ()
    assert change.old_issuer == change.new_issuer
    assert change.old_issuer is not None
    assert "certwatch test intermediate" in change.old_issuer
    assert (change.old_key_type, change.old_key_size) == ("EC", 256)
    assert (change.new_key_type, change.new_key_size) == ("EC", 256)
    assert change.key_reused is True


def test_detect_changes_new_key_and_removed_names(
    sessions: sessionmaker[Session], pki: Pki
) -> None:
    endpoint = pinned("www.example.test", 443, ADDRESS)
    [endpoint_id] = add_endpoints(sessions, [endpoint])
    rsa = make_leaf(
        pki.intermediate, dns_names=["api.example.test"], key=make_key("rsa", 2048)
    )

    scan_leaf(sessions, endpoint_id, endpoint, pki.renewed, pki, NOW)
    created = scan_leaf(sessions, endpoint_id, endpoint, rsa, pki, NOW + INTERVAL)

    with sessions() as session:
        [change] = list_changes(session, endpoint_id=endpoint_id)
    assert created == 1
    assert change.names_added == ()
    assert change.names_removed == ("www.example.test",)
    assert change.key_reused is False
    assert (change.old_key_type, change.new_key_type) == ("EC", "RSA")
    assert change.new_key_size == 2048


def test_detect_changes_alternation_is_quiet(
    sessions: sessionmaker[Session], pki: Pki
) -> None:
    endpoint = pinned("www.example.test", 443, ADDRESS)
    [endpoint_id] = add_endpoints(sessions, [endpoint])
    rsa = make_leaf(
        pki.intermediate, dns_names=["www.example.test"], key=make_key("rsa", 2048)
    )

    created = [
        scan_leaf(sessions, endpoint_id, endpoint, leaf, pki, NOW + i * INTERVAL)
        for i, leaf in enumerate([pki.leaf, rsa, pki.leaf, rsa, pki.leaf, rsa])
    ]

    with sessions() as session:
        changes = list_changes(session, endpoint_id=endpoint_id)
    assert created == [0, 1, 0, 0, 0, 0]
    assert [(c.old_sha256, c.new_sha256) for c in changes] == [
        (pki.leaf.sha256, rsa.sha256)
    ]


def test_detect_changes_return_after_window(
    sessions: sessionmaker[Session], pki: Pki
) -> None:
    endpoint = pinned("www.example.test", 443, ADDRESS)
    [endpoint_id] = add_endpoints(sessions, [endpoint])
    back_at = NOW + 2 * INTERVAL
    again_at = back_at + WINDOW + timedelta(seconds=1)

    created = [
        scan_leaf(sessions, endpoint_id, endpoint, pki.leaf, pki, NOW),
        scan_leaf(sessions, endpoint_id, endpoint, pki.other, pki, NOW + INTERVAL),
        scan_leaf(sessions, endpoint_id, endpoint, pki.leaf, pki, back_at),
        scan_leaf(sessions, endpoint_id, endpoint, pki.other, pki, again_at),
    ]

    with sessions() as session:
        changes = list_changes(session, endpoint_id=endpoint_id)
    assert created == [0, 1, 0, 1]
    assert [(c.old_sha256, c.new_sha256) for c in changes] == [
        (pki.leaf.sha256, pki.other.sha256),
        (pki.leaf.sha256, pki.other.sha256),
    ]
    assert changes[1].detected_at == again_at
    assert changes[1].old_last_seen_at == back_at


def test_detect_changes_in_file(
    sessions: sessionmaker[Session], pki: Pki, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = str(tmp_path_factory.mktemp("certs") / "site.pem")
    with sessions() as session:
        source_id = upsert_file_source(session, path, now=NOW).record.id
        session.commit()

    for at, leaf in ((NOW, pki.leaf), (NOW + INTERVAL, pki.renewed)):
        results = (file_result(path, 0, leaf.der), file_result(path, 1, pki.root.der))
        scan = CompletedScan(at, results, file_source_id=source_id)
        with sessions() as session:
            changes = detect_changes(session, [scan], window=WINDOW)
            record_observations(session, [scan])
            insert_changes(session, changes)
            session.commit()

    with sessions() as session:
        [change] = list_changes(session, file_source_id=source_id)
    assert change.path == path
    assert change.address is None
    assert change.new_sha256 == pki.renewed.sha256
    assert change.key_reused is True


def test_list_changes_rejects_two_sources(sessions: sessionmaker[Session]) -> None:
    with sessions() as session, pytest.raises(ValueError, match="exactly one"):
        list_changes(session, endpoint_id=1, file_source_id=1)


@pytest.mark.parametrize(
    ("history", "new", "expected"),
    [
        pytest.param({}, "b", None, id="new-place"),
        pytest.param({"a": NOW}, "a", None, id="same-leaf"),
        pytest.param({"a": NOW}, "b", ("a", NOW), id="first-change"),
        pytest.param(
            {"a": NOW, "b": NOW - WINDOW}, "b", None, id="return-at-window-edge"
        ),
        pytest.param(
            {"a": NOW, "b": NOW - WINDOW - timedelta(seconds=1)},
            "b",
            ("a", NOW),
            id="return-after-window",
        ),
        pytest.param(
            {"a": NOW - timedelta(hours=1), "c": NOW},
            "b",
            ("c", NOW),
            id="latest-is-old",
        ),
    ],
)
def test_previous_leaf_rule(
    history: dict[str, datetime], new: str, expected: tuple[str, datetime] | None
) -> None:
    found = previous_leaf(
        history,
        new,
        observed_at=NOW + timedelta(hours=6),
        window=WINDOW + timedelta(hours=6),
    )

    assert found == expected
