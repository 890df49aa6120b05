"""A team's alert settings page: contacts, reminders, escalation, a test message.

`/teams/ID/settings` shows the team's contacts, redacted as the CLI shows
them because a webhook URL carries its secret, the reminder schedule and
the escalation delay. Owners add and remove contacts and change the
settings; owners and members send a test message to every contact, as
`certwatch notify test TEAM` does. Every form is validated by the parsers
of the CLI, so the web and the CLI accept the same values.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy.orm import Session

from certwatch.alerts.contacts import ContactAddress, ContactKind, parse_contact
from certwatch.alerts.errors import ContactError, DeliverySettingsError
from certwatch.alerts.evaluate import AlertSettings, load_alert_settings
from certwatch.alerts.message import EventKind, Notice
from certwatch.alerts.outbox import DeliveryReport, DeliveryState, deliver_now
from certwatch.alerts.policy import DEFAULT_SCHEDULE, ScheduleError, parse_schedule
from certwatch.alerts.receivers import check_contact
from certwatch.alerts.settings import load_delivery_settings, with_receiver_policy
from certwatch.commands.output import format_interval
from certwatch.errors import CertwatchError
from certwatch.monitor.settings import parse_duration
from certwatch.store.accounts import LoginSession
from certwatch.store.alerts import (
    ContactRecord,
    TeamSummary,
    add_contact,
    list_contacts,
    remove_contact,
    team_summaries,
    update_team_settings,
)
from certwatch.web.accounts import render
from certwatch.web.auth import CurrentUser, FormBody, check_csrf, require_role
from certwatch.web.certificate_pages import minute
from certwatch.web.dependencies import Context, WebContext

MAX_TEAM_ID = 2**31 - 1
"""The largest team or contact id, the maximum of the databases' integer column."""

# Notices written after these query parameters of a redirect.
_DONE = {
    "added": "The contact was added.",
    "updated": "The contact was changed.",
    "removed": "The contact was removed, with its messages waiting in the outbox.",
    "saved": "The settings were saved.",
}

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class ContactView:
    """A contact as the page shows it: redacted, with its health in words."""

    id: int
    contact: str
    kind: str
    escalation: bool
    healthy: bool
    health: str


@dataclass(frozen=True)
class TestResult:
    """The outcome of the test message to one contact (redacted)."""

    contact: str
    delivered: bool
    reason: str


@router.get("/teams/{team_id}/settings", response_class=HTMLResponse)
def settings_page(
    request: Request, context: Context, login: CurrentUser, team_id: str, done: str = ""
) -> HTMLResponse:
    """Show a team's contacts and alert settings, with forms for owners."""
    notice = _DONE.get(done)
    return _settings_page(request, context, login, parse_id(team_id), notice=notice)


@router.post(
    "/teams/{team_id}/contacts", response_class=HTMLResponse, response_model=None
)
def add_contact_form(
    request: Request, context: Context, login: CurrentUser, form: FormBody, team_id: str
) -> HTMLResponse | RedirectResponse:
    """Add a contact to the team, validated as `certwatch contact add` does."""
    check_csrf(request, form, login)
    identifier = parse_id(team_id)
    kind = form.get("kind").strip().lower()
    address = form.get("address")
    escalation = form.get("escalation") == "on"
    try:
        contact = parse_contact(f"{kind}:{address}")
        if not context.settings.allow_private_targets:
            # Only an owner may make the site look the name up.
            with context.sessions() as session:
                require_role(session, login, identifier, "owner")
            _check_receiver(context, contact)
    except ContactError as exc:
        with context.sessions() as session:
            require_role(session, login, identifier, "owner")
        # A URL that failed to parse is not shown back, because it may contain a secret.
        kept = address if kind == ContactKind.EMAIL.value else ""
        form_values = {"kind": kind, "address": kept, "escalation": escalation}
        return _settings_page(
            request,
            context,
            login,
            identifier,
            error=str(exc),
            form_values=form_values,
            status_code=400,
        )
    with context.sessions() as session, session.begin():
        require_role(session, login, identifier, "owner")
        add_contact(
            session,
            identifier,
            kind=contact.kind.value,
            address=contact.value,
            escalation=escalation,
            now=context.now_fn(),
        )
    return _back(identifier, "added")


@router.post(
    "/teams/{team_id}/contacts/{contact_id}/remove",
    response_class=HTMLResponse,
    response_model=None,
)
def remove_contact_form(
    request: Request,
    context: Context,
    login: CurrentUser,
    form: FormBody,
    team_id: str,
    contact_id: str,
) -> RedirectResponse:
    """Remove a contact of the team and its queued messages."""

    def remove(session: Session, identifier: int, found: ContactRecord) -> None:
        remove_contact(session, found.id)

    check_csrf(request, form, login)
    return _change_contact(context, login, team_id, contact_id, remove, "removed")


