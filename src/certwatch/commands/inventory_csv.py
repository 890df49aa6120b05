"""Read and write the inventory as CSV, the format of spreadsheets.

One row is one endpoint or one certificate file or folder. README.md lists
the columns. Reading checks every row before anything is stored, so a file
with errors can be reported in full, each row with its line number.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TextIO

from certwatch.alerts.policy import ScheduleError, parse_schedule
from certwatch.arguments import CERTIFICATE_SUFFIXES, looks_like_path
from certwatch.commands.output import format_interval
from certwatch.errors import CertwatchError
from certwatch.monitor.settings import parse_duration
from certwatch.store.inventory import (
    FOLLOW_DEFAULT,
    EndpointRecord,
    FileSourceRecord,
    SourceSettings,
    normalize_tags,
)
from certwatch.targets import DEFAULT_PROTOCOL, SCHEME_PORTS, Endpoint, parse_target

if TYPE_CHECKING:
    from _csv import Reader

COLUMNS = (
    "target",
    "host",
    "port",
    "protocol",
    "server_name",
    "address",
    "path",
    "team",
    "tags",
    "interval",
    "enabled",
    "notes",
    "reminders",
)
TAG_SEPARATOR = ";"

# The cell text that makes a source follow the configured default interval,
# or its team's reminder schedule.
DEFAULT_CELL = "default"

# The same limit as the store's team names.
MAX_TEAM_LENGTH = 200

_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}
_DELIMITERS = (",", ";", "\t")


class CsvError(CertwatchError):
    """A CSV file that cannot be read at all (no header, no usable column)."""


@dataclass(frozen=True)
class CsvEntry:
    """One valid row: an endpoint or a file source path, with its settings."""

    line: int
    endpoint: Endpoint | None
    path: str | None
    settings: SourceSettings


@dataclass(frozen=True)
class CsvProblem:
    """An invalid row, by the line its record starts on, and the reason."""

    line: int
    message: str


@dataclass(frozen=True)
class ParsedCsv:
    """Every row of a CSV file, valid or not, and the columns it ignored."""

    entries: list[CsvEntry]
    problems: list[CsvProblem]
    unknown_columns: list[str]


class _RowError(Exception):
    """The reason one row is invalid; it never leaves this module."""


def read_inventory_csv(text: str, *, look_on_disk: bool = True) -> ParsedCsv:
    """Parse the text of an inventory CSV file (byte order mark already removed).

    The delimiter is the one of comma, semicolon and tab that splits the
    header into the most known column names. A target cell with a slash, a
    leading `~` or a certificate suffix names a certificate file. With
    `look_on_disk`, as on the command line, so does a target cell that
    names an existing file or folder. Without it, the disk is never looked
    at, so a caller who is not the server's operator learns nothing about
    the server's files from the result.

    Raises:
        CsvError: the file has no header, its header names none of the
            columns target, host and path, or the header row cannot be
            read by the csv module.
    """
    header_line = text.splitlines()[0] if text.strip() else ""
    if not header_line.strip():
        raise CsvError(
            "The CSV file is empty or starts with a blank line: put the header "
            f"row first, for example {','.join(COLUMNS[:3])},team,tags."
        )
    reader = csv.reader(
        io.StringIO(text, newline=""), delimiter=_delimiter(header_line)
    )
    try:
        header = [_column_name(cell) for cell in next(reader)]
    except csv.Error as exc:
        raise unreadable_csv(exc, 1) from None
    if not {"target", "host", "path"} & set(header):
        raise CsvError(
            f"The CSV header {header_line.strip()!r} names none of the columns "
            "target, host and path: name the column that holds what to watch."
        )
    duplicates = sorted({name for name in header if name and header.count(name) > 1})
    if duplicates:
        raise CsvError(
            f"The CSV header names {', '.join(duplicates)} more than once: "
            "keep one column of each name."
        )

    parsed = ParsedCsv(
        entries=[],
        problems=[],
        unknown_columns=[name for name in header if name and name not in COLUMNS],
    )
    _read_rows(reader, header, parsed, look_on_disk)
    return parsed


def unreadable_csv(exc: csv.Error, line: int) -> CsvError:
    """Return the error for a record that the csv module cannot read."""
    return CsvError(
        f"The CSV file cannot be read at line {line} ({exc}): keep each cell "
        f"under {csv.field_size_limit():,} characters and close every quoted cell."
    )


def _read_rows(
    reader: Reader, header: list[str], parsed: ParsedCsv, look_on_disk: bool
) -> None:
    first_lines: dict[object, dict[str | None, int]] = {}
    line = reader.line_num + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            # A cell over the csv module's size limit (128 KiB) ends the read.
            parsed.problems.append(CsvProblem(line, f"unreadable row ({exc})"))
            return
        start, line = line, reader.line_num + 1
        if not any(cell.strip() for cell in cells):
            continue
        if any("\x00" in cell for cell in cells):
            parsed.problems.append(CsvProblem(start, "a cell contains a NUL byte"))
            continue
        try:
            entry = _entry(start, _cells_by_column(cells, header), look_on_disk)
        except _RowError as exc:
            parsed.problems.append(CsvProblem(start, str(exc)))
            continue
        key = entry.path if entry.endpoint is None else _identity(entry.endpoint)
        teams = first_lines.setdefault(key, {})
        # A file has one row whatever its team, so its team is not compared.
        team = None if entry.endpoint is None else entry.settings.team
        earlier = _earlier_line(teams, team)
        if earlier is not None:
            parsed.problems.append(
                CsvProblem(
                    start,
                    f"Same {'file' if entry.path else 'endpoint'} as line "
                    f"{earlier}: keep one row for it.",
                )
            )
            continue
        teams[team] = start
        parsed.entries.append(entry)


def _earlier_line(teams: dict[str | None, int], team: str | None) -> int | None:
    """Return the first line of an earlier row of the same source that clashes.

    `teams` maps the team column (`None` when empty) of the earlier rows
    of the source to their lines. Two teams may watch the same endpoint,
    so rows that name different teams do not clash. A row without a team
    updates whichever team's endpoint exists, so it clashes with any other
    row of the same endpoint.
    """
    if team is None:
        return min(teams.values(), default=None)
    return teams.get(team, teams.get(None))


def _delimiter(header_line: str) -> str:
    def known_columns(delimiter: str) -> int:
        names = {_column_name(cell) for cell in header_line.split(delimiter)}
        return len(names & set(COLUMNS))

    return max(_DELIMITERS, key=known_columns)


def _column_name(cell: str) -> str:
    return cell.strip().lower().replace(" ", "_").replace("-", "_")


def _cells_by_column(cells: list[str], header: list[str]) -> dict[str, str]:
    extra = [cell for cell in cells[len(header) :] if cell.strip()]
    if extra:
        raise _RowError(
            f"The row has {len(cells)} cells but the header only "
            f"{len(header)} columns: quote cells that contain the delimiter."
        )
    return {
        name: _unguarded(cell) if name in _GUARDED_COLUMNS else cell
        for name, cell in zip(header, cells, strict=False)
        if name in COLUMNS
    }


def _identity(endpoint: Endpoint) -> tuple[str, str, int, str | None, str | None]:
    return (
        endpoint.protocol,
        endpoint.host,
        endpoint.port,
        endpoint.server_name,
        endpoint.address,
    )


def _entry(line: int, cells: dict[str, str], look_on_disk: bool) -> CsvEntry:
    def cell(name: str) -> str:
        return cells.get(name, "").strip()

    settings = _settings(cells)
    target, host, path = cell("target"), cell("host"), cell("path")
    if sum(bool(value) for value in (target and not host, host, path)) != 1:
        raise _RowError(
            "Give exactly one of target, host and path "
            f"(got target {target!r}, host {host!r}, path {path!r})."
        )
    if path or _looks_like_path(target, look_on_disk):
        for name in ("port", "protocol", "server_name", "address"):
            if cell(name):
                raise _RowError(
                    f"Column {name} is set on the file {path or target!r}: "
                    "leave it empty for files."
                )
        return CsvEntry(line, None, os.path.abspath(path or target), settings)

    endpoint = _endpoint_from_host(cells) if host else _endpoint_from_target(cells)
    return CsvEntry(line, _pinned(endpoint, cells), None, settings)


def _looks_like_path(text: str, look_on_disk: bool) -> bool:
    if not text or "://" in text:
        return False
    if look_on_disk:
        return looks_like_path(text)
    return (
        "/" in text
        or text.startswith("~")
        or text.lower().endswith(CERTIFICATE_SUFFIXES)
    )


def _endpoint_from_target(cells: dict[str, str]) -> Endpoint:
    target = cells["target"].strip()
    protocol_text = cells.get("protocol", "").strip()
    protocol = _protocol(protocol_text)
    endpoint = _parsed(target, protocol)
    if protocol_text and parse_target("x.test", protocol).protocol != endpoint.protocol:
        raise _RowError(
            f"Protocol {protocol_text!r} disagrees with target {target!r} "
            f"({endpoint.protocol}): give the protocol in one place only."
        )
    port = cells.get("port", "").strip()
    if port and _port(port) != endpoint.port:
        raise _RowError(
            f"Port {port!r} disagrees with target {target!r} (port "
            f"{endpoint.port}): give the port in one place only."
        )
    return endpoint


def _endpoint_from_host(cells: dict[str, str]) -> Endpoint:
    host = cells["host"].strip()
    protocol = _protocol(cells.get("protocol", ""))
    port_text = cells.get("port", "").strip()
    port = _port(port_text) if port_text else SCHEME_PORTS[protocol]
    bracketed = f"[{host}]" if ":" in host and not host.startswith("[") else host
    endpoint = _parsed(f"{bracketed}:{port}", protocol)
    target = cells.get("target", "").strip()
    if not target:
        target = bracketed if port == SCHEME_PORTS[protocol] else f"{bracketed}:{port}"
        if protocol != DEFAULT_PROTOCOL:
            target = f"{protocol}://{target}"
    return replace(endpoint, target=target)


def _pinned(endpoint: Endpoint, cells: dict[str, str]) -> Endpoint:
    server_name = cells.get("server_name", "").strip()
    if server_name:
        named = (
            None if ":" in server_name or "/" in server_name else _parsed(server_name)
        )
        if named is None or named.server_name is None:
            raise _RowError(
                f"Invalid server_name {server_name!r}: give a host name without "
                "port or scheme."
            )
        endpoint = replace(endpoint, server_name=named.server_name)
    address = cells.get("address", "").strip()
    if address:
        try:
            canonical = str(ipaddress.ip_address(address.strip("[]")))
        except ValueError:
            raise _RowError(
                f"Invalid address {address!r}: give an IPv4 or IPv6 address, or "
                "leave it empty to let DNS decide."
            ) from None
        endpoint = replace(endpoint, address=canonical)
    return endpoint


def _parsed(text: str, protocol: str = DEFAULT_PROTOCOL) -> Endpoint:
    try:
        return parse_target(text, protocol)
    except CertwatchError as exc:
        raise _RowError(str(exc)) from None


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise _RowError(f"Invalid port {text!r}: use 1 to 65535.")
    return int(text)


def _protocol(text: str) -> str:
    protocol = text.strip().lower() or "https"
    if protocol not in SCHEME_PORTS:
        known = ", ".join(sorted(SCHEME_PORTS))
        raise _RowError(f"Unsupported protocol {text.strip()!r}: use one of {known}.")
    return protocol


def _settings(cells: dict[str, str]) -> SourceSettings:
    team = cells.get("team", "").strip()
    if len(team) > MAX_TEAM_LENGTH:
        raise _RowError(
            f"Invalid team {team[:40]!r}...: give at most {MAX_TEAM_LENGTH} characters."
        )
    tags_text = cells.get("tags", "").strip()
    try:
        tags = normalize_tags(
            tag for tag in tags_text.split(TAG_SEPARATOR) if tag.strip()
        )
    except CertwatchError as exc:
        raise _RowError(str(exc)) from None
    notes = cells.get("notes", "")
    return SourceSettings(
        team=team or None,
        tags=tags if tags_text else None,
        interval=_interval(cells.get("interval", "")),
        enabled=_enabled(cells.get("enabled", "")),
        notes=notes if notes.strip() else None,
        reminders=_reminders(cells.get("reminders", "")),
    )


def _interval(text: str) -> timedelta | Literal["default"] | None:
    value = text.strip()
    if not value:
        return None
    if value.lower() == DEFAULT_CELL:
        return FOLLOW_DEFAULT
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise _RowError(
            f"{exc} Or write {DEFAULT_CELL!r} to follow the configured default."
        ) from None


def _reminders(text: str) -> str | None:
    """Return the reminder schedule of a cell, "" for the team's schedule."""
    value = text.strip()
    if not value:
        return None
    if value.lower() == DEFAULT_CELL:
        return ""
    try:
        return parse_schedule(value).text
    except ScheduleError as exc:
        raise _RowError(
            f"{exc} Or write {DEFAULT_CELL!r} to use the team's reminders."
        ) from None


