"""The check engine: probe endpoints and read files, analyse, build results.

This is the code behind `certwatch check`, and later behind every scan of the
monitor. It reads no clock: the caller passes `now`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from certwatch.arguments import InvalidTarget
from certwatch.parallel import AnalysisPool, worker_count
from certwatch.probe.endpoint import probe_many
from certwatch.probe.model import ErrorReason, ProbeError, ProbeResult, ProbeSettings
from certwatch.probe.resolve import Resolver
from certwatch.result import Result, Status, status_from
from certwatch.sources.files import FileProblem, StoredCertificate, read_path
from certwatch.targets import Endpoint
from certwatch.x509.analyze import analyze_certificate, analyze_chain
from certwatch.x509.model import AnalysisPolicy, ChainReport, Finding, Severity

logger = logging.getLogger(__name__)

CLIENT_CERTIFICATE_FINDING = Finding(
    code="client_certificate_required",
    severity=Severity.INFO,
    message=(
        "The server asks for a client certificate; its own certificate chain "
        "was still obtained."
    ),
)


# Below this many endpoints a run analyses on the event loop: starting worker
# processes takes longer than the analysis they would take over.
PARALLEL_ANALYSIS_MIN_ENDPOINTS = 64


async def check_endpoints(
    endpoints: Sequence[Endpoint],
    *,
    settings: ProbeSettings,
    policy: AnalysisPolicy,
    now: datetime,
    resolver: Resolver,
    workers: int | None = None,
) -> AsyncIterator[Result]:
    """Probe every address of every endpoint and yield results as they finish.

    Results come in the order the probes finish. From
    `PARALLEL_ANALYSIS_MIN_ENDPOINTS` endpoints on, chains are analysed in
    `workers` processes (default: one per core but one) while the event loop
    goes on probing. With `workers=0` every analysis stays on the event
    loop. Closing the generator early cancels the probes still running.
    """
    if workers is None:
        workers = worker_count()
    if workers == 0 or len(endpoints) < PARALLEL_ANALYSIS_MIN_ENDPOINTS:
        async for probe in probe_many(endpoints, settings, resolver):
            result = result_from_probe(probe, policy=policy, now=now)
            _log_result(result)
            yield result
        return

    pool = AnalysisPool(policy, workers)
    queue: asyncio.Queue[_Queued] = asyncio.Queue(maxsize=settings.concurrency)
    producer = asyncio.create_task(
        _probe_and_submit(endpoints, settings, now, resolver, queue, pool)
    )
    try:
        while (item := await queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            probe, analysed = item
            report = None if analysed is None else await analysed
            result = _result_with_report(probe, report)
            _log_result(result)
            yield result
    finally:
        producer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await producer
        pool.close()


# An item from the probing task to `check_endpoints`: a probe with its
# analysis under way, an error that stopped the probing, or `None` once every
# probe is done.
_Queued = (
    tuple[ProbeResult, "asyncio.Future[ChainReport] | None"] | BaseException | None
)


async def _probe_and_submit(
    endpoints: Sequence[Endpoint],
    settings: ProbeSettings,
    now: datetime,
    resolver: Resolver,
    queue: asyncio.Queue[_Queued],
    pool: AnalysisPool,
) -> None:
    """Probe, hand each chain to the pool, and queue the probe with its future."""
    try:
        async for probe in probe_many(endpoints, settings, resolver):
            analysed = pool.submit(probe, now) if probe.chain else None
            await queue.put((probe, analysed))
    except Exception as exc:
        await queue.put(exc)
    else:
        await queue.put(None)


def result_from_probe(
    probe: ProbeResult, *, policy: AnalysisPolicy, now: datetime
) -> Result:
    """Analyse what one probe saw; a probe without a chain is `unknown`."""
    report = None
    if probe.chain:
        endpoint = probe.endpoint
        report = analyze_chain(
            probe.chain,
            server_name=endpoint.server_name,
            address=endpoint.host if endpoint.is_ip else None,
            now=now,
            policy=policy,
        )
    return _result_with_report(probe, report)


def _result_with_report(probe: ProbeResult, report: ChainReport | None) -> Result:
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
    if report is None and probe.starttls_not_offered is not None:
        # A server that keeps a STARTTLS protocol in plain text is a finding
        # about the server, not a failure to reach it.
        finding = Finding(
            code="starttls_not_offered",
            severity=Severity.CRITICAL,
            message=probe.starttls_not_offered,
        )
        return replace(unknown, status=Status.CRITICAL, findings=(finding,))
    if report is None:
        error = probe.error or ProbeError(
            ErrorReason.NO_CERTIFICATE, "The server sent no certificate."
        )
        return replace(unknown, error=error)

    findings = report.findings
    if probe.client_certificate_requested:
        findings = (*findings, CLIENT_CERTIFICATE_FINDING)
    return replace(
        unknown, status=status_from(findings), findings=findings, report=report
    )


@dataclass(frozen=True)
class PathResults:
    """What a check of files and folders found.

    `skipped` lists the files inside folders that contain no certificate
    data at all (keys, CSRs, notes), which a folder walk passes over. A file
    named directly is never skipped: it gives an `unknown` result instead.
    """

    results: list[Result]
    skipped: list[FileProblem]


def check_paths(
    paths: Iterable[str | Path],
    *,
    policy: AnalysisPolicy,
    now: datetime,
    pkcs12_password: bytes | None = None,
) -> PathResults:
    """Read every certificate in the given files and folders and analyse each.

    Each result's `target` is the path as given (`~` not expanded) and its
    `path` the file the certificate was read from.
    """
    found = PathResults(results=[], skipped=[])
    for given in paths:
        path = Path(given).expanduser()
        in_folder = path.is_dir()
        for item in read_path(path, pkcs12_password=pkcs12_password):
            if (
                in_folder
                and isinstance(item, FileProblem)
                and item.not_certificate_file
            ):
                logger.info("skipped %s: %s", item.path, item.message)
                found.skipped.append(item)
                continue
            result = _result_from_file(str(given), item, policy=policy, now=now)
            _log_result(result)
            found.results.append(result)
    return found


def _result_from_file(
    target: str,
    item: StoredCertificate | FileProblem,
    *,
    policy: AnalysisPolicy,
    now: datetime,
) -> Result:
    if isinstance(item, FileProblem):
        return Result(
            target=target,
            path=item.path,
            status=Status.UNKNOWN,
            error=ProbeError(ErrorReason.FILE_ERROR, item.message),
        )
    report = analyze_certificate(item.der, now=now, policy=policy)
    return Result(
        target=target,
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
    if result.report is None:
        codes: list[str] = [result.error.reason] if result.error else []
        codes += [finding.code for finding in result.findings]
        logger.info(
            "checked %s at %s: %s (%s)",
            result.target,
            result.place,
            result.status,
            ", ".join(codes),
        )
        return
    logger.info(
        "checked %s at %s: %s, %s days left",
        result.target,
        result.place,
        result.status,
        result.days_left,
    )
