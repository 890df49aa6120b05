"""The JSON API's certificates (with their deployments) and alerts.

Certificates are stored once for the whole site, but a caller sees only
the places of its own teams: a certificate that none of them ever showed
gets 404, as an unknown fingerprint does. Alerts belong to one team each.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query

from certwatch.store.alerts import acknowledge_alert
from certwatch.store.team_alerts import (
    AlertState,
    TeamAlert,
    team_alert,
    team_alert_page,
)
from certwatch.store.team_certificates import (
    TeamCertificate,
    team_certificate,
    team_certificate_page,
)
from certwatch.web.api_auth import ApiError, Caller, not_found
from certwatch.web.api_models import (
    AcknowledgeIn,
    AlertOut,
    AlertPage,
    CertificateOut,
    CertificatePageOut,
    PlaceOut,
)
from certwatch.web.dependencies import Context
from certwatch.web.ids import MAX_BIG_ID, Offset, is_row_id

MAX_PAGE = 500
DEFAULT_PAGE = 100

router = APIRouter(prefix="/api")

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="items to return")]


@router.get("/certificates", response_model=CertificatePageOut, tags=["certificates"])
def list_certificates(
    context: Context,
    caller: Caller,
    team: int | None = None,
    offset: Offset = 0,
    limit: Limit = DEFAULT_PAGE,
) -> CertificatePageOut:
    """List the certificates the caller's teams serve now, soonest expiry first.

    Each certificate lists its current places in those teams.
    """
    with context.sessions() as session:
        team_ids = _team_ids(caller.team_roles(session), team)
        page = team_certificate_page(session, team_ids, offset=offset, limit=limit)
    items = [_certificate_out(found) for found in page.certificates]
    return CertificatePageOut(items=items, total=page.total, offset=offset, limit=limit)


@router.get(
    "/certificates/{sha256}", response_model=CertificateOut, tags=["certificates"]
)
def read_certificate(context: Context, caller: Caller, sha256: str) -> CertificateOut:
    """Return a certificate with every place in the caller's teams, now or before."""
    with context.sessions() as session:
        team_ids = list(caller.team_roles(session))
        found = team_certificate(session, sha256.lower(), team_ids)
    if found is None:
        raise not_found("Certificate", sha256)
    return _certificate_out(found)


@router.get("/alerts", response_model=AlertPage, tags=["alerts"])
def list_alerts(
    context: Context,
    caller: Caller,
    team: int | None = None,
    state: AlertState = AlertState.OPEN,
    offset: Offset = 0,
    limit: Limit = DEFAULT_PAGE,
) -> AlertPage:
    """List the alerts of the caller's teams in one state.

    Open and acknowledged alerts come critical first, then newest first;
    resolved ones most recently resolved first.
    """
    now = context.now_fn()
    with context.sessions() as session:
        team_ids = _team_ids(caller.team_roles(session), team)
        page = team_alert_page(
            session, team_ids, state=state, now=now, offset=offset, limit=limit
        )
    items = [_alert_out(alert) for alert in page.alerts]
    return AlertPage(items=items, total=page.total, offset=offset, limit=limit)


@router.post("/alerts/{alert_id}/acknowledge", response_model=AlertOut, tags=["alerts"])
def acknowledge(
    context: Context, caller: Caller, alert_id: int, body: AcknowledgeIn
) -> AlertOut:
    """Acknowledge an alert until a time, or until the next reminder threshold.

    Without `until`, reminders stop until a threshold after the one crossed
    last is crossed, as `certwatch alerts ack` does.
    """
    if not is_row_id(alert_id, MAX_BIG_ID):
        raise not_found("Alert", alert_id)
    now = context.now_fn()
    with context.sessions() as session, session.begin():
        roles = caller.team_roles(session)
        found = team_alert(session, alert_id, list(roles))
        if found is None:
            raise not_found("Alert", alert_id)
        caller.require(session, found.team_id, "member", "Alert")
        until, threshold = _acknowledgement(found, body, now)
        acknowledge_alert(
            session, alert_id, until=until, threshold=threshold, by=caller.actor
        )
        updated = team_alert(session, alert_id, list(roles))
    assert updated is not None
    return _alert_out(updated)


def _acknowledgement(
    found: TeamAlert, body: AcknowledgeIn, now: datetime
) -> tuple[datetime | None, str | None]:
    if body.until is not None:
        if body.until.tzinfo is None:
            raise ApiError(
                422,
                f"Invalid until {body.until.isoformat()!r}: give a time with a "
                "zone, such as 2026-07-01T00:00:00Z.",
            )
        try:
            # The store keeps UTC, and a time near the ends of the calendar
            # in another zone has no UTC form.
            until = body.until.astimezone(UTC)
        except OverflowError:
            raise ApiError(
                422,
                f"Invalid until {body.until.isoformat()!r}: it is outside the "
                "years 1 to 9999 in UTC; give a time within them.",
            ) from None
        if until <= now:
            raise ApiError(
                422,
                f"Invalid until {body.until.isoformat()!r}: it has passed; give "
                "a later time.",
            )
        return until, None
    if found.threshold is None:
        raise ApiError(
            422,
            f"Alert {found.id} has no reminder threshold recorded yet: give "
            "until with a time.",
        )
    return None, found.threshold


def _team_ids(roles: dict[int, str], team: int | None) -> list[int]:
    if team is None:
        return list(roles)
    if team not in roles:
        raise not_found("Team", team)
    return [team]


def _certificate_out(found: TeamCertificate) -> CertificateOut:
    facts = found.certificate
    return CertificateOut(
        sha256=facts.sha256,
        subject=facts.subject,
        issuer=facts.issuer,
        common_name=facts.common_name,
        dns_names=list(facts.dns_names),
        not_before=facts.not_before,
        not_after=facts.not_after,
        deployments=[
            PlaceOut(
                team_id=place.team_id,
                target=place.target,
                endpoint_id=place.endpoint_id,
                address=place.address,
                file_source_id=place.file_source_id,
                path=place.path,
                position=place.position,
                first_seen_at=place.first_seen_at,
                last_seen_at=place.last_seen_at,
                current=place.current,
            )
            for place in found.places
        ],
    )


def _alert_out(alert: TeamAlert) -> AlertOut:
    return AlertOut(
        id=alert.id,
        team_id=alert.team_id,
        event=alert.event,
        code=alert.code,
        severity=alert.severity,
        message=alert.message,
        certificate_sha256=alert.certificate_sha256,
        endpoint_id=alert.endpoint_id,
        opened_at=alert.opened_at,
        updated_at=alert.updated_at,
        resolved_at=alert.resolved_at,
        acknowledged_until=alert.acknowledged_until,
        acknowledged_threshold=alert.acknowledged_threshold,
        acknowledged_by=alert.acknowledged_by,
    )
