"""Stale deployments: a renewal that reached only some addresses."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker
from tests.certs import NOW, make_key, make_leaf
from tests.monitor.helpers import Clock, Pki, add_endpoints, pinned, settings
from tests.servers import LocalServer, ServerOptions
from tests.store.builders import network_result

from certwatch.monitor.cycle import run_cycle
from certwatch.probe.resolve import StaticResolver
from certwatch.store.inventory import upsert_endpoint
from certwatch.store.observations import CompletedScan, record_observations
from certwatch.store.stale import STALE_DEPLOYMENT, stale_deployments
from certwatch.targets import parse_target
from certwatch.x509.model import Severity

StartOnOnePort = Callable[..., list[LocalServer]]
ADDRESSES = [f"127.0.0.{i}" for i in range(1, 9)]


def test_stale_deployment_three_of_eight(
    sessions: sessionmaker[Session],
    local_servers_on_one_port: StartOnOnePort,
    pki: Pki,
) -> None:
    chains = [pki.chain(pki.renewed)] * 5 + [pki.chain(pki.leaf)] * 3
    servers = local_servers_on_one_port(
        *(
            ServerOptions(chain=chain, host=host)
            for chain, host in zip(chains, ADDRESSES, strict=True)
        )
    )
    target = parse_target(f"www.example.test:{servers[0].port}")
    with sessions() as session:
        endpoint_id = upsert_endpoint(session, target, now=NOW).record.id
        session.commit()
    resolver = StaticResolver({"www.example.test": ADDRESSES})
    run_cycle(
        sessions,
        now_fn=Clock(),
        settings=settings(),
        policy=pki.policy,
        resolver=resolver,
    )

    with sessions() as session:
        [stale] = stale_deployments(session, now=NOW)
        by_endpoint = stale_deployments(session, now=NOW, endpoint_ids=[endpoint_id])
        by_name = stale_deployments(session, now=NOW, name="WWW.example.test.")
        by_new_name = stale_deployments(session, now=NOW, name="api.example.test")
        by_sha = stale_deployments(session, now=NOW, sha256s=[pki.leaf.sha256])
        by_new_sha = stale_deployments(session, now=NOW, sha256s=[pki.renewed.sha256])

    old_date = pki.leaf.cert.not_valid_after_utc.date().isoformat()
    new_date = pki.renewed.cert.not_valid_after_utc.date().isoformat()
    assert stale.finding.code == STALE_DEPLOYMENT
    assert stale.finding.severity is Severity.WARNING
    assert stale.finding.message == (
        f"3 of 8 addresses still serve the certificate that expires on {old_date}; "
        f"the other 5 serve a newer one that expires on {new_date}."
    )
    assert stale.certificate.sha256 == pki.leaf.sha256
    assert [leaf.address for leaf in stale.stale] == ADDRESSES[5:]
    assert [leaf.address for leaf in stale.renewed] == ADDRESSES[:5]
    assert {leaf.endpoint_id for leaf in stale.stale} == {endpoint_id}
    assert stale.newer_sha256s == (pki.renewed.sha256,)
    assert by_endpoint == [stale]
    assert by_name == [stale]
    assert by_new_name == []
    assert by_sha == [stale]
    assert by_new_sha == []


def record_leaves(
    sessions: sessionmaker[Session], pki: Pki, served: dict[str, list[bytes]]
) -> dict[str, int]:
    """Store one endpoint per target, each address serving the given chain."""
    ids = {}
    with sessions() as session:
        for target, chain in served.items():
            endpoint = parse_target(target)
            endpoint_id = upsert_endpoint(session, endpoint, now=NOW).record.id
            result = network_result(endpoint, "192.0.2.1", chain)
            record_observations(
                session, [CompletedScan(NOW, (result,), endpoint_id=endpoint_id)]
            )
            ids[target] = endpoint_id
        session.commit()
    return ids


def test_stale_deployment_across_endpoints(
    sessions: sessionmaker[Session], pki: Pki
) -> None:
    ids = record_leaves(
        sessions,
        pki,
        {
            "www.example.test": [pki.renewed.der, pki.intermediate.der],
            "www.example.test:8443": [pki.leaf.der, pki.intermediate.der],
        },
    )

    with sessions() as session:
        [stale] = stale_deployments(session, now=NOW)

    assert stale.finding.message.startswith(
        "1 of 2 addresses still serves the certificate that expires on "
    )
    assert "the other address serves a newer one" in stale.finding.message
    assert [leaf.endpoint_id for leaf in stale.stale] == [ids["www.example.test:8443"]]
    assert [leaf.target for leaf in stale.renewed] == ["www.example.test"]


def test_stale_deployment_critical_near_expiry(
    sessions: sessionmaker[Session], pki: Pki
) -> None:
    record_leaves(
        sessions,
        pki,
        {
            "www.example.test": [pki.renewed.der],
            "www.example.test:8443": [pki.leaf.der],
        },
    )
    not_after = pki.leaf.cert.not_valid_after_utc

    with sessions() as session:
        [warning] = stale_deployments(session, now=not_after - timedelta(days=8))
        [critical] = stale_deployments(session, now=not_after - timedelta(days=6))
        [expired] = stale_deployments(session, now=not_after + timedelta(seconds=1))

    assert warning.finding.severity is Severity.WARNING
    assert critical.finding.severity is Severity.CRITICAL
    assert "certificate that expires on" in critical.finding.message
    assert expired.finding.severity is Severity.CRITICAL
    assert "certificate that expired on" in expired.finding.message


def test_stale_deployment_ignores_other_key_type(
    sessions: sessionmaker[Session], pki: Pki
) -> None:
    rsa = make_leaf(
        pki.intermediate,
        dns_names=["www.example.test", "api.example.test"],
        key=make_key("rsa", 2048),
        not_after=NOW + timedelta(days=200),
    )
    record_leaves(
        sessions,
        pki,
        {"www.example.test": [rsa.der], "www.example.test:8443": [pki.leaf.der]},
    )

    with sessions() as session:
        assert stale_deployments(session, now=NOW) == []


def test_stale_deployment_needs_all_names(
    sessions: sessionmaker[Session], pki: Pki
) -> None:
    narrower = make_leaf(
        pki.intermediate,
        dns_names=["api.example.test"],
        not_after=NOW + timedelta(days=200),
    )
    record_leaves(
        sessions,
        pki,
        {
            "api.example.test": [narrower.der],
            "www.example.test": [pki.renewed.der],
        },
    )

    with sessions() as session:
        assert stale_deployments(session, now=NOW) == []


def test_stale_deployment_same_certificate_everywhere(
    sessions: sessionmaker[Session], local_server: Callable[..., LocalServer], pki: Pki
) -> None:
    server = local_server(chain=pki.chain(pki.leaf))
    add_endpoints(
        sessions,
        [pinned("www.example.test", server.port, address) for address in ADDRESSES[:1]],
    )
    run_cycle(sessions, now_fn=Clock(), settings=settings(), policy=pki.policy)

    with sessions() as session:
        assert stale_deployments(session, now=NOW) == []