@router.post(
    "/teams/{team_id}/contacts/{contact_id}/escalation",
    response_class=HTMLResponse,
    response_model=None,
)
def escalation_form(
    request: Request,
    context: Context,
    login: CurrentUser,
    form: FormBody,
    team_id: str,
    contact_id: str,
) -> RedirectResponse:
    """Set or clear a contact's escalation flag, as adding it again does in the CLI."""

    def set_escalation(session: Session, identifier: int, found: ContactRecord) -> None:
        add_contact(
            session,
            identifier,
            kind=found.kind,
            address=found.address,
            escalation=form.get("escalation") == "on",
            now=context.now_fn(),
        )

    check_csrf(request, form, login)
    return _change_contact(
        context, login, team_id, contact_id, set_escalation, "updated"
    )


@router.post(
    "/teams/{team_id}/settings", response_class=HTMLResponse, response_model=None
)
def save_settings(
    request: Request, context: Context, login: CurrentUser, form: FormBody, team_id: str
) -> HTMLResponse | RedirectResponse:
    """Change the reminder schedule and the escalation delay.

    An empty field keeps its stored value.
    """
    check_csrf(request, form, login)
    identifier = parse_id(team_id)
    reminders = form.get("reminders").strip()
    escalate = form.get("escalate_after").strip()
    schedule: str | None = None
    delay: timedelta | None = None
    try:
        if reminders:
            schedule = parse_schedule(reminders).text
        if escalate:
            delay = parse_duration(escalate)
    except CertwatchError as exc:
        with context.sessions() as session:
            require_role(session, login, identifier, "owner")
        field = "Reminders" if isinstance(exc, ScheduleError) else "Escalate after"
        form_values = {"reminders": reminders, "escalate_after": escalate}
        return _settings_page(
            request,
            context,
            login,
            identifier,
            error=f"{field}: {exc}",
            form_values=form_values,
            status_code=400,
        )
    with context.sessions() as session, session.begin():
        require_role(session, login, identifier, "owner")
        update_team_settings(
            session, identifier, reminder_schedule=schedule, escalate_after=delay
        )
    return _back(identifier, "saved")


@router.post("/teams/{team_id}/notify-test", response_class=HTMLResponse)
def notify_test(
    request: Request, context: Context, login: CurrentUser, form: FormBody, team_id: str
) -> HTMLResponse:
    """Send a test message to every contact and show each outcome.

    Escalation contacts and unhealthy ones get it too, and a delivery
    clears the unhealthy mark, as with `certwatch notify test`.
    """
    check_csrf(request, form, login)
    identifier = parse_id(team_id)
    with context.sessions() as session:
        require_role(session, login, identifier, "member")
        team = team_summaries(session, identifier)[0]
    if team.contacts == 0:
        return _settings_page(
            request,
            context,
            login,
            identifier,
            error=f"Team {team.name} has no contacts: add one below first.",
            status_code=409,
        )
    try:
        delivery = load_delivery_settings()
    except DeliverySettingsError as exc:
        return _settings_page(
            request,
            context,
            login,
            identifier,
            error=f"The delivery settings are invalid, so nothing was sent: {exc}",
            status_code=503,
        )
    # The monitor in serve delivers under the same policy.
    delivery = with_receiver_policy(
        delivery, allow_private=context.settings.allow_private_targets
    )
    report = deliver_now(
        context.sessions,
        team_id=identifier,
        notice=_test_notice(context, identifier, team.name),
        settings=delivery,
        now_fn=context.now_fn,
    )
    return _settings_page(request, context, login, identifier, results=report)


def parse_id(text: str, maximum: int = MAX_TEAM_ID) -> int:
    """Parse an id from a URL path.

    Raises:
        HTTPException: 404 when it is not a whole number from 1 to `maximum`,
            as for an id that does not exist.
    """
    stripped = text.strip()
    if not stripped.isdigit() or not 1 <= int(stripped) <= maximum:
        raise HTTPException(404, "Not Found")
    return int(stripped)


def redact_contact(kind: str, address: str) -> str:
    """Return a stored contact in the redacted form that the CLI prints."""
    try:
        contact = ContactAddress(ContactKind(kind), address)
    except ValueError:
        # A kind that a newer certwatch stored, whose address may contain a secret.
        return f"{kind}:…"
    return contact.redacted()


