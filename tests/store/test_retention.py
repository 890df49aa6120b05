"""History compaction: runs of one outcome shrink, and queries return the same."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from tests.store.builders import (
    EXPIRING,
    NOW,
    Pki,
    endpoint,
    failed_result,
    file_result,
    make_pki,
    network_result,
)

from certwatch.commands.queries import served_certificates
from certwatch.monitor.retention import COMPACT_EVERY, compact_if_due
from certwatch.probe.model import ErrorReason
from certwatch.result import Result
from certwatch.store import retention
from certwatch.store.changes import leaf_sightings
from certwatch.store.deployments import deployment_history, deployments_now
from certwatch.store.inventory import upsert_endpoint, upsert_file_source
from certwatch.store.models import (
    FindingRow,
    ObservationCertificateRow,
    ObservationRow,
)
from certwatch.store.observations import (
    CompletedScan,
    latest_observations,
    record_observations,
)
from certwatch.store.retention import compact_history

CUTOFF = NOW - timedelta(days=30)
START = NOW - timedelta(days=60)
PATH = "/etc/ssl/certs/www.pem"

# The outcomes at the first address before the cutoff: A is the leaf with
# its intermediate, L the same leaf sent alone, B the renewed leaf and F a
# refused connection. Runs: AAA B A BBB FF A LLL, so three observations
# sit inside a run.
FIRST_ADDRESS = "AAABABBBFFALLL"
# The outcomes kept at the first address after compaction.
FIRST_ADDRESS_KEPT = "AABABBFFALL"


@dataclass(frozen=True)
class Store:
    www: int
    old: int
    file: int


def result_for(pki: Pki, code: str, address: str) -> Result:
    target = endpoint()
    if code == "F":
        return failed_result(target, address, ErrorReason.CONNECTION_REFUSED, "refused")
    chains = {
        "A": [pki.leaf.der, pki.intermediate.der],
        "L": [pki.leaf.der],
        "B": [pki.renewed.der, pki.intermediate.der],
    }
    return network_result(target, address, chains[code], findings=(EXPIRING,))


def fill(session: Session, pki: Pki) -> Store:
    """Store 14 old and 2 recent scans of www, and 4 old scans of two more.

    The second address of www and the other sources show one outcome.
    """
    www = upsert_endpoint(session, endpoint(), now=START).record
    old = upsert_endpoint(session, endpoint("old.example.test"), now=START).record
    file = upsert_file_source(session, PATH, now=START).record
    codes = FIRST_ADDRESS + "AA"
    for hour, code in enumerate(codes):
        scanned_at = START + timedelta(hours=hour)
        if hour >= len(FIRST_ADDRESS):
            scanned_at = NOW - timedelta(hours=len(codes) - hour)
        results = (
            result_for(pki, code, "192.0.2.1"),
            result_for(pki, "A", "192.0.2.2"),
        )
        scans = [CompletedScan(scanned_at, results, endpoint_id=www.id)]
        if hour < 4:
            old_result = result_for(pki, "A", "192.0.2.9")
            scans.append(CompletedScan(scanned_at, (old_result,), endpoint_id=old.id))
            file_results = (file_result(PATH, 0, pki.leaf.der),)
            scans.append(
                CompletedScan(scanned_at, file_results, file_source_id=file.id)
            )
        record_observations(session, scans)
    session.commit()
    return Store(www.id, old.id, file.id)


def answers(session: Session, pki: Pki, store: Store) -> dict[str, Any]:
    """Collect what the history queries return, to compare before and after."""
    sha256s = (pki.leaf.sha256, pki.renewed.sha256, pki.intermediate.sha256)
    return {
        "history": [deployment_history(session, sha256=s) for s in sha256s],
        "now": deployments_now(session, name="www.example.test"),
        "served": [
            served_certificates(session, endpoint_id=store.www),
            served_certificates(session, endpoint_id=store.old),
            served_certificates(session, file_source_id=store.file),
        ],
        "sightings": leaf_sightings(
            session, endpoint_ids=[store.www, store.old], file_source_ids=[store.file]
        ),
        "latest": [
            latest_observations(session, endpoint_id=store.www),
            latest_observations(session, endpoint_id=store.old),
            latest_observations(session, file_source_id=store.file),
        ],
    }


def count(session: Session, column: Any) -> int:
    return session.scalar(select(func.count(column))) or 0


def outcomes_at(session: Session, pki: Pki, address: str) -> str:
    """Write the outcomes stored at one address of www in order, as letters."""
    letters = {
        (pki.leaf.sha256, pki.intermediate.sha256): "A",
        (pki.leaf.sha256,): "L",
        (pki.renewed.sha256, pki.intermediate.sha256): "B",
        (): "F",
    }
    rows = session.scalars(
        select(ObservationRow)
        .where(ObservationRow.address == address)
        .order_by(ObservationRow.observed_at)
    )
    codes = []
    for row in rows:
        chain = session.scalars(
            select(ObservationCertificateRow.certificate_sha256)
            .where(ObservationCertificateRow.observation_id == row.id)
            .order_by(ObservationCertificateRow.position)
        )
        codes.append(letters[tuple(chain)])
    return "".join(codes)


def orphans(session: Session, column: Any) -> int:
    known = select(ObservationRow.id)
    return session.scalar(select(func.count()).where(column.not_in(known))) or 0


def test_compact_history_keeps_answers(
    session: Session, open_session: Callable[[], Session]
) -> None:
    pki = make_pki()
    store = fill(session, pki)
    before = answers(session, pki, store)
    observations_before = count(session, ObservationRow.id)
    session.commit()

    result = compact_history(open_session, cutoff=CUTOFF)

    # www first address 3, its second address 12, old 2, the file 2.
    assert result.removed == 19
    assert result.examined == 14 + 14 + 4 + 4
    assert result.places == 4
    assert result.dry_run is False
    assert count(session, ObservationRow.id) == observations_before - 19
    assert answers(session, pki, store) == before
    assert outcomes_at(session, pki, "192.0.2.1") == FIRST_ADDRESS_KEPT + "AA"
    assert outcomes_at(session, pki, "192.0.2.2") == "AA" + "AA"


def test_compact_history_removes_children(
    session: Session, open_session: Callable[[], Session]
) -> None:
    pki = make_pki()
    fill(session, pki)
    findings_before = count(session, FindingRow.observation_id)
    session.commit()

    compact_history(open_session, cutoff=CUTOFF)

    assert orphans(session, ObservationCertificateRow.observation_id) == 0
    assert orphans(session, FindingRow.observation_id) == 0
    # Every network observation but the failures carries one finding.
    assert count(session, FindingRow.observation_id) == findings_before - 17


def test_compact_history_keeps_latest(
    session: Session, open_session: Callable[[], Session]
) -> None:
    pki = make_pki()
    store = fill(session, pki)
    latest = latest_observations(session, endpoint_id=store.old)
    session.commit()

    compact_history(open_session, cutoff=NOW)

    # Every scan of old.example.test is older than the cutoff, its latest too.
    assert latest_observations(session, endpoint_id=store.old) == latest
    stored = session.scalars(
        select(ObservationRow.observed_at)
        .where(ObservationRow.endpoint_id == store.old)
        .order_by(ObservationRow.observed_at)
    )
    assert list(stored) == [START, START + timedelta(hours=3)]


def test_compact_history_twice_removes_nothing_more(
    session: Session, open_session: Callable[[], Session]
) -> None:
    pki = make_pki()
    fill(session, pki)
    session.commit()

    compact_history(open_session, cutoff=CUTOFF)
    again = compact_history(open_session, cutoff=CUTOFF)

    assert again.removed == 0
    assert again.examined == 36 - 19


def test_compact_history_dry_run_deletes_nothing(
    session: Session, open_session: Callable[[], Session]
) -> None:
    pki = make_pki()
    fill(session, pki)
    observations_before = count(session, ObservationRow.id)
    links_before = count(session, ObservationCertificateRow.observation_id)
    session.commit()

    result = compact_history(open_session, cutoff=CUTOFF, dry_run=True)

    assert result.removed == 19
    assert result.dry_run is True
    assert count(session, ObservationRow.id) == observations_before
    assert count(session, ObservationCertificateRow.observation_id) == links_before


def test_compact_history_small_chunks(
    session: Session,
    open_session: Callable[[], Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pki = make_pki()
    store = fill(session, pki)
    before = answers(session, pki, store)
    session.commit()
    monkeypatch.setattr(retention, "DELETE_CHUNK", 2)
    monkeypatch.setattr(retention, "SOURCE_GROUP", 1)

    result = compact_history(open_session, cutoff=CUTOFF)

    assert result.removed == 19
    assert answers(session, pki, store) == before


def test_compact_history_ignores_recent(
    session: Session, open_session: Callable[[], Session]
) -> None:
    pki = make_pki()
    fill(session, pki)
    session.commit()

    result = compact_history(open_session, cutoff=START)

    assert result.examined == 0
    assert result.removed == 0


def repeat_old_scans(session: Session, pki: Pki, store: Store, at: datetime) -> None:
    """Add three more scans of old.example.test with its usual outcome."""
    for minutes in range(3):
        result = result_for(pki, "A", "192.0.2.9")
        scanned_at = at + timedelta(minutes=minutes)
        scan = CompletedScan(scanned_at, (result,), endpoint_id=store.old)
        record_observations(session, [scan])
    session.commit()


def old_observations(session: Session, store: Store) -> int:
    query = select(func.count()).where(ObservationRow.endpoint_id == store.old)
    return session.scalar(query) or 0


def test_compact_if_due_daily(
    session: Session, open_session: Callable[[], Session]
) -> None:
    pki = make_pki()
    store = fill(session, pki)
    session.commit()
    retention_age = timedelta(days=1)

    first = compact_if_due(
        open_session,
        now=NOW,
        retention=retention_age,
        compacted_at=None,
        monotonic_now=1000.0,
    )
    repeat_old_scans(session, pki, store, START + timedelta(days=2))
    within_a_day = compact_if_due(
        open_session,
        now=NOW,
        retention=retention_age,
        compacted_at=first,
        monotonic_now=1000.0 + COMPACT_EVERY - 1,
    )
    kept_within_a_day = old_observations(session, store)
    session.commit()
    next_day = compact_if_due(
        open_session,
        now=NOW,
        retention=retention_age,
        compacted_at=within_a_day,
        monotonic_now=1000.0 + COMPACT_EVERY,
    )

    assert first == 1000.0
    assert within_a_day == first
    assert kept_within_a_day == 2 + 3
    assert next_day == 1000.0 + COMPACT_EVERY
    assert old_observations(session, store) == 2


def test_compact_if_due_without_retention(
    session: Session, open_session: Callable[[], Session]
) -> None:
    pki = make_pki()
    store = fill(session, pki)
    session.commit()

    compacted_at = compact_if_due(
        open_session, now=NOW, retention=None, compacted_at=None, monotonic_now=5.0
    )

    assert compacted_at is None
    assert old_observations(session, store) == 4
