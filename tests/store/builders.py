"""Build results, chains and endpoints for the store tests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tests.certs import Issued, make_intermediate, make_leaf, make_root

from certwatch.probe.model import ErrorReason, ProbeError
from certwatch.result import Result, Status
from certwatch.targets import Endpoint, parse_target
from certwatch.x509.facts import read_facts
from certwatch.x509.model import ChainReport, Finding, Severity

NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=1)

EXPIRING = Finding("expiring_soon", Severity.WARNING, "Expires in 20 days.")
SELF_SIGNED = Finding("self_signed", Severity.CRITICAL, "The leaf is self-signed.")


@dataclass(frozen=True)
class Pki:
    """A root, an intermediate and two leaves for www.example.test."""

    root: Issued
    intermediate: Issued
    leaf: Issued
    renewed: Issued


def make_pki() -> Pki:
    root = make_root()
    intermediate = make_intermediate(root)
    return Pki(
        root=root,
        intermediate=intermediate,
        leaf=make_leaf(intermediate, dns_names=["www.example.test"]),
        renewed=make_leaf(
            intermediate,
            dns_names=["www.example.test"],
            not_after=NOW + timedelta(days=90),
        ),
    )


def endpoint(text: str = "www.example.test") -> Endpoint:
    return parse_target(text)


def network_result(
    target: Endpoint,
    address: str,
    chain: Sequence[bytes],
    *,
    findings: tuple[Finding, ...] = (),
    status: Status = Status.OK,
) -> Result:
    facts = tuple(read_facts(der) for der in chain)
    report = ChainReport(
        leaf=facts[0],
        chain=facts,
        findings=findings,
        valid_path=None,
        days_left=30,
    )
    return Result(
        target=target.target,
        status=status,
        findings=findings,
        report=report,
        host=target.host,
        port=target.port,
        server_name=target.server_name,
        address=address,
        protocol=target.protocol,
        tls_version="TLSv1.3",
    )


def failed_result(
    target: Endpoint, address: str | None, reason: ErrorReason, message: str
) -> Result:
    return Result(
        target=target.target,
        status=Status.UNKNOWN,
        error=ProbeError(reason, message),
        host=target.host,
        port=target.port,
        server_name=target.server_name,
        address=address,
        protocol=target.protocol,
    )


def file_result(path: str, index: int, der: bytes) -> Result:
    facts = read_facts(der)
    report = ChainReport(
        leaf=facts, chain=(facts,), findings=(), valid_path=None, days_left=30
    )
    return Result(target=path, status=Status.OK, report=report, path=path, index=index)
