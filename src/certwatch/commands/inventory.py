"""`certwatch add`, `remove` and `list`: keep the inventory of what to watch.

`add` stores endpoints and certificate files, probes them at once with the
check engine, records what it saw and prints the same report as `check`.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click
from sqlalchemy.orm import Session

from certwatch.arguments import classify_items
from certwatch.commands.options import protocol_option, threshold_options
from certwatch.commands.output import (
    closed_pipe_ignored,
    echo_json,
)
from certwatch.commands.queries import find_endpoints, not_found_hint
from certwatch.commands.store import open_store
from certwatch.errors import CertwatchError, TargetError
from certwatch.monitor.settings import (
    MonitorSettings,
    SettingsError,
    load_settings,
    parse_duration,
)
from certwatch.probe.resolve import SystemResolver
from certwatch.report.console import stdout_console
from certwatch.report.json import render_document
from certwatch.report.table import print_table
from certwatch.result import worst_status
from certwatch.store.accounts import adopt_teams_without_members
from certwatch.store.inventory import (
    AmbiguousEndpointError,
    EndpointRecord,
    FileSourceRecord,
    SourceSettings,
    Upserted,
    list_teams,
    normalize_tags,
    remove_endpoint,
    remove_file_source,
    upsert_endpoint,
    upsert_file_source,
)
from certwatch.targets import (
    DEFAULT_PROTOCOL,
    Endpoint,
    apply_overrides,
    parse_resolve,
)
from certwatch.truststore import load_roots
from certwatch.x509.expiry import parse_thresholds
from certwatch.x509.model import AnalysisPolicy

# Tags travel in one CSV cell separated by this character, so no tag may
# contain it.
TAG_SEPARATOR = ";"

if TYPE_CHECKING:
    from certwatch.monitor.instant import StoredSources


@dataclass(frozen=True)
class Sources:
    """The endpoints and certificate paths named by command arguments.

    `paths` are absolute but not resolved, so a symbolic link such as
    `/etc/letsencrypt/live/NAME/cert.pem` stays the path watched.
    """

    endpoints: list[Endpoint]
    paths: list[str]


def parse_sources(
    texts: Sequence[str],
    *,
    paths_must_exist: bool,
    protocol: str = DEFAULT_PROTOCOL,
) -> Sources:
    """Classify arguments like `certwatch check` does, rejecting invalid ones.

    Targets without a scheme get `protocol`, a protocol name or `auto`.

    Raises:
        click.UsageError: a target is invalid, or a path is missing when
            `paths_must_exist` is set; the message lists every such argument.
    """
    paths, endpoints, invalid = classify_items(texts, protocol)
    problems = [str(item.error) for item in invalid]
    absolute = []
    for given in paths:
        path = os.path.abspath(Path(given).expanduser())
        if paths_must_exist and not os.path.exists(path):
            hint = "check the path"
            if "/" not in given:
                hint += f", or write https://{given} for a host of that name"
            problems.append(f"File or folder {given!r} not found: {hint}.")
        absolute.append(path)
    if problems:
        raise click.UsageError("\n".join(problems))
    return Sources(endpoints=endpoints, paths=list(dict.fromkeys(absolute)))


def _pinned(sources: Sources, resolve_values: Sequence[str]) -> Sources:
    """Pin endpoints to the addresses of `--resolve`, one address each.

    Raises:
        click.UsageError: a value is invalid or gives several addresses.
    """
    pins: dict[tuple[str, int], str] = {}
    for value in resolve_values:
        try:
            host, port, addresses = parse_resolve(value)
        except TargetError as exc:
            raise click.UsageError(str(exc)) from exc
        if len(addresses) != 1 or (host, port) in pins:
            raise click.UsageError(
                f"--resolve {value!r}: add stores one pinned address per "
                "endpoint; import a CSV file with one row per address to "
                "watch a name at several pinned addresses."
            )
        pins[(host, port)] = addresses[0]
    endpoints = [apply_overrides(endpoint, pins) for endpoint in sources.endpoints]
    return Sources(endpoints=endpoints, paths=sources.paths)


def parse_interval(text: str | None, option: str = "--interval") -> timedelta | None:
    """Parse a DURATION option value; `None` stays `None`."""
    if text is None:
        return None
    try:
        return parse_duration(text)
    except SettingsError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from exc


def monitor_settings() -> MonitorSettings:
    """Load the monitor settings from the environment, as a usage error if invalid."""
    try:
        return load_settings()
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from exc


def store_endpoint(
    session: Session,
    endpoint: Endpoint,
    settings: SourceSettings,
    *,
    default_interval: timedelta,
    now: datetime,
    team_only: bool = False,
) -> Upserted[EndpointRecord]:
    """Upsert an endpoint; one without an interval follows `default_interval`.

    `team_only` is that of `certwatch.store.inventory.upsert_endpoint`.
    """
    return upsert_endpoint(
        session,
        endpoint,
        now=now,
        settings=settings,
        default_interval=default_interval,
        team_only=team_only,
    )


def store_file_source(
    session: Session,
    path: str,
    settings: SourceSettings,
    *,
    default_interval: timedelta,
    now: datetime,
) -> Upserted[FileSourceRecord]:
    """Upsert a file source; one without an interval follows `default_interval`."""
    return upsert_file_source(
        session, path, now=now, settings=settings, default_interval=default_interval
    )


def check_tags(tags: Sequence[str]) -> tuple[str, ...]:
    """Normalize `--tag` values, rejecting the CSV tag separator."""
    for tag in tags:
        if TAG_SEPARATOR in tag:
            raise click.BadParameter(
                f"Invalid tag {tag!r}: {TAG_SEPARATOR!r} separates tags in CSV "
                "files, so give each tag with its own --tag.",
                param_hint="--tag",
            )
    try:
        return normalize_tags(tags)
    except CertwatchError as exc:
        raise click.BadParameter(str(exc), param_hint="--tag") from exc


@click.command("add")
@click.argument("items", nargs=-1, required=True, metavar="TARGET|PATH...")
@click.option(
    "--tag",
    "tags",
    multiple=True,
    help="Tag what is added; repeat for several tags. Replaces the tags of "
    "an endpoint or file that is already in the inventory.",
)
@click.option("--team", help="Team that owns what is added (default: 'default').")
@click.option(
    "--interval",
    "interval_text",
    metavar="DURATION",
    help="Time between scans, such as 90s, 30m, 6h or 1d.",
)
@click.option(
    "--ca-file",
    type=click.Path(path_type=Path),
    multiple=True,
    envvar="CERTWATCH_CA_FILE",
    help="Also trust the root certificates in this PEM, DER or PKCS#7 file "
    "for the instant report (or set CERTWATCH_CA_FILE, several paths "
    "separated by ':').",
)
@click.option(
    "--only-ca-file",
    is_flag=True,
    help="Trust only the roots given with --ca-file, not the certifi bundle.",
)
@click.option(
    "--resolve",
    "resolve_values",
    multiple=True,
    metavar="NAME:PORT:ADDRESS",
    help="Store NAME:PORT pinned to ADDRESS instead of asking DNS, keeping "
    "NAME for SNI and name matching; one address per endpoint.",
)
@click.option(
    "--reminders",
    metavar="LIST",
    help="Expiry reminder points for what is added, instead of its team's: "
    "days before expiry such as 30,14,7 or shares of the lifetime such as "
    "20%,5%; an empty value goes back to the team's.",
)
@protocol_option
@threshold_options
@click.option("--json", "as_json", is_flag=True, help="Print the JSON report.")
def add_command(
    items: tuple[str, ...],
    tags: tuple[str, ...],
    team: str | None,
    interval_text: str | None,
    ca_file: tuple[Path, ...],
    only_ca_file: bool,
    resolve_values: tuple[str, ...],
    reminders: str | None,
    protocol: str,
    warning: str | None,
    critical: str | None,
    as_json: bool,
) -> None:
    """Add endpoints and certificate files to the inventory and check them now.

    Arguments are read as by 'certwatch check', with --protocol for targets
    without a scheme. Adding one that is already in the inventory updates
    its settings. The report and exit code are those of 'certwatch check':
    0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
    """
    # The scan engine is imported here, not at the top, because `list` and
    # other commands that share this module's helpers never scan.
    from certwatch.monitor.instant import ScanSetup, scan_and_record

    parsed = parse_sources(items, paths_must_exist=True, protocol=protocol)
    sources = _pinned(parsed, resolve_values)
    settings = SourceSettings(
        team=team,
        tags=check_tags(tags) if tags else None,
        interval=parse_interval(interval_text),
        reminders=_reminders(reminders),
    )
    monitor = monitor_settings()
    try:
        thresholds = parse_thresholds(warning, critical)
        roots = load_roots(ca_file, only_ca_files=only_ca_file)
    except CertwatchError as exc:
        raise click.UsageError(str(exc)) from exc
    # Neither the trust store nor the thresholds are stored with the source:
    # later scans use those given to `scan`, `run` or `serve`.
    policy = AnalysisPolicy(
        roots=roots, public_roots=not only_ca_file, thresholds=thresholds
    )
    now = datetime.now(UTC)

    with open_store() as sessions:
        # The inventory is committed before probing, so an interrupted probe
        # loses no added endpoint.
        with sessions.begin() as session:
            team_name = team.strip() if team is not None else None
            new_team = team_name is not None and team_name not in list_teams(session)
            stored = _store_sources(session, sources, settings, monitor, now)
            adopt_teams_without_members(session, now=now)
        if new_team:
            # A mistyped team name would otherwise move the sources to a team
            # whose alerts reach no contact.
            click.echo(
                f"Warning: created team {team_name!r}, which has no contacts: "
                "its alerts reach nobody until you add one with 'certwatch "
                f"contact add {team_name} email:ADDRESS'.",
                err=True,
            )
        scanned = scan_and_record(
            sessions,
            stored,
            ScanSetup(monitor=monitor, policy=policy, resolver=SystemResolver()),
            now=now,
        )
        results, skipped = scanned.results, scanned.skipped

    with closed_pipe_ignored():
        if as_json:
            echo_json(render_document(results, now=now, skipped=skipped))
        else:
            print_table(results, stdout_console(), skipped=skipped)
    sys.exit(worst_status([r.status for r in results]).exit_code)


def _pinned_address(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        return str(ipaddress.ip_address(text.strip().strip("[]")))
    except ValueError:
        raise click.BadParameter(
            f"Invalid address {text!r}: give an IPv4 or IPv6 address.",
            param_hint="--address",
        ) from None


def _reminders(text: str | None) -> str | None:
    """Validate `--reminders` and return it normalised; "" clears the schedule."""
    # Imported here because the alerts package loads every alert channel,
    # which the commands that share this module's helpers do not need.
    from certwatch.alerts.policy import parse_schedule

    if text is None or not text.strip():
        return text
    try:
        return parse_schedule(text).text
    except CertwatchError as exc:
        raise click.BadParameter(str(exc), param_hint="--reminders") from exc


def _store_sources(
    session: Session,
    sources: Sources,
    settings: SourceSettings,
    monitor: MonitorSettings,
    now: datetime,
) -> StoredSources:
    from certwatch.monitor.instant import StoredSources

    created = updated = 0
    endpoints: dict[int, Endpoint] = {}
    paths: dict[int, str] = {}
    default = monitor.default_interval
    try:
        for endpoint in sources.endpoints:
            pins = _pinned_elsewhere(session, endpoint)
            stored = store_endpoint(
                session, endpoint, settings, default_interval=default, now=now
            )
            if stored.created and pins:
                click.echo(
                    f"Warning: {endpoint.target!r} is also in the inventory pinned "
                    f"to {', '.join(pins)}; this added an endpoint that asks DNS "
                    "for its addresses. To change the pinned endpoints instead, "
                    "add them again with their --resolve.",
                    err=True,
                )
            endpoints[stored.record.id] = endpoint
            created += stored.created
            updated += not stored.created
        for path in sources.paths:
            stored_file = store_file_source(
                session, path, settings, default_interval=default, now=now
            )
            paths[stored_file.record.id] = path
            created += stored_file.created
            updated += not stored_file.created
    except AmbiguousEndpointError as exc:
        raise click.UsageError(f"{exc} Give the team with --team.") from exc
    except CertwatchError as exc:
        raise click.UsageError(str(exc)) from exc
    click.echo(
        f"Inventory: {created} added, {updated} updated; checking now.",
        err=True,
    )
    return StoredSources(endpoints=endpoints, paths=paths)


def _pinned_elsewhere(session: Session, endpoint: Endpoint) -> list[str]:
    """Return the pinned addresses of stored endpoints that an unpinned one repeats."""
    if endpoint.address:
        return []
    found = find_endpoints(session, endpoint)
    return sorted({r.endpoint.address for r in found if r.endpoint.address})


@click.command("remove")
@click.argument("items", nargs=-1, required=True, metavar="TARGET|PATH...")
@click.option(
    "--address",
    help="Remove only the endpoints pinned to this address (added with "
    "--resolve); without it a TARGET removes every endpoint of that name "
    "and port.",
)
@click.option(
    "--team",
    help="Remove the endpoints of this team only; needed when several teams "
    "watch a TARGET.",
)
def remove_command(
    items: tuple[str, ...], address: str | None, team: str | None
) -> None:
    """Remove endpoints and certificate files from the inventory.

    Their observations go too; certificates seen elsewhere stay. When any
    argument is not in the inventory, nothing is removed.
    """
    sources = parse_sources(items, paths_must_exist=False)
    pinned = _pinned_address(address)
    with open_store() as sessions, sessions.begin() as session:
        missing: list[str] = []
        hints: list[str] = []
        endpoint_ids: list[int] = []
        for endpoint in sources.endpoints:
            found = find_endpoints(session, endpoint, team=team)
            if pinned is not None:
                elsewhere = sorted(r.endpoint.address or "DNS" for r in found)
                found = [r for r in found if r.endpoint.address == pinned]
                if not found and elsewhere:
                    hints.append(
                        f" {endpoint.target!r} is pinned to "
                        f"{', '.join(elsewhere)}, not to {pinned}."
                    )
            if not found:
                missing.append(endpoint.target)
                if not hints:
                    hints.append(not_found_hint(session, endpoint))
            _check_one_team(endpoint, found)
            endpoint_ids.extend(record.id for record in found)
        for path in sources.paths:
            if not remove_file_source(session, path):
                missing.append(path)
        if missing:
            # Raising inside the transaction rolls back the files removed above.
            names = ", ".join(repr(text) for text in missing)
            raise click.ClickException(
                f"Not in the inventory: {names}. Nothing was removed; "
                f"run 'certwatch list' to see what is.{''.join(hints)}"
            )
        for endpoint_id in endpoint_ids:
            remove_endpoint(session, endpoint_id)
    removed = len(endpoint_ids) + len(sources.paths)
    click.echo(f"Removed {removed} from the inventory.")


def _check_one_team(endpoint: Endpoint, found: Sequence[EndpointRecord]) -> None:
    """Raise when the endpoints found belong to several teams.

    Removing them all would stop every team's watch on the endpoint, which
    is rarely what one team's operator means.
    """
    teams = sorted({record.team for record in found})
    if len(teams) > 1:
        listed = ", ".join(repr(name) for name in teams)
        raise click.UsageError(
            f"{endpoint.target!r} is watched by several teams ({listed}); "
            "nothing was removed: give the team with --team."
        )
