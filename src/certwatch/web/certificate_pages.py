"""The certificate inventory pages: `/certificates` and `/certificates/SHA256`.

A user sees the certificates that the endpoints and files of the user's
teams serve, and of each only the places of those teams. A fingerprint
that no place of the user's teams ever showed gets 404, as an unknown
one does, so fingerprints reveal nothing about other teams' inventories.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse

from certwatch.report.table import short_name
from certwatch.store.accounts import TeamMembership, user_teams
from certwatch.store.deployments import CertificateSummary
from certwatch.store.stale import stale_message
from certwatch.store.team_certificates import (
    TeamCertificate,
    TeamPlace,
    TeamStaleDeployment,
    team_certificate,
    team_certificate_page,
    team_current_findings,
    team_stale_deployments,
)
from certwatch.web.accounts import render
from certwatch.web.auth import CurrentUser
from certwatch.web.dependencies import Context
from certwatch.x509.expiry import expiry_severity, expiry_windows
from certwatch.x509.facts import days_left
from certwatch.x509.model import CertificateFacts, Severity, Thresholds

PAGE_SIZE = 100
"""Certificates per page of `/certificates`."""

MAX_PAGE = 1_000_000
"""The highest page number accepted; later pages would overflow the offset."""

# Places listed per certificate in the inventory table; the certificate's
# own page lists them all.
PLACES_SHOWN = 5

_SHA256 = re.compile(r"[0-9a-f]{64}")

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class Expiry:
    """The page wording and CSS class of a not_after.

    `level` names the CSS class (`critical`, `warning`, `ok`, `unknown`),
    and `word` gives the same in words, so colour is never the only sign.
    `days` is `None` when the not_after is unknown.
    """

    not_after: str
    days: int | None
    word: str
    level: str


@dataclass(frozen=True)
class Grade:
    """The worst of a certificate's expiry and the findings of its current places.

    `level` names the CSS class and `word` gives the same in words. `codes`
    are the finding codes of that severity, such as `self_signed`, and are
    empty when the expiry alone sets the grade.
    """

    word: str
    level: str
    codes: tuple[str, ...]


@dataclass(frozen=True)
class PlaceView:
    """A place as a page shows it.

    `href` links to the endpoint's page, `None` for a file. `address` is
    the endpoint address or the file's path inside a folder source.
    """

    team: str
    target: str
    address: str | None
    href: str | None
    position: int
    first_seen: str
    last_seen: str
    stale: bool


@dataclass(frozen=True)
class AddressLink:
    """An endpoint address that still serves an older certificate."""

    target: str
    address: str
    href: str


@dataclass(frozen=True)
class StaleView:
    """A renewal that reached only some of the user's addresses.

    `newer` contains the fingerprint and not_after of each newer certificate
    that the user's addresses serve.
    """

    message: str
    severity: str
    places: list[AddressLink]
    newer: list[tuple[str, str]]


@dataclass(frozen=True)
class CertificateView:
    """A certificate with its current places, for the inventory table."""

    sha256: str
    title: str
    names: list[str]
    issuer: str
    expiry: Expiry
    grade: Grade
    places: list[PlaceView]
    stale: StaleView | None


@router.get("/certificates", response_class=HTMLResponse)
def certificates_page(
    request: Request,
    context: Context,
    login: CurrentUser,
    team: str = "",
    page: str = "1",
) -> HTMLResponse:
    """List the certificates the user's teams serve now, soonest expiry first."""
    number = page_number(page)
    now = context.now_fn()
    with context.sessions() as session:
        memberships = user_teams(session, login.user_id)
        team_ids = selected_teams(memberships, team)
        found = team_certificate_page(
            session, team_ids, offset=(number - 1) * PAGE_SIZE, limit=PAGE_SIZE
        )
        sha256s = [item.certificate.sha256 for item in found.certificates]
        stale = team_stale_deployments(session, sha256s, team_ids, now=now)
        findings = team_current_findings(session, sha256s, team_ids)
    certificates = [
        _certificate_view(
            item,
            stale.get(item.certificate.sha256),
            findings.get(item.certificate.sha256, {}),
            now,
        )
        for item in found.certificates
    ]
    values = {
        "memberships": memberships,
        "selected_team": team_ids[0] if team.strip() else None,
        "certificates": certificates,
        "total": found.total,
        "first": (number - 1) * PAGE_SIZE + 1,
        "last": (number - 1) * PAGE_SIZE + len(certificates),
        "pages": pager(number, found.total, PAGE_SIZE, {"team": team.strip()}),
        "places_shown": PLACES_SHOWN,
    }
    return render(request, context, "certificates.html", values, login=login)


