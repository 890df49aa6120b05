"""`GET /calendar/{token}.ics`: a team's certificate expiries as an iCalendar feed.

Each certificate that the team's enabled sources deploy now (the leaf at
an endpoint address, or any certificate in a file) is one event at its
not_after, with a display alarm 7 days before. The UID joins the
certificate's SHA-256 and the team id, so a calendar application updates
the same event when the places change, and a renewed certificate is a new
event.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from fastapi import APIRouter, HTTPException, Response
from icalendar import Alarm, Calendar, Event
from sqlalchemy import select
from sqlalchemy.orm import Session

from certwatch import __version__
from certwatch.store.deployments import CertificateSummary, certificate_summaries
from certwatch.store.models import TeamRow
from certwatch.web.calendar_tokens import calendar_team
from certwatch.web.dependencies import Context
from certwatch.web.queries import CurrentDeployment, current_deployments

router = APIRouter(tags=["calendar"])

REMINDER_BEFORE = timedelta(days=7)
# How often subscribed calendar applications should fetch the feed again.
REFRESH_INTERVAL = timedelta(hours=1)
MEDIA_TYPE = "text/calendar; charset=utf-8"


@dataclass(frozen=True)
class CalendarEntry:
    """A certificate and the places, as display text, that deploy it now."""

    certificate: CertificateSummary
    places: tuple[str, ...]


@router.get(
    "/calendar/{token}.ics",
    response_class=Response,
    responses={
        200: {"content": {"text/calendar": {}}, "description": "The feed."},
        404: {"description": "No team has this calendar token."},
    },
)
@router.head("/calendar/{token}.ics", include_in_schema=False)
def team_calendar_feed(token: str, context: Context) -> Response:
    """Return the team's certificate expiries as an iCalendar (RFC 5545) feed."""
    with context.sessions() as session:
        team_id = calendar_team(session, token)
        if team_id is None:
            raise HTTPException(
                status_code=404,
                detail="No calendar has this URL: it may have been replaced; ask "
                "the team for its current one.",
            )
        body = team_calendar(session, team_id, now=context.now_fn())
    return Response(
        body,
        media_type=MEDIA_TYPE,
        # The URL is the secret, so shared caches must not keep the feed.
        headers={"Cache-Control": "private, max-age=300"},
    )


def team_calendar(session: Session, team_id: int, *, now: datetime) -> bytes:
    """Return the iCalendar feed of one team's current deployments."""
    team = session.scalar(select(TeamRow.name).where(TeamRow.id == team_id)) or ""
    return render_calendar(team, team_id, calendar_entries(session, team_id), now=now)


def calendar_entries(session: Session, team_id: int) -> list[CalendarEntry]:
    """Return the team's certificates deployed now, soonest not_after first.

    Certificates whose not_after could not be read are left out, because
    they have no date to place.
    """
    places: dict[str, set[str]] = {}
    for deployment in current_deployments(session, team_id=team_id):
        places.setdefault(deployment.sha256, set()).add(_place(deployment))
    summaries = certificate_summaries(session, sorted(places))
    entries = [
        CalendarEntry(summary, tuple(sorted(places[summary.sha256])))
        for summary in summaries
        if summary.not_after is not None
    ]
    entries.sort(
        key=lambda entry: (entry.certificate.not_after, entry.certificate.sha256)
    )
    return entries


def _place(deployment: CurrentDeployment) -> str:
    if deployment.kind == "file":
        return deployment.path or deployment.target
    if deployment.address:
        return f"{deployment.target} ({deployment.address})"
    return deployment.target


def render_calendar(
    team: str, team_id: int, entries: Sequence[CalendarEntry], *, now: datetime
) -> bytes:
    """Return the VCALENDAR of the entries, one VEVENT each, with CRLF lines."""
    calendar = Calendar()
    calendar.add("prodid", f"-//certwatch//certwatch {__version__}//EN")
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("x-wr-calname", f"Certificates of {team} (certwatch)")
    calendar.add(
        "x-wr-caldesc", f"When the certificates that team {team} serves expire."
    )
    calendar.add("refresh-interval", REFRESH_INTERVAL, parameters={"VALUE": "DURATION"})
    calendar.add("x-published-ttl", "PT1H")
    for entry in entries:
        calendar.add_component(_event(entry, team_id, now=now))
    body = calendar.to_ical()
    assert isinstance(body, bytes)
    return body


def _event(entry: CalendarEntry, team_id: int, *, now: datetime) -> Event:
    certificate = entry.certificate
    assert certificate.not_after is not None
    count = len(entry.places)
    summary = (
        f"Certificate {certificate_name(certificate)} expires "
        f"({count} {'place' if count == 1 else 'places'})"
    )
    event = Event()
    event.add("uid", f"certwatch-{certificate.sha256}-team-{team_id}")
    event.add("dtstamp", now)
    event.add("dtstart", certificate.not_after)
    event.add("summary", summary)
    event.add("description", _description(entry))
    alarm = Alarm()
    alarm.add("action", "DISPLAY")
    alarm.add("description", summary)
    alarm.add("trigger", -REMINDER_BEFORE)
    event.add_component(alarm)
    return event


def certificate_name(certificate: CertificateSummary) -> str:
    """Return the name that people use for the certificate.

    That is the common name, else the first DNS name or IP address, else
    the start of the SHA-256 fingerprint.
    """
    for name in (
        certificate.common_name,
        *certificate.dns_names,
        *certificate.ip_addresses,
    ):
        if name:
            return name
    return f"SHA-256 {certificate.sha256[:16]}"


def _description(entry: CalendarEntry) -> str:
    certificate = entry.certificate
    lines = []
    if certificate.dns_names or certificate.ip_addresses:
        names = ", ".join((*certificate.dns_names, *certificate.ip_addresses))
        lines.append(f"Names: {names}")
    if certificate.issuer:
        lines.append(f"Issuer: {certificate.issuer}")
    lines.append(f"SHA-256: {certificate.sha256}")
    lines.append("Deployed at:")
    lines.extend(f"- {place}" for place in entry.places)
    return "\n".join(lines)