def _settings_page(
    request: Request,
    context: WebContext,
    login: LoginSession,
    team_id: int,
    *,
    notice: str | None = None,
    error: str | None = None,
    form_values: dict[str, Any] | None = None,
    results: DeliveryReport | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    with context.sessions() as session:
        role = require_role(session, login, team_id, "viewer")
        summaries = team_summaries(session, team_id)
        if not summaries:
            raise HTTPException(404, "Not Found")
        contacts = list_contacts(session, team_id)
    team = summaries[0]
    values = {
        "team_id": team_id,
        "team": team.name,
        "role": role,
        "can_edit": role == "owner",
        "can_test": role in ("owner", "member"),
        "contacts": [_contact_view(contact) for contact in contacts],
        "kinds": [kind.value for kind in ContactKind],
        "reminders": team.reminder_schedule,
        "default_reminders": DEFAULT_SCHEDULE.text,
        "escalate_after": _team_escalation(team),
        "default_escalate_after": format_interval(_default_escalation()),
        "notice": notice,
        "error": error,
        "form": form_values or {},
        "results": None if results is None else _test_results(results),
    }
    return render(
        request,
        context,
        "team_settings.html",
        values,
        login=login,
        status_code=status_code,
    )


def _check_receiver(context: WebContext, contact: ContactAddress) -> None:
    """Reject a receiver at a non-public address, as the add page rejects targets.

    The request runs in a thread of FastAPI's pool, which has no event
    loop, so the lookup gets its own.

    A name that does not resolve is rejected too, because its address
    cannot be checked now.

    Raises:
        ReceiverNotAllowed: the contact's host is or resolves to a
            non-public address, or does not resolve.
    """
    timeout = context.scans.monitor.probe.timeout
    asyncio.run(
        check_contact(
            contact, context.scans.resolver, timeout=timeout, reject_unresolved=True
        )
    )


def _change_contact(
    context: WebContext,
    login: LoginSession,
    team_id: str,
    contact_id: str,
    change: Callable[[Session, int, ContactRecord], None],
    done: str,
) -> RedirectResponse:
    """Apply `change` to a contact of the team as its owner, then go back."""
    identifier = parse_id(team_id)
    with context.sessions() as session, session.begin():
        require_role(session, login, identifier, "owner")
        found = _team_contact(session, identifier, parse_id(contact_id))
        change(session, identifier, found)
    return _back(identifier, done)


def _team_contact(session: Session, team_id: int, contact_id: int) -> ContactRecord:
    for contact in list_contacts(session, team_id):
        if contact.id == contact_id:
            return contact
    raise HTTPException(404, "Not Found")


def _back(team_id: int, done: str) -> RedirectResponse:
    return RedirectResponse(f"/teams/{team_id}/settings?done={done}", status_code=303)


def _contact_view(contact: ContactRecord) -> ContactView:
    if contact.unhealthy_since is not None:
        health = (
            f"Unhealthy since {minute(contact.unhealthy_since)} UTC, gets no "
            f"alerts: {contact.last_error}"
        )
    elif contact.consecutive_failures:
        health = (
            f"{contact.consecutive_failures} failed "
            f"{'delivery' if contact.consecutive_failures == 1 else 'deliveries'} "
            "in a row: "
            f"{contact.last_error}"
        )
    else:
        health = "OK"
    return ContactView(
        id=contact.id,
        contact=redact_contact(contact.kind, contact.address),
        kind=contact.kind,
        escalation=contact.escalation,
        healthy=contact.unhealthy_since is None and not contact.consecutive_failures,
        health=health,
    )


def _team_escalation(team: TeamSummary) -> str | None:
    return None if team.escalate_after is None else format_interval(team.escalate_after)


def _default_escalation() -> timedelta:
    try:
        return load_alert_settings().escalate_after
    except CertwatchError:
        # serve stops at start-up on an invalid value, so this is a page
        # rendered by another process; show the built-in default.
        return AlertSettings().escalate_after


def _test_notice(context: WebContext, team_id: int, team: str) -> Notice:
    now = context.now_fn()
    # The random part keeps two tests in the same microsecond apart, since
    # the outbox sends a key to each contact once.
    suffix = secrets.token_hex(4)
    return Notice(
        key=f"test-{team_id}-{now:%Y%m%dT%H%M%S%fZ}-{suffix}",
        team=team,
        event=EventKind.TEST,
        generated_at=now,
    )


def _test_results(report: DeliveryReport) -> list[TestResult]:
    return [
        TestResult(
            contact=attempt.contact,
            delivered=attempt.state is DeliveryState.DELIVERED,
            reason=attempt.reason,
        )
        for attempt in sorted(report.attempts, key=lambda a: a.contact_id)
    ]
