"""`certwatch list`: the inventory by endpoint and file, soonest expiry first.

The database sorts, filters and limits the sources by the latest-scan
columns of their rows, so a short listing of a large inventory reads only
the rows it prints. The `stale_deployment` finding is computed for the
endpoints listed, because it depends on what other endpoints serve.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import click
from rich.table import Table
from rich.text import Text
from sqlalchemy.orm import Session

from certwatch.commands.inventory import check_tags, monitor_settings
from certwatch.commands.output import (
    INVENTORY_SCHEMA_VERSION,
    closed_pipe_ignored,
    days_cell,
    days_until,
    echo_json,
    finding_document,
    format_source_interval,
    minute,
    status_cell,
    timestamp,
)
from certwatch.commands.store import open_store
from certwatch.report.console import stdout_console
from certwatch.report.table import SEVERITY_STYLES, plain_text
from certwatch.result import Status
from certwatch.store.inventory import (
    EndpointRecord,
    FileSourceRecord,
    InventoryFilter,
    count_endpoints,
    count_file_sources,
    list_endpoints,
    list_file_sources,
)
from certwatch.store.latest_reasons import latest_reasons
from certwatch.store.stale import stale_by_endpoint, stale_deployments
from certwatch.x509.model import Finding

DEFAULT_LIMIT = 100
"""The number of sources `certwatch list` prints without `--limit`."""

MAX_LIMIT = 100_000_000
"""The largest `--limit`; larger numbers overflow the databases' integers."""

STATUS_CHOICES = [status.value for status in Status]


@dataclass(frozen=True)
class ListedSource:
    """One row of `certwatch list`: an endpoint or a file source.

    `findings` contains the findings that depend on other places, such as
    `stale_deployment`, computed when the listing is made. `reasons` are the
    error reasons and finding codes of the latest scan, such as
    `starttls_not_offered` or `timeout`.
    """

    record: EndpointRecord | FileSourceRecord
    findings: tuple[Finding, ...] = ()
    reasons: tuple[str, ...] = ()

    @property
    def target(self) -> str:
        if isinstance(self.record, EndpointRecord):
            return self.record.endpoint.target
        return self.record.path

    @property
    def status(self) -> Status | None:
        text = self.record.schedule.last_status
        return None if text is None else Status(text)

    @property
    def not_after(self) -> datetime | None:
        return self.record.schedule.not_after

    @property
    def scanned_at(self) -> datetime | None:
        return self.record.schedule.last_scanned_at

    @property
    def expiry_last_seen(self) -> bool:
        """Whether `not_after` comes from an earlier scan than the latest.

        A scan that obtains no certificate, as during an outage, keeps the
        not_after of the last certificate seen.
        """
        schedule = self.record.schedule
        return schedule.not_after is not None and schedule.consecutive_failures > 0


@dataclass(frozen=True)
class Listing:
    """The sources printed and how many matched in all."""

    sources: list[ListedSource]
    total: int


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON document.")
@click.option(
    "--expiring",
    type=click.IntRange(min=0),
    metavar="DAYS",
    help="Keep only those whose leaf certificate expires within DAYS days "
    "(or has expired), and those whose latest scan obtained no certificate.",
)
@click.option(
    "--tag",
    "tags",
    multiple=True,
    help="Keep only those with this tag; repeat to require several tags.",
)
@click.option(
    "--status",
    "status_text",
    type=click.Choice(STATUS_CHOICES),
    help="Keep only those whose latest scan has this status; never scanned "
    "counts as unknown.",
)
@click.option(
    "--limit",
    type=click.IntRange(min=0, max=MAX_LIMIT),
    default=DEFAULT_LIMIT,
    show_default=True,
    help="Print at most this many, soonest expiry first; 0 prints all.",
)
def list_command(
    as_json: bool,
    expiring: int | None,
    tags: tuple[str, ...],
    status_text: str | None,
    limit: int,
) -> None:
    """List the inventory with the latest status of each endpoint and file.

    Rows are sorted by not_after, soonest first; sources whose latest scan
    obtained no certificate follow, and never scanned ones come last.
    """
    now = datetime.now(UTC)
    default_interval = monitor_settings().default_interval
    filters = InventoryFilter(
        tags=check_tags(tags),
        expiring_by=None if expiring is None else now + timedelta(days=expiring),
        status=status_text,
    )
    with open_store() as sessions, sessions() as session:
        listing = list_sources(session, filters, limit=limit or None, now=now)

    with closed_pipe_ignored():
        if as_json:
            echo_json(_list_document(listing, now, limit, default_interval))
            if len(listing.sources) < listing.total:
                # A script may ignore "total", so stderr also states that
                # this is one page.
                click.echo(
                    f"certwatch: listed {len(listing.sources)} of "
                    f"{listing.total} matching sources; --limit 0 lists all.",
                    err=True,
                )
        else:
            _print_list(listing, now, default_interval)


