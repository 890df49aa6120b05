"""`certwatch team`, `contact`, `notify test` and `alerts`: who hears about what.

A team owns endpoints and file sources and has contacts: email addresses
and webhook, Slack, Teams or Apprise URLs. Contacts are shown only in their
redacted form, because a webhook URL carries its secret. `alerts` lists
the open alerts and the deliveries that failed, and `alerts ack` silences
an alert for a while.
"""

from __future__ import annotations

import asyncio
import getpass
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

import click
from rich.table import Table
from rich.text import Text
from sqlalchemy.orm import Session

from certwatch.alerts.contacts import ContactAddress, ContactKind, parse_contact
from certwatch.alerts.errors import ContactError, DeliverySettingsError
from certwatch.alerts.message import EventKind, Notice
from certwatch.alerts.outbox import DeliveryReport, DeliveryState, deliver_now
from certwatch.alerts.policy import DEFAULT_SCHEDULE, ScheduleError, parse_schedule
from certwatch.alerts.receivers import check_contact
from certwatch.alerts.settings import (
    DEFAULT_WEBHOOK_TIMEOUT,
    DeliverySettings,
    load_delivery_settings,
    private_receivers_allowed,
    with_receiver_policy,
)
from certwatch.commands.inventory import parse_interval
from certwatch.commands.output import (
    INVENTORY_SCHEMA_VERSION,
    closed_pipe_ignored,
    echo_json,
    format_interval,
    minute,
    timestamp,
)
from certwatch.commands.store import open_store
from certwatch.probe.resolve import SystemResolver
from certwatch.report.console import stdout_console
from certwatch.report.table import plain_text
from certwatch.result import Status
from certwatch.store.accounts import adopt_teams_without_members
from certwatch.store.alerts import (
    AlertRecord,
    ContactRecord,
    PendingDelivery,
    TeamSummary,
    acknowledge_alert,
    add_contact,
    find_team,
    get_alert,
    list_alerts,
    list_contacts,
    newest_threshold,
    pending_deliveries,
    remove_contact,
    team_summaries,
    update_team_settings,
)
from certwatch.store.errors import StoreError
from certwatch.store.inventory import ensure_team

# Invalid delivery settings stop `notify test` with the code of every
# other start-up error.
SETTINGS_ERROR_EXIT = Status.UNKNOWN.exit_code


# --- team -------------------------------------------------------------------


@click.group("team")
def team_group() -> None:
    """Add, list and show teams, which own endpoints and hear their alerts."""


@team_group.command("add")
@click.argument("name")
@click.option(
    "--reminders",
    metavar="LIST",
    help="Expiry reminders: days before not_after such as 30,14,7,3,1, or "
    "shares of the lifetime such as 20%,10%. Default: 30,14,7,3,1.",
)
@click.option(
    "--escalate-after",
    metavar="DURATION",
    help="Send a critical alert that no contact acknowledged to the escalation "
    "contacts after this long, such as 4h or 1d.",
)
def team_add_command(
    name: str, reminders: str | None, escalate_after: str | None
) -> None:
    """Add a team, or change the settings given of an existing one."""
    schedule = None
    if reminders is not None:
        try:
            schedule = parse_schedule(reminders).text
        except ScheduleError as exc:
            raise click.BadParameter(str(exc), param_hint="--reminders") from exc
    delay = parse_interval(escalate_after, "--escalate-after")

    with open_store() as sessions, sessions.begin() as session:
        existed = find_team(session, name) is not None
        try:
            team_id = ensure_team(session, name, now=datetime.now(UTC))
        except StoreError as exc:
            raise click.BadParameter(str(exc), param_hint="NAME") from exc
        update_team_settings(
            session, team_id, reminder_schedule=schedule, escalate_after=delay
        )
        adopt_teams_without_members(session, now=datetime.now(UTC))
        summary = team_summaries(session, team_id)[0]
    verb = "Updated" if existed else "Added"
    click.echo(f"{verb} team {summary.name}: {_settings_text(summary)}.")


