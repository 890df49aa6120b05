"""The digest: problems re-checked after the rescan, files, thresholds, subject.

Scans are recorded through the store's write path with the clock moved by
hand, as in `test_alerting`; the rescan callback records what a real scan
of the listed sources would find.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from tests.monitor.test_alerting import (
    add_contact,
    add_endpoint,
    before_expiry,
    evaluate,
    items,
    one_year_leaf,
    scan,
)
from tests.store.builders import endpoint, file_result, network_result

from certwatch.alerts.digest import send_digests
from certwatch.alerts.render import render_subject
from certwatch.alerts.serialize import notice_from_json
from certwatch.store.inventory import upsert_file_source
from certwatch.store.models import EndpointRow, OutboxRow
from certwatch.store.observations import CompletedScan, record_observations
from certwatch.x509.model import Finding, Severity, Threshold, Thresholds

WEEK = timedelta(days=7)


def digest_notices(sessions: sessionmaker[Session]) -> list[dict[str, object]]:
    with sessions() as session:
        rows = session.scalars(
            select(OutboxRow).where(OutboxRow.notice_key.like("certwatch-digest-%"))
        ).all()
        return [row.notice for row in rows]


def answer_again(session: Session, endpoint_id: int) -> None:
    """Reset the failure count as the monitor does after a successful scan."""
    session.execute(
        EndpointRow.__table__.update()  # type: ignore[attr-defined]
        .where(EndpointRow.id == endpoint_id)
        .values(consecutive_failures=0)
    )
    session.commit()


def mismatch_scan(
    session: Session, endpoint_id: int, name: str, address: str, at: object
) -> None:
    leaf = one_year_leaf(before_expiry(-300), dns_names=["other.example.test"])
    finding = Finding("hostname_mismatch", Severity.CRITICAL, "Name does not match.")
    result = network_result(endpoint(name), address, [leaf.der], findings=(finding,))
    record_observations(
        session, [CompletedScan(at, (result,), endpoint_id=endpoint_id)]
    )  # type: ignore[arg-type]
    session.commit()


def test_digest_drops_problems_fixed_by_rescan(
    sessions: sessionmaker[Session],
) -> None:
    leaf = one_year_leaf(before_expiry(-300))
    at = before_expiry(40)
    with sessions() as session:
        add_contact(session, "default", "email:ops@example.test")
        back = add_endpoint(session, "back.example.test")
        down = add_endpoint(session, "down.example.test")
        fixed = add_endpoint(session, "fixed.example.test")
        for hours in (0, 1):
            when = at + timedelta(hours=hours)
            scan(session, back, "back.example.test", [("192.0.2.1", None)], when)
            scan(session, down, "down.example.test", [("192.0.2.2", None)], when)
        mismatch_scan(session, fixed, "fixed.example.test", "192.0.2.3", at)
        evaluate(session, at + timedelta(hours=1))

    rescanned: list[tuple[list[int], list[int]]] = []

    def rescan(endpoint_ids: Sequence[int], file_ids: Sequence[int]) -> None:
        # back answers again and fixed now serves a matching certificate;
        # down still times out.
        rescanned.append((list(endpoint_ids), list(file_ids)))
        later = at + timedelta(hours=2)
        with sessions() as session:
            scan(session, back, "back.example.test", [("192.0.2.1", leaf)], later)
            answer_again(session, back)
            scan(session, fixed, "fixed.example.test", [("192.0.2.3", leaf)], later)
            scan(session, down, "down.example.test", [("192.0.2.2", None)], later)

    queued = send_digests(
        sessions, now_fn=lambda: at + WEEK, interval=WEEK, rescan=rescan
    )

    assert queued == 1
    assert rescanned == [([back, down, fixed], [])]
    [notice] = digest_notices(sessions)
    listed = [(item["finding_code"], item["places"]) for item in items(notice)]
    down_place = {"target": "down.example.test", "address": None, "path": None}
    assert listed == [("unreachable", [down_place])]


def test_digest_lists_files_with_configured_thresholds(
    sessions: sessionmaker[Session],
) -> None:
    in_file = one_year_leaf(dns_names=["mail.example.test"])
    served = one_year_leaf(before_expiry(-10), dns_names=["www.example.test"])
    at = before_expiry(40)
    path = "/etc/ssl/certwatch-test/mail.pem"
    with sessions() as session:
        add_contact(session, "default", "email:ops@example.test")
        www = add_endpoint(session, "www.example.test")
        scan(session, www, "www.example.test", [("192.0.2.1", served)], at)
        source_id = upsert_file_source(session, path, now=at).record.id
        result = file_result(path, 0, in_file.der)
        record_observations(
            session, [CompletedScan(at, (result,), file_source_id=source_id)]
        )
        session.commit()

    thresholds = Thresholds(warning=Threshold(days=45), critical=Threshold(days=35))
    queued = send_digests(
        sessions,
        now_fn=lambda: at + WEEK,
        interval=WEEK,
        rescan=None,
        thresholds=thresholds,
    )

    assert queued == 1
    [notice] = digest_notices(sessions)
    listed = {item["fingerprint"]: item for item in items(notice)}
    file_item = listed[in_file.sha256]
    assert file_item["places"] == [{"target": None, "address": None, "path": path}]
    # 33 and 43 days left: critical and warning under the configured
    # thresholds, while the default 30-day window would make both info.
    assert file_item["severity"] == "critical"
    assert listed[served.sha256]["severity"] == "warning"


def test_digest_subject_counts_endpoints_apart(
    sessions: sessionmaker[Session],
) -> None:
    soon = one_year_leaf(dns_names=["www.example.test"])
    at = before_expiry(20)
    with sessions() as session:
        add_contact(session, "default", "email:ops@example.test")
        www = add_endpoint(session, "www.example.test")
        down = add_endpoint(session, "down.example.test")
        scan(session, www, "www.example.test", [("192.0.2.1", soon)], at)
        for hours in (0, 1):
            when = at + timedelta(hours=hours)
            scan(session, down, "down.example.test", [("192.0.2.2", None)], when)
        evaluate(session, at + timedelta(hours=1))

    send_digests(sessions, now_fn=lambda: at + WEEK, interval=WEEK, rescan=None)

    [document] = digest_notices(sessions)
    subject = render_subject(notice_from_json(document))
    assert subject.startswith("1 certificate and 1 endpoint need attention: ")
