"""The JSON API under `/api`: endpoints, with their scans and observations.

Every route authenticates through `api_auth.api_caller` and reads only the
caller's teams: an id of another team gets the same 404 as an id that
does not exist. Viewers read; members and owners also write. The
certificate and alert routes are in `api_reads.py`; `install` adds both
routers and the request limits to the application.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Response
from sqlalchemy import Select, delete, func, select
from sqlalchemy.orm import Session

from certwatch.errors import CertwatchError
from certwatch.monitor.instant import StoredSources, scan_and_record
from certwatch.monitor.settings import SettingsError, parse_duration
from certwatch.store.inventory import (
    MAX_TAGS,
    SourceSettings,
    endpoint_from_row,
    normalize_tags,
    remove_endpoint,
    upsert_endpoint,
)
from certwatch.store.models import (
    EndpointRow,
    EndpointTagRow,
    ObservationCertificateRow,
    ObservationRow,
    TeamRow,
)
from certwatch.web import api_docs, api_reads
from certwatch.web.adding import AddingError, add_endpoints, web_scan_setup
from certwatch.web.api_auth import (
    ApiCaller,
    ApiError,
    Caller,
    install_limits,
    not_found,
)
from certwatch.web.api_models import (
    AddedOut,
    AddReportOut,
    EndpointCreate,
    EndpointOut,
    EndpointPage,
    EndpointUpdate,
    ErrorOut,
    ObservationOut,
    ObservationPage,
    RejectedOut,
    ResultOut,
    ScanOut,
)
from certwatch.web.dependencies import Context, WebContext
from certwatch.web.ids import Offset, is_row_id

MAX_PAGE = 500
DEFAULT_PAGE = 100
STATUSES = ("ok", "warning", "critical", "unknown")

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "No valid token or login session"},
    403: {"model": ErrorOut, "description": "Role too low, or CSRF header missing"},
    404: {"model": ErrorOut, "description": "No such id in the caller's teams"},
    429: {"model": ErrorOut, "description": "Too many requests; see Retry-After"},
}

router = APIRouter(prefix="/api", tags=["endpoints"], responses=ERRORS)

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="items to return")]


def install(app: FastAPI) -> None:
    """Add the API routers, its docs page, error handler and limits to `app`."""
    install_limits(app)
    app.include_router(router)
    app.include_router(api_reads.router)
    app.include_router(api_docs.router)


@router.get("/endpoints", response_model=EndpointPage)
def list_endpoints(
    context: Context,
    caller: Caller,
    team: int | None = None,
    tag: Annotated[list[str] | None, Query()] = None,
    status: str | None = None,
    offset: Offset = 0,
    limit: Limit = DEFAULT_PAGE,
) -> EndpointPage:
    """List the endpoints of the caller's teams, soonest expiry first.

    `team` keeps one team, each `tag` must be present, and `status` keeps
    the endpoints whose latest scan had that status (`unknown` includes
    those never scanned).
    """
    if status is not None and status not in STATUSES:
        raise ApiError(
            422, f"Unknown status {status!r}: use one of {', '.join(STATUSES)}."
        )
    if tag is not None and len(tag) > MAX_TAGS:
        # Each tag adds a condition to the query, and SQLite rejects a
        # query of a few thousand conditions as too deep.
        raise ApiError(
            422,
            f"{len(tag)} tag parameters is over the limit: give at most "
            f"{MAX_TAGS} tags, as an endpoint has at most {MAX_TAGS}.",
        )
    with context.sessions() as session:
        team_ids = list(caller.team_roles(session))
        if team is not None:
            if team not in team_ids:
                raise not_found("Team", team)
            team_ids = [team]
        query = _filtered(select(EndpointRow), team_ids, tag or [], status)
        total = session.scalar(
            _filtered(
                select(func.count()).select_from(EndpointRow),
                team_ids,
                tag or [],
                status,
            )
        )
        rows = session.scalars(
            query.order_by(
                EndpointRow.not_after.is_(None),
                EndpointRow.not_after,
                EndpointRow.target,
                EndpointRow.id,
            )
            .offset(offset)
            .limit(limit)
        ).all()
        items = _endpoints_out(session, list(rows), _default_interval(context))
    return EndpointPage(items=items, total=total or 0, offset=offset, limit=limit)


@router.post(
    "/endpoints",
    response_model=AddReportOut,
    status_code=201,
    responses={
        400: {"model": ErrorOut, "description": "The request adds nothing"},
        422: {
            "model": AddReportOut,
            "description": "Every target was rejected, or (with a `detail` "
            "list instead) the body is invalid",
        },
    },
)
def create_endpoints(
    context: Context, caller: Caller, body: EndpointCreate, response: Response
) -> AddReportOut:
    """Add targets to a team, probe them at once and return the instant report.

    Targets that cannot be added are listed under `rejected` with the
    reason; the others are stored even when their probe failed. When no
    target was added, the status is 422 with the same body.
    """
    with context.sessions() as session:
        caller.require(session, body.team_id, "member", "Team")
    try:
        report = add_endpoints(
            context, body.team_id, body.targets, tags=body.tags, protocol=body.protocol
        )
    except AddingError as exc:
        raise ApiError(400, exc.message) from exc
    if not report.added:
        response.status_code = 422
    return AddReportOut(
        added=[
            AddedOut(
                endpoint_id=item.endpoint_id,
                target=item.target,
                created=item.created,
                results=[ResultOut.of(result) for result in item.results],
            )
            for item in report.added
        ],
        rejected=[RejectedOut(text=r.text, reason=r.reason) for r in report.rejected],
    )


@router.get("/endpoints/{endpoint_id}", response_model=EndpointOut)
def read_endpoint(context: Context, caller: Caller, endpoint_id: int) -> EndpointOut:
    """Return one endpoint of the caller's teams."""
    with context.sessions() as session:
        row = _endpoint_row(session, caller, endpoint_id, "viewer")
        return _endpoints_out(session, [row], _default_interval(context))[0]


