"""The `certwatch check` command: check endpoints and files without a store."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from certwatch.arguments import classify_items
from certwatch.check import (
    check_endpoints,
    check_paths,
    result_from_invalid_target,
)
from certwatch.errors import CertwatchError
from certwatch.probe.model import ProbeSettings
from certwatch.probe.resolve import PinnedResolver, Resolver, SystemResolver
from certwatch.report.console import stdout_console
from certwatch.report.json import render_document
from certwatch.report.nagios import render_status_line
from certwatch.report.table import print_table
from certwatch.result import Result, worst_status
from certwatch.sources.files import FileProblem
from certwatch.targets import (
    AUTO_PROTOCOL,
    DEFAULT_PROTOCOL,
    SCHEME_PORTS,
    Endpoint,
    parse_resolve,
    protocol_names,
)
from certwatch.truststore import load_roots
from certwatch.x509.expiry import parse_thresholds, threshold_days
from certwatch.x509.model import AnalysisPolicy, Thresholds

# Show a progress bar on a terminal once a run has this many endpoints.
PROGRESS_MIN_ENDPOINTS = 5


@click.command("check")
@click.argument("items", nargs=-1, metavar="[TARGET|PATH]...")
@click.option(
    "--targets-file",
    # utf-8-sig drops the byte order mark that some Windows editors write.
    type=click.File("r", encoding="utf-8-sig"),
    multiple=True,
    help="Read targets from FILE, one per line, '#' starts a comment; '-' reads stdin.",
)
@click.option(
    "--resolve",
    "resolve_values",
    multiple=True,
    metavar="NAME:PORT:ADDRESS[,ADDRESS]",
    help="Connect to ADDRESS for NAME:PORT, keeping NAME for SNI and name "
    "matching; give several addresses separated by commas or by repeating it.",
)
@click.option(
    "--protocol",
    type=click.Choice(sorted([AUTO_PROTOCOL, *SCHEME_PORTS]), case_sensitive=False),
    default=DEFAULT_PROTOCOL,
    show_default=True,
    metavar="NAME",
    help="Protocol of the targets given without a scheme, which also sets "
    "their default port: "
    f"{protocol_names()}. 'auto' picks it from the port.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Deadline in seconds per address, covering connect, STARTTLS "
    "dialogue and handshake.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 10000),
    default=100,
    show_default=True,
    help="Maximum number of addresses probed at the same time.",
)
@click.option(
    "--ca-file",
    type=click.Path(path_type=Path),
    multiple=True,
    envvar="CERTWATCH_CA_FILE",
    help="Also trust the root certificates in this PEM, DER or PKCS#7 file "
    "(or set CERTWATCH_CA_FILE, several paths separated by ':').",
)
@click.option(
    "--only-ca-file",
    is_flag=True,
    help="Trust only the roots given with --ca-file, not the certifi bundle.",
)
@click.option(
    "--warning",
    "warning_text",
    metavar="DAYS|PERCENT",
    help="Warn when fewer days (21) or less of the lifetime (25%) remain. "
    "Default: a third of the lifetime or 30 days, whichever is shorter.",
)
@click.option(
    "--critical",
    "critical_text",
    metavar="DAYS|PERCENT",
    help="Critical when fewer days (7) or less of the lifetime (10%) remain. "
    "Default: a tenth of the lifetime or 7 days, whichever is shorter.",
)
@click.option(
    "--pkcs12-password",
    envvar="CERTWATCH_PKCS12_PASSWORD",
    help="Password of PKCS#12 files (or set CERTWATCH_PKCS12_PASSWORD).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the JSON report.")
@click.option(
    "--nagios", is_flag=True, help="Print one Nagios plugin line with performance data."
)
def check_command(
    items: tuple[str, ...],
    targets_file: tuple[TextIO, ...],
    resolve_values: tuple[str, ...],
    protocol: str,
    timeout: float,
    concurrency: int,
    ca_file: tuple[Path, ...],
    only_ca_file: bool,
    warning_text: str | None,
    critical_text: str | None,
    pkcs12_password: str | None,
    as_json: bool,
    nagios: bool,
) -> None:
    """Check endpoints and certificate files now and print a report.

    Each argument is a target (host, host:port, [IPv6]:port, an address, an
    https:// URL, or SCHEME://host[:port] for another protocol such as
    smtp://mail.example.test) or a path to a certificate file or folder. An
    argument is a path when it starts with '/', './', '../' or '~', or names
    an existing file or folder. Exit codes: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN; the
    worst result wins, with CRITICAL worse than UNKNOWN.
    """
    if as_json and nagios:
        raise click.UsageError("Choose one of --json and --nagios.")

    texts = list(items)
    for handle in targets_file:
        texts.extend(read_target_lines(handle))
    if not texts and targets_file:
        names = ", ".join(repr(handle.name) for handle in targets_file)
        raise click.UsageError(
            f"The targets file {names} contains no target: add one target per line."
        )
    if not texts:
        raise click.UsageError("Give at least one target or path, or --targets-file.")

    try:
        overrides = _parse_overrides(resolve_values)
        thresholds = parse_thresholds(warning_text, critical_text)
        roots = load_roots(ca_file, only_ca_files=only_ca_file)
    except CertwatchError as exc:
        raise click.UsageError(str(exc)) from exc

    try:
        settings = ProbeSettings(timeout=timeout, concurrency=concurrency)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    policy = AnalysisPolicy(
        roots=roots, public_roots=not only_ca_file, thresholds=thresholds
    )
    paths, endpoints, invalid = classify_items(texts, protocol)
    resolver = PinnedResolver(overrides, fallback=SystemResolver())
    now = datetime.now(UTC)

    results = [result_from_invalid_target(i) for i in invalid]
    password = pkcs12_password.encode() if pkcs12_password is not None else None
    found = check_paths(paths, policy=policy, now=now, pkcs12_password=password)
    results.extend(found.results)
    results.extend(asyncio.run(_probe_all(endpoints, settings, policy, now, resolver)))

    exit_code = worst_status([r.status for r in results]).exit_code
    try:
        _print_report(
            results,
            found.skipped,
            now=now,
            as_json=as_json,
            nagios=nagios,
            policy=policy,
        )
        sys.stdout.flush()
    except BrokenPipeError:
        # A reader such as `head` closed the pipe. The verdict still counts,
        # and Python must not try to flush the closed stdout again at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(exit_code)


def read_target_lines(handle: TextIO) -> list[str]:
    """Return the targets of a targets file, without comments and blank lines.

    Raises:
        click.UsageError: the file is not UTF-8 text.
    """
    targets = []
    try:
        for line in handle:
            text = line.split("#", 1)[0].strip()
            if text:
                targets.append(text)
    except UnicodeDecodeError as exc:
        raise click.UsageError(
            f"The targets file {handle.name!r} is not UTF-8 text ({exc.reason} at "
            f"byte {exc.start}): save it as UTF-8 with one target per line."
        ) from exc
    return targets


def _parse_overrides(values: Sequence[str]) -> dict[tuple[str, int], list[str]]:
    """Merge `--resolve` values; repeating a name adds addresses, as in curl."""
    pins: dict[tuple[str, int], list[str]] = {}
    for value in values:
        host, port, addresses = parse_resolve(value)
        pins.setdefault((host, port), []).extend(addresses)
    return pins


async def _probe_all(
    endpoints: Sequence[Endpoint],
    settings: ProbeSettings,
    policy: AnalysisPolicy,
    now: datetime,
    resolver: Resolver,
) -> list[Result]:
    results: list[Result] = []
    if not endpoints:
        return results
    stream = check_endpoints(
        endpoints, settings=settings, policy=policy, now=now, resolver=resolver
    )
    if len(endpoints) < PROGRESS_MIN_ENDPOINTS or not sys.stderr.isatty():
        return [result async for result in stream]

    progress = Progress(
        TextColumn("checking"),
        BarColumn(),
        MofNCompleteColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    targets_done: set[str] = set()
    with progress:
        task = progress.add_task("check", total=len(endpoints))
        async for result in stream:
            results.append(result)
            targets_done.add(result.target)
            progress.update(task, completed=len(targets_done))
    return results


def _print_report(
    results: list[Result],
    skipped: list[FileProblem],
    *,
    now: datetime,
    as_json: bool,
    nagios: bool,
    policy: AnalysisPolicy,
) -> None:
    if as_json:
        document = render_document(results, now=now, skipped=skipped)
        click.echo(json.dumps(document, indent=2))
    elif nagios:
        click.echo(
            render_status_line(
                results, lambda result: _threshold_days(result, policy.thresholds)
            )
        )
    else:
        print_table(results, stdout_console(), skipped=skipped)


def _threshold_days(result: Result, thresholds: Thresholds) -> tuple[int, int] | None:
    leaf = result.leaf
    if leaf is None:
        return None
    return threshold_days(leaf, thresholds)