@router.get("/certificates/{sha256}", response_class=HTMLResponse)
def certificate_page(
    request: Request, context: Context, login: CurrentUser, sha256: str
) -> HTMLResponse:
    """Show a certificate with every place of the user's teams, now and before."""
    fingerprint = sha256.strip().lower().replace(":", "")
    if not _SHA256.fullmatch(fingerprint):
        raise HTTPException(404, "Not Found")
    now = context.now_fn()
    with context.sessions() as session:
        team_ids = [m.team_id for m in user_teams(session, login.user_id)]
        found = team_certificate(session, fingerprint, team_ids)
        if found is None:
            raise HTTPException(404, "Not Found")
        stale = team_stale_deployments(session, [fingerprint], team_ids, now=now)
    item = stale.get(fingerprint)
    stale_places = _stale_places(item)
    summary = found.certificate
    values = {
        "certificate": summary,
        "title": _title(summary),
        "names": certificate_names(summary),
        "issuer": summary.issuer or "unknown",
        "subject": summary.subject or "unknown",
        "not_before": minute(summary.not_before),
        "expiry": expiry(summary.not_before, summary.not_after, now),
        "current": [place_view(p, stale_places) for p in found.places if p.current],
        "before": [place_view(p, set()) for p in found.places if not p.current],
        "stale": None if item is None else _stale_view(item, now),
    }
    return render(request, context, "certificate.html", values, login=login)


def page_number(text: str) -> int:
    """Parse the `page` query parameter.

    Raises:
        HTTPException: 400 when it is not a whole number from 1 to `MAX_PAGE`.
    """
    stripped = text.strip()
    if not stripped.isdigit() or not 1 <= int(stripped) <= MAX_PAGE:
        raise HTTPException(
            400,
            f"Invalid page number {text[:20]!r}: give a whole number from 1 to "
            f"{MAX_PAGE}.",
        )
    return int(stripped)


def selected_teams(memberships: Sequence[TeamMembership], team: str) -> list[int]:
    """Return the ids of the teams a listing shows: one, or all of the user's.

    Raises:
        HTTPException: 404 when `team` is not the id of one of the user's
            teams, as for a team that does not exist.
    """
    stripped = team.strip()
    if not stripped:
        return [m.team_id for m in memberships]
    if stripped.isdigit():
        for membership in memberships:
            if membership.team_id == int(stripped):
                return [membership.team_id]
    raise HTTPException(404, "Not Found")


@dataclass(frozen=True)
class Pager:
    """Links to the previous and next pages of a listing, `None` at either end."""

    number: int
    count: int
    previous: str | None
    next: str | None


