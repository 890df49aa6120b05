"""The alerts page: open, acknowledged and resolved alerts of the user's teams.

Each alert shows its places, the reminder threshold crossed last, its
severity, and the delivery of its latest message to each contact. Owners
and members acknowledge an alert until its next threshold, or snooze it
until a date. Both record the acknowledgement with the store functions
that `certwatch alerts ack` uses, so the web and the CLI silence an alert
the same way. An alert of another team gets 404, as an unknown id does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from certwatch.store.accounts import LoginSession, user_teams
from certwatch.store.alerts import acknowledge_alert, newest_threshold
from certwatch.store.models import EndpointRow
from certwatch.store.team_alerts import (
    AlertDelivery,
    AlertState,
    TeamAlert,
    alert_deliveries,
    team_alert,
    team_alert_counts,
    team_alert_page,
)
from certwatch.web.accounts import render
from certwatch.web.auth import (
    CurrentUser,
    Form,
    FormBody,
    check_csrf,
    require_role,
)
from certwatch.web.certificate_pages import (
    minute,
    page_number,
    pager,
    selected_teams,
)
from certwatch.web.dependencies import Context, WebContext
from certwatch.web.expiry_words import plural
from certwatch.web.team_settings import parse_id, redact_contact

PAGE_SIZE = 50
"""Alerts per page of `/alerts`."""

MAX_ALERT_ID = 2**62
"""The largest alert id, within the databases' 64-bit integers."""

MAX_SNOOZE_YEAR = 9998
"""The last year a snooze may end in; later times overflow date arithmetic."""

EVALUATION_INTERVAL_MINUTES = 5
"""The shortest time between two alert evaluations of `certwatch serve`.

It is `certwatch.commands.monitor.EVALUATE_EVERY`, which this module does
not import because the command module pulls in the whole monitor. A test
checks that both agree.
"""

SUMMARY_PLACES = 3
"""Places named in an alert's summary line; the details list every one."""

_STATE_TITLES = {
    AlertState.OPEN: "Open",
    AlertState.ACKNOWLEDGED: "Acknowledged",
    AlertState.RESOLVED: "Resolved",
}

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class PlaceLink:
    """A place of an alert.

    `href` links to the endpoint's page, `None` for a file and for an
    endpoint that was removed since, whose page no longer exists.
    """

    target: str
    detail: str | None
    href: str | None


@dataclass(frozen=True)
class DeliveryView:
    """The latest message of an alert to one contact, in words.

    `level` names the CSS class (`ok`, `info`, `warning`, `critical`) and
    `word` gives the same, so colour is never the only sign.
    """

    contact: str
    word: str
    level: str
    detail: str


@dataclass(frozen=True)
class AlertView:
    """One alert as the page shows it."""

    id: int
    team: str
    severity: str
    code: str
    message: str
    places: list[PlaceLink]
    more_places: int
    certificate_href: str | None
    threshold: str
    opened: str
    resolved: str | None
    acknowledgement: str | None
    escalated: str | None
    deliveries: list[DeliveryView]
    can_act: bool

    @property
    def summary_places(self) -> list[PlaceLink]:
        """The places named in the summary line, the first `SUMMARY_PLACES`."""
        return self.places[:SUMMARY_PLACES]


@router.get("/alerts", response_class=HTMLResponse)
def alerts_page(
    request: Request,
    context: Context,
    login: CurrentUser,
    state: str = "open",
    team: str = "",
    page: str = "1",
    done: str = "",
) -> HTMLResponse:
    """List the alerts of the user's teams in one state, most urgent first."""
    return _alerts_page(
        request,
        context,
        login,
        state=_state(state),
        team=team,
        page=page_number(page),
        done=done,
    )