@team_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON document.")
def team_list_command(as_json: bool) -> None:
    """List the teams with their contacts, sources and open alerts."""
    with open_store() as sessions, sessions() as session:
        teams = team_summaries(session)

    with closed_pipe_ignored():
        if as_json:
            echo_json(
                {
                    "schema_version": INVENTORY_SCHEMA_VERSION,
                    "teams": [_team_document(team) for team in teams],
                }
            )
            return
        table = Table(header_style="bold")
        for column in ("Team", "Contacts", "Endpoints", "Files", "Open alerts"):
            table.add_column(column, overflow="fold")
        table.add_column("Reminders", overflow="fold")
        table.add_column("Escalate after", no_wrap=True)
        for team in teams:
            table.add_row(
                plain_text(team.name),
                str(team.contacts),
                str(team.endpoints),
                str(team.file_sources),
                str(team.open_alerts),
                team.reminder_schedule or f"{DEFAULT_SCHEDULE.text} (default)",
                _escalation_text(team),
            )
        stdout_console().print(table)


@team_group.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON document.")
def team_show_command(name: str, as_json: bool) -> None:
    """Show a team's settings, contacts with their health, and open alerts."""
    with open_store() as sessions, sessions() as session:
        team_id = _existing_team(session, name)
        team = team_summaries(session, team_id)[0]
        contacts = list_contacts(session, team_id)
        alerts = list_alerts(session, include_resolved=False, team_id=team_id)

    with closed_pipe_ignored():
        if as_json:
            document = _team_document(team)
            document["contacts"] = [_contact_document(c) for c in contacts]
            document["open_alerts"] = [_alert_document(a) for a in alerts]
            echo_json({"schema_version": INVENTORY_SCHEMA_VERSION, "team": document})
            return
        _print_team(team, contacts, alerts)


def _print_team(
    team: TeamSummary, contacts: list[ContactRecord], alerts: list[AlertRecord]
) -> None:
    console = stdout_console()
    console.print(plain_text(team.name, style="bold"))
    console.print(f"  {_settings_text(team)}")
    console.print(
        f"  {_count(team.endpoints, 'endpoint')}, "
        f"{_count(team.file_sources, 'certificate file')}, "
        f"{_count(team.open_alerts, 'open alert')}"
    )
    if not contacts:
        console.print(
            Text(
                f"  No contacts: alerts for this team reach nobody. Add one with "
                f"'certwatch contact add {team.name} email:ADDRESS'.",
                style="bold red",
            )
        )
    else:
        table = Table(header_style="bold")
        table.add_column("ID", justify="right", no_wrap=True)
        table.add_column("Contact", overflow="fold")
        table.add_column("Escalation", no_wrap=True)
        table.add_column("Health", overflow="fold")
        for contact in contacts:
            table.add_row(
                str(contact.id),
                plain_text(_redacted(contact)),
                "yes" if contact.escalation else "no",
                plain_text(_health_text(contact)),
            )
        console.print(table)
    if alerts:
        console.print(Text("Open alerts", style="bold"))
        _print_alerts(alerts, include_resolved=False)


def _settings_text(team: TeamSummary) -> str:
    reminders = team.reminder_schedule or f"{DEFAULT_SCHEDULE.text} (default)"
    return f"reminders {reminders}, escalate after {_escalation_text(team)}"


def _escalation_text(team: TeamSummary) -> str:
    if team.escalate_after is None:
        return "default"
    return format_interval(team.escalate_after)


def _team_document(team: TeamSummary) -> dict[str, Any]:
    return {
        "name": team.name,
        "reminder_schedule": team.reminder_schedule,
        "escalate_after_seconds": (
            None
            if team.escalate_after is None
            else int(team.escalate_after.total_seconds())
        ),
        "contact_count": team.contacts,
        "endpoint_count": team.endpoints,
        "file_source_count": team.file_sources,
        "open_alert_count": team.open_alerts,
    }


