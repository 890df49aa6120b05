"""The page of one endpoint: its addresses, chains, findings, history and changes.

Only members of the endpoint's team see it. Anyone else gets 404, as for
an id that does not exist, so that ids reveal nothing about other teams.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from certwatch.commands.history import describe_change
from certwatch.commands.output import format_interval
from certwatch.commands.queries import ServedCertificate, served_certificates
from certwatch.store.accounts import (
    LoginSession,
)
from certwatch.store.changes import CertificateChange, list_changes
from certwatch.store.deployments import CertificateSummary, certificate_summaries
from certwatch.store.inventory import EndpointRecord, get_endpoint
from certwatch.store.models import EndpointRow
from certwatch.store.observations import StoredObservation, latest_observations
from certwatch.web.accounts import render
from certwatch.web.advice import Advice, error_advice, finding_advice
from certwatch.web.auth import CurrentUser, require_role
from certwatch.web.dashboard import STATUS_WORDS
from certwatch.web.dependencies import Context
from certwatch.x509.facts import days_left
from certwatch.x509.model import Finding, Severity

# Endpoint ids are 32-bit integers in the store. A larger number in a URL
# is an id that does not exist, and PostgreSQL would reject it as a query
# parameter.
MAX_ID = 2**31 - 1

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class ChainEntry:
    """One certificate of a presented chain, at its position (0 is the leaf).

    `summary` is `None` when the certificate is not stored, and `days_left`
    when its not_after is unknown.
    """

    position: int
    sha256: str
    summary: CertificateSummary | None
    days_left: int | None


@dataclass(frozen=True)
class AdvisedFinding:
    """A finding with its explanation and what to do about it."""

    finding: Finding
    advice: Advice

    @property
    def severity_class(self) -> str:
        """The status colour of the severity, `ok` for an informational finding."""
        if self.finding.severity is Severity.INFO:
            return "ok"
        return self.finding.severity.label


@dataclass(frozen=True)
class AddressView:
    """The latest observation at one address, ready for the page.

    `error` is `None` when the scan obtained a certificate.
    """

    observation: StoredObservation
    chain: tuple[ChainEntry, ...]
    findings: tuple[AdvisedFinding, ...]
    error: Advice | None

    @property
    def status_word(self) -> str:
        return STATUS_WORDS.get(self.observation.status.value, "Unknown")


@dataclass(frozen=True)
class HistoryEntry:
    """A leaf served at one address over a span of scans."""

    served: ServedCertificate
    summary: CertificateSummary | None


@dataclass(frozen=True)
class ChangeView:
    """A recorded change of leaf at one address, worded line by line."""

    change: CertificateChange
    lines: tuple[str, ...]


@router.get("/endpoints/{endpoint_id:int}", response_class=HTMLResponse)
def endpoint_page(
    request: Request, context: Context, login: CurrentUser, endpoint_id: int
) -> HTMLResponse:
    """Show one endpoint of the user's teams; 404 for any other id."""
    now = context.now_fn()
    with context.sessions() as session:
        record = _visible_endpoint(session, login, endpoint_id)
        observations = latest_observations(session, endpoint_id=endpoint_id)
        served = served_certificates(session, endpoint_id=endpoint_id)
        changes = list_changes(session, endpoint_id=endpoint_id)
        summaries = _summaries(session, observations, served, changes)
    values = {
        "record": record,
        "addresses": [_address_view(o, summaries, now) for o in observations],
        "history": [
            HistoryEntry(item, summaries.get(item.certificate_sha256))
            for item in served
        ],
        "changes": [
            ChangeView(change, tuple(describe_change(change)))
            for change in reversed(changes)
        ],
        "status_words": STATUS_WORDS,
        "interval": format_interval(record.interval),
        "days_left": (
            days_left(record.schedule.not_after, now)
            if record.schedule.not_after is not None
            else None
        ),
    }
    return render(request, context, "endpoint.html", values, login=login)


def _visible_endpoint(
    session: Session, login: LoginSession, endpoint_id: int
) -> EndpointRecord:
    """Return the endpoint when the user is a member of its team.

    Raises:
        HTTPException: 404 for an unknown id and for another team's endpoint.
    """
    team_id = None
    if endpoint_id <= MAX_ID:
        team_id = session.scalar(
            select(EndpointRow.team_id).where(EndpointRow.id == endpoint_id)
        )
    if team_id is None:
        raise HTTPException(404, "Not Found")
    require_role(session, login, team_id, "viewer")
    record = get_endpoint(session, endpoint_id)
    if record is None:
        raise HTTPException(404, "Not Found")
    return record


def _summaries(
    session: Session,
    observations: list[StoredObservation],
    served: list[ServedCertificate],
    changes: list[CertificateChange],
) -> dict[str, CertificateSummary]:
    """Read the facts of every certificate the page names, in one pass."""
    sha256s = {sha256 for o in observations for sha256 in o.chain}
    sha256s.update(item.certificate_sha256 for item in served)
    for change in changes:
        sha256s.update((change.old_sha256, change.new_sha256))
    return {s.sha256: s for s in certificate_summaries(session, sorted(sha256s))}


def _address_view(
    observation: StoredObservation,
    summaries: dict[str, CertificateSummary],
    now: datetime,
) -> AddressView:
    chain = []
    for position, sha256 in enumerate(observation.chain):
        summary = summaries.get(sha256)
        not_after = summary.not_after if summary is not None else None
        chain.append(
            ChainEntry(
                position,
                sha256,
                summary,
                days_left(not_after, now) if not_after is not None else None,
            )
        )
    findings = tuple(
        AdvisedFinding(finding, finding_advice(finding.code, finding.message))
        for finding in observation.findings
    )
    failed = observation.error_reason is not None
    return AddressView(
        observation=observation,
        chain=tuple(chain),
        findings=findings,
        error=error_advice(observation.error_reason) if failed else None,
    )
