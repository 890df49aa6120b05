"""The add page: paste targets or upload a CSV file, and see the instant report.

Only owners and members of a team add endpoints to it; a viewer gets 403
and another team's id 404. `certwatch.web.adding.add_endpoints` stores and
probes the targets. A CSV file has the columns of `certwatch import`, is
checked whole by the same reader, and adds nothing while any row is bad.
Rows of certificate files are skipped, and the columns of scan settings
ignored, each with a notice on the page.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from certwatch.commands.inventory_csv import (
    CsvError,
    CsvProblem,
    ParsedCsv,
    decode_csv,
    read_inventory_csv,
    unreadable_csv,
)
from certwatch.errors import TargetError
from certwatch.store.accounts import (
    LoginSession,
    TeamMembership,
    team_role,
    user_teams,
)
from certwatch.store.errors import StoreError
from certwatch.store.inventory import normalize_tags
from certwatch.targets import (
    SCHEME_PORTS,
    Endpoint,
    parse_target,
    validate_protocol,
)
from certwatch.web.accounts import render, render_message
from certwatch.web.adding import (
    MAX_TARGETS_PER_REQUEST,
    AddingError,
    AddReport,
    add_endpoints,
)
from certwatch.web.advice import error_advice, finding_advice
from certwatch.web.auth import CurrentUser, Form, check_csrf
from certwatch.web.dashboard import STATUS_WORDS
from certwatch.web.dependencies import Context, WebContext
from certwatch.web.endpoint_pages import MAX_ID

router = APIRouter(include_in_schema=False)

# The whole form, CSV file included, is read into memory, so its size is
# bounded. A CSV file's rows count towards MAX_TARGETS_PER_REQUEST as well.
MAX_UPLOAD_BYTES = 1024 * 1024
MAX_BODY_BYTES = MAX_UPLOAD_BYTES + 64 * 1024
MAX_FORM_FIELDS = 20
UPLOAD_TOO_LARGE = (
    "The form is larger than 1 MiB: split the CSV file into smaller files, or "
    "import it on the server with 'certwatch import'."
)
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
WRITER_ROLES = ("owner", "member")
NO_WRITABLE_TEAM = (
    "Adding endpoints needs the owner or member role in a team, and viewers "
    "cannot add any: ask an owner of your team for the member role."
)


@dataclass(frozen=True)
class AddForm:
    """The fields and the CSV upload of the add form.

    `csv_data` is `None` when no file was chosen. `problem` is set, and the
    rest empty, when the body was not read: too large or of another type.
    """

    fields: dict[str, str]
    csv_name: str = ""
    csv_data: bytes | None = None
    problem: str | None = None
    problem_status: int = 400


async def read_add_form(request: Request) -> AddForm:
    """Read the add form, multipart or URL-encoded, up to `MAX_BODY_BYTES`.

    The body is read into memory under the limit before it is parsed, so
    that a large upload is rejected before anything spools it to disk.
    """
    content_type = request.headers.get("content-type", "").split(";")[0]
    if content_type.strip().lower() not in FORM_TYPES:
        return AddForm(
            {}, problem="Send the form from the add page.", problem_status=415
        )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return AddForm({}, problem=UPLOAD_TOO_LARGE, problem_status=413)
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_BODY_BYTES:
            return AddForm({}, problem=UPLOAD_TOO_LARGE, problem_status=413)

    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": bytes(body), "more_body": False}

    parsed = await Request(request.scope, replay).form(
        max_files=1, max_fields=MAX_FORM_FIELDS
    )
    fields: dict[str, str] = {}
    csv_name, csv_data = "", None
    try:
        for name, value in parsed.multi_items():
            if isinstance(value, str):
                fields.setdefault(name, value)
            elif name == "csv" and value.filename:
                csv_name, csv_data = value.filename, await value.read()
    finally:
        await parsed.close()
    if csv_data is not None and len(csv_data) > MAX_UPLOAD_BYTES:
        return AddForm({}, problem=UPLOAD_TOO_LARGE, problem_status=413)
    return AddForm(fields, csv_name, csv_data)


AddFormBody = Annotated[AddForm, Depends(read_add_form)]


@router.get("/endpoints/new", response_class=HTMLResponse)
def new_endpoints_page(
    request: Request, context: Context, login: CurrentUser, team: str = ""
) -> HTMLResponse:
    """Show the form that adds endpoints to one of the user's teams."""
    with context.sessions() as session:
        teams = _writable_teams(session, login)
    if not teams:
        return render_message(
            request, context, login, "Add endpoints", NO_WRITABLE_TEAM
        )
    chosen = int(team) if team.isdigit() else teams[0].team_id
    return _add_page(request, context, login, teams, {"team_id": chosen})