def _existing_team(session: Session, name: str) -> int:
    team_id = find_team(session, name)
    if team_id is None:
        raise click.ClickException(
            f"Team {name!r} not found: run 'certwatch team list' to see the "
            f"teams, or add it with 'certwatch team add {name}'."
        )
    return team_id


# --- contact ----------------------------------------------------------------


@click.group("contact")
def contact_group() -> None:
    """Add and remove the contacts that receive a team's alerts."""


@contact_group.command("add")
@click.argument("team")
@click.argument("spec", metavar="KIND:ADDRESS")
@click.option(
    "--escalation",
    is_flag=True,
    help="Send this contact only critical alerts that no contact acknowledged in "
    "time. Adding a contact again sets or clears the flag.",
)
def contact_add_command(team: str, spec: str, escalation: bool) -> None:
    """Add a contact to TEAM: email:ADDRESS, webhook:URL, slack:URL, teams:URL.

    apprise:URL works too with the certwatch[apprise] extra. The contact is
    printed redacted, since a webhook URL carries its secret. With
    CERTWATCH_ALLOW_PRIVATE_TARGETS=false, a receiver at a loopback,
    private or other non-public address is rejected, as on the web.
    """
    contact = _parse_contact(spec)
    if not _private_receivers_allowed():
        _check_receiver(contact)
    with open_store() as sessions, sessions.begin() as session:
        team_id = _existing_team(session, team)
        record, created = add_contact(
            session,
            team_id,
            kind=contact.kind.value,
            address=contact.value,
            escalation=escalation,
            now=datetime.now(UTC),
        )
    role = "escalation contact" if record.escalation else "contact"
    verb = "Added" if created else "Updated"
    click.echo(f"{verb} {role} {record.id} {contact.redacted()} of team {team}.")


@contact_group.command("remove")
@click.argument("team")
@click.argument("spec", metavar="KIND:ADDRESS|ID")
def contact_remove_command(team: str, spec: str) -> None:
    """Remove a contact from TEAM, named as added or by the ID of 'team show'.

    Its messages waiting in the outbox are removed with it.
    """
    with open_store() as sessions, sessions.begin() as session:
        team_id = _existing_team(session, team)
        contacts = list_contacts(session, team_id)
        found = _find_contact(contacts, spec)
        if found is None:
            raise click.ClickException(
                f"{_shown_spec(spec)} is not a contact of team {team}: run "
                f"'certwatch team show {team}' to see its contacts."
            )
        remove_contact(session, found.id)
    click.echo(f"Removed contact {found.id} {_redacted(found)} from team {team}.")


def _parse_contact(spec: str) -> ContactAddress:
    try:
        return parse_contact(spec)
    except ContactError as exc:
        raise click.BadParameter(str(exc), param_hint="KIND:ADDRESS") from exc


def _check_receiver(contact: ContactAddress) -> None:
    """Reject a receiver whose host is or resolves to a non-public address.

    A host name that does not resolve passes, because each delivery checks
    its addresses again.
    """
    try:
        asyncio.run(
            check_contact(contact, SystemResolver(), timeout=DEFAULT_WEBHOOK_TIMEOUT)
        )
    except ContactError as exc:
        raise click.BadParameter(str(exc), param_hint="KIND:ADDRESS") from exc


def _private_receivers_allowed() -> bool:
    try:
        return private_receivers_allowed()
    except DeliverySettingsError as exc:
        raise _SettingsError(str(exc)) from exc


def _find_contact(contacts: list[ContactRecord], spec: str) -> ContactRecord | None:
    if spec.strip().isdigit():
        contact_id = int(spec)
        return next((c for c in contacts if c.id == contact_id), None)
    contact = _parse_contact(spec)
    for record in contacts:
        if record.kind == contact.kind.value and record.address == contact.value:
            return record
    return None


