"""The page of one endpoint: its addresses, chains, findings, history and changes.

Only members of the endpoint's team see it. Anyone else gets 404, as for
an id that does not exist, so that ids reveal nothing about other teams.
Owners and members also get forms that scan the endpoint now, change its
tags, scan interval and enabled flag, and remove it after a confirmation
page. `endpoint_actions` does the work. Viewers get no forms, and 403 if
they send one anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from certwatch.commands.history import describe_change
from certwatch.commands.output import format_interval, format_source_interval
from certwatch.commands.queries import ServedCertificate, served_certificates
from certwatch.errors import CertwatchError
from certwatch.store.accounts import LoginSession, team_role
from certwatch.store.changes import CertificateChange, list_changes
from certwatch.store.deployments import CertificateSummary, certificate_summaries
from certwatch.store.inventory import (
    FOLLOW_DEFAULT,
    EndpointRecord,
    get_endpoint,
    remove_endpoint,
)
from certwatch.store.models import EndpointRow
from certwatch.store.observations import StoredObservation, latest_observations
from certwatch.web.accounts import render
from certwatch.web.advice import Advice, error_advice, finding_advice
from certwatch.web.auth import CurrentUser, FormBody, check_csrf, require_role
from certwatch.web.dashboard import STATUS_WORDS
from certwatch.web.dependencies import Context, WebContext
from certwatch.web.endpoint_actions import (
    SettingsForm,
    parse_settings,
    save_settings,
    scan_now,
)
from certwatch.web.probe_slots import ProbeSlotsFull
from certwatch.x509.facts import days_left
from certwatch.x509.model import Finding, Severity

# Endpoint ids are 32-bit integers in the store. A larger number in a URL
# is an id that does not exist, and PostgreSQL would reject it as a query
# parameter.
MAX_ID = 2**31 - 1

WRITER_ROLES = ("owner", "member")
"""The team roles that may scan, change and remove endpoints."""

DONE_NOTICES = {
    "scanned": "Scanned now; the addresses below show the new scan.",
    "saved": "The settings are saved.",
}
"""The notice after a redirect, by the `done` query parameter."""

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
    request: Request,
    context: Context,
    login: CurrentUser,
    endpoint_id: int,
    done: str = "",
) -> HTMLResponse:
    """Show one endpoint of the user's teams; 404 for any other id."""
    return _endpoint_response(
        request, context, login, endpoint_id, notice=DONE_NOTICES.get(done)
    )


@router.post(
    "/endpoints/{endpoint_id:int}/scan",
    response_class=HTMLResponse,
    response_model=None,
)
def scan_endpoint(
    request: Request,
    context: Context,
    login: CurrentUser,
    form: FormBody,
    endpoint_id: int,
) -> HTMLResponse | RedirectResponse:
    """Scan the endpoint now and show its page with the new scan."""
    check_csrf(request, form, login)
    with context.sessions() as session:
        record, team_id = _writable_endpoint(session, login, endpoint_id)
    try:
        scan_now(context, record, team_id)
    except ProbeSlotsFull as exc:
        return _endpoint_response(
            request, context, login, endpoint_id, error=exc.detail, status_code=429
        )
    return RedirectResponse(f"/endpoints/{endpoint_id}?done=scanned", status_code=303)


@router.post(
    "/endpoints/{endpoint_id:int}/settings",
    response_class=HTMLResponse,
    response_model=None,
)
def change_settings(
    request: Request,
    context: Context,
    login: CurrentUser,
    form: FormBody,
    endpoint_id: int,
) -> HTMLResponse | RedirectResponse:
    """Store the endpoint's tags, scan interval and enabled flag."""
    check_csrf(request, form, login)
    sent = SettingsForm.of(form)
    with context.sessions() as session, session.begin():
        record, _ = _writable_endpoint(session, login, endpoint_id)
        problem: str | None = None
        try:
            save_settings(session, record, parse_settings(sent), context)
        except CertwatchError as exc:
            problem = str(exc)
    if problem is not None:
        return _endpoint_response(
            request,
            context,
            login,
            endpoint_id,
            error=problem,
            settings=sent,
            status_code=400,
        )
    return RedirectResponse(f"/endpoints/{endpoint_id}?done=saved", status_code=303)


