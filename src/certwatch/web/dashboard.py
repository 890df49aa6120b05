"""The dashboard: every endpoint and file source of the user's teams, by expiry.

GET query parameters filter the list by team, tag and status, so a
filtered view is a link that can be shared. The database pages the list
(`PAGE_SIZE` rows a page) through the `not_after` and `last_status`
columns, so a page of a 10,000-endpoint inventory reads one page of rows.
The chart above it counts the same filtered sources in one aggregate
query (`timeline.expiry_timeline`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from certwatch.result import Status
from certwatch.store.accounts import LoginSession, TeamMembership, user_teams
from certwatch.store.errors import StoreError
from certwatch.store.inventory import (
    EndpointRecord,
    FileSourceRecord,
    InventoryFilter,
    count_endpoints,
    count_file_sources,
    list_endpoints,
    list_file_sources,
    normalize_tags,
)
from certwatch.store.latest_reasons import latest_reasons
from certwatch.store.models import EndpointRow, EndpointTagRow
from certwatch.web.accounts import render
from certwatch.web.auth import CurrentUser
from certwatch.web.dependencies import Context, WebContext
from certwatch.web.endpoint_labels import endpoint_label
from certwatch.web.timeline import (
    STATUS_ORDER,
    ExpiryTimeline,
    expiry_timeline,
    render_chart,
)
from certwatch.x509.facts import days_left

PAGE_SIZE = 100
FILE_SOURCE_LIMIT = 100
"""The maximum number of file sources the dashboard lists; only the server adds them."""

MAX_TAG_CHOICES = 200

STATUS_CHOICES = ("critical", "warning", "unknown", "ok")

STATUS_WORDS = {
    "ok": "OK",
    "warning": "Warning",
    "critical": "Critical",
    "unknown": "Unknown",
    None: "Not scanned yet",
}

router = APIRouter(include_in_schema=False)


class FilterError(ValueError):
    """An invalid dashboard query parameter; the message names it and the fix."""


@dataclass(frozen=True)
class DashboardFilter:
    """The dashboard's query parameters, checked.

    `team_id` is `None` for every team of the user, `tag` is "" for any tag
    and `status` is "" for any status.
    """

    team_id: int | None = None
    tag: str = ""
    status: str = ""
    page: int = 1

    def query_string(self, page: int) -> str:
        """Return the query string of this filter at another page."""
        values: dict[str, Any] = {}
        if self.team_id is not None:
            values["team"] = self.team_id
        if self.tag:
            values["tag"] = self.tag
        if self.status:
            values["status"] = self.status
        values["page"] = page
        return urlencode(values)


@dataclass(frozen=True)
class SourceRow:
    """One line of the dashboard: an endpoint or a file source.

    `target` is the file's path, or the endpoint's target with its pinned
    address, such as `lb.test:8443 (at 192.0.2.21)`, as `certwatch list`
    prints it.
    `status` is `None` before the first scan. `days_left` and `not_after`
    are `None` until a scan obtained a certificate. `stale_expiry` is true
    when the latest scan obtained none, because they then describe an
    earlier scan. `reasons` are the error reasons and finding codes of the
    latest scan, such as `starttls_not_offered`.
    """

    kind: str
    id: int
    target: str
    team: str
    tags: tuple[str, ...]
    status: str | None
    not_after: datetime | None
    days_left: int | None
    last_scanned_at: datetime | None
    stale_expiry: bool
    reasons: tuple[str, ...] = ()

    @property
    def status_word(self) -> str:
        return STATUS_WORDS.get(self.status, "Unknown")

    @property
    def status_class(self) -> str:
        return self.status or "pending"


def parse_filter(
    teams: list[TeamMembership], team: str, tag: str, status: str, page: str
) -> DashboardFilter:
    """Check the dashboard's query parameters against the user's teams.

    Raises:
        FilterError: a parameter is invalid; the message names it and the fix.
    """
    team_id = None
    if team.strip():
        team_ids = {membership.team_id for membership in teams}
        if not team.strip().isdigit() or int(team) not in team_ids:
            # The same message for a team that does not exist and another
            # team's id, so that ids reveal nothing about other teams.
            raise FilterError(
                f"No team of yours has the id {team.strip()!r}: choose a team "
                "from the list."
            )
        team_id = int(team)
    clean_tag = tag.strip()
    if clean_tag:
        try:
            clean_tag = normalize_tags([clean_tag])[0]
        except StoreError as exc:
            raise FilterError(str(exc)) from None
    if status and status not in STATUS_CHOICES:
        raise FilterError(
            f"Unknown status {status!r}: choose one of {', '.join(STATUS_CHOICES)}."
        )
    page_text = page.strip() or "1"
    if not page_text.isdigit() or not 1 <= int(page_text) <= 1_000_000:
        raise FilterError(f"Invalid page {page!r}: give a page number from 1.")
    return DashboardFilter(team_id, clean_tag, status, int(page_text))


def inventory_filter(
    chosen: DashboardFilter, teams: list[TeamMembership]
) -> InventoryFilter:
    """Return the store filter for the dashboard filter, limited to the user's teams."""
    if chosen.team_id is not None:
        team_ids: tuple[int, ...] = (chosen.team_id,)
    else:
        team_ids = tuple(membership.team_id for membership in teams)
    return InventoryFilter(
        team_ids=team_ids,
        tags=(chosen.tag,) if chosen.tag else (),
        status=chosen.status or None,
    )


