"""Export the inventory as plain data, and import it into another database.

The document contains teams, endpoints and file sources with their settings,
but no observations and no schedule: an import makes every new source due
at once. Importing an export rebuilds the same inventory, and importing it
again changes nothing, because each source is upserted by its identity.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

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
from certwatch.targets import Endpoint

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
        outcome = upsert_endpoint(session, endpoint, now=now, settings=settings)
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
        host=_text(entry.get("host"), "endpoint host"),
        port=port,
        server_name=_optional_text(entry.get("server_name"), "server name"),
        protocol=_text(entry.get("protocol", "https"), "protocol"),
        address=_optional_text(entry.get("address"), "address"),
    )
    return endpoint, _settings_from(entry)


def _file_source_from(entry: Any) -> tuple[str, SourceSettings]:
    if not isinstance(entry, dict):
        raise StoreError(f"Invalid file source entry {entry!r}: expected an object.")
    return _text(entry.get("path"), "file source path"), _settings_from(entry)


def _settings_from(entry: dict[str, Any]) -> SourceSettings:
    interval = entry.get("interval_seconds")
    if not isinstance(interval, int) or isinstance(interval, bool) or interval < 1:
        raise StoreError(
            f"Invalid interval_seconds {interval!r}: give a whole number of "
            "seconds, at least 1."
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
    )


def _notes(value: Any) -> str:
    if not isinstance(value, str):
        raise StoreError(f"Invalid notes {value!r}: expected a string.")
    return value


def _list(document: dict[str, Any], key: str) -> list[Any]:
    value = document.get(key, [])
    if not isinstance(value, list):
        raise StoreError(f"Invalid {key!r} in inventory: expected a list.")
    return value


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise StoreError(f"Invalid {what} {value!r}: expected a non-empty string.")
    return value


def _optional_text(value: Any, what: str) -> str | None:
    if value is None:
        return None
    return _text(value, what)