def _shown_spec(spec: str) -> str:
    if spec.strip().isdigit():
        return f"Contact {spec.strip()}"
    return f"Contact {_parse_contact(spec).redacted()}"


def _redacted(record: ContactRecord) -> str:
    return _redact(record.kind, record.address)


def _redact(kind: str, address: str) -> str:
    try:
        contact = ContactAddress(ContactKind(kind), address)
    except ValueError:
        # A kind that a newer certwatch stored; its address may hold a secret.
        return f"{kind}:…"
    return contact.redacted()


def _health_text(contact: ContactRecord) -> str:
    if contact.unhealthy_since is not None:
        return (
            f"unhealthy since {minute(contact.unhealthy_since)} UTC, gets no "
            f"alerts: {contact.last_error}"
        )
    if contact.consecutive_failures:
        return f"{contact.consecutive_failures} failed in a row: {contact.last_error}"
    return "ok"


def _contact_document(contact: ContactRecord) -> dict[str, Any]:
    return {
        "id": contact.id,
        "kind": contact.kind,
        "contact": _redacted(contact),
        "escalation": contact.escalation,
        "healthy": contact.unhealthy_since is None,
        "consecutive_failures": contact.consecutive_failures,
        "last_error": contact.last_error,
        "unhealthy_since": timestamp(contact.unhealthy_since),
    }


# --- notify -----------------------------------------------------------------


@click.group("notify")
def notify_group() -> None:
    """Send messages to contacts on request."""


@notify_group.command("test")
@click.argument("team")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON document.")
def notify_test_command(team: str, as_json: bool) -> None:
    """Send a test message to every contact of TEAM and report each delivery.

    Escalation contacts and contacts marked unhealthy get it too, and a
    delivery clears the unhealthy mark. With
    CERTWATCH_ALLOW_PRIVATE_TARGETS=false, a receiver at a non-public
    address gets nothing and is reported failed. Exit code 0 when every
    contact received it, 1 otherwise.
    """
    settings = _delivery_settings()
    with open_store() as sessions:
        with sessions() as session:
            team_id = _existing_team(session, team)
            name = team_summaries(session, team_id)[0].name
            if not list_contacts(session, team_id):
                raise click.ClickException(
                    f"Team {name} has no contacts: add one with 'certwatch "
                    f"contact add {name} email:ADDRESS'."
                )
        now = datetime.now(UTC)
        notice = Notice(
            key=f"test-{team_id}-{now:%Y%m%dT%H%M%S%fZ}",
            team=name,
            event=EventKind.TEST,
            generated_at=now,
        )
        report = deliver_now(
            sessions,
            team_id=team_id,
            notice=notice,
            settings=settings,
            now_fn=lambda: datetime.now(UTC),
        )

    with closed_pipe_ignored():
        if as_json:
            echo_json(_notify_document(name, notice, report))
        else:
            _print_notify(name, report)
    sys.exit(0 if report.delivered == len(report.attempts) else 1)


class _SettingsError(click.ClickException):
    """Invalid delivery settings, which stop a command with exit code 3."""

    exit_code = SETTINGS_ERROR_EXIT


def _delivery_settings() -> DeliverySettings:
    """Load the delivery settings under the receiver policy that `serve` applies."""
    try:
        settings = load_delivery_settings()
    except DeliverySettingsError as exc:
        raise _SettingsError(str(exc)) from exc
    return with_receiver_policy(settings, allow_private=_private_receivers_allowed())


def _print_notify(team: str, report: DeliveryReport) -> None:
    for attempt in sorted(report.attempts, key=lambda a: a.contact_id):
        delivered = attempt.state is DeliveryState.DELIVERED
        line = Text("delivered " if delivered else "failed    ")
        line.stylize("green" if delivered else "bold red")
        line.append(plain_text(f"{attempt.contact}: {attempt.reason}"))
        stdout_console().print(line)
    click.echo(
        f"{report.delivered} of {len(report.attempts)} contacts of team {team} "
        "received the test message."
    )


