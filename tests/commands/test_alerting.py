"""`certwatch team`, `contact`, `notify test` and `alerts` on SQLite and PostgreSQL.

`notify test` delivers to real receivers on 127.0.0.1: an aiosmtpd server
in the test's event loop and HTTP receivers in their own threads. The
command runs its own event loop, so those tests run it in a worker thread.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import Result as CliResult
from sqlalchemy import select
from sqlalchemy.orm import Session
from tests.alerts import conftest as alerts_conftest
from tests.alerts.conftest import REFUSED_RECIPIENT, HttpReceiver, Reply, StartSmtp
from tests.commands.conftest import (
    Certwatch,
    StartServer,
    fresh_leaf,
    serve,
    target,
)

from certwatch.alerts.settings import SmtpSecurity
from certwatch.result import Status
from certwatch.store.database import create_store_engine
from certwatch.store.models import (
    AlertRow,
    AlertThresholdRow,
    TeamRow,
)

# The receivers of the delivery tests, found by pytest under these names.
smtp_pki = alerts_conftest.smtp_pki
smtp_server = alerts_conftest.smtp_server
http_receiver = alerts_conftest.http_receiver

SECRET = "T0SECRET/B0SECRET/xoxSECRETtoken42"
SLACK = f"slack:https://hooks.slack.test/services/{SECRET}"


def ok(outcome: CliResult) -> str:
    assert outcome.exit_code == 0, outcome.output
    return outcome.stdout


def smtp_env(port: int) -> dict[str, str]:
    return {
        "CERTWATCH_SMTP_HOST": "127.0.0.1",
        "CERTWATCH_SMTP_PORT": str(port),
        "CERTWATCH_SMTP_SECURITY": SmtpSecurity.PLAIN.value,
        "CERTWATCH_SMTP_FROM": "certwatch@example.test",
        "CERTWATCH_SMTP_TIMEOUT": "5",
        "CERTWATCH_WEBHOOK_TIMEOUT": "5",
    }


def insert_alert(
    certwatch: Certwatch,
    *,
    team: str = "default",
    identity: str = "expiry:ab",
    resolved: bool = False,
    thresholds: tuple[tuple[str, datetime], ...] = (),
) -> int:
    """Store an alert as the alert policy would, with its crossed thresholds."""
    opened = datetime(2027, 1, 3, 12, 0, tzinfo=UTC)
    engine = create_store_engine(certwatch.database_url)
    try:
        with Session(engine) as session, session.begin():
            team_id = session.scalar(select(TeamRow.id).where(TeamRow.name == team))
            assert team_id is not None
            row = AlertRow(
                team_id=team_id,
                identity=identity,
                event="expiring",
                code="expiring_soon",
                severity="critical",
                message="www.example.test expires in 7 days (2027-01-10).",
                places=[
                    {"target": "www.example.test:443", "address": "192.0.2.10"},
                    {"target": "www.example.test:443", "address": "192.0.2.11"},
                ],
                opened_at=opened,
                updated_at=opened,
                resolved_at=opened + timedelta(days=1) if resolved else None,
            )
            session.add(row)
            session.flush()
            for threshold, crossed_at in thresholds:
                session.add(
                    AlertThresholdRow(
                        alert_id=row.id, threshold=threshold, crossed_at=crossed_at
                    )
                )
            return row.id
    finally:
        engine.dispose()


def stored_alert(certwatch: Certwatch, alert_id: int) -> AlertRow:
    engine = create_store_engine(certwatch.database_url)
    try:
        with Session(engine) as session:
            row = session.get(AlertRow, alert_id)
            assert row is not None
            return row
    finally:
        engine.dispose()


# --- team -------------------------------------------------------------------


def test_team_add_normalises_settings(certwatch: Certwatch) -> None:
    output = ok(
        certwatch(
            "team", "add", "web", "--reminders", "7, 30,14", "--escalate-after", "1d"
        )
    )

    assert output == "Added team web: reminders 30,14,7, escalate after 1d.\n"
    teams = {team["name"]: team for team in certwatch.json("team", "list")["teams"]}
    assert teams["web"]["reminder_schedule"] == "30,14,7"
    assert teams["web"]["escalate_after_seconds"] == 86400
    assert teams["default"]["reminder_schedule"] is None
    assert teams["default"]["escalate_after_seconds"] is None


def test_team_add_again_changes_given(certwatch: Certwatch) -> None:
    ok(certwatch("team", "add", "web", "--reminders", "20%,10%"))

    output = ok(certwatch("team", "add", "web", "--escalate-after", "2h"))

    assert output == "Updated team web: reminders 20%,10%, escalate after 2h.\n"
    team = certwatch.json("team", "show", "web")["team"]
    assert team["reminder_schedule"] == "20%,10%"
    assert team["escalate_after_seconds"] == 7200


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("--reminders", "abc"), "Invalid reminder point 'abc'"),
        (("--reminders", "0"), "give days above 0"),
        (("--reminders", "150%"), "at most 100%"),
        (("--reminders", ","), "Invalid reminder schedule"),
        (("--escalate-after", "soon"), "Invalid duration 'soon'"),
    ],
)
def test_team_add_invalid_settings(
    certwatch: Certwatch, arguments: tuple[str, ...], message: str
) -> None:
    outcome = certwatch("team", "add", "web", *arguments)

    assert outcome.exit_code == 2
    assert message in outcome.output
    names = [team["name"] for team in certwatch.json("team", "list")["teams"]]
    assert names == ["default"]


def test_team_add_blank_name(certwatch: Certwatch) -> None:
    outcome = certwatch("team", "add", "  ")

    assert outcome.exit_code == 2
    assert "Invalid team name" in outcome.output


def test_team_list_counts(certwatch: Certwatch) -> None:
    ok(certwatch("team", "add", "web"))
    ok(certwatch("contact", "add", "web", "email:ops@example.test"))
    ok(certwatch("contact", "add", "web", "email:boss@example.test", "--escalation"))
    insert_alert(certwatch, team="web", identity="expiry:1")
    insert_alert(certwatch, team="web", identity="expiry:2", resolved=True)

    teams = {team["name"]: team for team in certwatch.json("team", "list")["teams"]}
    table = ok(certwatch("team", "list"))

    assert teams["web"]["contact_count"] == 2
    assert teams["web"]["endpoint_count"] == 0
    assert teams["web"]["file_source_count"] == 0
    assert teams["web"]["open_alert_count"] == 1
    assert "30,14,7,3,1 (default)" in table
    assert "web" in table


def test_team_show_unknown(certwatch: Certwatch) -> None:
    outcome = certwatch("team", "show", "nobody")

    assert outcome.exit_code == 1
    assert "Team 'nobody' not found" in outcome.output
    assert "certwatch team list" in outcome.output


def test_team_show_without_contacts_warns(certwatch: Certwatch) -> None:
    output = ok(certwatch("team", "show", "default"))

    assert "alerts for this team reach nobody" in output


# --- contact ----------------------------------------------------------------


def test_contact_add_prints_redacted(certwatch: Certwatch) -> None:
    output = ok(certwatch("contact", "add", "default", SLACK))

    assert "slack:https://hooks.slack.test/services/…" in output
    assert SECRET not in output
    table = ok(certwatch("team", "show", "default"))
    document = certwatch("team", "show", "default", "--json").stdout
    assert SECRET not in table
    assert SECRET not in document
    [contact] = json.loads(document)["team"]["contacts"]
    assert contact["contact"] == "slack:https://hooks.slack.test/services/…"
    assert contact["kind"] == "slack"
    assert contact["escalation"] is False
    assert contact["healthy"] is True


def test_contact_add_again_sets_escalation(certwatch: Certwatch) -> None:
    ok(certwatch("contact", "add", "default", "email:ops@example.test"))

    output = ok(
        certwatch("contact", "add", "default", "EMAIL:ops@example.test", "--escalation")
    )

    assert output.startswith("Updated escalation contact ")
    [contact] = certwatch.json("team", "show", "default")["team"]["contacts"]
    assert contact["escalation"] is True

    ok(certwatch("contact", "add", "default", "email:ops@example.test"))

    [contact] = certwatch.json("team", "show", "default")["team"]["contacts"]
    assert contact["escalation"] is False


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("pager:12345", "Invalid contact kind 'pager'"),
        ("email:not-an-address", "Invalid email address 'not-an-address'"),
        (f"slack:http://hooks.slack.test/services/{SECRET}", "webhooks use https"),
        (f"webhook:ftp://alerts.example.test/{SECRET}", "must start with https://"),
    ],
)
def test_contact_add_invalid(certwatch: Certwatch, spec: str, message: str) -> None:
    outcome = certwatch("contact", "add", "default", spec)

    assert outcome.exit_code == 2
    assert message in outcome.output
    assert SECRET not in outcome.output
    assert certwatch.json("team", "show", "default")["team"]["contacts"] == []


PUBLIC_ONLY = {"CERTWATCH_ALLOW_PRIVATE_TARGETS": "false"}


# Every receiver here is refused before any connection: literal addresses,
# and numeric host forms that the C library's resolver parses itself.
@pytest.mark.parametrize(
    ("url", "address", "kind"),
    [
        (
            "http://169.254.169.254/latest/meta-data/",
            "169.254.169.254",
            "link-local",
        ),
        ("http://0xa9fea9fe/", "169.254.169.254", "link-local"),
        ("http://2852039166/", "169.254.169.254", "link-local"),
        (
            "http://[::ffff:169.254.169.254]/",
            "::ffff:a9fe:a9fe",
            "IPv4-mapped form of the link-local IPv4 address 169.254.169.254",
        ),
        ("http://10.0.0.1/", "10.0.0.1", "private"),
        ("http://[fd00:ec2::254]/", "fd00:ec2::254", "unique-local"),
    ],
)
def test_contact_add_private_receiver_rejected(
    certwatch: Certwatch, url: str, address: str, kind: str
) -> None:
    outcome = certwatch("contact", "add", "default", f"webhook:{url}", env=PUBLIC_ONLY)

    assert outcome.exit_code == 2, outcome.output
    message = " ".join(outcome.output.split())
    assert f"leads to {address} ({kind} address)" in message
    assert "CERTWATCH_ALLOW_PRIVATE_TARGETS=true" in message
    assert certwatch.json("team", "show", "default")["team"]["contacts"] == []


def test_contact_add_open_signup_rejects_private(certwatch: Certwatch) -> None:
    env = {"CERTWATCH_WEB_SIGNUP": "open"}

    rejected = certwatch(
        "contact", "add", "default", "webhook:http://10.0.0.1/", env=env
    )
    email = certwatch("contact", "add", "default", "email:ops@example.test", env=env)

    assert rejected.exit_code == 2, rejected.output
    assert "10.0.0.1 (private address)" in rejected.output
    assert email.exit_code == 0, email.output


def test_contact_add_private_allowed_setting(certwatch: Certwatch) -> None:
    env = {"CERTWATCH_WEB_SIGNUP": "open", "CERTWATCH_ALLOW_PRIVATE_TARGETS": "true"}

    outcome = certwatch(
        "contact", "add", "default", "webhook:http://10.0.0.1/", env=env
    )

    assert outcome.exit_code == 0, outcome.output
    [contact] = certwatch.json("team", "show", "default")["team"]["contacts"]
    assert contact["contact"] == "webhook:http://10.0.0.1/"


def test_contact_add_invalid_policy_setting(certwatch: Certwatch) -> None:
    env = {"CERTWATCH_ALLOW_PRIVATE_TARGETS": "maybe"}

    outcome = certwatch(
        "contact", "add", "default", "webhook:http://10.0.0.1/", env=env
    )

    assert outcome.exit_code == 3
    assert "CERTWATCH_ALLOW_PRIVATE_TARGETS='maybe' is not true or false" in (
        outcome.output
    )
    assert certwatch.json("team", "show", "default")["team"]["contacts"] == []


def test_contact_add_unknown_team(certwatch: Certwatch) -> None:
    outcome = certwatch("contact", "add", "ops", "email:ops@example.test")

    assert outcome.exit_code == 1
    assert "Team 'ops' not found" in outcome.output
    assert "certwatch team add ops" in outcome.output


def test_contact_remove_by_spec_and_id(certwatch: Certwatch) -> None:
    ok(certwatch("team", "add", "web"))
    ok(certwatch("contact", "add", "web", "email:ops@example.test"))
    ok(certwatch("contact", "add", "web", SLACK))
    contacts = certwatch.json("team", "show", "web")["team"]["contacts"]
    slack_id = next(c["id"] for c in contacts if c["kind"] == "slack")

    by_spec = ok(certwatch("contact", "remove", "web", "EMAIL:ops@Example.TEST"))
    by_id = ok(certwatch("contact", "remove", "web", str(slack_id)))

    assert by_spec.startswith("Removed contact ")
    assert "email:ops@example.test" in by_spec
    assert "slack:https://hooks.slack.test/services/…" in by_id
    assert SECRET not in by_id
    assert certwatch.json("team", "show", "web")["team"]["contacts"] == []


def test_contact_remove_unknown(certwatch: Certwatch) -> None:
    ok(certwatch("team", "add", "web"))
    ok(certwatch("contact", "add", "default", SLACK))
    [contact] = certwatch.json("team", "show", "default")["team"]["contacts"]

    other_team = certwatch("contact", "remove", "web", str(contact["id"]))
    by_spec = certwatch("contact", "remove", "web", SLACK)

    assert other_team.exit_code == 1
    assert f"Contact {contact['id']} is not a contact of team web" in other_team.output
    assert "certwatch team show web" in other_team.output
    assert by_spec.exit_code == 1
    assert SECRET not in by_spec.output
    assert len(certwatch.json("team", "show", "default")["team"]["contacts"]) == 1


# --- notify test ------------------------------------------------------------


async def test_notify_test_reports_each_contact(
    certwatch: Certwatch, smtp_server: StartSmtp, http_receiver: HttpReceiver
) -> None:
    server = await smtp_server(SmtpSecurity.PLAIN)
    gone_receiver = HttpReceiver().start()
    try:
        gone_receiver.script = [Reply(404, b"no_service")]
        gone_url = gone_receiver.url(f"/hooks/{SECRET}")
        ok(certwatch("team", "add", "web"))
        ok(certwatch("contact", "add", "web", "email:ops@example.test"))
        ok(certwatch("contact", "add", "web", f"email:{REFUSED_RECIPIENT}"))
        ok(
            certwatch(
                "contact",
                "add",
                "web",
                f"webhook:{http_receiver.url('/ok')}",
                "--escalation",
            )
        )
        ok(certwatch("contact", "add", "web", f"webhook:{gone_url}"))

        outcome = await asyncio.to_thread(
            certwatch, "notify", "test", "web", env=smtp_env(server.port)
        )
    finally:
        gone_receiver.close()

    assert outcome.exit_code == 1, outcome.output
    lines = outcome.stdout.splitlines()
    assert lines[0].startswith("delivered email:ops@example.test: accepted by")
    assert lines[1].startswith(f"failed    email:{REFUSED_RECIPIENT}: ")
    assert "550" in lines[1]
    assert lines[2] == (
        f"delivered webhook:http://127.0.0.1:{http_receiver.port}/…: accepted "
        "with HTTP 200 (ok)"
    )
    assert lines[3] == (
        f"failed    webhook:http://127.0.0.1:{gone_receiver.port}/hooks/…: the "
        "receiver rejected the notice with HTTP 404 (no_service)"
    )
    assert lines[4] == "2 of 4 contacts of team web received the test message."
    assert SECRET not in outcome.output
    [mail] = server.handler.received
    assert mail.message["X-Certwatch-Event"] == "test"
    [request] = http_receiver.requests
    assert request.json()["event"] == "test"
    assert request.json()["items"] == []

    failed = certwatch.json("alerts", "--failed")["deliveries"]
    table = ok(certwatch("alerts", "--failed"))

    assert sorted(d["contact"] for d in failed) == [
        f"email:{REFUSED_RECIPIENT}",
        f"webhook:http://127.0.0.1:{gone_receiver.port}/hooks/…",
    ]
    for delivery in failed:
        assert delivery["state"] == "failed"
        assert delivery["attempts"] == 1
        assert delivery["team"] == "web"
        assert delivery["event"] == "test"
        assert delivery["next_attempt_at"] is None
    assert "HTTP 404 (no_service)" in table
    assert "2 given up, 0 still being retried." in table
    assert SECRET not in table


async def test_notify_test_all_delivered(
    certwatch: Certwatch, http_receiver: HttpReceiver
) -> None:
    ok(certwatch("contact", "add", "default", f"webhook:{http_receiver.url('/a')}"))

    outcome = await asyncio.to_thread(
        certwatch, "notify", "test", "default", "--json", env=smtp_env(1)
    )

    assert outcome.exit_code == 0, outcome.output
    document = json.loads(outcome.stdout)
    assert document["team"] == "default"
    [contact] = document["contacts"]
    assert contact["delivered"] is True
    assert contact["contact"] == f"webhook:http://127.0.0.1:{http_receiver.port}/…"
    [request] = http_receiver.requests
    assert request.headers["Idempotency-Key"] == document["key"]
    assert certwatch.json("alerts", "--failed")["deliveries"] == []


async def test_notify_test_private_receiver_blocked(
    certwatch: Certwatch, http_receiver: HttpReceiver
) -> None:
    # Added while private receivers were allowed; the loopback receiver
    # would record any request that got through.
    ok(certwatch("contact", "add", "default", f"webhook:{http_receiver.url('/a')}"))
    env = {**smtp_env(1), **PUBLIC_ONLY}

    outcome = await asyncio.to_thread(
        certwatch, "notify", "test", "default", "--json", env=env
    )

    assert outcome.exit_code == 1, outcome.output
    [contact] = json.loads(outcome.stdout)["contacts"]
    assert contact["delivered"] is False
    assert "leads to 127.0.0.1 (loopback address)" in contact["reason"]
    assert "CERTWATCH_ALLOW_PRIVATE_TARGETS=true" in contact["reason"]
    assert http_receiver.requests == []


@pytest.mark.parametrize("blocked", [True, False])
def test_run_once_private_receiver_policy(
    certwatch: Certwatch,
    http_receiver: HttpReceiver,
    local_server: StartServer,
    blocked: bool,
) -> None:
    server = serve(local_server, fresh_leaf(days_left=5))
    ok(certwatch("contact", "add", "default", f"webhook:{http_receiver.url('/a')}"))
    # Five days left is critical, which opens an alert for the contact.
    added = certwatch("add", target(server))
    assert added.exit_code == Status.CRITICAL.exit_code, added.output
    env = {**smtp_env(1), **(PUBLIC_ONLY if blocked else {})}

    outcome = certwatch("run", "--once", env=env)

    assert outcome.exit_code == 0, outcome.output
    if blocked:
        assert "0 messages delivered, 1 failed" in outcome.stderr
        assert http_receiver.requests == []
    else:
        assert "1 messages delivered, 0 failed" in outcome.stderr
        assert len(http_receiver.requests) == 1


def test_notify_test_invalid_settings(certwatch: Certwatch) -> None:
    ok(certwatch("contact", "add", "default", "email:ops@example.test"))
    env = {**smtp_env(25), "CERTWATCH_SMTP_SECURITY": "ssl"}

    outcome = certwatch("notify", "test", "default", env=env)

    assert outcome.exit_code == 3
    assert "CERTWATCH_SMTP_SECURITY: invalid SMTP security 'ssl'" in outcome.output


def test_notify_test_without_contacts(certwatch: Certwatch) -> None:
    outcome = certwatch("notify", "test", "default", env=smtp_env(25))

    assert outcome.exit_code == 1
    assert "Team default has no contacts" in outcome.output


def test_notify_test_unknown_team(certwatch: Certwatch) -> None:
    outcome = certwatch("notify", "test", "ops", env=smtp_env(25))

    assert outcome.exit_code == 1
    assert "Team 'ops' not found" in outcome.output


# --- alerts -----------------------------------------------------------------


def test_alerts_lists_open_by_default(certwatch: Certwatch) -> None:
    open_id = insert_alert(certwatch, identity="expiry:open")
    resolved_id = insert_alert(certwatch, identity="expiry:done", resolved=True)

    open_only = certwatch.json("alerts")["alerts"]
    everything = certwatch.json("alerts", "--all")["alerts"]
    table = ok(certwatch("alerts"))

    assert [alert["id"] for alert in open_only] == [open_id]
    assert sorted(alert["id"] for alert in everything) == [open_id, resolved_id]
    [alert] = open_only
    assert alert["team"] == "default"
    assert alert["code"] == "expiring_soon"
    assert alert["severity"] == "critical"
    assert len(alert["places"]) == 2
    assert alert["opened_at"] == "2027-01-03T12:00:00Z"
    assert alert["resolved_at"] is None
    assert alert["acknowledged_until"] is None
    assert "expiring_soon" in table
    assert "www.example.test:443 at 192.0.2.10 and 1 more" in table
    assert "1 open alert." in table


def test_alerts_all_and_failed_exclusive(certwatch: Certwatch) -> None:
    outcome = certwatch("alerts", "--all", "--failed")

    assert outcome.exit_code == 2
    assert "Choose one of --all and --failed" in outcome.output


def test_alerts_ack_until_date(certwatch: Certwatch) -> None:
    alert_id = insert_alert(certwatch)
    day = (datetime.now(UTC) + timedelta(days=3)).date()

    output = ok(certwatch("alerts", "ack", str(alert_id), "--until", day.isoformat()))

    assert output == f"Acknowledged alert {alert_id} until {day} 00:00 UTC.\n"
    row = stored_alert(certwatch, alert_id)
    assert row.acknowledged_until == datetime(day.year, day.month, day.day, tzinfo=UTC)
    assert row.acknowledged_threshold is None
    [listed] = certwatch.json("alerts")["alerts"]
    assert listed["acknowledged_until"] == f"{day}T00:00:00Z"


def test_alerts_ack_until_time_offset(certwatch: Certwatch) -> None:
    alert_id = insert_alert(certwatch)
    later = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    local = later.astimezone(UTC).replace(tzinfo=None).isoformat() + "+02:00"

    ok(certwatch("alerts", "ack", str(alert_id), "--until", local, "--by", "alice"))

    row = stored_alert(certwatch, alert_id)
    assert row.acknowledged_until == later - timedelta(hours=2)
    assert row.acknowledged_by == "alice"


def test_alerts_ack_until_naive_is_utc(certwatch: Certwatch) -> None:
    alert_id = insert_alert(certwatch)
    later = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)

    ok(
        certwatch(
            "alerts",
            "ack",
            str(alert_id),
            "--until",
            later.strftime("%Y-%m-%dT%H:%M:%S"),
        )
    )

    assert stored_alert(certwatch, alert_id).acknowledged_until == later


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2020-01-01", "is not in the future"),
        ("next week", "Invalid time 'next week'"),
        ("2027-02-30", "Invalid time '2027-02-30'"),
    ],
)
def test_alerts_ack_invalid_until(
    certwatch: Certwatch, text: str, message: str
) -> None:
    alert_id = insert_alert(certwatch)

    outcome = certwatch("alerts", "ack", str(alert_id), "--until", text)

    assert outcome.exit_code == 2
    assert message in outcome.output
    assert stored_alert(certwatch, alert_id).acknowledged_until is None


def test_alerts_ack_next_threshold(certwatch: Certwatch) -> None:
    crossed = datetime(2027, 1, 3, tzinfo=UTC)
    alert_id = insert_alert(
        certwatch,
        thresholds=(
            ("window", crossed),
            ("days:7", crossed + timedelta(days=7)),
            ("days:14", crossed + timedelta(days=1)),
        ),
    )
    day = (datetime.now(UTC) + timedelta(days=3)).date()
    ok(certwatch("alerts", "ack", str(alert_id), "--until", day.isoformat()))

    output = ok(certwatch("alerts", "ack", str(alert_id), "--by", "bob"))

    assert output == (
        f"Acknowledged alert {alert_id} until a reminder threshold after days:7 "
        "is crossed.\n"
    )
    row = stored_alert(certwatch, alert_id)
    assert row.acknowledged_threshold == "days:7"
    assert row.acknowledged_until is None
    assert row.acknowledged_by == "bob"
    assert "until the threshold after days:7 by bob" in ok(certwatch("alerts"))


def test_alerts_ack_threshold_tie(certwatch: Certwatch) -> None:
    # One evaluation recorded three thresholds at once; the last in the
    # certificate's life is the one a later reminder is compared with.
    crossed = datetime(2027, 1, 3, tzinfo=UTC)
    alert_id = insert_alert(
        certwatch,
        thresholds=(
            ("window", crossed),
            ("days:14", crossed),
            ("days:7", crossed),
            ("days:30", crossed),
        ),
    )

    ok(certwatch("alerts", "ack", str(alert_id)))

    assert stored_alert(certwatch, alert_id).acknowledged_threshold == "days:7"


def test_alerts_ack_errors(certwatch: Certwatch) -> None:
    resolved_id = insert_alert(certwatch, identity="expiry:done", resolved=True)
    bare_id = insert_alert(certwatch, identity="expiry:bare")

    unknown = certwatch("alerts", "ack", "999999")
    resolved = certwatch("alerts", "ack", str(resolved_id), "--until", "2099-01-01")
    bare = certwatch("alerts", "ack", str(bare_id))

    assert unknown.exit_code == 1
    assert "Alert 999999 not found" in unknown.output
    assert resolved.exit_code == 1
    assert f"Alert {resolved_id} was resolved on 2027-01-04 12:00 UTC" in (
        resolved.output
    )
    assert bare.exit_code == 1
    assert "no reminder threshold recorded yet: give --until DATE" in bare.output


@pytest.mark.parametrize(
    ("by", "message"),
    [
        ("x" * 100_000, "give 1 to 200 characters, not only spaces"),
        ("x" * 201, "give 1 to 200 characters, not only spaces"),
        ("   ", "Invalid name '   ': give 1 to 200 characters"),
        ("ali\x1b[31mce", "control and text-direction characters are not allowed"),
        ("ali\u202ece", "control and text-direction characters are not allowed"),
    ],
)
def test_alerts_ack_invalid_by(certwatch: Certwatch, by: str, message: str) -> None:
    alert_id = insert_alert(certwatch)

    outcome = certwatch(
        "alerts", "ack", str(alert_id), "--until", "2099-01-01", "--by", by
    )

    assert outcome.exit_code == 2, outcome.output
    assert message in outcome.output
    assert len(outcome.output) < 2000
    row = stored_alert(certwatch, alert_id)
    assert row.acknowledged_until is None
    assert row.acknowledged_by is None


def test_alerts_ack_by_longest_name(certwatch: Certwatch) -> None:
    alert_id = insert_alert(certwatch)

    ok(
        certwatch(
            "alerts",
            "ack",
            str(alert_id),
            "--until",
            "2099-01-01",
            "--by",
            " " + "é" * 200,
        )
    )

    assert stored_alert(certwatch, alert_id).acknowledged_by == "é" * 200


def test_alerts_ack_out_of_range_values(certwatch: Certwatch) -> None:
    huge_id = certwatch("alerts", "ack", "9" * 23)
    far_time = certwatch("alerts", "ack", "1", "--until", "9999-12-31T23:59:59-23:59")

    assert huge_id.exit_code == 2
    assert "is not in the range" in huge_id.output
    assert far_time.exit_code == 2
    assert "give a time before the year 9999" in far_time.output
    assert "Traceback" not in huge_id.output + far_time.output
