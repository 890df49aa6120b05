"""`certwatch history`: the certificates a source showed over time, and the changes.

An endpoint's history is kept per address, because each address of a name
can serve its own certificate; a file source's history is kept per file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy.orm import Session

from certwatch.commands.inventory import parse_sources
from certwatch.commands.output import (
    INVENTORY_SCHEMA_VERSION,
    certificate_names,
    closed_pipe_ignored,
    echo_json,
    minute,
    timestamp,
)
from certwatch.commands.queries import (
    ServedCertificate,
    find_endpoints,
    not_found_hint,
    served_certificates,
)
from certwatch.commands.store import open_store
from certwatch.report.console import stdout_console
from certwatch.report.table import plain_text, short_name
from certwatch.store.changes import CertificateChange, list_changes
from certwatch.store.deployments import CertificateSummary, certificate_summaries
from certwatch.store.inventory import InventoryFilter, list_file_sources


@dataclass(frozen=True)
class SourceHistory:
    """What one endpoint or file source showed over time.

    `served` lists each leaf per place with first and last sighting, and
    `changes` the recorded changes between leaves, oldest first.
    `certificates` holds the facts of every certificate named in either.
    """

    kind: str
    source_id: int
    target: str
    served: list[ServedCertificate]
    changes: list[CertificateChange]
    certificates: dict[str, CertificateSummary]


@click.command("history")
@click.argument("target", metavar="TARGET|PATH")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON document.")
def history_command(target: str, as_json: bool) -> None:
    """Show the certificates an endpoint served over time, per address.

    Each certificate comes with the first and last scan that saw it there,
    followed by the changes between certificates: not_after, names added and
    removed, issuer, key, and whether the key was reused. A certificate file
    or folder in the inventory works too.
    """
    with open_store() as sessions, sessions() as session:
        histories = _histories(session, target)

    with closed_pipe_ignored():
        if as_json:
            echo_json(
                {
                    "schema_version": INVENTORY_SCHEMA_VERSION,
                    "sources": [_history_document(h) for h in histories],
                }
            )
        else:
            console = stdout_console()
            for history in histories:
                _print_history(history, console)


def _histories(session: Session, text: str) -> list[SourceHistory]:
    sources = parse_sources([text], paths_must_exist=False)
    histories = []
    for endpoint in sources.endpoints:
        records = find_endpoints(session, endpoint)
        # Several teams may watch the endpoint, each with its own history.
        several_teams = len({record.team for record in records}) > 1
        for record in records:
            label = record.endpoint.target
            if record.endpoint.address:
                label += f" (at {record.endpoint.address})"
            if several_teams:
                label += f" (team {record.team})"
            histories.append(
                _history(session, "endpoint", record.id, label, endpoint_id=record.id)
            )
    for path in sources.paths:
        found = list_file_sources(session, InventoryFilter(search=path))
        for file_record in (r for r in found if r.path == path):
            histories.append(
                _history(
                    session, "file", file_record.id, path, file_source_id=file_record.id
                )
            )
    if not histories:
        hints = "".join(not_found_hint(session, e) for e in sources.endpoints)
        raise click.ClickException(
            f"{text!r} is not in the inventory: run 'certwatch list' to see what "
            f"is, or add it with 'certwatch add'.{hints}"
        )
    return histories


def _history(
    session: Session,
    kind: str,
    source_id: int,
    target: str,
    *,
    endpoint_id: int | None = None,
    file_source_id: int | None = None,
) -> SourceHistory:
    served = served_certificates(
        session, endpoint_id=endpoint_id, file_source_id=file_source_id
    )
    changes = list_changes(
        session, endpoint_id=endpoint_id, file_source_id=file_source_id
    )
    sha256s = {item.certificate_sha256 for item in served}
    sha256s.update(c.old_sha256 for c in changes)
    sha256s.update(c.new_sha256 for c in changes)
    summaries = certificate_summaries(session, sorted(sha256s))
    return SourceHistory(
        kind=kind,
        source_id=source_id,
        target=target,
        served=served,
        changes=changes,
        certificates={summary.sha256: summary for summary in summaries},
    )


def _history_document(history: SourceHistory) -> dict[str, Any]:
    place = "address" if history.kind == "endpoint" else "path"
    return {
        "kind": history.kind,
        "id": history.source_id,
        "target": history.target,
        "served": [
            {
                place: item.place,
                "sha256": item.certificate_sha256,
                **_facts(history.certificates.get(item.certificate_sha256)),
                "first_seen_at": timestamp(item.first_seen_at),
                "last_seen_at": timestamp(item.last_seen_at),
                "current": item.current,
            }
            for item in history.served
        ],
        "changes": [_change_document(change, place) for change in history.changes],
    }


def _facts(summary: CertificateSummary | None) -> dict[str, Any]:
    if summary is None:
        return {"names": [], "issuer": None, "not_after": None}
    return {
        "names": certificate_names(summary),
        "issuer": summary.issuer,
        "not_after": timestamp(summary.not_after),
    }


def _change_document(change: CertificateChange, place: str) -> dict[str, Any]:
    return {
        place: change.address if place == "address" else change.path,
        "detected_at": timestamp(change.detected_at),
        "old_last_seen_at": timestamp(change.old_last_seen_at),
        "old_sha256": change.old_sha256,
        "new_sha256": change.new_sha256,
        "old_not_after": timestamp(change.old_not_after),
        "new_not_after": timestamp(change.new_not_after),
        "names_added": list(change.names_added),
        "names_removed": list(change.names_removed),
        "old_issuer": change.old_issuer,
        "new_issuer": change.new_issuer,
        "old_key_type": change.old_key_type,
        "new_key_type": change.new_key_type,
        "old_key_size": change.old_key_size,
        "new_key_size": change.new_key_size,
        "key_reused": change.key_reused,
    }


def _print_history(history: SourceHistory, console: Console) -> None:
    console.print(plain_text(history.target, style="bold"))
    if not history.served:
        console.print(Text("  No certificate seen yet.", style="dim"))
        return

    place = "Address" if history.kind == "endpoint" else "File"
    table = Table(header_style="bold")
    table.add_column(place, overflow="fold")
    table.add_column("SHA-256", no_wrap=True)
    table.add_column("Names", overflow="fold")
    table.add_column("Issuer", overflow="fold")
    table.add_column("Not after (UTC)", no_wrap=True)
    table.add_column("First seen (UTC)", no_wrap=True)
    table.add_column("Last seen (UTC)", no_wrap=True)
    for item in history.served:
        summary = history.certificates.get(item.certificate_sha256)
        last_seen = minute(item.last_seen_at) + (" (now)" if item.current else "")
        table.add_row(
            plain_text(item.place),
            Text(item.certificate_sha256[:16]),
            plain_text(", ".join(certificate_names(summary)) if summary else "-"),
            plain_text(short_name(summary.issuer) if summary else "-"),
            Text(minute(summary.not_after if summary else None)),
            Text(minute(item.first_seen_at)),
            Text(last_seen),
        )
    console.print(table)
    _print_changes(history.changes, console)


def _print_changes(changes: Sequence[CertificateChange], console: Console) -> None:
    if not changes:
        console.print(Text("No certificate change recorded.", style="dim"))
        return
    count = len(changes)
    console.print(Text(f"{count} change{'s' * (count != 1)}:", style="bold"))
    for change in changes:
        where = change.address if change.address is not None else change.path
        console.print(
            plain_text(
                f"  {minute(change.detected_at)} at {where}: "
                f"{change.old_sha256[:16]} -> {change.new_sha256[:16]}"
            )
        )
        for line in describe_change(change):
            console.print(plain_text(f"    {line}"))


def describe_change(change: CertificateChange) -> list[str]:
    """Word what changed between the old and the new certificate, one line each."""
    lines = [
        f"not_after {minute(change.old_not_after)} -> {minute(change.new_not_after)}"
    ]
    if change.names_added:
        lines.append(f"names added: {', '.join(change.names_added)}")
    if change.names_removed:
        lines.append(f"names removed: {', '.join(change.names_removed)}")
    if change.old_issuer != change.new_issuer:
        lines.append(
            f"issuer {short_name(change.old_issuer)} -> {short_name(change.new_issuer)}"
        )
    old_key = _key(change.old_key_type, change.old_key_size)
    new_key = _key(change.new_key_type, change.new_key_size)
    if old_key != new_key:
        lines.append(f"key {old_key} -> {new_key}")
    if change.key_reused is not None:
        lines.append("key reused" if change.key_reused else "new key")
    return lines


def _key(key_type: str | None, key_size: int | None) -> str:
    if key_type is None:
        return "unknown"
    return key_type if key_size is None else f"{key_type} {key_size}"