def _enabled(text: str) -> bool | None:
    value = text.strip().lower()
    if not value:
        return None
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise _RowError(f"Invalid enabled value {text.strip()!r}: use true or false.")


def write_inventory_csv(
    endpoints: Sequence[EndpointRecord],
    file_sources: Sequence[FileSourceRecord],
    out: TextIO,
) -> None:
    """Write the inventory as CSV with every column of `COLUMNS`.

    Raises:
        CsvError: a tag contains the tag separator, which CSV cannot carry.
    """
    # A lone carriage return inside a note must be quoted too, and the csv
    # module quotes only the characters of its line terminator.
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for record in endpoints:
        endpoint = record.endpoint
        writer.writerow(
            [
                _guarded(endpoint.target),
                endpoint.host,
                endpoint.port,
                endpoint.protocol,
                _sni_cell(endpoint),
                endpoint.address or "",
                "",
                *_settings_cells(record),
            ]
        )
    for file_record in file_sources:
        path = _guarded(file_record.path)
        writer.writerow([*[""] * 6, path, *_settings_cells(file_record)])


def _sni_cell(endpoint: Endpoint) -> str:
    """Return the server name, empty when it is the host, as the import assumes."""
    if endpoint.server_name is None or endpoint.server_name == endpoint.host:
        return ""
    return endpoint.server_name


