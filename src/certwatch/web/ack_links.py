"""The page behind the acknowledge links of alert emails, usable without login.

Opening a link (GET) shows the alert and a button and changes nothing,
because mail scanners fetch the links in the emails they check. The button
POSTs the same `until` and `sig` back. The signature is the authority, so
the form carries no CSRF token: another site could at most make a browser
acknowledge with a link that it already holds. The POST acknowledges the
alert until the next reminder threshold, as `certwatch alerts ack ID` does,
and records the contact the email went to as who acknowledged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from certwatch.alerts.ack_links import ACK_KEY_NAME, AckLinkSigner
from certwatch.store.alerts import (
    AlertRecord,
    acknowledge_alert,
    find_team,
    get_alert,
    list_contacts,
    newest_threshold,
)
from certwatch.store.secrets import find_site_secret
from certwatch.web.accounts import render, render_message
from certwatch.web.auth import FormBody, OptionalLogin
from certwatch.web.dependencies import Context, WebContext

MAX_ALERT_ID = 2**62
"""The largest alert id, within the databases' 64-bit integers."""

HEADING = "Acknowledge an alert"
LINK_INVALID = (
    "This acknowledge link is invalid: open the link exactly as the email has "
    "it, or acknowledge the alert on the alerts page."
)

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class _Checked:
    """A link whose signature matched: its alert and the contact it was sent to."""

    alert: AlertRecord
    contact: str
    until: datetime


@router.get("/alerts/{alert_id}/ack", response_class=HTMLResponse)
def ack_page(
    request: Request,
    context: Context,
    login: OptionalLogin,
    alert_id: str,
    until: str = "",
    sig: str = "",
) -> HTMLResponse:
    """Show the alert of an acknowledge link and the button that acknowledges it."""
    with context.sessions() as session:
        checked, problem = _check(session, context, alert_id, until, sig)
    if checked is None:
        return render_message(request, context, login, HEADING, problem)
    values = {"state": "confirm", "until": until, "sig": sig}
    return _page(request, context, login, checked, values)


@router.post("/alerts/{alert_id}/ack", response_class=HTMLResponse)
def ack(
    request: Request,
    context: Context,
    login: OptionalLogin,
    form: FormBody,
    alert_id: str,
) -> HTMLResponse:
    """Acknowledge the alert of a signed link until its next reminder threshold."""
    with context.sessions() as session, session.begin():
        checked, problem = _check(
            session, context, alert_id, form.get("until"), form.get("sig")
        )
        threshold = None
        if checked is not None:
            threshold = newest_threshold(session, checked.alert.id)
            if threshold is None:
                problem = (
                    f"Alert {checked.alert.id} has no reminder threshold recorded "
                    "yet: snooze it until a date on the alerts page instead."
                )
            else:
                acknowledge_alert(
                    session,
                    checked.alert.id,
                    until=None,
                    threshold=threshold,
                    by=checked.contact,
                )
    if checked is None or threshold is None:
        return render_message(
            request,
            context,
            login,
            HEADING,
            problem,
            status_code=409 if checked else 403,
        )
    values = {"state": "done", "threshold": threshold}
    return _page(request, context, login, checked, values)


def _check(
    session: Session, context: WebContext, alert_id: str, until: str, sig: str
) -> tuple[_Checked | None, str]:
    """Check a link; return its alert and contact, or `None` and the reason."""
    identifier = _number(alert_id, MAX_ALERT_ID)
    expires = _number(until, 2**40)
    key = find_site_secret(session, ACK_KEY_NAME)
    if identifier is None or expires is None or key is None or not sig:
        return None, LINK_INVALID
    alert = get_alert(session, identifier)
    team_id = find_team(session, alert.team) if alert is not None else None
    if alert is None or team_id is None:
        return None, LINK_INVALID

    signer = AckLinkSigner("", key)
    contact = next(
        (
            stored.address
            for stored in list_contacts(session, team_id)
            if stored.kind == "email"
            and signer.matches(identifier, stored.address, expires, sig)
        ),
        None,
    )
    if contact is None:
        return None, LINK_INVALID
    until_time = datetime.fromtimestamp(expires, UTC)
    if until_time <= context.now_fn():
        return None, (
            f"This acknowledge link expired on {until_time:%Y-%m-%d %H:%M} UTC: use "
            "the link of a newer email, or acknowledge the alert on the alerts page."
        )
    if alert.resolved_at is not None:
        return None, (
            f"Alert {identifier} was resolved on {alert.resolved_at:%Y-%m-%d %H:%M} "
            "UTC, so it needs no acknowledgement."
        )
    return _Checked(alert, contact, until_time), ""


def _number(text: str, maximum: int) -> int | None:
    stripped = text.strip()
    if not stripped.isdigit() or not 1 <= int(stripped) <= maximum:
        return None
    return int(stripped)


def _page(
    request: Request,
    context: WebContext,
    login: OptionalLogin,
    checked: _Checked,
    values: dict[str, Any],
) -> HTMLResponse:
    return render(
        request,
        context,
        "ack_link.html",
        {"alert": checked.alert, "contact": checked.contact, **values},
        login=login,
    )