@router.get("/endpoints/{endpoint_id:int}/remove", response_class=HTMLResponse)
def remove_page(
    request: Request, context: Context, login: CurrentUser, endpoint_id: int
) -> HTMLResponse:
    """Ask the user to confirm the removal of the endpoint."""
    with context.sessions() as session:
        record, _ = _writable_endpoint(session, login, endpoint_id)
    return render(
        request, context, "endpoint_remove.html", {"record": record}, login=login
    )


@router.post(
    "/endpoints/{endpoint_id:int}/remove",
    response_class=HTMLResponse,
    response_model=None,
)
def remove(
    request: Request,
    context: Context,
    login: CurrentUser,
    form: FormBody,
    endpoint_id: int,
) -> RedirectResponse:
    """Remove the endpoint with its observations, as `DELETE /api/endpoints/{id}`."""
    check_csrf(request, form, login)
    with context.sessions() as session, session.begin():
        _writable_endpoint(session, login, endpoint_id)
        remove_endpoint(session, endpoint_id)
    return RedirectResponse("/dashboard", status_code=303)


def _endpoint_response(
    request: Request,
    context: WebContext,
    login: LoginSession,
    endpoint_id: int,
    *,
    notice: str | None = None,
    error: str | None = None,
    settings: SettingsForm | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    now = context.now_fn()
    default_interval = context.scans.monitor.default_interval
    with context.sessions() as session:
        record = _visible_endpoint(session, login, endpoint_id)
        team_id = _team_id(session, endpoint_id)
        assert team_id is not None
        role = team_role(session, login.user_id, team_id)
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
        "interval": format_source_interval(record.interval, default_interval),
        "days_left": (
            days_left(record.schedule.not_after, now)
            if record.schedule.not_after is not None
            else None
        ),
        "can_edit": role in WRITER_ROLES,
        "settings": settings
        or SettingsForm.of_record(record, _interval_field(record.interval)),
        "notice": notice,
        "error": error,
    }
    return render(
        request, context, "endpoint.html", values, login=login, status_code=status_code
    )


def _team_id(session: Session, endpoint_id: int) -> int | None:
    if endpoint_id > MAX_ID:
        return None
    return session.scalar(
        select(EndpointRow.team_id).where(EndpointRow.id == endpoint_id)
    )


def _visible_endpoint(
    session: Session, login: LoginSession, endpoint_id: int, role: str = "viewer"
) -> EndpointRecord:
    """Return the endpoint when the user has at least `role` in its team.

    Raises:
        HTTPException: 404 for an unknown id and for another team's
            endpoint; 403 when the user's role is below `role`.
    """
    team_id = _team_id(session, endpoint_id)
    if team_id is None:
        raise HTTPException(404, "Not Found")
    require_role(session, login, team_id, role)
    record = get_endpoint(session, endpoint_id)
    if record is None:
        raise HTTPException(404, "Not Found")
    return record


def _writable_endpoint(
    session: Session, login: LoginSession, endpoint_id: int
) -> tuple[EndpointRecord, int]:
    """Return the endpoint and its team id when the user may change it.

    Raises:
        HTTPException: 404 as `_visible_endpoint`; 403 for a viewer.
    """
    record = _visible_endpoint(session, login, endpoint_id, "member")
    team_id = _team_id(session, endpoint_id)
    assert team_id is not None
    return record, team_id


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


def _interval_field(interval: timedelta | None) -> str:
    """Return the text of the interval field: `default` when it follows the default."""
    return FOLLOW_DEFAULT if interval is None else format_interval(interval)