def list_sources(
    session: Session, filters: InventoryFilter, *, limit: int | None, now: datetime
) -> Listing:
    """Return the sources matching `filters`, soonest expiry first, with findings."""
    endpoints = list_endpoints(session, filters, by_expiry=True, limit=limit)
    files = list_file_sources(session, filters, by_expiry=True, limit=limit)
    total = count_endpoints(session, filters) + count_file_sources(session, filters)
    records: list[EndpointRecord | FileSourceRecord] = [*endpoints, *files]
    records.sort(key=_expiry_order)
    if limit is not None:
        records = records[:limit]

    endpoint_ids = [r.id for r in records if isinstance(r, EndpointRecord)]
    stale = stale_by_endpoint(
        stale_deployments(session, now=now, endpoint_ids=endpoint_ids)
        if endpoint_ids
        else []
    )
    reasons = latest_reasons(
        session,
        endpoint_ids=endpoint_ids,
        file_source_ids=[r.id for r in records if isinstance(r, FileSourceRecord)],
    )
    sources = [
        ListedSource(
            record, _findings(record, stale), reasons.get(_source_key(record), ())
        )
        for record in records
    ]
    return Listing(sources, total)


def _source_key(record: EndpointRecord | FileSourceRecord) -> tuple[str, int]:
    kind = "endpoint" if isinstance(record, EndpointRecord) else "file"
    return (kind, record.id)


def _expiry_order(record: EndpointRecord | FileSourceRecord) -> tuple[Any, ...]:
    schedule = record.schedule
    target = (
        record.endpoint.target if isinstance(record, EndpointRecord) else record.path
    )
    never_scanned = schedule.last_status is None
    far_future = datetime.max.replace(tzinfo=UTC)
    return (
        never_scanned,
        schedule.not_after is None,
        schedule.not_after or far_future,
        target,
    )


def _findings(
    record: EndpointRecord | FileSourceRecord, stale: Mapping[int, Sequence[Any]]
) -> tuple[Finding, ...]:
    if not isinstance(record, EndpointRecord):
        return ()
    return tuple(item.finding for item in stale.get(record.id, ()))


def _list_document(
    listing: Listing, now: datetime, limit: int, default_interval: timedelta
) -> dict[str, Any]:
    return {
        "schema_version": INVENTORY_SCHEMA_VERSION,
        "listed_at": timestamp(now),
        "total": listing.total,
        "limit": limit or None,
        "sources": [
            _source_document(source, now, default_interval)
            for source in listing.sources
        ],
    }


def _source_document(
    source: ListedSource, now: datetime, default_interval: timedelta
) -> dict[str, Any]:
    record = source.record
    document: dict[str, Any] = {"id": record.id}
    if isinstance(record, EndpointRecord):
        endpoint = record.endpoint
        document.update(
            kind="endpoint",
            target=endpoint.target,
            protocol=endpoint.protocol,
            host=endpoint.host,
            port=endpoint.port,
            server_name=endpoint.server_name,
            address=endpoint.address,
        )
    else:
        document.update(kind="file", target=record.path, path=record.path)
    status = source.status
    document.update(
        team=record.team,
        tags=list(record.tags),
        interval_seconds=int((record.interval or default_interval).total_seconds()),
        interval_default=record.interval is None,
        enabled=record.enabled,
        notes=record.notes,
        reminders=record.reminders,
        status=None if status is None else status.value,
        scanned_at=timestamp(source.scanned_at),
        not_after=timestamp(source.not_after),
        days_left=days_until(source.not_after, now),
        not_after_last_seen=source.expiry_last_seen,
        reasons=list(source.reasons),
        findings=[finding_document(finding) for finding in source.findings],
    )
    return document


def _print_list(listing: Listing, now: datetime, default_interval: timedelta) -> None:
    table = Table(header_style="bold")
    table.add_column("Status", no_wrap=True)
    table.add_column("Reason", overflow="fold")
    table.add_column("Days", justify="right", no_wrap=True)
    table.add_column("Not after (UTC)", no_wrap=True)
    table.add_column("Target", overflow="fold")
    table.add_column("Team", overflow="fold")
    table.add_column("Tags", overflow="fold")
    table.add_column("Interval", no_wrap=True)
    table.add_column("Last scan (UTC)", no_wrap=True)
    for source in listing.sources:
        record = source.record
        interval = format_source_interval(record.interval, default_interval)
        expiry = minute(source.not_after)
        table.add_row(
            status_cell(source.status),
            plain_text(", ".join(source.reasons) or "-"),
            days_cell(days_until(source.not_after, now)),
            Text(f"{expiry} (last seen)" if source.expiry_last_seen else expiry),
            plain_text(_target_label(source)),
            plain_text(record.team),
            plain_text(", ".join(record.tags) or "-"),
            Text(interval if record.enabled else f"{interval} (disabled)"),
            Text("never" if source.scanned_at is None else minute(source.scanned_at)),
        )
    console = stdout_console()
    console.print(table)

    for source in listing.sources:
        for finding in source.findings:
            line = Text(f"{_target_label(source)}: ")
            label = Text(f"{finding.severity.label} {finding.code}: ")
            label.stylize(SEVERITY_STYLES[finding.severity])
            line.append(label)
            line.append(plain_text(finding.message))
            console.print(line)

    shown = len(listing.sources)
    if shown < listing.total:
        footer = (
            f"{shown} of {listing.total} in the inventory match, soonest expiry "
            "shown; --limit 0 lists all."
        )
    else:
        footer = f"{listing.total} in the inventory match."
    console.print(Text(footer, style="dim"))


def _target_label(source: ListedSource) -> str:
    record = source.record
    if not isinstance(record, EndpointRecord):
        return record.path
    endpoint = record.endpoint
    if endpoint.address:
        return f"{endpoint.target} (at {endpoint.address})"
    return endpoint.target
