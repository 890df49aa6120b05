"""Names indexed for look-ups, including the subject CN of certificates without SANs."""

from __future__ import annotations

import pytest
from sqlalchemy import delete
from sqlalchemy.orm import Session
from tests.certs import make_leaf
from tests.store.builders import NOW, endpoint, make_pki, network_result

from certwatch.store.deployments import certificates_named, deployments_now
from certwatch.store.inventory import upsert_endpoint
from certwatch.store.models import CertificateNameRow
from certwatch.store.observations import (
    CompletedScan,
    host_name_of_common_name,
    index_common_names,
    record_observations,
)


@pytest.mark.parametrize(
    ("common_name", "expected"),
    [
        ("legacy.example.test", "legacy.example.test"),
        ("Legacy.Example.Test.", "legacy.example.test"),
        ("*.example.test", "*.example.test"),
        ("localhost", "localhost"),
        ("_service.example.test", "_service.example.test"),
        ("bücher.example.test", "xn--bcher-kva.example.test"),
        ("192.0.2.7", "192.0.2.7"),
        ("2001:DB8::1", "2001:db8::1"),
        ("Example Root CA", None),
        ("", None),
        ("bad..example.test", None),
        ("-dash.example.test", None),
        ("a.*.example.test", None),
    ],
)
def test_host_name_of_common_name(common_name: str, expected: str | None) -> None:
    assert host_name_of_common_name(common_name) == expected


def store_leaf(session: Session, der: bytes, intermediate: bytes) -> None:
    target = endpoint("legacy.example.test")
    record = upsert_endpoint(session, target, now=NOW).record
    result = network_result(target, "192.0.2.1", [der, intermediate])
    record_observations(session, [CompletedScan(NOW, (result,), endpoint_id=record.id)])
    session.commit()


def test_common_name_indexed_without_san(session: Session) -> None:
    pki = make_pki()
    legacy = make_leaf(pki.intermediate, common_name="Legacy.Example.Test", san=False)
    store_leaf(session, legacy.der, pki.intermediate.der)

    found = deployments_now(session, name="legacy.example.test")

    assert [d.certificate_sha256 for d in found] == [legacy.sha256]
    assert certificates_named(session, "LEGACY.example.test.") == [legacy.sha256]
    # The intermediate's CN names no host, so it stays out of the index.
    assert index_common_names(session) == 0


def test_common_name_not_indexed_with_san(session: Session) -> None:
    pki = make_pki()
    leaf = make_leaf(
        pki.intermediate,
        dns_names=["www.example.test"],
        common_name="cn-only.example.test",
    )
    store_leaf(session, leaf.der, pki.intermediate.der)

    assert deployments_now(session, name="cn-only.example.test") == []
    assert certificates_named(session, "www.example.test") == [leaf.sha256]


def test_index_common_names_backfills(session: Session) -> None:
    pki = make_pki()
    legacy = make_leaf(pki.intermediate, common_name="legacy.example.test", san=False)
    store_leaf(session, legacy.der, pki.intermediate.der)
    # A store written before CNs were indexed has no name row for it.
    session.execute(delete(CertificateNameRow))
    session.commit()
    missing = deployments_now(session, name="legacy.example.test")

    added = index_common_names(session)
    session.commit()

    assert missing == []
    assert added == 1
    found = deployments_now(session, name="legacy.example.test")
    assert [d.certificate_sha256 for d in found] == [legacy.sha256]
    assert index_common_names(session) == 0