@router.get("/dashboard", response_class=HTMLResponse)
def dashboard(
    request: Request,
    context: Context,
    login: CurrentUser,
    team: str = "",
    tag: str = "",
    status: str = "",
    page: str = "",
) -> HTMLResponse:
    """Show the user's endpoints and file sources by expiry, filtered and paged."""
    now = context.now_fn()
    with context.sessions() as session:
        teams = user_teams(session, login.user_id)
        try:
            chosen = parse_filter(teams, team, tag, status, page)
        except FilterError as exc:
            values = _form_values(session, teams, DashboardFilter(), str(exc))
            values["raw"] = {"team": team, "tag": tag, "status": status}
            return _render(request, context, login, values, status_code=400)
        values = _form_values(session, teams, chosen, None)
        if teams:
            values.update(_listing(session, teams, chosen, now))
    return _render(request, context, login, values)


def _listing(
    session: Session,
    teams: list[TeamMembership],
    chosen: DashboardFilter,
    now: datetime,
) -> dict[str, Any]:
    filters = inventory_filter(chosen, teams)
    total = count_endpoints(session, filters)
    pages = max(1, math.ceil(total / PAGE_SIZE))
    # Sources without a not_after come first, because an endpoint that is
    # down or never sent a certificate needs a look as much as one about to
    # expire. At the end of the list it would sit on the last page, below
    # thousands of healthy endpoints.
    endpoints = list_endpoints(
        session,
        filters,
        by_expiry=True,
        undated_first=True,
        limit=PAGE_SIZE,
        offset=(chosen.page - 1) * PAGE_SIZE,
    )
    files = list_file_sources(
        session, filters, by_expiry=True, undated_first=True, limit=FILE_SOURCE_LIMIT
    )
    timeline = expiry_timeline(session, filters, now=now)
    reasons = latest_reasons(
        session,
        endpoint_ids=[record.id for record in endpoints],
        file_source_ids=[record.id for record in files],
    )
    return {
        "endpoints": [
            _endpoint_row(record, now, reasons.get(("endpoint", record.id), ()))
            for record in endpoints
        ],
        "files": [
            _file_row(record, now, reasons.get(("file", record.id), ()))
            for record in files
        ],
        "file_total": count_file_sources(session, filters),
        "total": total,
        "pages": pages,
        "first_row": (chosen.page - 1) * PAGE_SIZE + 1,
        "previous_url": _page_url(chosen, chosen.page - 1, pages),
        "next_url": _page_url(chosen, chosen.page + 1, pages),
        "last_url": _page_url(chosen, pages, pages),
        "timeline": timeline,
        "chart_svg": render_chart(timeline) if timeline.total else None,
        "statuses": _timeline_statuses(timeline),
    }


def _timeline_statuses(timeline: ExpiryTimeline) -> list[Status]:
    return [status for status in STATUS_ORDER if timeline.status_total(status)]


def _page_url(chosen: DashboardFilter, page: int, pages: int) -> str | None:
    if page < 1 or page > pages:
        return None
    return f"/dashboard?{chosen.query_string(page)}"


def _form_values(
    session: Session,
    teams: list[TeamMembership],
    chosen: DashboardFilter,
    error: str | None,
) -> dict[str, Any]:
    return {
        "teams": teams,
        "chosen": chosen,
        "error": error,
        "tag_choices": _tag_choices(session, [m.team_id for m in teams]),
        "status_choices": STATUS_CHOICES,
        "status_words": STATUS_WORDS,
        "raw": None,
        "page_size": PAGE_SIZE,
        "file_limit": FILE_SOURCE_LIMIT,
    }


def _tag_choices(session: Session, team_ids: list[int]) -> list[str]:
    """Return the tags of the teams' endpoints, for the tag field's suggestions."""
    query = (
        select(EndpointTagRow.tag)
        .join(EndpointRow, EndpointRow.id == EndpointTagRow.endpoint_id)
        .where(EndpointRow.team_id.in_(team_ids))
        .distinct()
        .order_by(EndpointTagRow.tag)
        .limit(MAX_TAG_CHOICES)
    )
    return list(session.scalars(query))


def _endpoint_row(
    record: EndpointRecord, now: datetime, reasons: tuple[str, ...]
) -> SourceRow:
    label = endpoint_label(record.endpoint.target, record.endpoint.address)
    return _source_row("endpoint", record, label, now, reasons)


def _file_row(
    record: FileSourceRecord, now: datetime, reasons: tuple[str, ...]
) -> SourceRow:
    return _source_row("file", record, record.path, now, reasons)


def _source_row(
    kind: str,
    record: EndpointRecord | FileSourceRecord,
    target: str,
    now: datetime,
    reasons: tuple[str, ...],
) -> SourceRow:
    schedule = record.schedule
    not_after = schedule.not_after
    return SourceRow(
        kind=kind,
        id=record.id,
        target=target,
        team=record.team,
        tags=record.tags,
        status=schedule.last_status,
        not_after=not_after,
        days_left=days_left(not_after, now) if not_after is not None else None,
        last_scanned_at=schedule.last_scanned_at,
        stale_expiry=not_after is not None and schedule.consecutive_failures > 0,
        reasons=reasons,
    )


def _render(
    request: Request,
    context: WebContext,
    login: LoginSession,
    values: dict[str, Any],
    *,
    status_code: int = 200,
) -> HTMLResponse:
    return render(
        request, context, "dashboard.html", values, login=login, status_code=status_code
    )