@router.post(
    "/alerts/{alert_id}/acknowledge", response_class=HTMLResponse, response_model=None
)
def acknowledge(
    request: Request,
    context: Context,
    login: CurrentUser,
    form: FormBody,
    alert_id: str,
) -> HTMLResponse | RedirectResponse:
    """Acknowledge an alert until a threshold newer than the last is crossed."""
    check_csrf(request, form, login)
    identifier = parse_id(alert_id, MAX_ALERT_ID)
    with context.sessions() as session, session.begin():
        alert = _alert_to_change(session, login, identifier)
        problem = _resolved_problem(alert)
        threshold = None
        if problem is None:
            threshold = newest_threshold(session, identifier)
            if threshold is None:
                problem = (
                    f"Alert {identifier} has no reminder threshold recorded yet: "
                    "snooze it until a date instead."
                )
        if problem is None:
            acknowledge_alert(
                session, identifier, until=None, threshold=threshold, by=login.email
            )
    if problem is not None:
        return _failed(request, context, login, form, problem, 409)
    return _done(identifier)


@router.post(
    "/alerts/{alert_id}/snooze", response_class=HTMLResponse, response_model=None
)
def snooze(
    request: Request,
    context: Context,
    login: CurrentUser,
    form: FormBody,
    alert_id: str,
) -> HTMLResponse | RedirectResponse:
    """Acknowledge an alert until midnight UTC of the chosen date."""
    check_csrf(request, form, login)
    identifier = parse_id(alert_id, MAX_ALERT_ID)
    now = context.now_fn()
    with context.sessions() as session, session.begin():
        alert = _alert_to_change(session, login, identifier)
        problem, status_code = _resolved_problem(alert), 409
        until = None
        if problem is None:
            until, problem = parse_snooze_date(form.get("until"), now)
            status_code = 400
        if until is not None:
            acknowledge_alert(
                session, identifier, until=until, threshold=None, by=login.email
            )
    if problem is not None:
        return _failed(request, context, login, form, problem, status_code)
    return _done(identifier)


def parse_snooze_date(text: str, now: datetime) -> tuple[datetime | None, str | None]:
    """Parse the date of a snooze as midnight UTC, as `alerts ack --until` does.

    Returns the time, or `None` and a message that names the value and
    what to give instead.
    """
    stripped = text.strip()
    try:
        day = date.fromisoformat(stripped)
    except ValueError:
        return None, (
            f"Invalid date {stripped[:40]!r}: give a date such as "
            f"{(now + timedelta(days=7)).date().isoformat()} (YYYY-MM-DD)."
        )
    if day.year > MAX_SNOOZE_YEAR:
        return None, (
            f"Invalid date {stripped!r}: give a date before the year "
            f"{MAX_SNOOZE_YEAR + 1}."
        )
    moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
    if moment <= now:
        return None, (
            f"{stripped!r} is not in the future (now is {minute(now)} UTC): give "
            "a later date."
        )
    return moment, None


def threshold_text(threshold: str | None) -> str:
    """Describe a recorded reminder threshold in words."""
    if threshold is None:
        return "none recorded yet"
    kind, _, value = threshold.partition(":")
    if kind == "window":
        return "entered its warning window"
    if kind == "days":
        unit = "day" if value == "1" else "days"
        return f"{value} {unit} before not_after"
    if kind == "share":
        return f"{value}% of its lifetime left"
    if kind == "expired":
        return f"expired, daily reminder of {value}"
    if kind == "open":
        return "found"
    if kind == "resolved":
        return "resolved"
    return threshold


