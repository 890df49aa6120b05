"""Where certificates are deployed now and where they were before."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.orm import Session
from tests.store.builders import (
    LATER,
    NOW,
    Pki,
    endpoint,
    file_result,
    make_pki,
    network_result,
)

from certwatch.store.deployments import (
    certificate_der,
    deployment_history,
    deployments_now,
    served_certificates,
)
from certwatch.store.inventory import upsert_endpoint, upsert_file_source
from certwatch.store.observations import CompletedScan, record_observations

RENEWED_AT = LATER + timedelta(hours=1)


def renew_at_one_address(session: Session, pki: Pki) -> int:
    """Scan two addresses twice, then once more after a renewal at the first."""
    www = upsert_endpoint(session, endpoint(), now=NOW).record
    old = [pki.leaf.der, pki.intermediate.der]
    new = [pki.renewed.der, pki.intermediate.der]
    for scanned_at, first_chain in ((NOW, old), (LATER, old), (RENEWED_AT, new)):
        results = (
            network_result(www.endpoint, "192.0.2.1", first_chain),
            network_result(www.endpoint, "192.0.2.2", old),
        )
        scan = CompletedScan(scanned_at, results, endpoint_id=www.id)
        record_observations(session, [scan])
    session.commit()
    return www.id


def test_deployments_now_after_renewal(session: Session) -> None:
    pki = make_pki()
    endpoint_id = renew_at_one_address(session, pki)

    old_now = deployments_now(session, sha256=pki.leaf.sha256)
    new_now = deployments_now(session, sha256=pki.renewed.sha256)

    assert [(d.endpoint_id, d.address) for d in old_now] == [(endpoint_id, "192.0.2.2")]
    assert [d.address for d in new_now] == ["192.0.2.1"]
    assert new_now[0].first_seen_at == RENEWED_AT
    assert new_now[0].target == "www.example.test"
    assert new_now[0].position == 0
    assert new_now[0].current is True


def test_deployment_history_after_renewal(session: Session) -> None:
    pki = make_pki()
    renew_at_one_address(session, pki)

    history = deployment_history(session, sha256=pki.leaf.sha256)

    assert [(d.address, d.current) for d in history] == [
        ("192.0.2.1", False),
        ("192.0.2.2", True),
    ]
    assert history[0].first_seen_at == NOW
    assert history[0].last_seen_at == LATER
    assert history[1].last_seen_at == RENEWED_AT


def test_deployments_by_name(session: Session) -> None:
    pki = make_pki()
    renew_at_one_address(session, pki)

    found = deployments_now(session, name="WWW.Example.Test.")

    assert {(d.certificate_sha256, d.address) for d in found} == {
        (pki.leaf.sha256, "192.0.2.2"),
        (pki.renewed.sha256, "192.0.2.1"),
    }
    assert deployments_now(session, name="mail.example.test") == []


def test_deployments_need_one_selector(session: Session) -> None:
    with pytest.raises(ValueError, match="exactly one of sha256 and name"):
        deployments_now(session)


def test_address_gone_from_dns_is_not_current(session: Session) -> None:
    pki = make_pki()
    www = upsert_endpoint(session, endpoint(), now=NOW).record
    both = (
        network_result(www.endpoint, "192.0.2.1", [pki.leaf.der]),
        network_result(www.endpoint, "192.0.2.2", [pki.leaf.der]),
    )
    one = (network_result(www.endpoint, "192.0.2.1", [pki.leaf.der]),)
    record_observations(session, [CompletedScan(NOW, both, endpoint_id=www.id)])
    record_observations(session, [CompletedScan(LATER, one, endpoint_id=www.id)])

    current = deployments_now(session, sha256=pki.leaf.sha256)

    assert [d.address for d in current] == ["192.0.2.1"]


def test_served_certificates(session: Session) -> None:
    pki = make_pki()
    renew_at_one_address(session, pki)
    source = upsert_file_source(session, "/etc/ssl/site.pem", now=NOW).record
    file_scan = CompletedScan(
        NOW,
        (file_result("/etc/ssl/site.pem", 0, pki.renewed.der),),
        file_source_id=source.id,
    )
    record_observations(session, [file_scan])
    session.commit()

    page = served_certificates(session)
    first = served_certificates(session, limit=1)
    soon = served_certificates(
        session, not_after_before=pki.leaf.cert.not_valid_after_utc + timedelta(1)
    ).certificates

    # The intermediate is only ever sent after a leaf, so it is left out.
    deployed = page.certificates
    assert [c.certificate.sha256 for c in deployed] == [
        pki.leaf.sha256,
        pki.renewed.sha256,
    ]
    assert not page.truncated
    assert [c.certificate.sha256 for c in first.certificates] == [pki.leaf.sha256]
    assert first.truncated
    renewed = deployed[1]
    assert [(d.address, d.path) for d in renewed.deployments] == [
        (None, "/etc/ssl/site.pem"),
        ("192.0.2.1", None),
    ]
    assert renewed.certificate.not_after == pki.renewed.cert.not_valid_after_utc
    assert [c.certificate.sha256 for c in soon] == [pki.leaf.sha256]
    assert certificate_der(session, pki.renewed.sha256) == pki.renewed.der
