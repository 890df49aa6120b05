"""`certwatch scan`, `run --once` and `serve`: scan the inventory and record it.

All three run `certwatch.monitor.cycle.run_cycle`: `scan` on the sources
named or on all of them, `run --once` once on what is due, and `serve` over
and over until SIGINT or SIGTERM.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import click
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from certwatch.alerts.cycle import AlertingReport, alert_after_cycle
from certwatch.alerts.digest import digest_interval
from certwatch.alerts.evaluate import load_alert_settings
from certwatch.alerts.settings import (
    load_delivery_settings,
    private_receivers_allowed,
    with_receiver_policy,
)
from certwatch.commands.inventory import parse_sources
from certwatch.commands.options import threshold_options
from certwatch.commands.output import closed_pipe_ignored
from certwatch.commands.queries import find_endpoints, not_found_hint
from certwatch.commands.store import open_store
from certwatch.errors import CertwatchError
from certwatch.monitor.cycle import (
    DUE,
    CycleReport,
    Selection,
    describe_statuses,
    run_cycle,
)
from certwatch.monitor.serve import SqliteFileWatch
from certwatch.monitor.settings import MonitorSettings, SettingsError, load_settings
from certwatch.probe.model import ProbeSettings
from certwatch.report.console import stdout_console
from certwatch.report.table import print_table
from certwatch.store.database import database_url
from certwatch.store.errors import StoreError
from certwatch.store.leases import enabled_source_ids
from certwatch.store.models import FileSourceRow
from certwatch.store.observations import CompletedScan
from certwatch.truststore import load_roots
from certwatch.web.heartbeat import record_cycle_completed
from certwatch.web.settings import WebSettingsError, load_web_settings
from certwatch.x509.expiry import parse_thresholds
from certwatch.x509.model import AnalysisPolicy

logger = logging.getLogger(__name__)

CommandT = TypeVar("CommandT", bound=Callable[..., Any])


@dataclass(frozen=True)
class ScanOptions:
    """The options that `scan`, `run` and `serve` share."""

    timeout: float
    concurrency: int
    batch_size: int
    ca_file: tuple[Path, ...]
    only_ca_file: bool
    pkcs12_password: str | None
    warning: str | None = None
    critical: str | None = None

    def settings(self) -> MonitorSettings:
        """Build the monitor settings from these options and the environment.

        Raises:
            click.UsageError: an option or `CERTWATCH_DEFAULT_INTERVAL` is invalid.
        """
        password = self.pkcs12_password
        try:
            return load_settings(
                probe=ProbeSettings(timeout=self.timeout, concurrency=self.concurrency),
                batch_size=self.batch_size,
                pkcs12_password=password.encode() if password is not None else None,
            )
        except (SettingsError, ValueError) as exc:
            raise click.UsageError(str(exc)) from exc

    def policy(self) -> AnalysisPolicy:
        """Build the analysis policy: the trusted roots and the thresholds.

        Raises:
            click.UsageError: a CA file cannot be used, or a threshold is invalid.
        """
        try:
            thresholds = parse_thresholds(self.warning, self.critical)
            roots = load_roots(self.ca_file, only_ca_files=self.only_ca_file)
        except CertwatchError as exc:
            raise click.UsageError(str(exc)) from exc
        return AnalysisPolicy(
            roots=roots, public_roots=not self.only_ca_file, thresholds=thresholds
        )


def scan_options(command: CommandT) -> CommandT:
    """Add the options of `certwatch check` that scans use, and `--batch-size`."""
    options = [
        click.option(
            "--timeout",
            type=click.FloatRange(min=0, min_open=True),
            default=10.0,
            show_default=True,
            help="Deadline in seconds per address, covering connect, STARTTLS "
            "dialogue and handshake.",
        ),
        click.option(
            "--concurrency",
            type=click.IntRange(1, 10000),
            default=100,
            show_default=True,
            help="Maximum number of addresses probed at the same time.",
        ),
        click.option(
            "--batch-size",
            type=click.IntRange(1, 100_000),
            default=MonitorSettings.batch_size,
            show_default=True,
            help="Sources claimed, scanned and recorded together in one transaction.",
        ),
        click.option(
            "--ca-file",
            type=click.Path(path_type=Path),
            multiple=True,
            envvar="CERTWATCH_CA_FILE",
            help="Also trust the root certificates in this PEM, DER or PKCS#7 "
            "file (or set CERTWATCH_CA_FILE, several paths separated by ':').",
        ),
        click.option(
            "--only-ca-file",
            is_flag=True,
            help="Trust only the roots given with --ca-file, not the certifi bundle.",
        ),
        threshold_options,
        click.option(
            "--pkcs12-password",
            envvar="CERTWATCH_PKCS12_PASSWORD",
            help="Password of PKCS#12 files (or set CERTWATCH_PKCS12_PASSWORD).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _options(values: dict[str, Any]) -> ScanOptions:
    return ScanOptions(
        timeout=values["timeout"],
        concurrency=values["concurrency"],
        batch_size=values["batch_size"],
        ca_file=values["ca_file"],
        only_ca_file=values["only_ca_file"],
        pkcs12_password=values["pkcs12_password"],
        warning=values["warning"],
        critical=values["critical"],
    )


def utc_now() -> datetime:
    """Return the current time in UTC, the clock of every command here."""
    return datetime.now(UTC)


@click.command("scan")
@click.argument("targets", nargs=-1, metavar="[TARGET|PATH]...")
@click.option("--all", "scan_all", is_flag=True, help="Scan every enabled source.")
@click.option("--due", is_flag=True, help="Scan only the sources that are due.")
@scan_options
def scan_command(
    targets: tuple[str, ...], scan_all: bool, due: bool, **values: Any
) -> None:
    """Scan inventory sources now, store the results and print them.

    Name endpoints and certificate paths from the inventory, or give --all
    or --due. Each scanned source is rescheduled one interval later. The
    exit code is 0 once the results are stored, whatever they show.
    """
    chosen = sum((bool(targets), scan_all, due))
    if chosen != 1:
        raise click.UsageError("Give TARGET or PATH arguments, --all or --due.")
    options = _options(values)
    settings = options.settings()
    policy = options.policy()
    _one_line_per_scan()

    scans: list[CompletedScan] = []
    with open_store() as sessions, _database_failures():
        with sessions() as session:
            selection = _selection(session, targets, scan_all=scan_all)
        report = run_cycle(
            sessions,
            now_fn=utc_now,
            settings=settings,
            policy=policy,
            selection=selection,
            on_scan=scans.append,
        )

    results = [result for scan in scans for result in scan.results]
    with closed_pipe_ignored():
        if results:
            print_table(results, stdout_console())
        click.echo(_summary(report))


@click.command("run")
@click.option(
    "--once",
    is_flag=True,
    help="Run one cycle and exit (the only mode; 'certwatch serve' runs forever).",
)
@scan_options
def run_command(once: bool, **values: Any) -> None:
    """Run one monitoring cycle: scan what is due and record it, then exit.

    For cron and for tests. Exit code 0 when the cycle ran, 3 when the
    inventory database cannot be opened or fails during the cycle.
    """
    if not once:
        raise click.UsageError(
            "certwatch run needs --once; use 'certwatch serve' to keep scanning."
        )
    options = _options(values)
    settings = options.settings()
    policy = options.policy()
    alerting = _alerting(settings, policy)
    _one_line_per_scan()
    with open_store() as sessions, _database_failures():
        report = run_cycle(sessions, now_fn=utc_now, settings=settings, policy=policy)
        with sessions() as session, session.begin():
            # /healthz and the metrics tell a monitor run by cron from a
            # stopped one by this time.
            record_cycle_completed(session, now=utc_now())
        click.echo(_summary(report), err=True)
        alerted = alerting(sessions)
    click.echo(_alert_summary(alerted), err=True)


@click.command("serve")
@scan_options
def serve_command(**values: Any) -> None:
    """Keep scanning the inventory, each source when it is due, until stopped.

    Sleeps until the next source is due, but at most a minute, so sources
    added meanwhile are picked up. SIGINT or SIGTERM lets the current batch
    finish and be recorded, then exits with code 0. Logs at INFO level or
    more detailed with -vv.
    """
    from certwatch.monitor.retention import history_retention

    # Only this command runs the web server, and importing it (uvicorn,
    # FastAPI) would add about half a second to `scan` and `run` too.
    from certwatch.web.server import WebServerError, run_web_and_monitor

    options = _options(values)
    settings = options.settings()
    policy = options.policy()
    try:
        web = load_web_settings()
        # Read here so a bad value stops start-up instead of only turning
        # the daily compaction off.
        history_retention()
    except (WebSettingsError, SettingsError) as exc:
        raise click.ClickException(str(exc)) from exc
    # Contacts added on the web obey the site's address policy, as its
    # targets do.
    alerting = _alerting(
        settings, policy, allow_private_receivers=web.allow_private_targets
    )
    root = logging.getLogger()
    if root.level > logging.INFO:
        # A service logs its start, stop and every scan by default.
        root.setLevel(logging.INFO)
    _one_line_per_scan()

    stop = threading.Event()
    with open_store() as sessions, _stop_on_signals(stop):
        watch = _sqlite_file_watch()
        try:
            run_web_and_monitor(
                sessions,
                web=web,
                now_fn=utc_now,
                settings=settings,
                policy=policy,
                stop=stop,
                store_problem=watch.problem if watch else None,
                after_cycle=alerting,
            )
        except StoreError as exc:
            raise click.ClickException(f"The monitor stopped: {exc}.") from exc
        except WebServerError as exc:
            raise click.ClickException(str(exc)) from exc


EVALUATE_EVERY = timedelta(minutes=5)
"""The shortest time between two alert evaluations of one `serve` process."""


def _alerting(
    settings: MonitorSettings,
    policy: AnalysisPolicy,
    *,
    allow_private_receivers: bool | None = None,
) -> Callable[[Callable[[], Session]], AlertingReport]:
    """Load the alert and delivery settings now, so a bad one stops the start.

    `allow_private_receivers` false delivers webhook, Slack, Teams and
    Apprise messages to public addresses only, as on a site whose
    `CERTWATCH_ALLOW_PRIVATE_TARGETS` is false. `None` reads that setting
    from the environment with the defaults of the web settings.

    Raises:
        click.ClickException: a setting is invalid; `main` exits 3.
    """
    try:
        alert_settings = load_alert_settings(thresholds=policy.thresholds)
        if allow_private_receivers is None:
            allow_private_receivers = private_receivers_allowed()
        delivery = with_receiver_policy(
            load_delivery_settings(), allow_private=allow_private_receivers
        )
        digest_every = digest_interval()
    except CertwatchError as exc:
        raise click.ClickException(str(exc)) from exc
    last_evaluation: list[float] = []

    def run(sessions: Callable[[], Session]) -> AlertingReport:
        # Evaluating reads every alert and served certificate (3.4 s in one
        # timing at 100,000 endpoints), so serve does it every few minutes.
        # Retries of messages already queued go out after every cycle.
        started = time.monotonic()
        evaluate = not last_evaluation or (
            started - last_evaluation[-1] >= EVALUATE_EVERY.total_seconds()
        )
        if evaluate:
            last_evaluation.append(started)

        def rescan(endpoint_ids: Sequence[int], file_ids: Sequence[int]) -> None:
            selection = Selection(tuple(endpoint_ids), tuple(file_ids))
            run_cycle(
                sessions,
                now_fn=utc_now,
                settings=settings,
                policy=policy,
                selection=selection,
            )

        return alert_after_cycle(
            sessions,
            now_fn=utc_now,
            settings=alert_settings,
            delivery=delivery,
            digest_every=digest_every,
            rescan=rescan,
            evaluate=evaluate,
        )

    return run


def _alert_summary(report: AlertingReport) -> str:
    evaluation = report.evaluation
    return (
        f"Alerts: {evaluation.opened} opened, {evaluation.reminded} reminders, "
        f"{evaluation.resolved} resolved, {evaluation.escalated} escalated, "
        f"{report.digests} digests; "
        f"{report.delivery.delivered} messages delivered, "
        f"{report.delivery.failed} failed, {report.delivery.retrying} to retry."
    )


def _sqlite_file_watch() -> SqliteFileWatch | None:
    """Watch the database file when the store is a SQLite file."""
    url = make_url(database_url())
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    assert url.database is not None
    return SqliteFileWatch(Path(url.database))


def _one_line_per_scan() -> None:
    """Leave the per-scan INFO line to the monitor unless DEBUG is on.

    The check engine logs each address it checks at INFO, and the monitor
    logs each finished scan with the same facts and the source id.
    """
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("certwatch.check").setLevel(logging.WARNING)
        # Alembic logs its set-up at INFO on every start, even with nothing
        # to migrate.
        logging.getLogger("alembic").setLevel(logging.WARNING)


def _selection(
    session: Session, targets: Sequence[str], *, scan_all: bool
) -> Selection:
    if scan_all:
        endpoints, files = enabled_source_ids(session)
        return Selection(endpoint_ids=tuple(endpoints), file_source_ids=tuple(files))
    if not targets:
        return DUE
    return _named_sources(session, targets)


def _named_sources(session: Session, targets: Sequence[str]) -> Selection:
    """Find the named sources in the inventory, naming every one that is missing.

    Raises:
        click.UsageError: a target is invalid or not in the inventory.
    """
    sources = parse_sources(targets, paths_must_exist=False)
    endpoint_ids: list[int] = []
    file_ids: list[int] = []
    missing: list[str] = []
    hints: list[str] = []
    for endpoint in sources.endpoints:
        found = find_endpoints(session, endpoint)
        endpoint_ids.extend(record.id for record in found)
        if not found:
            missing.append(endpoint.target)
            hints.append(not_found_hint(session, endpoint))
    for path in sources.paths:
        file_id = session.scalar(
            select(FileSourceRow.id).where(FileSourceRow.path == path)
        )
        if file_id is None:
            missing.append(path)
        else:
            file_ids.append(file_id)
    if missing:
        raise click.UsageError(
            "\n".join(
                f"{text!r} is not in the inventory: add it with "
                f"'certwatch add {text}' first."
                for text in missing
            )
            + "".join(hints)
        )
    return Selection(
        endpoint_ids=tuple(dict.fromkeys(endpoint_ids)),
        file_source_ids=tuple(dict.fromkeys(file_ids)),
    )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _summary(report: CycleReport) -> str:
    text = (
        f"Scanned {_count(report.endpoints, 'endpoint')} and "
        f"{_count(report.file_sources, 'file source')} in {report.duration:.1f} s: "
        f"{_count(report.observations, 'observation')}, "
        f"{report.failed} with no certificate, "
        f"{_count(report.changes, 'certificate change')}."
    )
    if report.statuses:
        text += f" Results: {describe_statuses(report.statuses)}."
    if report.busy:
        text += (
            f" {report.busy} sources were skipped because another scanner is "
            "scanning them."
        )
    return text


@contextmanager
def _database_failures() -> Iterator[None]:
    """Turn a database failure during a cycle into a command error."""
    try:
        yield
    except SQLAlchemyError as exc:
        first_line = (str(exc).strip().splitlines() or ["no message"])[0]
        raise click.ClickException(
            f"The inventory database failed during the scan ({type(exc).__name__}: "
            f"{first_line}). Batches recorded before the failure are kept; check "
            "CERTWATCH_DATABASE_URL and run the command again."
        ) from exc


# Seconds that the exit after a second signal may take (releasing claims,
# stopping the web service) before the process ends at once.
FORCED_EXIT_SECONDS = 5.0


def _exit_later(code: int) -> None:
    """End the process with `code` if it is still running after a while.

    The SystemExit raised by the second signal unwinds the main thread.
    The interpreter then waits for its worker threads, and one blocked on
    the database (a lease renewal) would keep the process running after
    the operator asked it to stop. Claims left behind expire with their
    lease.
    """

    def force() -> None:
        logger.error(
            "still running %.0f s after the second signal: exiting now; "
            "unreleased claims expire with their lease",
            FORCED_EXIT_SECONDS,
        )
        logging.shutdown()
        os._exit(code)

    timer = threading.Timer(FORCED_EXIT_SECONDS, force)
    timer.daemon = True
    timer.start()


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Set `stop` on SIGINT or SIGTERM for the duration, then restore handlers."""

    def request_stop(number: int, frame: FrameType | None) -> None:
        name = signal.Signals(number).name
        if stop.is_set():
            # A second signal means the operator will not wait: leave now.
            # The claims of the current batch are released on the way out
            # or expire with their lease; recorded batches are kept.
            logger.warning("received %s again: exiting without waiting", name)
            _exit_later(128 + number)
            raise SystemExit(128 + number)
        logger.info("received %s: stopping after the current batch", name)
        stop.set()

    previous = {
        number: signal.signal(number, request_stop)
        for number in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