def _settings_cells(record: EndpointRecord | FileSourceRecord) -> list[str]:
    for tag in record.tags:
        if TAG_SEPARATOR in tag:
            raise CsvError(
                f"Tag {tag!r} contains {TAG_SEPARATOR!r}, which separates tags in "
                "CSV: export with --format json instead."
            )
    # An empty interval or reminders cell follows the default, and an
    # import into an empty store keeps following it.
    return [
        _guarded(record.team),
        _guarded(TAG_SEPARATOR.join(record.tags)),
        "" if record.interval is None else format_interval(record.interval),
        "true" if record.enabled else "false",
        _guarded(record.notes),
        record.reminders or "",
    ]


# Spreadsheets run a cell that starts with one of these as a formula, so a
# note such as `=HYPERLINK(...)` could act when an export is opened.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

# The free-text columns that export guards and import unguards.
_GUARDED_COLUMNS = ("target", "path", "team", "tags", "notes")


def _guarded(text: str) -> str:
    """Prefix a quote to text a spreadsheet would run as a formula.

    Text that already starts with a quote before such a character gets one
    more, so that `_unguarded` gives back exactly what was stored.
    """
    if text.startswith(_FORMULA_STARTS) or (
        text.startswith("'") and text[1:].startswith((*_FORMULA_STARTS, "'"))
    ):
        return "'" + text
    return text


def _unguarded(text: str) -> str:
    if text.startswith("'") and text[1:].startswith((*_FORMULA_STARTS, "'")):
        return text[1:]
    return text


def decode_csv(data: bytes, name: str | Path) -> str:
    """Decode a CSV file as UTF-8, dropping a byte order mark.

    Raises:
        CsvError: the bytes are not UTF-8.
    """
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CsvError(
            f"{str(name)!r} is not UTF-8 text ({exc.reason} at byte {exc.start}): "
            "save it as CSV UTF-8."
        ) from None