def _notify_document(
    team: str, notice: Notice, report: DeliveryReport
) -> dict[str, Any]:
    return {
        "schema_version": INVENTORY_SCHEMA_VERSION,
        "team": team,
        "key": notice.key,
        "contacts": [
            {
                "id": attempt.contact_id,
                "contact": attempt.contact,
                "delivered": attempt.state is DeliveryState.DELIVERED,
                "reason": attempt.reason,
                "outbox_id": attempt.outbox_id,
            }
            for attempt in sorted(report.attempts, key=lambda a: a.contact_id)
        ],
    }


# --- alerts -----------------------------------------------------------------


@click.group("alerts", invoke_without_command=True)
@click.option("--all", "include_resolved", is_flag=True, help="Include resolved.")
@click.option(
    "--failed",
    is_flag=True,
    help="List the deliveries that failed and are not delivered yet instead.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON document.")
@click.pass_context
def alerts_group(
    context: click.Context, include_resolved: bool, failed: bool, as_json: bool
) -> None:
    """List the open alerts, or with --failed the failed deliveries.

    'certwatch alerts ack ID' acknowledges an alert.
    """
    if context.invoked_subcommand is not None:
        return
    if failed and include_resolved:
        raise click.UsageError("Choose one of --all and --failed.")
    with open_store() as sessions, sessions() as session:
        if failed:
            deliveries = pending_deliveries(session)
        else:
            alerts = list_alerts(session, include_resolved=include_resolved)

    with closed_pipe_ignored():
        if failed:
            _show_deliveries(deliveries, as_json)
        elif as_json:
            echo_json(
                {
                    "schema_version": INVENTORY_SCHEMA_VERSION,
                    "alerts": [_alert_document(alert) for alert in alerts],
                }
            )
        else:
            _print_alerts(alerts, include_resolved=include_resolved)
            state = "alert" if include_resolved else "open alert"
            click.echo(f"{_count(len(alerts), state)}.")


MAX_UNTIL_YEAR = 9998
"""The last year `--until` accepts; later times overflow date arithmetic."""

MAX_ALERT_ID = 2**62
"""The largest alert id, within the databases' 64-bit integers."""

MAX_ACKNOWLEDGER_LENGTH = 200
"""The longest `--by` name, as long as the longest team name."""


@alerts_group.command("ack")
@click.argument("alert_id", metavar="ID", type=click.IntRange(1, MAX_ALERT_ID))
@click.option(
    "--until",
    "until_text",
    metavar="DATE",
    help="Silence the alert until this time: YYYY-MM-DD (midnight UTC) or an "
    "ISO 8601 time, UTC when it has no offset. Default: until the next "
    "reminder threshold is crossed.",
)
@click.option(
    "--by", "by_name", metavar="NAME", help="Who acknowledges. Default: login name."
)
def alerts_ack_command(
    alert_id: int, until_text: str | None, by_name: str | None
) -> None:
    """Acknowledge alert ID, until a time or until its next threshold."""
    now = datetime.now(UTC)
    until = None if until_text is None else parse_until(until_text, now)
    by = parse_acknowledger(by_name) if by_name is not None else _login_name()
    with open_store() as sessions, sessions.begin() as session:
        alert = get_alert(session, alert_id)
        if alert is None:
            raise click.ClickException(
                f"Alert {alert_id} not found: run 'certwatch alerts' to see the "
                "open alerts."
            )
        if alert.resolved_at is not None:
            raise click.ClickException(
                f"Alert {alert_id} was resolved on {minute(alert.resolved_at)} UTC; "
                "only open alerts can be acknowledged."
            )
        threshold = None
        if until is None:
            threshold = newest_threshold(session, alert_id)
            if threshold is None:
                raise click.ClickException(
                    f"Alert {alert_id} has no reminder threshold recorded yet: "
                    "give --until DATE."
                )
        acknowledge_alert(session, alert_id, until=until, threshold=threshold, by=by)
    if until is not None:
        click.echo(f"Acknowledged alert {alert_id} until {minute(until)} UTC.")
    else:
        click.echo(
            f"Acknowledged alert {alert_id} until a reminder threshold after "
            f"{threshold} is crossed."
        )