def pager(number: int, total: int, size: int, parameters: dict[str, str]) -> Pager:
    """Build the page links of a listing, keeping the other query parameters."""
    count = max(1, -(-total // size))
    kept = "".join(f"{name}={value}&" for name, value in parameters.items() if value)

    def link(target: int) -> str:
        return f"?{kept}page={target}"

    return Pager(
        number=number,
        count=count,
        previous=link(min(number - 1, count)) if number > 1 else None,
        next=link(number + 1) if number < count else None,
    )


def expiry(
    not_before: datetime | None, not_after: datetime | None, now: datetime
) -> Expiry:
    """Grade a certificate's expiry with the default lifetime-aware windows.

    NOTE: the web service does not know the `--warning` and `--critical`
    thresholds the monitor may run with, so a page can call a certificate
    OK that the monitor's alerts already count as expiring.
    """
    if not_after is None:
        return Expiry("unknown", None, "Unknown", "unknown")
    facts = CertificateFacts(
        der=b"", sha256="", not_before=not_before, not_after=not_after
    )
    left = days_left(not_after, now)
    if not_after < now:
        return Expiry(minute(not_after), left, "Expired", "critical")
    severity = expiry_severity(facts, now, expiry_windows(facts, Thresholds()))
    if severity is Severity.CRITICAL:
        return Expiry(minute(not_after), left, "Critical", "critical")
    if severity is Severity.WARNING:
        return Expiry(minute(not_after), left, "Warning", "warning")
    return Expiry(minute(not_after), left, "OK", "ok")


# The finding severity that each expiry level stands for, to compare them.
_EXPIRY_SEVERITY = {
    "critical": Severity.CRITICAL,
    "warning": Severity.WARNING,
    "ok": Severity.INFO,
    "unknown": Severity.INFO,
}


def grade(expiry: Expiry, findings: Mapping[str, Severity]) -> Grade:
    """Grade a certificate by the worse of its expiry and its findings.

    `findings` maps the finding codes of the certificate's current places
    to their severity. Findings of severity info never change the grade.
    """
    worst = max(findings.values(), default=Severity.INFO)
    by_expiry = _EXPIRY_SEVERITY[expiry.level]
    if worst is Severity.INFO or worst < by_expiry:
        return Grade(expiry.word, expiry.level, ())
    codes = tuple(sorted(code for code, level in findings.items() if level == worst))
    if worst == by_expiry:
        return Grade(expiry.word, expiry.level, codes)
    return Grade(worst.label.capitalize(), worst.label, codes)


def minute(moment: datetime | None) -> str:
    """Format a time as `YYYY-MM-DD HH:MM` in UTC; "-" when unknown."""
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M")


def certificate_names(summary: CertificateSummary) -> list[str]:
    """Return the DNS names and IP addresses, else the CN or the subject."""
    names = [*summary.dns_names, *summary.ip_addresses]
    if not names and (summary.common_name or summary.subject):
        names = [summary.common_name or summary.subject or ""]
    return names


def place_view(place: TeamPlace, stale: set[tuple[int, str]]) -> PlaceView:
    """Describe a place for a page, marked stale when `stale` contains it."""
    if place.endpoint_id is not None:
        href: str | None = f"/endpoints/{place.endpoint_id}"
        address = place.address
        is_stale = (place.endpoint_id, place.address or "") in stale
    else:
        href = None
        address = place.path if place.path != place.target else None
        is_stale = False
    return PlaceView(
        team=place.team,
        target=place.target,
        address=address,
        href=href,
        position=place.position,
        first_seen=minute(place.first_seen_at),
        last_seen=minute(place.last_seen_at),
        stale=is_stale,
    )


def _certificate_view(
    item: TeamCertificate,
    stale: TeamStaleDeployment | None,
    findings: Mapping[str, Severity],
    now: datetime,
) -> CertificateView:
    summary = item.certificate
    stale_places = _stale_places(stale)
    expires = expiry(summary.not_before, summary.not_after, now)
    return CertificateView(
        sha256=summary.sha256,
        title=_title(summary),
        names=certificate_names(summary),
        issuer=short_name(summary.issuer),
        expiry=expires,
        grade=grade(expires, findings),
        places=[place_view(place, stale_places) for place in item.places],
        stale=None if stale is None else _stale_view(stale, now),
    )


def _title(summary: CertificateSummary) -> str:
    names = certificate_names(summary)
    if not names:
        return summary.sha256[:16]
    if len(names) == 1:
        return names[0]
    return f"{names[0]} (+{len(names) - 1} more)"


def _stale_places(item: TeamStaleDeployment | None) -> set[tuple[int, str]]:
    if item is None:
        return set()
    return {(leaf.endpoint_id, leaf.address) for leaf in item.stale}


def _stale_view(item: TeamStaleDeployment, now: datetime) -> StaleView:
    return StaleView(
        message=stale_text(item, now),
        severity=item.severity.label,
        places=[
            AddressLink(leaf.target, leaf.address, f"/endpoints/{leaf.endpoint_id}")
            for leaf in item.stale
        ],
        newer=[(summary.sha256, minute(summary.not_after)) for summary in item.newer],
    )


def stale_text(item: TeamStaleDeployment, now: datetime) -> str:
    """Word a stale deployment, counting only the user's addresses.

    The stale deployment rule compares addresses within one team, so the
    addresses that serve the newer certificate are the user's too.
    """
    old = item.certificate.not_after
    newest = max(
        (summary.not_after for summary in item.newer if summary.not_after),
        default=None,
    )
    stale = len(item.stale)
    if old is not None and newest is not None:
        return stale_message(
            stale,
            stale + len(item.renewed),
            old_not_after=old,
            new_not_after=newest,
            now=now,
        )
    # The rule compares not_after dates, so both exist for every stale
    # deployment it found; this wording only keeps the page readable if a
    # newer certificate's facts were missing.
    addresses = "address" if stale == 1 else "addresses"
    verb = "serves" if stale == 1 else "serve"
    return (
        f"{stale} {addresses} still {verb} this certificate while other "
        "addresses of the same team serve a newer one for the same names."
    )