def _alerts_page(
    request: Request,
    context: WebContext,
    login: LoginSession,
    *,
    state: AlertState,
    team: str = "",
    page: int = 1,
    done: str = "",
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    now = context.now_fn()
    with context.sessions() as session:
        memberships = user_teams(session, login.user_id)
        team_ids = selected_teams(memberships, team)
        found = team_alert_page(
            session,
            team_ids,
            state=state,
            now=now,
            offset=(page - 1) * PAGE_SIZE,
            limit=PAGE_SIZE,
        )
        counts = team_alert_counts(session, team_ids, now=now)
        deliveries = alert_deliveries(session, found.alerts)
        notice = _done_notice(session, done, [m.team_id for m in memberships], now)
        existing = _existing_endpoints(session, found.alerts)
    roles = {m.team_id: m.role for m in memberships}
    alerts = [
        _alert_view(alert, deliveries.get(alert.id, []), roles, existing, now)
        for alert in found.alerts
    ]
    parameters = {"state": state.value, "team": team.strip()}
    values = {
        "state": state.value,
        "state_title": _STATE_TITLES[state],
        "tabs": [
            (
                tab.value,
                _STATE_TITLES[tab],
                counts[tab],
                _query({**parameters, "state": tab}),
            )
            for tab in AlertState
        ],
        "memberships": memberships,
        "selected_team": team_ids[0] if team.strip() else None,
        "alerts": alerts,
        "total": found.total,
        "pages": pager(page, found.total, PAGE_SIZE, parameters),
        "notice": notice,
        "error": error,
        "tomorrow": (now + timedelta(days=1)).date().isoformat(),
        "suggested": (now + timedelta(days=7)).date().isoformat(),
        "evaluation_minutes": EVALUATION_INTERVAL_MINUTES,
    }
    return render(
        request, context, "alerts.html", values, login=login, status_code=status_code
    )


def _state(text: str) -> AlertState:
    try:
        return AlertState(text.strip().lower())
    except ValueError:
        raise HTTPException(
            400,
            f"Invalid alert state {text[:20]!r}: choose one of "
            f"{', '.join(state.value for state in AlertState)}.",
        ) from None


def _query(parameters: Mapping[str, str]) -> str:
    return "?" + "&".join(f"{k}={v}" for k, v in parameters.items() if v)


def _alert_to_change(session: Session, login: LoginSession, alert_id: int) -> TeamAlert:
    """Return an alert the user may acknowledge.

    Raises:
        HTTPException: 404 when the alert is not of one of the user's
            teams; 403 when the user is a viewer of its team.
    """
    team_ids = [m.team_id for m in user_teams(session, login.user_id)]
    alert = team_alert(session, alert_id, team_ids)
    if alert is None:
        raise HTTPException(404, "Not Found")
    require_role(session, login, alert.team_id, "member")
    return alert


def _resolved_problem(alert: TeamAlert) -> str | None:
    if alert.resolved_at is None:
        return None
    return (
        f"Alert {alert.id} was resolved on {minute(alert.resolved_at)} UTC; only "
        "open alerts can be acknowledged."
    )


def _failed(
    request: Request,
    context: WebContext,
    login: LoginSession,
    form: Form,
    problem: str,
    status_code: int,
) -> HTMLResponse:
    """Show the alerts again with the problem, in the tab the form came from."""
    try:
        state = AlertState(form.get("state"))
    except ValueError:
        state = AlertState.OPEN
    return _alerts_page(
        request,
        context,
        login,
        state=state,
        error=problem,
        status_code=status_code,
    )


def _done(alert_id: int) -> RedirectResponse:
    return RedirectResponse(
        f"/alerts?state=acknowledged&done={alert_id}", status_code=303
    )


def _done_notice(
    session: Session, done: str, team_ids: list[int], now: datetime
) -> str | None:
    """Describe the acknowledgement just recorded, for the page after a redirect."""
    if not done.isdigit() or int(done) > MAX_ALERT_ID:
        return None
    alert = team_alert(session, int(done), team_ids)
    if alert is None:
        return None
    return f"Alert {alert.id} is {_acknowledgement(alert, now)}"


def _acknowledgement(alert: TeamAlert, now: datetime) -> str:
    """Say who acknowledged the alert and until when it stays silent.

    The result completes "Alert N is ...". An alert acknowledged until its
    next threshold stays silent until a threshold newer than the one
    recorded is crossed. A finding or unreachable alert has a single
    threshold, `open`, so it stays silent until the problem clears, which
    resolves the alert, or returns after clearing, which opens a new one.
    """
    by = f" by {alert.acknowledged_by}" if alert.acknowledged_by else ""
    threshold = alert.acknowledged_threshold
    if threshold is not None:
        kind = threshold.partition(":")[0]
        if kind == "open":
            silence = (
                "no more messages are sent about it until the problem clears "
                "(a resolved message) or returns after clearing (a new alert)"
            )
        elif kind == "expired":
            silence = (
                "no more messages are sent about it until the next daily "
                "reminder that the certificate has expired"
            )
        else:
            silence = (
                "no more reminders are sent until the certificate crosses the "
                f"next threshold after “{threshold_text(threshold)}”, such as "
                "fewer days left or expiry"
            )
        return f"acknowledged{by}: {silence}."
    if alert.acknowledged_until is not None and alert.acknowledged_until > now:
        return (
            f"acknowledged until {minute(alert.acknowledged_until)} UTC{by}: no "
            "messages are sent about it until then."
        )
    return "no longer acknowledged."


def _existing_endpoints(
    session: Session, alerts: Sequence[TeamAlert]
) -> dict[int, str | None]:
    """Return the endpoints that the alerts' places name and that exist.

    Each id maps to the endpoint's pinned address, `None` when DNS decides.
    A resolved alert keeps the places of an endpoint removed since, whose
    page returns 404.
    """
    ids = {
        int(place["endpoint_id"])
        for alert in alerts
        for place in alert.places
        if place.get("endpoint_id") is not None
    }
    if not ids:
        return {}
    found = session.execute(
        select(EndpointRow.id, EndpointRow.address).where(EndpointRow.id.in_(ids))
    )
    return {endpoint_id: address or None for endpoint_id, address in found}


def _alert_view(
    alert: TeamAlert,
    deliveries: Sequence[AlertDelivery],
    roles: Mapping[int, str],
    existing: Mapping[int, str | None],
    now: datetime,
) -> AlertView:
    state = alert.state(now)
    acknowledged = state is AlertState.ACKNOWLEDGED
    places = [_place(place, existing) for place in alert.places]
    return AlertView(
        id=alert.id,
        team=alert.team,
        severity=alert.severity,
        code=alert.code,
        message=alert.message,
        places=places,
        more_places=max(len(places) - SUMMARY_PLACES, 0),
        certificate_href=(
            f"/certificates/{alert.certificate_sha256}"
            if alert.certificate_sha256
            else None
        ),
        threshold=threshold_text(alert.threshold),
        opened=minute(alert.opened_at),
        resolved=None if alert.resolved_at is None else minute(alert.resolved_at),
        acknowledgement=_acknowledgement(alert, now) if acknowledged else None,
        escalated=None if alert.escalated_at is None else minute(alert.escalated_at),
        deliveries=[_delivery_view(delivery) for delivery in deliveries],
        can_act=state is not AlertState.RESOLVED
        and roles.get(alert.team_id) in ("owner", "member"),
    )


def _place(place: Mapping[str, Any], existing: Mapping[int, str | None]) -> PlaceLink:
    path = place.get("path")
    if path is not None:
        return PlaceLink(str(path), None, None)
    endpoint_id = place.get("endpoint_id")
    address = place.get("address")
    href = None
    if endpoint_id is not None and int(endpoint_id) in existing:
        href = f"/endpoints/{int(endpoint_id)}"
        # An endpoint-wide place, such as that of an unreachable endpoint,
        # has no address, but endpoints pinned to different addresses share
        # their target, so the pinned address distinguishes them.
        if address is None:
            address = existing[int(endpoint_id)]
    return PlaceLink(
        target=str(place.get("target") or ""),
        detail=None if address is None else str(address),
        href=href,
    )


def _delivery_view(delivery: AlertDelivery) -> DeliveryView:
    contact = redact_contact(delivery.contact_kind, delivery.contact_address)
    if delivery.delivered_at is not None:
        return DeliveryView(
            contact, "Delivered", "ok", f"at {minute(delivery.delivered_at)} UTC"
        )
    if delivery.failed_at is not None:
        return DeliveryView(
            contact,
            "Failed",
            "critical",
            f"gave up at {minute(delivery.failed_at)} UTC after "
            f"{plural(delivery.attempts, 'attempt')}: "
            f"{delivery.last_error or 'no reason'}",
        )
    if delivery.attempts:
        return DeliveryView(
            contact,
            "Retrying",
            "warning",
            f"{plural(delivery.attempts, 'failed attempt')}, the next at "
            f"{minute(delivery.next_attempt_at)} UTC: {delivery.last_error}",
        )
    return DeliveryView(
        contact,
        "Pending",
        "info",
        f"first attempt at {minute(delivery.next_attempt_at)} UTC",
    )