def parse_until(text: str, now: datetime) -> datetime:
    """Parse `--until`: a date (midnight UTC) or an ISO 8601 time, UTC by default.

    Raises:
        click.BadParameter: the text is neither, or the time is not after `now`.
    """
    stripped = text.strip()
    try:
        if len(stripped) == len("YYYY-MM-DD"):
            day = date.fromisoformat(stripped)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
        else:
            moment = datetime.fromisoformat(stripped)
    except ValueError as exc:
        raise click.BadParameter(
            f"Invalid time {text!r}: give a date such as 2027-01-10 or a time "
            "such as 2027-01-10T12:00 or 2027-01-10T12:00+02:00.",
            param_hint="--until",
        ) from exc
    if moment.tzinfo is None or moment.utcoffset() is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:
        moment = datetime.max.replace(tzinfo=UTC)
    if moment.year > MAX_UNTIL_YEAR:
        raise click.BadParameter(
            f"Invalid time {text!r}: give a time before the year {MAX_UNTIL_YEAR + 1}.",
            param_hint="--until",
        )
    if moment <= now:
        raise click.BadParameter(
            f"{text!r} is not in the future (now is {minute(now)} UTC): give a "
            "later time.",
            param_hint="--until",
        )
    return moment


def parse_acknowledger(text: str) -> str:
    """Check the `--by` name and return it without surrounding spaces.

    Raises:
        click.BadParameter: the name is blank, longer than
            `MAX_ACKNOWLEDGER_LENGTH`, or contains control or text-direction
            characters.
    """
    name = text.strip()
    if not name or len(name) > MAX_ACKNOWLEDGER_LENGTH:
        raise click.BadParameter(
            f"Invalid name {text[:MAX_ACKNOWLEDGER_LENGTH]!r}: give 1 to "
            f"{MAX_ACKNOWLEDGER_LENGTH} characters, not only spaces.",
            param_hint="--by",
        )
    # Control and format characters (Unicode categories Cc and Cf, which
    # include the text-direction overrides) could disguise the name where
    # it is shown.
    if not name.isprintable():
        raise click.BadParameter(
            f"Invalid name {text!r}: control and text-direction characters are "
            "not allowed; give printable text.",
            param_hint="--by",
        )
    return name


def _login_name() -> str | None:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        # No login name in the environment and none in the password file,
        # as in some containers.
        return None


def _places_label(places: Sequence[Mapping[str, Any]]) -> str:
    """Name the first place of an alert and count the others."""
    if not places:
        return "-"
    first = places[0]
    label = str(first.get("target") or first.get("path") or "?")
    if first.get("address"):
        label += f" at {first['address']}"
    if len(places) > 1:
        label += f" and {len(places) - 1} more"
    return label


def _print_alerts(alerts: list[AlertRecord], *, include_resolved: bool) -> None:
    table = Table(header_style="bold")
    table.add_column("ID", justify="right", no_wrap=True)
    table.add_column("Team", overflow="fold")
    table.add_column("Severity", no_wrap=True)
    table.add_column("Code", overflow="fold")
    table.add_column("Message", overflow="fold")
    table.add_column("Places", overflow="fold")
    table.add_column("Opened (UTC)", no_wrap=True)
    table.add_column("Acknowledged", overflow="fold")
    if include_resolved:
        table.add_column("Resolved (UTC)", no_wrap=True)
    for alert in alerts:
        cells = [
            Text(str(alert.id)),
            plain_text(alert.team),
            Text(alert.severity),
            plain_text(alert.code),
            plain_text(alert.message),
            plain_text(_places_label(alert.places)),
            Text(minute(alert.opened_at)),
            plain_text(_acknowledgement_text(alert)),
        ]
        if include_resolved:
            cells.append(Text(minute(alert.resolved_at)))
        table.add_row(*cells)
    stdout_console().print(table)


