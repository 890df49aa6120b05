"""`certwatch import` and `certwatch export`: move the inventory in and out.

Both CSV (for spreadsheets) and the store's JSON document are read and
written. CSV carries endpoints and files only; JSON also carries teams with
their alert settings and contacts, secrets included. Neither carries
observations, accounts or the schedule: imported sources are due for a scan
at once.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
from sqlalchemy import select
from sqlalchemy.orm import Session

from certwatch.commands.inventory import (
    monitor_settings,
    store_endpoint,
    store_file_source,
)
from certwatch.commands.inventory_csv import (
    COLUMNS,
    CsvEntry,
    CsvError,
    CsvProblem,
    decode_csv,
    read_inventory_csv,
    write_inventory_csv,
)
from certwatch.commands.output import closed_pipe_ignored, echo_json
from certwatch.commands.store import open_store
from certwatch.errors import CertwatchError
from certwatch.store.accounts import adopt_teams_without_members
from certwatch.store.alerts import teams_with_recipients
from certwatch.store.export import (
    InventoryImportError,
    export_inventory,
    import_inventory,
)
from certwatch.store.export_teams import export_teams
from certwatch.store.inventory import list_endpoints, list_file_sources
from certwatch.store.models import EndpointRow, FileSourceRow, TeamRow


@click.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def import_command(file: Path) -> None:
    """Add or update the endpoints and files listed in a CSV file.

    The first row names the columns (see README.md). Every row is checked
    first: when any row is invalid, nothing is imported and each invalid row
    is listed with its line number. A JSON file from 'certwatch export
    --format json' is read too.
    """
    try:
        text = decode_csv(file.read_bytes(), file)
    except OSError as exc:
        raise click.ClickException(
            f"Cannot read {str(file)!r} ({exc.strerror}): check the path."
        ) from exc
    except CsvError as exc:
        raise click.ClickException(str(exc)) from exc
    now = datetime.now(UTC)
    if text.lstrip().startswith("{"):
        _import_json(text, file, now)
    else:
        _import_csv(text, file, now)


def _import_json(text: str, file: Path, now: datetime) -> None:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.ClickException(
            f"{str(file)!r} is not valid JSON ({exc.msg} at line {exc.lineno}): "
            "give a file written by 'certwatch export --format json' or a CSV file."
        ) from exc
    if not isinstance(document, dict):
        raise click.ClickException(
            f"{str(file)!r} holds no inventory object: give a file written by "
            "'certwatch export --format json'."
        )
    default_interval = monitor_settings().default_interval
    with open_store() as sessions, sessions.begin() as session:
        try:
            counts = import_inventory(
                session, document, now=now, default_interval=default_interval
            )
            adopt_teams_without_members(session, now=now)
        except InventoryImportError as exc:
            # Raising inside the transaction rolls back what was written.
            for problem in exc.problems:
                click.echo(f"{file}: {problem}", err=True)
            entries = "entry is" if len(exc.problems) == 1 else "entries are"
            raise click.ClickException(
                f"{len(exc.problems)} {entries} invalid in {str(file)!r}, so "
                "nothing was imported: fix the entries listed above and import "
                "the file again."
            ) from exc
        except CertwatchError as exc:
            raise click.ClickException(
                f"{exc} Nothing was imported from {str(file)!r}."
            ) from exc
        unreached = _teams_reaching_nobody(session)
    click.echo(f"Imported {file}: {counts.created} added, {counts.updated} updated.")
    _warn_unreached(unreached)


def _import_csv(text: str, file: Path, now: datetime) -> None:
    try:
        parsed = read_inventory_csv(text)
    except CsvError as exc:
        raise click.ClickException(str(exc)) from exc
    for name in parsed.unknown_columns:
        click.echo(
            f"Warning: {file}: ignoring unknown column {name!r}; the columns "
            f"read are {', '.join(COLUMNS)}.",
            err=True,
        )
    if parsed.problems:
        _fail(file, parsed.problems)
    if not parsed.entries:
        # An export of an empty inventory looks like this, so importing it
        # succeeds and changes nothing.
        click.echo(
            f"Warning: {file} has a header but no rows: nothing to import.",
            err=True,
        )

    default_interval = monitor_settings().default_interval
    with open_store() as sessions, sessions.begin() as session:
        created, problems = _store_entries(
            session, parsed.entries, default_interval, now
        )
        if problems:
            # Raising inside the transaction rolls back the rows stored so far.
            _fail(file, problems)
        adopt_teams_without_members(session, now=now)
        unreached = _teams_reaching_nobody(session)
    updated = len(parsed.entries) - created
    click.echo(f"Imported {file}: {created} added, {updated} updated.")
    _warn_unreached(unreached)


def _teams_reaching_nobody(session: Session) -> list[str]:
    """Return the teams that watch sources but have no contact that gets alerts."""
    watching = select(EndpointRow.team_id).union(select(FileSourceRow.team_id))
    rows = session.scalars(
        select(TeamRow.name)
        .where(
            TeamRow.id.in_(watching),
            TeamRow.id.not_in(sorted(teams_with_recipients(session)) or [-1]),
        )
        .order_by(TeamRow.name)
    )
    return list(rows)


def _warn_unreached(teams: list[str]) -> None:
    for name in teams:
        click.echo(
            f"Warning: team {name!r} has no contact that receives alerts, so its "
            "alerts reach nobody: add one with 'certwatch contact add "
            f"{name} email:ADDRESS'.",
            err=True,
        )


def _store_entries(
    session: Session,
    entries: list[CsvEntry],
    default_interval: timedelta,
    now: datetime,
) -> tuple[int, list[CsvProblem]]:
    """Upsert each row; return how many were new and the rows the store rejected."""
    created = 0
    problems = []
    for entry in entries:
        try:
            if entry.endpoint is not None:
                # A row that names its team describes that team's endpoint,
                # as an export of two teams watching one target does.
                stored = store_endpoint(
                    session,
                    entry.endpoint,
                    entry.settings,
                    default_interval=default_interval,
                    now=now,
                    team_only=entry.settings.team is not None,
                )
                created += stored.created
            else:
                assert entry.path is not None
                stored_file = store_file_source(
                    session,
                    entry.path,
                    entry.settings,
                    default_interval=default_interval,
                    now=now,
                )
                created += stored_file.created
        except CertwatchError as exc:
            problems.append(CsvProblem(entry.line, str(exc)))
    return created, problems


def _warn_teams_left_out(session: Session) -> None:
    """Say on stderr which teams have settings or contacts that CSV leaves out."""
    names = [
        team["name"]
        for team in export_teams(session)
        if team["contacts"]
        or any(
            team[key] is not None
            for key in ("reminders", "escalate_after_seconds", "endpoint_limit")
        )
    ]
    if names:
        listed = ", ".join(repr(name) for name in names)
        teams = "team" if len(names) == 1 else "teams"
        click.echo(
            f"Warning: the CSV export leaves out the alert settings and contacts "
            f"of the {teams} {listed}: use --format json to keep them.",
            err=True,
        )


def _fail(file: Path, problems: list[CsvProblem]) -> None:
    for problem in problems:
        click.echo(f"{file}:{problem.line}: {problem.message}", err=True)
    rows = "row is" if len(problems) == 1 else "rows are"
    raise click.ClickException(
        f"{len(problems)} {rows} invalid in {str(file)!r}, so nothing was "
        "imported: fix the lines listed above and import the file again."
    )


@click.command("export")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["csv", "json"]),
    default="csv",
    show_default=True,
    help="CSV for spreadsheets (endpoints and files only), or JSON, which "
    "also keeps teams with their alert settings and contacts.",
)
def export_command(output_format: str) -> None:
    """Print the whole inventory, which 'certwatch import' reads back.

    The JSON export contains contact secrets such as webhook URLs: keep
    the file as safe as a password. Observations, accounts and the scan
    schedule are not exported.
    """
    with open_store() as sessions, sessions() as session:
        if output_format == "json":
            document: Any = export_inventory(session)
        else:
            buffer = io.StringIO()
            try:
                write_inventory_csv(
                    list_endpoints(session), list_file_sources(session), buffer
                )
            except CsvError as exc:
                raise click.ClickException(str(exc)) from exc
            document = buffer.getvalue()
            _warn_teams_left_out(session)

    with closed_pipe_ignored():
        if output_format == "json":
            echo_json(document)
        else:
            click.echo(document, nl=False)