@router.patch("/endpoints/{endpoint_id}", response_model=EndpointOut)
def update_endpoint(
    context: Context, caller: Caller, endpoint_id: int, body: EndpointUpdate
) -> EndpointOut:
    """Change an endpoint's tags, scan interval or whether it is scanned."""
    interval = _interval(body.interval)
    tags = _tags(body.tags)
    now = context.now_fn()
    with context.sessions() as session, session.begin():
        row = _endpoint_row(session, caller, endpoint_id, "member")
        if interval is not None:
            # The upsert moves next_scan_at to the new interval, as
            # `certwatch add --interval` does.
            team = session.get(TeamRow, row.team_id)
            assert team is not None
            upsert_endpoint(
                session,
                endpoint_from_row(row),
                now=now,
                settings=SourceSettings(team=team.name, interval=interval),
                default_interval=_default_interval(context),
                team_only=True,
            )
        if body.enabled is not None:
            row.enabled = body.enabled
        if tags is not None:
            session.execute(
                delete(EndpointTagRow).where(EndpointTagRow.endpoint_id == row.id)
            )
            session.add_all(EndpointTagRow(endpoint_id=row.id, tag=t) for t in tags)
        row.updated_at = now
        session.flush()
        return _endpoints_out(session, [row], _default_interval(context))[0]


@router.delete("/endpoints/{endpoint_id}", status_code=204)
def delete_endpoint(context: Context, caller: Caller, endpoint_id: int) -> Response:
    """Stop watching an endpoint and delete its observations."""
    with context.sessions() as session, session.begin():
        _endpoint_row(session, caller, endpoint_id, "member")
        remove_endpoint(session, endpoint_id)
    return Response(status_code=204)


@router.post("/endpoints/{endpoint_id}/scan", response_model=ScanOut)
def scan_endpoint(context: Context, caller: Caller, endpoint_id: int) -> ScanOut:
    """Scan an endpoint now, record the scan and return its results."""
    with context.sessions() as session:
        row = _endpoint_row(session, caller, endpoint_id, "member")
        endpoint = endpoint_from_row(row)
        team_id = row.team_id
    with context.probe_slots.hold(f"team:{team_id}"):
        scanned = scan_and_record(
            context.sessions,
            StoredSources(endpoints={endpoint_id: endpoint}),
            web_scan_setup(context),
            now=context.now_fn(),
        )
    results = scanned.by_endpoint.get(endpoint_id, [])
    return ScanOut(endpoint_id=endpoint_id, results=[ResultOut.of(r) for r in results])