@router.post("/endpoints/new", response_class=HTMLResponse)
def add_endpoints_form(
    request: Request, context: Context, login: CurrentUser, form: AddFormBody
) -> HTMLResponse:
    """Add the targets and CSV rows of the form, and show the instant report."""
    with context.sessions() as session:
        teams = _writable_teams(session, login)
    if form.problem is not None:
        return _add_page(
            request,
            context,
            login,
            teams,
            {"error": form.problem},
            status_code=form.problem_status,
        )
    check_csrf(request, Form(form.fields), login)

    team_text = form.fields.get("team", "").strip()
    if not team_text.isdigit() or int(team_text) > MAX_ID:
        raise HTTPException(404, "Not Found")
    team_id = int(team_text)
    with context.sessions() as session:
        role = team_role(session, login.user_id, team_id)
    if role is None:
        raise HTTPException(404, "Not Found")
    if role not in WRITER_ROLES:
        return render_message(
            request, context, login, "Add endpoints", NO_WRITABLE_TEAM
        )

    values: dict[str, Any] = {
        "team_id": team_id,
        "targets": form.fields.get("targets", ""),
        "tags": form.fields.get("tags", ""),
        "protocol": form.fields.get("protocol", ""),
    }
    team_name = next(m.team for m in teams if m.team_id == team_id)
    try:
        batches, notice = _batches(form, team_name)
    except AddFormError as exc:
        values.update(error=exc.message, csv_problems=exc.csv_problems)
        return _add_page(request, context, login, teams, values, status_code=400)

    reports, error = _add_batches(context, team_id, batches)
    added = [item for report in reports for item in report.added]
    rejected = [item for report in reports for item in report.rejected]
    values.update(error=error, added=added, rejected=rejected, csv_notice=notice)
    if added:
        # What was added leaves the form, and what was not stays there to fix.
        values["targets"] = "\n".join(item.text for item in rejected)
    status_code = 200 if added or not (rejected or error) else 400
    return _add_page(request, context, login, teams, values, status_code=status_code)


