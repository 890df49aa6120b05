"""Recording scan results: chains, certificates, findings, batches."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, event, func, select
from sqlalchemy.orm import Session
from tests.store.builders import (
    EXPIRING,
    LATER,
    NOW,
    SELF_SIGNED,
    endpoint,
    failed_result,
    file_result,
    make_pki,
    network_result,
)

from certwatch.probe.model import ErrorReason
from certwatch.result import Status
from certwatch.store.inventory import upsert_endpoint, upsert_file_source
from certwatch.store.models import (
    CertificateNameRow,
    CertificateRow,
    EndpointRow,
    ObservationRow,
)
from certwatch.store.observations import (
    CompletedScan,
    latest_observations,
    record_observations,
)
from certwatch.x509.model import Severity


def count(session: Session, table: type) -> int:
    return session.scalar(select(func.count()).select_from(table)) or 0


def test_record_keeps_chain_order_and_duplicates(session: Session) -> None:
    pki = make_pki()
    www = upsert_endpoint(session, endpoint(), now=NOW).record
    chain = [pki.leaf.der, pki.intermediate.der, pki.leaf.der, pki.root.der]
    results = (
        network_result(www.endpoint, "192.0.2.1", chain, findings=(EXPIRING,)),
        network_result(
            www.endpoint,
            "2001:db8::1",
            [pki.leaf.der, pki.intermediate.der],
            findings=(SELF_SIGNED, EXPIRING),
            status=Status.CRITICAL,
        ),
    )

    written = record_observations(
        session, [CompletedScan(NOW, results, endpoint_id=www.id)]
    )
    session.commit()
    stored = latest_observations(session, endpoint_id=www.id)

    assert written == 2
    assert [o.address for o in stored] == ["192.0.2.1", "2001:db8::1"]
    assert stored[0].chain == (
        pki.leaf.sha256,
        pki.intermediate.sha256,
        pki.leaf.sha256,
        pki.root.sha256,
    )
    assert stored[1].chain == (pki.leaf.sha256, pki.intermediate.sha256)
    assert stored[1].findings == (SELF_SIGNED, EXPIRING)
    assert stored[1].status is Status.CRITICAL
    assert stored[0].tls_version == "TLSv1.3"
    assert stored[0].observed_at == NOW
    assert count(session, CertificateRow) == 3


def test_record_stores_certificate_facts_once(session: Session) -> None:
    pki = make_pki()
    www = upsert_endpoint(session, endpoint(), now=NOW).record
    chain = [pki.leaf.der, pki.intermediate.der]
    for scanned_at in (NOW, LATER):
        result = network_result(www.endpoint, "192.0.2.1", chain)
        scan = CompletedScan(scanned_at, (result,), endpoint_id=www.id)
        record_observations(session, [scan])
        session.commit()

    leaf = session.get(CertificateRow, pki.leaf.sha256)

    assert count(session, CertificateRow) == 2
    assert count(session, ObservationRow) == 2
    assert leaf is not None
    assert leaf.der == pki.leaf.der
    assert leaf.not_after == pki.leaf.cert.not_valid_after_utc
    assert leaf.dns_names == ["www.example.test"]
    assert leaf.first_seen_at == NOW
    assert leaf.spki_sha256 is not None
    assert leaf.key_type is not None
    names = session.scalars(select(CertificateNameRow.name))
    assert list(names) == ["www.example.test"]


def test_record_failed_probe_without_address(session: Session) -> None:
    www = upsert_endpoint(session, endpoint(), now=NOW).record
    result = failed_result(
        www.endpoint, None, ErrorReason.DNS_ERROR, "Name or service not known."
    )

    record_observations(session, [CompletedScan(NOW, (result,), endpoint_id=www.id)])
    stored = latest_observations(session, endpoint_id=www.id)

    assert len(stored) == 1
    assert stored[0].address is None
    assert stored[0].status is Status.UNKNOWN
    assert stored[0].error_reason is ErrorReason.DNS_ERROR
    assert stored[0].error_message == "Name or service not known."
    assert stored[0].chain == ()


def test_record_new_scan_replaces_latest(session: Session) -> None:
    pki = make_pki()
    www = upsert_endpoint(session, endpoint(), now=NOW).record
    first = CompletedScan(
        NOW,
        (
            network_result(www.endpoint, "192.0.2.1", [pki.leaf.der]),
            network_result(www.endpoint, "192.0.2.2", [pki.leaf.der]),
        ),
        endpoint_id=www.id,
    )
    second = CompletedScan(
        LATER,
        (failed_result(www.endpoint, "192.0.2.1", ErrorReason.TIMEOUT, "Timed out."),),
        endpoint_id=www.id,
    )

    record_observations(session, [first])
    record_observations(session, [second])
    stored = latest_observations(session, endpoint_id=www.id)

    assert [(o.address, o.observed_at) for o in stored] == [("192.0.2.1", LATER)]
    assert count(session, ObservationRow) == 3


def test_record_file_scan_groups_by_path(session: Session) -> None:
    pki = make_pki()
    source = upsert_file_source(session, "/etc/ssl", now=NOW).record
    results = (
        file_result("/etc/ssl/site.pem", 1, pki.intermediate.der),
        file_result("/etc/ssl/site.pem", 0, pki.leaf.der),
        file_result("/etc/ssl/other.pem", 0, pki.renewed.der),
    )

    written = record_observations(
        session, [CompletedScan(NOW, results, file_source_id=source.id)]
    )
    stored = latest_observations(session, file_source_id=source.id)

    assert written == 2
    assert [o.path for o in stored] == ["/etc/ssl/other.pem", "/etc/ssl/site.pem"]
    assert stored[1].chain == (pki.leaf.sha256, pki.intermediate.sha256)
    assert stored[0].address is None


def test_completed_scan_needs_one_source() -> None:
    with pytest.raises(ValueError, match="set exactly one of endpoint_id"):
        CompletedScan(NOW, (), endpoint_id=1, file_source_id=2)


def test_record_batch_of_2000_in_one_transaction(
    session: Session, engine: Engine
) -> None:
    pki = make_pki()
    session.execute(
        EndpointRow.__table__.insert(),  # type: ignore[attr-defined]
        [
            {
                "target": f"host{i}.example.test",
                "protocol": "https",
                "host": f"host{i}.example.test",
                "port": 443,
                "server_name": f"host{i}.example.test",
                "address": "",
                "team_id": 1,
                "interval_seconds": 3600,
                "enabled": True,
                "notes": "",
                "created_at": NOW,
                "updated_at": NOW,
                "next_scan_at": NOW,
                "consecutive_failures": 0,
            }
            for i in range(1000)
        ],
    )
    session.commit()
    ids = list(session.scalars(select(EndpointRow.id).order_by(EndpointRow.id)))
    chain = [pki.leaf.der, pki.intermediate.der]
    scans = []
    for endpoint_id in ids:
        target = endpoint(f"host{endpoint_id}.example.test")
        results = (
            network_result(target, "192.0.2.1", chain, findings=(EXPIRING,)),
            failed_result(target, "192.0.2.2", ErrorReason.TIMEOUT, "Timed out."),
        )
        scans.append(CompletedScan(NOW, results, endpoint_id=endpoint_id))

    commits: list[object] = []

    def count_commit(connection: object) -> None:
        commits.append(connection)

    event.listen(engine, "commit", count_commit)
    written = record_observations(session, scans)
    session.commit()
    event.remove(engine, "commit", count_commit)

    assert written == 2000
    assert len(commits) == 1
    assert count(session, ObservationRow) == 2000
    assert count(session, CertificateRow) == 2
    stored = latest_observations(session, endpoint_id=ids[-1])
    assert stored[0].findings[0].severity is Severity.WARNING
    assert stored[1].error_reason is ErrorReason.TIMEOUT
