"""`certwatch prune`: compact the history of old observations now.

`certwatch serve` does the same once a day. This command is for cron
set-ups without `serve` and for a first compaction of a large store.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import click

from certwatch.commands.output import minute
from certwatch.commands.store import open_store
from certwatch.monitor.retention import RETENTION_VARIABLE, history_retention
from certwatch.monitor.settings import SettingsError, parse_duration
from certwatch.store.retention import Compaction, compact_history


@click.command("prune")
@click.option(
    "--older-than",
    "older_than",
    metavar="DURATION",
    help="Compact observations older than this, such as 30d or 12w "
    f"[default: {RETENTION_VARIABLE} or 30d].",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Count what would be removed without deleting anything.",
)
def prune_command(older_than: str | None, dry_run: bool) -> None:
    """Remove old observations that repeat their neighbours' outcome.

    At each endpoint address and file, consecutive observations older than
    the retention age with the same chain, status, error reason and TLS
    version are reduced to the first and the last of them. First and last
    sightings, 'history', 'where', change events and the latest
    observation of every source stay as they were.
    """
    retention = _retention(older_than)
    now = datetime.now(UTC)
    with open_store() as sessions:
        result = compact_history(sessions, cutoff=now - retention, dry_run=dry_run)
    click.echo(_summary(result))


def _retention(older_than: str | None) -> timedelta:
    """Return the retention age from the option, else from the environment.

    Raises:
        click.BadParameter: the option is not a valid duration.
        click.UsageError: the environment variable is not a valid duration.
    """
    if older_than is not None:
        try:
            return parse_duration(older_than)
        except SettingsError as exc:
            raise click.BadParameter(str(exc), param_hint="--older-than") from exc
    try:
        return history_retention()
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from exc


def _summary(result: Compaction) -> str:
    verb = "Would remove" if result.dry_run else "Removed"
    places = "place" if result.places == 1 else "places"
    text = (
        f"{verb} {result.removed:,} of {result.examined:,} observations made "
        f"before {minute(result.cutoff)} UTC, at {result.places:,} {places}."
    )
    if result.dry_run:
        text += " Nothing was deleted (dry run)."
    return text