class AddFormError(ValueError):
    """An add form that adds nothing, with the bad CSV rows in `csv_problems`."""

    def __init__(self, message: str, csv_problems: Sequence[CsvProblem] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.csv_problems = list(csv_problems)


@dataclass(frozen=True)
class Batch:
    """Targets that share their tags and protocol, for one `add_endpoints` call.

    `protocol` is `None` for the default, `https`, unless a target names
    its own scheme.
    """

    texts: tuple[str, ...]
    tags: tuple[str, ...]
    protocol: str | None
    parsed: tuple[Endpoint, ...] = ()


def _writable_teams(session: Session, login: LoginSession) -> list[TeamMembership]:
    return [m for m in user_teams(session, login.user_id) if m.role in WRITER_ROLES]


def _batches(form: AddForm, team_name: str) -> tuple[list[Batch], str | None]:
    """Sort the form's targets and CSV rows into batches, with a CSV notice.

    Raises:
        AddFormError: an invalid tag, protocol or CSV file, too many
            targets, or none at all.
    """
    tags = _form_tags(form.fields.get("tags", ""))
    protocol = form.fields.get("protocol", "").strip() or None
    if protocol is not None:
        try:
            validate_protocol(protocol)
        except TargetError as exc:
            raise AddFormError(str(exc)) from exc

    texts = [
        line.strip()
        for line in form.fields.get("targets", "").splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    batches = [Batch(tuple(texts), tags, protocol)] if texts else []
    notice = None
    if form.csv_data is not None:
        csv_batches, notice = _csv_batches(form, team_name, tags)
        batches += csv_batches

    count = sum(len(batch.texts) + len(batch.parsed) for batch in batches)
    if count == 0:
        raise AddFormError(notice or "Give at least one target, or choose a CSV file.")
    if count > MAX_TARGETS_PER_REQUEST:
        raise AddFormError(
            f"{count} targets in one form is over the limit of "
            f"{MAX_TARGETS_PER_REQUEST}: send them in several forms, or import "
            "them on the server with 'certwatch import'."
        )
    return batches, notice


def _form_tags(text: str) -> tuple[str, ...]:
    try:
        return normalize_tags(tag for tag in text.split(",") if tag.strip())
    except StoreError as exc:
        raise AddFormError(f"{exc} Separate tags with commas.") from None


def _csv_batches(
    form: AddForm, team_name: str, form_tags: tuple[str, ...]
) -> tuple[list[Batch], str | None]:
    """Check every row of the CSV upload, so that one bad row rejects the file."""
    assert form.csv_data is not None
    try:
        text = decode_csv(form.csv_data, form.csv_name)
        _check_row_count(text, form.csv_name)
        # Whether a target names a file depends on its text alone here.
        # Looked up on the disk, it would tell the user which files exist in
        # the server's folder.
        parsed = read_inventory_csv(text, look_on_disk=False)
    except CsvError as exc:
        raise AddFormError(str(exc)) from None

    problems = list(parsed.problems)
    by_tags: dict[tuple[str, ...], list[str | Endpoint]] = {}
    file_lines = []
    for entry in parsed.entries:
        if entry.endpoint is None:
            file_lines.append(entry.line)
            continue
        try:
            target = _csv_target(entry.endpoint, entry.settings.team, team_name)
        except AddFormError as exc:
            problems.append(CsvProblem(entry.line, exc.message))
            continue
        tags = tuple(entry.settings.tags) if entry.settings.tags else form_tags
        by_tags.setdefault(tags, []).append(target)
    if problems:
        count = len(problems)
        raise AddFormError(
            f"The CSV file {form.csv_name!r} has {count} invalid "
            f"row{'' if count == 1 else 's'}, so nothing was added: fix "
            f"{'it' if count == 1 else 'them'} and upload the file again.",
            sorted(problems, key=lambda problem: problem.line),
        )
    batches = [
        Batch(
            texts=tuple(t for t in targets if isinstance(t, str)),
            tags=tags,
            protocol=None,
            parsed=tuple(t for t in targets if isinstance(t, Endpoint)),
        )
        for tags, targets in by_tags.items()
    ]
    notices = [_files_notice(file_lines), _csv_notice(parsed)]
    return batches, " ".join(n for n in notices if n) or None


def _check_row_count(text: str, name: str) -> None:
    """Reject a file with more data rows than one form may add, before checking them.

    Checking a row costs far more than counting it. On a 2-core machine,
    the 61,680 rows of a 1 MiB file took 4 s to check and 0.02 s to count.
    """
    reader = csv.reader(io.StringIO(text))
    rows = 0
    while True:
        line = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise unreadable_csv(exc, line) from None
        if "".join(cells).strip():
            rows += 1
    data_rows = max(rows - 1, 0)
    if data_rows > MAX_TARGETS_PER_REQUEST:
        raise CsvError(
            f"The CSV file {name!r} has {data_rows} rows, over the limit of "
            f"{MAX_TARGETS_PER_REQUEST} per form: split it into smaller files, or "
            "import it on the server with 'certwatch import'."
        )


def _csv_target(endpoint: Endpoint, team: str | None, team_name: str) -> str | Endpoint:
    """Return the target text that adds the row's endpoint, or the endpoint itself.

    A row that pins an address or sets a server name gives the endpoint,
    because a target text cannot carry either.

    Raises:
        AddFormError: the row names another team than the form's.
    """
    if team is not None and team != team_name:
        raise AddFormError(
            f"The row names the team {team!r}, but the form adds "
            f"to {team_name!r}: choose that team in the form, or empty the "
            "team column."
        )
    if endpoint.address is not None or (
        endpoint.server_name is not None and endpoint.server_name != endpoint.host
    ):
        return endpoint
    return _target_text(endpoint)


def _files_notice(lines: Sequence[int]) -> str | None:
    """Say which rows named certificate files, which the web page skips."""
    if not lines:
        return None
    numbers = ", ".join(str(line) for line in lines)
    if len(lines) == 1:
        return (
            f"Line {numbers} of the CSV file names a certificate file, which the "
            "web page does not watch, so it was skipped: add it with "
            "'certwatch import' on the server."
        )
    return (
        f"Lines {numbers} of the CSV file name certificate files, which the web "
        "page does not watch, so they were skipped: add them with "
        "'certwatch import' on the server."
    )


def _target_text(endpoint: Endpoint) -> str:
    """Return the row's target as written when it names the same endpoint, else a URL.

    A row may give its protocol and port in columns, which the target text
    as written does not carry, so such a row becomes `protocol://host:port`.
    """
    try:
        plain = parse_target(endpoint.target)
    except TargetError:
        plain = None
    if plain is not None and (plain.protocol, plain.host, plain.port) == (
        endpoint.protocol,
        endpoint.host,
        endpoint.port,
    ):
        return endpoint.target
    host = f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host
    return f"{endpoint.protocol}://{host}:{endpoint.port}"


def _csv_notice(parsed: ParsedCsv) -> str | None:
    """Say which CSV columns the page did not apply, `None` when it applied all."""
    ignored = set(parsed.unknown_columns)
    for entry in parsed.entries:
        settings = entry.settings
        for name, value in (
            ("interval", settings.interval),
            ("enabled", settings.enabled),
            ("notes", settings.notes),
            ("reminders", settings.reminders),
        ):
            if value is not None:
                ignored.add(name)
    if not ignored:
        return None
    return (
        f"{'The column' if len(ignored) == 1 else 'The columns'} "
        f"{', '.join(sorted(ignored))} "
        f"{'was' if len(ignored) == 1 else 'were'} not applied: the web page "
        "gives new endpoints the default scan settings. Change them with "
        "'certwatch import' on the server."
    )


def _add_batches(
    context: WebContext, team_id: int, batches: list[Batch]
) -> tuple[list[AddReport], str | None]:
    """Add each batch in turn, and stop at the first request-level error."""
    reports: list[AddReport] = []
    for batch in batches:
        try:
            reports.append(
                add_endpoints(
                    context,
                    team_id,
                    batch.texts,
                    tags=batch.tags,
                    protocol=batch.protocol,
                    parsed=batch.parsed,
                )
            )
        except AddingError as exc:
            return reports, exc.message
    return reports, None


def _add_page(
    request: Request,
    context: WebContext,
    login: LoginSession,
    teams: list[TeamMembership],
    values: dict[str, Any],
    *,
    status_code: int = 200,
) -> HTMLResponse:
    page_values = {
        "teams": teams,
        "team_id": None,
        "targets": "",
        "tags": "",
        "protocol": "",
        "protocols": sorted(SCHEME_PORTS),
        "error": None,
        "csv_problems": [],
        "csv_notice": None,
        "added": None,
        "rejected": [],
        "max_targets": MAX_TARGETS_PER_REQUEST,
        "status_words": STATUS_WORDS,
        "finding_advice": finding_advice,
        "error_advice": error_advice,
        **values,
    }
    return render(
        request,
        context,
        "endpoint_new.html",
        page_values,
        login=login,
        status_code=status_code,
    )
