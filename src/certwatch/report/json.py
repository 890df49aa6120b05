"""The JSON document of `certwatch check --json` (schema in docs/json-output.md)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from certwatch.report.summary import summarise_endpoints
from certwatch.result import Result, Status, worst_status
from certwatch.sources.files import FileProblem
from certwatch.x509.facts import days_left
from certwatch.x509.model import CertificateFacts

SCHEMA_VERSION = 1


def render_document(
    results: Sequence[Result],
    *,
    now: datetime,
    skipped: Sequence[FileProblem] = (),
) -> dict[str, Any]:
    """Build the whole JSON document for a finished run.

    `skipped` are files in folders that held no certificate data.
    """
    status = worst_status([r.status for r in results])
    counts = {s.value: sum(1 for r in results if r.status is s) for s in Status}
    return {
        "schema_version": SCHEMA_VERSION,
        "checked_at": _timestamp(now),
        "status": status.value,
        "exit_code": status.exit_code,
        "counts": counts,
        "endpoints": [
            {
                "target": summary.target,
                "status": summary.status.value,
                "days_left": summary.days_left,
                "results": summary.result_count,
            }
            for summary in summarise_endpoints(results)
        ],
        "results": [render_result(r, now=now) for r in results],
        "skipped_files": [
            {"path": item.path, "message": item.message} for item in skipped
        ],
    }


def render_result(result: Result, *, now: datetime) -> dict[str, Any]:
    """Build the JSON object of one result."""
    report = result.report
    document: dict[str, Any] = {"target": result.target}
    if result.path is not None:
        document.update(kind="file", path=result.path, index=result.index)
    else:
        document.update(
            kind="endpoint",
            host=result.host,
            port=result.port,
            server_name=result.server_name,
            address=result.address,
            protocol=result.protocol,
            tls_version=result.tls_version,
        )
    error = result.error
    document.update(
        status=result.status.value,
        error=None
        if error is None
        else {"reason": error.reason, "message": error.message},
        certificate=render_facts(report.leaf, now=now)
        if report and report.leaf
        else None,
        chain=[render_facts(f, now=now) for f in report.chain] if report else [],
        valid_path=list(report.valid_path) if report and report.valid_path else None,
        findings=[
            {"code": f.code, "severity": f.severity.label, "message": f.message}
            for f in result.findings
        ],
    )
    return document


def render_facts(facts: CertificateFacts, *, now: datetime) -> dict[str, Any]:
    """Build the JSON object of one certificate's facts."""
    lifetime_days = None
    if facts.not_before is not None and facts.not_after is not None:
        lifetime = facts.not_after - facts.not_before
        lifetime_days = round(lifetime.total_seconds() / 86400, 3)
    return {
        "subject": facts.subject,
        "issuer": facts.issuer,
        "common_name": facts.common_name,
        "serial": facts.serial,
        "dns_names": list(facts.dns_names),
        "ip_addresses": list(facts.ip_addresses),
        "not_before": _timestamp(facts.not_before),
        "not_after": _timestamp(facts.not_after),
        "days_left": None
        if facts.not_after is None
        else days_left(facts.not_after, now),
        "lifetime_days": lifetime_days,
        "sha256": facts.sha256,
        "spki_sha256": facts.spki_sha256,
        "key_type": facts.key_type,
        "key_size": facts.key_size,
        "signature_algorithm": facts.signature_algorithm,
        "signature_hash": facts.signature_hash,
        "is_ca": facts.is_ca,
        "self_issued": facts.self_issued,
        "ocsp_urls": list(facts.ocsp_urls),
        "ca_issuers_urls": list(facts.ca_issuers_urls),
        "crl_urls": list(facts.crl_urls),
        "parse_problems": list(facts.parse_problems),
    }


def _timestamp(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
