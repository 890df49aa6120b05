"""The check engine: probe endpoints and read files, analyse, build results.

This is the code behind `certwatch check`, and later behind every scan of the
monitor. It reads no clock: the caller passes `now`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from certwatch.errors import TargetError
from certwatch.probe.endpoint import probe_many
from certwatch.probe.model import ErrorReason, ProbeError, ProbeResult, ProbeSettings
from certwatch.probe.resolve import Resolver
from certwatch.result import Result, Status, status_from
from certwatch.sources.files import FileProblem, StoredCertificate, read_path
from certwatch.targets import Endpoint
from certwatch.x509.analyze import analyze_certificate, analyze_chain
from certwatch.x509.model import AnalysisPolicy, Finding, Severity

logger = logging.getLogger(__name__)

CLIENT_CERTIFICATE_FINDING = Finding(
    code="client_certificate_required",
    severity=Severity.INFO,
    message=(
        "The server asks for a client certificate; its own certificate chain "
        "was still obtained."
    ),
)


@dataclass(frozen=True)
class InvalidTarget:
    """A target string that could not be parsed, kept so it is reported."""

    text: str
    error: TargetError


async def check_endpoints(
    endpoints: Sequence[Endpoint],
    *,
    settings: ProbeSettings,
    policy: AnalysisPolicy,
    now: datetime,
    resolver: Resolver,
) -> AsyncIterator[Result]:
    """Probe every address of every endpoint and yield results as they finish."""
    async for probe in probe_many(endpoints, settings, resolver):
        result = result_from_probe(probe, policy=policy, now=now)
        _log_result(result)
        yield result


def result_from_probe(
    probe: ProbeResult, *, policy: AnalysisPolicy, now: datetime
) -> Result:
    """Analyse what one probe saw; a probe without a chain is `unknown`."""
    endpoint = probe.endpoint
    unknown = Result(
        target=endpoint.target,
        status=Status.UNKNOWN,
        error=probe.error,
        host=endpoint.host,
        port=endpoint.port,
        server_name=endpoint.server_name,
        address=probe.address,
        protocol=endpoint.protocol,
        tls_version=probe.tls_version,
    )
    if not probe.chain:
        error = probe.error or ProbeError(
            ErrorReason.NO_CERTIFICATE, "The server sent no certificate."
        )
        return replace(unknown, error=error)

    report = analyze_chain(
        probe.chain,
        server_name=endpoint.server_name,
        address=endpoint.host if endpoint.is_ip else None,
        now=now,
        policy=policy,
    )
    findings = report.findings
    if probe.client_certificate_requested:
        findings = (*findings, CLIENT_CERTIFICATE_FINDING)
    return replace(
        unknown, status=status_from(findings), findings=findings, report=report
    )


def check_paths(
    paths: Iterable[Path],
    *,
    policy: AnalysisPolicy,
    now: datetime,
    pkcs12_password: bytes | None = None,
) -> Iterator[Result]:
    """Read every certificate in the given files and folders and analyse each."""
    for path in paths:
        for item in read_path(path, pkcs12_password=pkcs12_password):
            result = _result_from_file(item, policy=policy, now=now)
            _log_result(result)
            yield result


def _result_from_file(
    item: StoredCertificate | FileProblem, *, policy: AnalysisPolicy, now: datetime
) -> Result:
    if isinstance(item, FileProblem):
        return Result(
            target=item.path,
            path=item.path,
            status=Status.UNKNOWN,
            error=ProbeError(ErrorReason.FILE_ERROR, item.message),
        )
    report = analyze_certificate(item.der, now=now, policy=policy)
    return Result(
        target=item.path,
        path=item.path,
        index=item.index,
        status=status_from(report.findings),
        findings=report.findings,
        report=report,
    )


def result_from_invalid_target(invalid: InvalidTarget) -> Result:
    """Report a target that could not be parsed as an `unknown` result."""
    return Result(
        target=invalid.text,
        status=Status.UNKNOWN,
        error=ProbeError(ErrorReason.INVALID_TARGET, str(invalid.error)),
    )


def _log_result(result: Result) -> None:
    if result.error is not None and result.report is None:
        logger.info(
            "checked %s at %s: %s (%s)",
            result.target,
            result.place,
            result.status,
            result.error.reason,
        )
        return
    logger.info(
        "checked %s at %s: %s, %s days left",
        result.target,
        result.place,
        result.status,
        result.days_left,
    )