@router.get("/endpoints/{endpoint_id}/observations", response_model=ObservationPage)
def list_observations(
    context: Context,
    caller: Caller,
    endpoint_id: int,
    offset: Offset = 0,
    limit: Limit = DEFAULT_PAGE,
) -> ObservationPage:
    """List what the scans of an endpoint saw, newest first, one per address."""
    with context.sessions() as session:
        _endpoint_row(session, caller, endpoint_id, "viewer")
        source = ObservationRow.endpoint_id == endpoint_id
        total = session.scalar(select(func.count()).where(source)) or 0
        rows = session.scalars(
            select(ObservationRow)
            .where(source)
            .order_by(ObservationRow.observed_at.desc(), ObservationRow.id.desc())
            .offset(offset)
            .limit(limit)
        ).all()
        chains = _chains(session, [row.id for row in rows])
    items = [
        ObservationOut(
            id=row.id,
            address=row.address,
            observed_at=row.observed_at,
            status=row.status,
            latest=row.latest,
            error_reason=row.error_reason,
            error=row.error_message,
            tls_version=row.tls_version,
            chain=chains.get(row.id, []),
        )
        for row in rows
    ]
    return ObservationPage(items=items, total=total, offset=offset, limit=limit)


def _endpoint_row(
    session: Session, caller: ApiCaller, endpoint_id: int, role: str
) -> EndpointRow:
    """Return the caller's endpoint, or raise 404 as for an unknown id."""
    if not is_row_id(endpoint_id):
        raise not_found("Endpoint", endpoint_id)
    row = session.get(EndpointRow, endpoint_id)
    if row is None or caller.role_in(session, row.team_id) is None:
        raise not_found("Endpoint", endpoint_id)
    caller.require(session, row.team_id, role, "Endpoint")
    return row


def _filtered(
    query: Select[Any], team_ids: list[int], tags: list[str], status: str | None
) -> Select[Any]:
    query = query.where(EndpointRow.team_id.in_(team_ids))
    for tag in _tags(tags) or ():
        has_tag = select(EndpointTagRow.endpoint_id).where(
            EndpointTagRow.endpoint_id == EndpointRow.id, EndpointTagRow.tag == tag
        )
        query = query.where(has_tag.exists())
    if status == "unknown":
        query = query.where(
            EndpointRow.last_status.is_(None) | (EndpointRow.last_status == status)
        )
    elif status is not None:
        query = query.where(EndpointRow.last_status == status)
    return query


def _default_interval(context: WebContext) -> timedelta:
    return context.scans.monitor.default_interval


def _endpoints_out(
    session: Session, rows: list[EndpointRow], default_interval: timedelta
) -> list[EndpointOut]:
    ids = [row.id for row in rows]
    tags: dict[int, list[str]] = {i: [] for i in ids}
    for endpoint_id, tag in session.execute(
        select(EndpointTagRow.endpoint_id, EndpointTagRow.tag)
        .where(EndpointTagRow.endpoint_id.in_(ids))
        .order_by(EndpointTagRow.tag)
    ):
        tags[endpoint_id].append(tag)
    team_ids = {row.team_id for row in rows}
    names: dict[int, str] = {}
    for team_id, name in session.execute(
        select(TeamRow.id, TeamRow.name).where(TeamRow.id.in_(team_ids))
    ):
        names[team_id] = name
    return [
        EndpointOut(
            id=row.id,
            team_id=row.team_id,
            team=names[row.team_id],
            target=row.target,
            protocol=row.protocol,
            host=row.host,
            port=row.port,
            server_name=row.server_name or None,
            address=row.address or None,
            tags=tags[row.id],
            interval_seconds=(
                row.interval_seconds or int(default_interval.total_seconds())
            ),
            interval_default=row.interval_seconds is None,
            enabled=row.enabled,
            last_status=row.last_status,
            last_scanned_at=row.last_scanned_at,
            next_scan_at=row.next_scan_at,
            not_after=row.not_after,
        )
        for row in rows
    ]


def _chains(session: Session, observation_ids: list[int]) -> dict[int, list[str]]:
    chains: dict[int, list[str]] = {}
    for observation_id, sha256 in session.execute(
        select(
            ObservationCertificateRow.observation_id,
            ObservationCertificateRow.certificate_sha256,
        )
        .where(ObservationCertificateRow.observation_id.in_(observation_ids))
        .order_by(
            ObservationCertificateRow.observation_id,
            ObservationCertificateRow.position,
        )
    ):
        chains.setdefault(observation_id, []).append(sha256)
    return chains


def _interval(text: str | None) -> timedelta | None:
    if text is None:
        return None
    try:
        return parse_duration(text)
    except SettingsError as exc:
        raise ApiError(422, str(exc)) from exc


def _tags(tags: list[str] | None) -> tuple[str, ...] | None:
    if tags is None:
        return None
    try:
        return normalize_tags(tags)
    except CertwatchError as exc:
        raise ApiError(422, str(exc)) from exc
