"""Export the inventory as plain data, and import it into another database.

The document contains teams with their alert settings and contacts, and
endpoints and file sources with their settings, but no observations, no
accounts and no schedule: an import makes every new source due at once.
Importing an export rebuilds the same inventory, and importing it again
changes nothing, because each team is found by its name and each source
is upserted by its identity: an endpoint within its team, a file source
by its path. The document contains contact secrets such as webhook URLs.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

from sqlalchemy.orm import Session

from certwatch.alerts.policy import ScheduleError, parse_schedule
from certwatch.errors import TargetError
from certwatch.store.errors import StoreError
from certwatch.store.export_teams import TeamEntry, export_teams, import_team, team_from
from certwatch.store.inventory import (
    DEFAULT_INTERVAL,
    FOLLOW_DEFAULT,
    EndpointRecord,
    FileSourceRecord,
    SourceSettings,
    list_endpoints,
    list_file_sources,
    normalize_tags,
    upsert_endpoint,
    upsert_file_source,
)
from certwatch.targets import SCHEME_PORTS, Endpoint, parse_target

# The maximum scan interval an import accepts, as `--interval` does.
MAX_INTERVAL_SECONDS = 365 * 86400

FORMAT_VERSION = 2
"""The version written. Version 1, which import still reads, listed teams
by name only and gave every source an explicit interval."""

_READABLE_VERSIONS = (1, FORMAT_VERSION)


class InventoryImportError(StoreError):
    """An export that cannot be imported, with every invalid entry.

    `problems` holds one message per invalid entry, each starting with
    the entry's place in the document, such as `endpoints[3]`.
    """

    def __init__(self, problems: list[str]) -> None:
        entries = "entry is" if len(problems) == 1 else "entries are"
        super().__init__(
            f"{len(problems)} {entries} invalid: {'; '.join(problems)} "
            "Fix them and import the file again."
        )
        self.problems = tuple(problems)


@dataclass(frozen=True)
class ImportCounts:
    """How many sources an import created and how many it updated."""

    created: int
    updated: int


def export_inventory(session: Session) -> dict[str, Any]:
    """Return the inventory as a JSON-serialisable document.

    The document contains every contact address in full, webhook secrets
    included, so that an import can deliver alerts.
    """
    return {
        "version": FORMAT_VERSION,
        "teams": export_teams(session),
        "endpoints": [_endpoint_entry(r) for r in list_endpoints(session)],
        "file_sources": [_file_source_entry(r) for r in list_file_sources(session)],
    }


def import_inventory(
    session: Session,
    document: dict[str, Any],
    *,
    now: datetime,
    default_interval: timedelta = DEFAULT_INTERVAL,
) -> ImportCounts:
    """Upsert every team, endpoint and file source of an exported document.

    Each team's settings become the document's, and its contacts that are
    missing are added. `default_interval` is the configured default, which
    moving a source between an explicit and the default interval needs.

    Raises:
        StoreError: the document is not an export of a version this
            certwatch reads.
        InventoryImportError: some entries are invalid. When the entries
            themselves are invalid, nothing is written. When the store
            rejects an entry while writing (such as a team name with
            control characters), the others may have been written, and the
            caller must roll the transaction back.
    """
    version = document.get("version")
    if version not in _READABLE_VERSIONS:
        raise StoreError(
            f"Unsupported inventory version {version!r}: this certwatch reads "
            f"versions {' and '.join(map(str, _READABLE_VERSIONS))}; export "
            "again with this version of certwatch."
        )
    problems: list[str] = []
    teams = _checked_entries(document, "teams", team_from, problems)
    endpoints = _checked_entries(document, "endpoints", _endpoint_from, problems)
    files = _checked_entries(document, "file_sources", _file_source_from, problems)
    if problems:
        raise InventoryImportError(problems)

    counts = _write(session, teams, endpoints, files, now, default_interval, problems)
    if problems:
        raise InventoryImportError(problems)
    return counts


_Entry = TypeVar("_Entry")


def _checked_entries(
    document: dict[str, Any],
    key: str,
    check: Callable[[Any], _Entry],
    problems: list[str],
) -> list[tuple[str, _Entry]]:
    """Check each entry of a list, adding a problem for each invalid one."""
    try:
        entries = _list(document, key)
    except StoreError as exc:
        problems.append(str(exc))
        return []
    checked = []
    for index, entry in enumerate(entries):
        place = f"{key}[{index}]"
        try:
            checked.append((place, check(entry)))
        except StoreError as exc:
            problems.append(f"{place}: {exc}")
    return checked


def _write(
    session: Session,
    teams: list[tuple[str, TeamEntry]],
    endpoints: list[tuple[str, tuple[Endpoint, SourceSettings]]],
    files: list[tuple[str, tuple[str, SourceSettings]]],
    now: datetime,
    default_interval: timedelta,
    problems: list[str],
) -> ImportCounts:
    for place, team in teams:
        try:
            import_team(session, team, now=now)
        except StoreError as exc:
            problems.append(f"{place}: {exc}")
    created = updated = 0
    for place, (endpoint, settings) in endpoints:
        try:
            outcome = upsert_endpoint(
                session,
                endpoint,
                now=now,
                settings=settings,
                default_interval=default_interval,
                team_only=True,
            )
        except StoreError as exc:
            problems.append(f"{place}: {exc}")
            continue
        created, updated = _count(outcome.created, created, updated)
    for place, (path, settings) in files:
        try:
            file_outcome = upsert_file_source(
                session,
                path,
                now=now,
                settings=settings,
                default_interval=default_interval,
            )
        except StoreError as exc:
            problems.append(f"{place}: {exc}")
            continue
        created, updated = _count(file_outcome.created, created, updated)
    return ImportCounts(created=created, updated=updated)


def _count(was_created: bool, created: int, updated: int) -> tuple[int, int]:
    return (created + 1, updated) if was_created else (created, updated + 1)


def _settings_entry(record: EndpointRecord | FileSourceRecord) -> dict[str, Any]:
    return {
        "team": record.team,
        "tags": list(record.tags),
        "interval_seconds": (
            None if record.interval is None else int(record.interval.total_seconds())
        ),
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
    tags = entry.get("tags", [])
    if not isinstance(tags, list):
        raise StoreError(f"Invalid tags {tags!r}: expected a list of strings.")
    enabled = entry.get("enabled", True)
    if not isinstance(enabled, bool):
        raise StoreError(f"Invalid enabled value {enabled!r}: use true or false.")
    return SourceSettings(
        team=_text(entry.get("team"), "team name"),
        tags=normalize_tags(_text(tag, "tag") for tag in tags),
        interval=_interval(entry.get("interval_seconds")),
        enabled=enabled,
        notes=_notes(entry.get("notes", "")),
        reminders=_reminders(entry.get("reminders")),
    )


def _interval(value: Any) -> timedelta | Literal["default"]:
    """Return the interval of an entry; `null` follows the configured default."""
    if value is None:
        return FOLLOW_DEFAULT
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or not 1 <= value <= MAX_INTERVAL_SECONDS
    ):
        raise StoreError(
            f"Invalid interval_seconds {value!r}: give a whole number of "
            f"seconds from 1 to {MAX_INTERVAL_SECONDS} (365 days), or null for "
            "the configured default."
        )
    return timedelta(seconds=value)


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
