"""Export the inventory as plain data, and import it into another database.

The document contains teams, endpoints and file sources with their settings,
but no observations and no schedule: an import makes every new source due
at once. Importing an export rebuilds the same inventory, and importing it
again changes nothing, because each source is upserted by its identity:
an endpoint within its team, a file source by its path.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from certwatch.alerts.policy import ScheduleError, parse_schedule
from certwatch.errors import TargetError
from certwatch.store.errors import StoreError
from certwatch.store.inventory import (
    EndpointRecord,
    FileSourceRecord,
    SourceSettings,
    ensure_team,
    list_endpoints,
    list_file_sources,
    list_teams,
    upsert_endpoint,
    upsert_file_source,
)
from certwatch.targets import SCHEME_PORTS, Endpoint, parse_target

# The maximum scan interval an import accepts, as `--interval` does.
MAX_INTERVAL_SECONDS = 365 * 86400

FORMAT_VERSION = 1


@dataclass(frozen=True)
class ImportCounts:
    """How many sources an import created and how many it updated."""

    created: int
    updated: int


def export_inventory(session: Session) -> dict[str, Any]:
    """Return the inventory as a JSON-serialisable document."""
    return {
        "version": FORMAT_VERSION,
        "teams": list_teams(session),
        "endpoints": [_endpoint_entry(r) for r in list_endpoints(session)],
        "file_sources": [_file_source_entry(r) for r in list_file_sources(session)],
    }


def import_inventory(
    session: Session, document: dict[str, Any], *, now: datetime
) -> ImportCounts:
    """Upsert every team, endpoint and file source of an exported document.

    Raises:
        StoreError: the document is not an export of this format; nothing
            is written before the whole document has been checked.
    """
    if document.get("version") != FORMAT_VERSION:
        raise StoreError(
            f"Unsupported inventory version {document.get('version')!r}: "
            f"this certwatch reads version {FORMAT_VERSION}."
        )
    teams = [_text(name, "team name") for name in _list(document, "teams")]
    endpoints = [_endpoint_from(entry) for entry in _list(document, "endpoints")]
    files = [_file_source_from(entry) for entry in _list(document, "file_sources")]

    for team in teams:
        ensure_team(session, team, now=now)
    created = updated = 0
    for endpoint, settings in endpoints:
        outcome = upsert_endpoint(
            session, endpoint, now=now, settings=settings, team_only=True
        )
        created, updated = _count(outcome.created, created, updated)
    for path, settings in files:
        file_outcome = upsert_file_source(session, path, now=now, settings=settings)
        created, updated = _count(file_outcome.created, created, updated)
    return ImportCounts(created=created, updated=updated)


def _count(was_created: bool, created: int, updated: int) -> tuple[int, int]:
    return (created + 1, updated) if was_created else (created, updated + 1)


def _settings_entry(record: EndpointRecord | FileSourceRecord) -> dict[str, Any]:
    return {
        "team": record.team,
        "tags": list(record.tags),
        "interval_seconds": int(record.interval.total_seconds()),
        "enabled": record.enabled,
        "notes": record.notes,
        "reminders": record.reminders,
    }


def _endpoint_entry(record: EndpointRecord) -> dict[str, Any]:
    endpoint = record.endpoint
    return {
        "target": endpoint.target,
        "protocol": endpoint.protocol,
        "host": endpoint.host,
        "port": endpoint.port,
        "server_name": endpoint.server_name,
        "address": endpoint.address,
        **_settings_entry(record),
    }


def _file_source_entry(record: FileSourceRecord) -> dict[str, Any]:
    return {"path": record.path, **_settings_entry(record)}


def _endpoint_from(entry: Any) -> tuple[Endpoint, SourceSettings]:
    if not isinstance(entry, dict):
        raise StoreError(f"Invalid endpoint entry {entry!r}: expected an object.")
    port = entry.get("port")
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise StoreError(f"Invalid port {port!r} in endpoint entry: use 1 to 65535.")
    endpoint = Endpoint(
        target=_text(entry.get("target"), "endpoint target"),
        host=_canonical_host(_text(entry.get("host"), "endpoint host"), port),
        port=port,
        server_name=_server_name(entry.get("server_name")),
        protocol=_protocol(entry.get("protocol", "https")),
        address=_address(entry.get("address")),
    )
    return endpoint, _settings_from(entry)


def _canonical_host(host: str, port: int) -> str:
    """Check a host as a target would be, and require its canonical form.

    An export contains canonical hosts (A-labels in lower case, compressed IPv6),
    so anything else was edited by hand and would become a second endpoint.
    """
    text = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        parsed = parse_target(text)
    except TargetError as exc:
        raise StoreError(f"Invalid endpoint host {host!r}: {exc}") from exc
    if parsed.host != host:
        raise StoreError(
            f"Invalid endpoint host {host!r}: write it as {parsed.host!r}, the "
            "form certwatch stores."
        )
    return host


def _server_name(value: Any) -> str | None:
    if value is None:
        return None
    name = _text(value, "server name")
    try:
        parsed = parse_target(name)
    except TargetError as exc:
        raise StoreError(f"Invalid server name {name!r}: {exc}") from exc
    if parsed.server_name != name:
        raise StoreError(
            f"Invalid server name {name!r}: give a DNS name in the form "
            f"{parsed.server_name or parsed.host!r}."
        )
    return name


def _protocol(value: Any) -> str:
    protocol = _text(value, "protocol")
    if protocol not in SCHEME_PORTS:
        known = ", ".join(sorted(SCHEME_PORTS))
        raise StoreError(f"Invalid protocol {protocol!r}: use one of {known}.")
    return protocol


def _address(value: Any) -> str | None:
    if value is None:
        return None
    text = _text(value, "address")
    try:
        canonical = str(ipaddress.ip_address(text))
    except ValueError:
        raise StoreError(
            f"Invalid address {text!r}: give an IPv4 or IPv6 address."
        ) from None
    if canonical != text:
        raise StoreError(f"Invalid address {text!r}: write it as {canonical!r}.")
    return text


def _file_source_from(entry: Any) -> tuple[str, SourceSettings]:
    if not isinstance(entry, dict):
        raise StoreError(f"Invalid file source entry {entry!r}: expected an object.")
    path = _text(entry.get("path"), "file source path")
    if not os.path.isabs(path):
        raise StoreError(f"Invalid file source path {path!r}: give an absolute path.")
    return path, _settings_from(entry)


def _settings_from(entry: dict[str, Any]) -> SourceSettings:
    interval = entry.get("interval_seconds")
    if (
        not isinstance(interval, int)
        or isinstance(interval, bool)
        or not 1 <= interval <= MAX_INTERVAL_SECONDS
    ):
        raise StoreError(
            f"Invalid interval_seconds {interval!r}: give a whole number of "
            f"seconds from 1 to {MAX_INTERVAL_SECONDS} (365 days)."
        )
    tags = entry.get("tags", [])
    if not isinstance(tags, list):
        raise StoreError(f"Invalid tags {tags!r}: expected a list of strings.")
    enabled = entry.get("enabled", True)
    if not isinstance(enabled, bool):
        raise StoreError(f"Invalid enabled value {enabled!r}: use true or false.")
    return SourceSettings(
        team=_text(entry.get("team"), "team name"),
        tags=[_text(tag, "tag") for tag in tags],
        interval=timedelta(seconds=interval),
        enabled=enabled,
        notes=_notes(entry.get("notes", "")),
        reminders=_reminders(entry.get("reminders")),
    )


def _reminders(value: Any) -> str:
    """Return the reminder schedule normalised, "" (the team's) when absent."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise StoreError(f"Invalid reminders {value!r}: expected a string.")
    try:
        return parse_schedule(value).text if value.strip() else ""
    except ScheduleError as exc:
        raise StoreError(str(exc)) from exc


def _notes(value: Any) -> str:
    if not isinstance(value, str):
        raise StoreError(f"Invalid notes {value!r}: expected a string.")
    _check_no_nul(value, "notes")
    return value


def _list(document: dict[str, Any], key: str) -> list[Any]:
    value = document.get(key, [])
    if not isinstance(value, list):
        raise StoreError(f"Invalid {key!r} in inventory: expected a list.")
    return value


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise StoreError(f"Invalid {what} {value!r}: expected a non-empty string.")
    _check_no_nul(value, what)
    return value


def _check_no_nul(value: str, what: str) -> None:
    # PostgreSQL text cannot hold NUL, so SQLite must not accept it either.
    if "\x00" in value:
        raise StoreError(f"Invalid {what} {value[:40]!r}: it contains a NUL byte.")


def _optional_text(value: Any, what: str) -> str | None:
    if value is None:
        return None
    return _text(value, what)