def _acknowledgement_text(alert: AlertRecord) -> str:
    by = f" by {alert.acknowledged_by}" if alert.acknowledged_by else ""
    if alert.acknowledged_until is not None:
        return f"until {minute(alert.acknowledged_until)}{by}"
    if alert.acknowledged_threshold is not None:
        return f"until the threshold after {alert.acknowledged_threshold}{by}"
    return "-"


def _alert_document(alert: AlertRecord) -> dict[str, Any]:
    return {
        "id": alert.id,
        "team": alert.team,
        "event": alert.event,
        "code": alert.code,
        "severity": alert.severity,
        "message": alert.message,
        "places": list(alert.places),
        "opened_at": timestamp(alert.opened_at),
        "updated_at": timestamp(alert.updated_at),
        "resolved_at": timestamp(alert.resolved_at),
        "acknowledged_until": timestamp(alert.acknowledged_until),
        "acknowledged_threshold": alert.acknowledged_threshold,
        "acknowledged_by": alert.acknowledged_by,
    }


def _show_deliveries(deliveries: list[PendingDelivery], as_json: bool) -> None:
    if as_json:
        echo_json(
            {
                "schema_version": INVENTORY_SCHEMA_VERSION,
                "deliveries": [_delivery_document(d) for d in deliveries],
            }
        )
        return

    _print_deliveries(deliveries)
    given_up = sum(1 for d in deliveries if d.failed_at is not None)
    click.echo(
        f"{given_up} given up, {len(deliveries) - given_up} still being retried."
    )


def _print_deliveries(deliveries: list[PendingDelivery]) -> None:
    table = Table(header_style="bold")
    table.add_column("ID", justify="right", no_wrap=True)
    table.add_column("Team", overflow="fold")
    table.add_column("Contact", overflow="fold")
    table.add_column("Event", no_wrap=True)
    table.add_column("Attempts", justify="right", no_wrap=True)
    table.add_column("Last error", overflow="fold")
    table.add_column("Next attempt (UTC)", no_wrap=True)
    for delivery in deliveries:
        table.add_row(
            Text(str(delivery.id)),
            plain_text(delivery.team),
            plain_text(_delivery_contact(delivery)),
            Text(delivery.event),
            Text(str(delivery.attempts)),
            plain_text(delivery.last_error or "-"),
            Text(_next_attempt_text(delivery)),
        )
    stdout_console().print(table)


def _next_attempt_text(delivery: PendingDelivery) -> str:
    if delivery.failed_at is not None:
        return f"gave up {minute(delivery.failed_at)}"
    return minute(delivery.next_attempt_at)


def _delivery_contact(delivery: PendingDelivery) -> str:
    return _redact(delivery.contact_kind, delivery.contact_address)


def _delivery_document(delivery: PendingDelivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "team": delivery.team,
        "contact_id": delivery.contact_id,
        "contact": _delivery_contact(delivery),
        "event": delivery.event,
        "key": delivery.notice_key,
        "state": "failed" if delivery.failed_at is not None else "retrying",
        "attempts": delivery.attempts,
        "last_error": delivery.last_error,
        "created_at": timestamp(delivery.created_at),
        "next_attempt_at": (
            None
            if delivery.failed_at is not None
            else timestamp(delivery.next_attempt_at)
        ),
        "failed_at": timestamp(delivery.failed_at),
    }


ALERTING_COMMANDS = (team_group, contact_group, notify_group, alerts_group)
"""The command groups of this module, registered on `certwatch`."""


def _count(number: int, noun: str) -> str:
    """Return "1 endpoint" or "3 endpoints"."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"
