"""Output helpers shared by the inventory commands: consoles, cells, timestamps."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import click
from rich.text import Text

from certwatch.report.table import STATUS_STYLES
from certwatch.result import Status
from certwatch.store.deployments import CertificateSummary
from certwatch.x509.facts import days_left
from certwatch.x509.model import Finding

# JSON documents of the inventory commands carry this version; it changes
# only when a field is renamed or removed.
INVENTORY_SCHEMA_VERSION = 1


@contextmanager
def closed_pipe_ignored() -> Iterator[None]:
    """Let a reader such as `head` close stdout without a traceback."""
    try:
        yield
        sys.stdout.flush()
    except BrokenPipeError:
        # Python would try to flush the closed stdout again at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def echo_json(document: Any) -> None:
    """Print a JSON document, indented, on stdout."""
    click.echo(json.dumps(document, indent=2))


def timestamp(moment: datetime | None) -> str | None:
    """Format an instant for JSON as `2026-06-01T12:00:00Z`."""
    if moment is None:
        return None
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def minute(moment: datetime | None) -> str:
    """Format an instant for a table cell as `2026-06-01 12:00`."""
    if moment is None:
        return "-"
    return moment.strftime("%Y-%m-%d %H:%M")


def days_until(not_after: datetime | None, now: datetime) -> int | None:
    """Return whole days left until `not_after`, `None` when it is unknown."""
    return None if not_after is None else days_left(not_after, now)


def days_cell(days: int | None) -> Text:
    return Text("-" if days is None else str(days))


def status_cell(status: Status | None) -> Text:
    if status is None:
        return Text("NOT SCANNED", style="dim")
    return Text(status.value.upper(), style=STATUS_STYLES[status])


def format_interval(interval: timedelta) -> str:
    """Format a scan interval as `certwatch add --interval` reads it, as `1h30m`."""
    remaining = int(interval.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def format_source_interval(interval: timedelta | None, default: timedelta) -> str:
    """Format a source's interval, `default (6h)` when it follows the default."""
    if interval is None:
        return f"default ({format_interval(default)})"
    return format_interval(interval)


def certificate_names(summary: CertificateSummary) -> list[str]:
    """Return the SAN names and addresses of a certificate, else its CN or subject."""
    names = [*summary.dns_names, *summary.ip_addresses]
    if not names and (summary.common_name or summary.subject):
        names = [summary.common_name or summary.subject or ""]
    return names


def certificate_document(summary: CertificateSummary, now: datetime) -> dict[str, Any]:
    """Build the JSON object of one stored certificate."""
    return {
        "sha256": summary.sha256,
        "subject": summary.subject,
        "issuer": summary.issuer,
        "common_name": summary.common_name,
        "dns_names": list(summary.dns_names),
        "ip_addresses": list(summary.ip_addresses),
        "not_before": timestamp(summary.not_before),
        "not_after": timestamp(summary.not_after),
        "days_left": days_until(summary.not_after, now),
        "key_type": summary.key_type,
        "key_size": summary.key_size,
        "is_ca": summary.is_ca,
    }


def finding_document(finding: Finding) -> dict[str, Any]:
    """Build the JSON object of one finding."""
    return {
        "code": finding.code,
        "severity": finding.severity.label,
        "message": finding.message,
    }
