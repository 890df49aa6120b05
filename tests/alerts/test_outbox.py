"""The outbox on SQLite and PostgreSQL, against real SMTP and HTTP receivers.

Time moves through an injected clock. `deliver_due` runs its own event
loop, so the async tests call it in a worker thread while the aiosmtpd
servers keep running in the test's loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP
from sqlalchemy import Engine, func, select, text, update
from sqlalchemy.orm import Session, sessionmaker
from tests.alerts.conftest import (
    HttpReceiver,
    Reply,
    SmtpHandler,
    StartSmtp,
    make_notice,
)
from tests.store import conftest as store_conftest

from certwatch.alerts import (
    DeliverySettings,
    EventKind,
    Notice,
    NoticeItem,
    Place,
    RetryPolicy,
    SmtpSecurity,
    SmtpSettings,
    WebhookSettings,
    deliver,
    next_attempt_delay,
    parse_contact,
)
from certwatch.alerts.channels.email import message_id
from certwatch.alerts.outbox import (
    CONTACT_FAILING,
    DeliveryReport,
    DeliveryState,
    _Sender,
    claim_due,
    deliver_due,
    deliver_now,
    enqueue,
)
from certwatch.alerts.serialize import (
    NoticeFormatError,
    notice_from_json,
    notice_to_json,
)
from certwatch.store.alerts import add_contact, pending_deliveries
from certwatch.store.database import session_factory
from certwatch.store.inventory import ensure_team
from certwatch.store.models import ContactRow, OutboxRow
from certwatch.x509.model import Severity

# The database fixtures of the store tests, found by pytest under these names.
database_url = store_conftest.database_url
postgres_server = store_conftest.postgres_server
postgres_url = store_conftest.postgres_url
postgres_only_url = store_conftest.postgres_only_url
sqlite_template = store_conftest.sqlite_template
engine = store_conftest.engine

T0 = datetime(2027, 1, 3, 12, 0, 0, tzinfo=UTC)
LEASE = timedelta(minutes=5)
SECRET = "s3cr3t-hook-token-0123456789"
FAST_WEBHOOK = WebhookSettings(timeout=2.0)


class Clock:
    """The injected time: `now_fn` for the outbox, moved by the test."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def move_to(self, moment: datetime | None) -> None:
        assert moment is not None
        self.now = moment


@dataclass
class Team:
    """A team and its contacts, by the label the test gave them."""

    id: int
    name: str
    contacts: dict[str, int] = field(default_factory=dict)


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    """A session factory on a migrated database holding only the default team."""
    return session_factory(engine)


def make_team(
    sessions: sessionmaker[Session], name: str, contacts: dict[str, tuple[str, bool]]
) -> Team:
    """Create a team with contacts given as label: (KIND:ADDRESS, escalation)."""
    with sessions.begin() as session:
        team = Team(ensure_team(session, name, now=T0), name)
        for label, (text, escalation) in contacts.items():
            contact = parse_contact(text)
            record, _ = add_contact(
                session,
                team.id,
                kind=contact.kind.value,
                address=contact.value,
                escalation=escalation,
                now=T0,
            )
            team.contacts[label] = record.id
    return team


def outbox_rows(sessions: sessionmaker[Session]) -> list[OutboxRow]:
    with sessions() as session:
        return list(session.scalars(select(OutboxRow).order_by(OutboxRow.id)))


def contact_row(sessions: sessionmaker[Session], contact_id: int) -> ContactRow:
    with sessions() as session:
        row = session.get(ContactRow, contact_id)
        assert row is not None
        return row


def add_notice(
    sessions: sessionmaker[Session],
    team: Team,
    notice: Notice,
    *,
    now: datetime = T0,
    escalation: bool = False,
) -> int:
    with sessions.begin() as session:
        return enqueue(
            session, team_id=team.id, notice=notice, now=now, escalation=escalation
        )


async def run_due(
    sessions: sessionmaker[Session],
    settings: DeliverySettings,
    clock: Clock,
    **options: Any,
) -> DeliveryReport:
    """Run `deliver_due` in a worker thread, so the test's servers keep serving."""
    return await asyncio.to_thread(
        deliver_due, sessions, settings=settings, now_fn=clock, **options
    )


def start_smtp_on(port: int, handler: SmtpHandler) -> Any:
    """Start a plain aiosmtpd server on 127.0.0.1:`port` in the running loop."""
    loop = asyncio.get_running_loop()
    return loop.create_server(
        lambda: SMTP(handler, hostname="localhost", timeout=5),
        "127.0.0.1",
        port,
    )


def plain_smtp(port: int) -> SmtpSettings:
    return SmtpSettings(
        host="127.0.0.1",
        sender="certwatch <certwatch@example.test>",
        port=port,
        security=SmtpSecurity.PLAIN,
        timeout=2.0,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# --- serialize --------------------------------------------------------------


def full_notice() -> Notice:
    """A notice that sets every field of the model, two items and file places."""
    changed = NoticeItem(
        event=EventKind.CHANGED,
        severity=Severity.INFO,
        message="Renewed.",
        names=("api.example.test",),
        fingerprint="ab" * 32,
        not_after=datetime(2027, 1, 10, 12, 0, 0, 123456, tzinfo=UTC),
        days_left=-2,
        places=(Place.file("/etc/ssl/api.pem"),),
        finding_code=None,
        new_fingerprint="cd" * 32,
        new_not_after=datetime(2027, 4, 10, tzinfo=UTC),
        stale_places=(Place.endpoint("api.example.test:443"),),
    )
    return make_notice(
        key="full-1",
        items=(make_notice().items[0], changed),
        generated_at=datetime(2027, 1, 3, 12, 0, 0, 999999, tzinfo=UTC),
    )


@pytest.mark.parametrize(
    "notice",
    [
        make_notice(),
        full_notice(),
        Notice(key="test-1", team="ops team", event=EventKind.TEST, generated_at=T0),
    ],
    ids=["expiring", "every-field", "test-empty"],
)
def test_notice_json_round_trip(notice: Notice) -> None:
    document = notice_to_json(notice)

    assert notice_from_json(document) == notice
    # The document must survive a real JSON encoding, as in the database.
    assert notice_from_json(json.loads(json.dumps(document))) == notice


def test_notice_json_enums_by_value() -> None:
    document = notice_to_json(full_notice())

    assert document["event"] == "expiring"
    assert document["items"][0]["severity"] == "critical"
    assert document["items"][1]["event"] == "changed"
    assert document["generated_at"] == "2027-01-03T12:00:00.999999+00:00"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: [], r"notice is list; expected a JSON object"),
        (lambda d: {**d, "format": 2}, r"format 2 is unknown"),
        (lambda d: {k: v for k, v in d.items() if k != "key"}, r"notice\.key is"),
        (lambda d: {**d, "event": "exploded"}, r"notice\.event is 'exploded'"),
        (lambda d: {**d, "generated_at": "yesterday"}, r"generated_at is 'yes"),
        (
            lambda d: {**d, "generated_at": "2027-01-03T12:00:00"},
            r"has no UTC offset",
        ),
        (lambda d: {**d, "key": "has space"}, r"Invalid idempotency key"),
        (lambda d: {**d, "items": "none"}, r"notice\.items is 'none'; expected a"),
        (
            lambda d: {**d, "items": [{**d["items"][0], "severity": "huge"}]},
            r"items\[0\]\.severity is 'huge'",
        ),
        (
            lambda d: {**d, "items": [{**d["items"][0], "days_left": "7"}]},
            r"items\[0\]\.days_left is '7'; expected an integer",
        ),
        (
            lambda d: {**d, "items": [{**d["items"][0], "names": ["a", 3]}]},
            r"items\[0\]\.names\[1\] is 3",
        ),
        (
            lambda d: {
                **d,
                "items": [
                    {**d["items"][0], "places": [{"target": None, "path": None}]}
                ],
            },
            r"items\[0\]\.places\[0\]\.address is missing",
        ),
        (
            lambda d: {
                **d,
                "items": [
                    {
                        **d["items"][0],
                        "places": [{"target": None, "address": None, "path": None}],
                    }
                ],
            },
            r"items\[0\]\.places\[0\]: Invalid place",
        ),
    ],
)
def test_notice_from_json_malformed(
    change: Callable[[dict[str, Any]], Any], message: str
) -> None:
    document = notice_to_json(make_notice())

    with pytest.raises(NoticeFormatError, match=message):
        notice_from_json(change(document))


# --- enqueue ----------------------------------------------------------------


def test_enqueue_picks_contacts_by_role(sessions: sessionmaker[Session]) -> None:
    team = make_team(
        sessions,
        "web",
        {
            "ops": ("email:ops@example.test", False),
            "hook": ("webhook:http://127.0.0.1:9/hook", False),
            "boss": ("email:boss@example.test", True),
        },
    )
    other = make_team(sessions, "db", {"dba": ("email:dba@example.test", False)})
    notice = make_notice(key="k-1")

    assert add_notice(sessions, team, notice) == 2
    assert add_notice(sessions, team, notice, escalation=True) == 1

    rows = outbox_rows(sessions)
    assert [row.contact_id for row in rows] == [
        team.contacts["ops"],
        team.contacts["hook"],
        team.contacts["boss"],
    ]
    assert other.contacts["dba"] not in [row.contact_id for row in rows]
    for row in rows:
        assert row.notice_key == "k-1"
        assert row.event == "expiring"
        assert row.attempts == 0
        assert row.next_attempt_at == T0
        assert row.delivered_at is None
        assert row.failed_at is None
        assert notice_from_json(row.notice) == notice


def test_enqueue_again_inserts_nothing(sessions: sessionmaker[Session]) -> None:
    team = make_team(sessions, "web", {"ops": ("email:ops@example.test", False)})
    notice = make_notice(key="k-2")

    first = add_notice(sessions, team, notice)
    second = add_notice(sessions, team, notice, now=T0 + timedelta(hours=1))

    assert first == 1
    assert second == 0
    assert len(outbox_rows(sessions)) == 1


def test_enqueue_skips_unhealthy_contact(sessions: sessionmaker[Session]) -> None:
    team = make_team(
        sessions,
        "web",
        {
            "ops": ("email:ops@example.test", False),
            "gone": ("email:gone@example.test", False),
        },
    )
    with sessions.begin() as session:
        session.execute(
            update(ContactRow)
            .where(ContactRow.id == team.contacts["gone"])
            .values(unhealthy_since=T0)
        )

    assert add_notice(sessions, team, make_notice()) == 1
    assert [row.contact_id for row in outbox_rows(sessions)] == [team.contacts["ops"]]


# --- deliver_due ------------------------------------------------------------


async def test_deliver_email_and_webhook(
    sessions: sessionmaker[Session],
    smtp_server: StartSmtp,
    http_receiver: HttpReceiver,
) -> None:
    server = await smtp_server(SmtpSecurity.PLAIN)
    settings = DeliverySettings(
        smtp=server.settings(SmtpSecurity.PLAIN), webhook=FAST_WEBHOOK
    )
    team = make_team(
        sessions,
        "web",
        {
            "ops": ("email:ops@example.test", False),
            "hook": (f"webhook:{http_receiver.url('/hook/' + SECRET)}", False),
        },
    )
    add_notice(sessions, team, make_notice(key="deliver-1"))
    clock = Clock(T0 + timedelta(seconds=1))

    report = await run_due(sessions, settings, clock)

    assert report.delivered == 2
    assert report.retrying == 0
    assert report.failed == 0
    [mail] = server.handler.received
    assert mail.recipients == ["ops@example.test"]
    assert mail.message["Message-ID"] == message_id(
        "deliver-1", "certwatch@example.test"
    )
    [request] = http_receiver.requests
    assert request.headers["Idempotency-Key"] == "deliver-1"
    for row in outbox_rows(sessions):
        assert row.delivered_at == clock.now
        assert row.attempts == 1
        assert row.failed_at is None

    again = await run_due(sessions, settings, Clock(T0 + timedelta(days=1)))

    assert again.attempts == ()
    assert len(server.handler.received) == 1
    assert len(http_receiver.requests) == 1


async def test_deliver_leaves_future_rows(
    sessions: sessionmaker[Session], http_receiver: HttpReceiver
) -> None:
    team = make_team(
        sessions, "web", {"hook": (f"webhook:{http_receiver.url('/h')}", False)}
    )
    add_notice(sessions, team, make_notice(), now=T0 + timedelta(minutes=1))

    early = await run_due(sessions, DeliverySettings(webhook=FAST_WEBHOOK), Clock())

    assert early.attempts == ()
    assert http_receiver.requests == []


async def test_smtp_down_then_back_retried_once(
    sessions: sessionmaker[Session],
) -> None:
    port = free_port()
    settings = DeliverySettings(smtp=plain_smtp(port))
    team = make_team(sessions, "web", {"ops": ("email:ops@example.test", False)})
    add_notice(sessions, team, make_notice(key="smtp-back"))
    clock = Clock()
    rng = random.Random(7)
    expected = random.Random(7)

    first = await run_due(sessions, settings, clock, rng=rng)
    [attempt] = first.attempts
    assert attempt.state is DeliveryState.RETRYING
    assert "refused the connection" in attempt.reason
    first_delay = next_attempt_delay(1, expected)
    assert attempt.next_attempt_at == T0 + first_delay

    # Not due yet: nothing is sent before the backoff has passed.
    clock.move_to(T0 + first_delay - timedelta(seconds=1))
    assert (await run_due(sessions, settings, clock, rng=rng)).attempts == ()

    clock.move_to(attempt.next_attempt_at)
    second = await run_due(sessions, settings, clock, rng=rng)
    [retry] = second.attempts
    assert retry.state is DeliveryState.RETRYING
    second_delay = next_attempt_delay(2, expected)
    assert retry.next_attempt_at == clock.now + second_delay
    assert second_delay > first_delay

    handler = SmtpHandler()
    server = await start_smtp_on(port, handler)
    try:
        clock.move_to(retry.next_attempt_at)
        third = await run_due(sessions, settings, clock, rng=rng)
    finally:
        server.close()
        await server.wait_closed()

    [done] = third.attempts
    assert done.state is DeliveryState.DELIVERED
    assert done.attempts == 3
    [mail] = handler.received
    assert mail.message["X-Certwatch-Key"] == "smtp-back"
    [row] = outbox_rows(sessions)
    assert row.attempts == 3
    assert row.delivered_at == clock.now
    assert "refused the connection" in (row.last_error or "")
    contact = contact_row(sessions, team.contacts["ops"])
    assert contact.consecutive_failures == 0
    assert contact.last_error is None


async def test_webhook_500_then_200(
    sessions: sessionmaker[Session], http_receiver: HttpReceiver
) -> None:
    http_receiver.script = [Reply(500, b"oops")]
    settings = DeliverySettings(webhook=FAST_WEBHOOK)
    team = make_team(
        sessions, "web", {"hook": (f"webhook:{http_receiver.url('/h')}", False)}
    )
    add_notice(sessions, team, make_notice(key="five-hundred"))
    clock = Clock()

    first = await run_due(sessions, settings, clock)
    [failed] = first.attempts
    assert failed.state is DeliveryState.RETRYING
    assert "HTTP 500" in failed.reason
    contact = contact_row(sessions, team.contacts["hook"])
    assert contact.consecutive_failures == 1
    assert contact.last_error == failed.reason

    clock.move_to(failed.next_attempt_at)
    second = await run_due(sessions, settings, clock)

    assert second.delivered == 1
    keys = [request.headers["Idempotency-Key"] for request in http_receiver.requests]
    assert keys == ["five-hundred", "five-hundred"]
    assert http_receiver.requests[0].body == http_receiver.requests[1].body


async def test_webhook_retry_after_longer_wins(
    sessions: sessionmaker[Session], http_receiver: HttpReceiver
) -> None:
    http_receiver.script = [Reply(503, b"busy", (("Retry-After", "3600"),))]
    team = make_team(
        sessions, "web", {"hook": (f"webhook:{http_receiver.url('/h')}", False)}
    )
    add_notice(sessions, team, make_notice())

    report = await run_due(sessions, DeliverySettings(webhook=FAST_WEBHOOK), Clock())

    [attempt] = report.attempts
    assert attempt.next_attempt_at == T0 + timedelta(hours=1)


async def test_webhook_404_permanent_failure(
    sessions: sessionmaker[Session],
    http_receiver: HttpReceiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    http_receiver.script = [Reply(404, b"no_service")]
    url = http_receiver.url(f"/hooks/{SECRET}?token={SECRET}")
    team = make_team(sessions, "web", {"hook": (f"webhook:{url}", False)})
    add_notice(sessions, team, make_notice(key="gone-1"))
    clock = Clock()

    with caplog.at_level(logging.INFO):
        report = await run_due(sessions, DeliverySettings(webhook=FAST_WEBHOOK), clock)

    [attempt] = report.attempts
    assert attempt.state is DeliveryState.FAILED
    assert attempt.next_attempt_at is None
    [row] = outbox_rows(sessions)
    assert row.failed_at == T0
    assert row.attempts == 1
    assert row.last_error == (
        "the receiver rejected the notice with HTTP 404 (no_service)"
    )
    with sessions() as session:
        [pending] = pending_deliveries(session)
    assert pending.id == row.id
    # One permanent failure is enough to mark the contact unhealthy.
    assert contact_row(sessions, team.contacts["hook"]).unhealthy_since == T0
    assert "alerts for team web reach nobody" in caplog.text
    assert f"Outbox {row.id}: gave up delivering" in caplog.text
    assert SECRET not in caplog.text
    assert report.unhealthy_contacts == (
        f"webhook:http://127.0.0.1:{http_receiver.port}/hooks/…?…",
    )

    later = await run_due(
        sessions, DeliverySettings(webhook=FAST_WEBHOOK), Clock(T0 + timedelta(days=2))
    )
    assert later.attempts == ()
    assert len(http_receiver.requests) == 1


async def test_max_attempts_gives_up(
    sessions: sessionmaker[Session], http_receiver: HttpReceiver
) -> None:
    http_receiver.script = [Reply(500), Reply(500)]
    settings = DeliverySettings(webhook=FAST_WEBHOOK, retry=RetryPolicy(max_attempts=2))
    team = make_team(
        sessions, "web", {"hook": (f"webhook:{http_receiver.url('/h')}", False)}
    )
    add_notice(sessions, team, make_notice())
    clock = Clock()

    first = await run_due(sessions, settings, clock)
    clock.move_to(first.attempts[0].next_attempt_at)
    second = await run_due(sessions, settings, clock)

    [attempt] = second.attempts
    assert attempt.state is DeliveryState.FAILED
    assert attempt.attempts == 2
    [row] = outbox_rows(sessions)
    assert row.failed_at == clock.now


async def test_killed_sender_resent_after_lease(
    sessions: sessionmaker[Session], http_receiver: HttpReceiver
) -> None:
    settings = DeliverySettings(webhook=FAST_WEBHOOK)
    team = make_team(
        sessions, "web", {"hook": (f"webhook:{http_receiver.url('/h')}", False)}
    )
    notice = make_notice(key="crash-1")
    add_notice(sessions, team, notice)

    # A process claims the row and sends it, then dies before recording it.
    with sessions.begin() as session:
        [claim] = claim_due(session, now=T0, limit=10, lease=LEASE)
    contact = parse_contact(f"webhook:{http_receiver.url('/h')}")
    assert (await deliver(contact, notice_from_json(claim.notice), settings)).delivered

    during = await run_due(sessions, settings, Clock(T0 + LEASE - timedelta(seconds=1)))
    assert during.attempts == ()

    after = await run_due(sessions, settings, Clock(T0 + LEASE))

    assert after.delivered == 1
    keys = [request.headers["Idempotency-Key"] for request in http_receiver.requests]
    assert keys == ["crash-1", "crash-1"]
    [row] = outbox_rows(sessions)
    assert row.delivered_at == T0 + LEASE


async def test_late_failure_after_lease_not_recorded(
    sessions: sessionmaker[Session], http_receiver: HttpReceiver
) -> None:
    settings = DeliverySettings(webhook=FAST_WEBHOOK)
    team = make_team(
        sessions, "web", {"hook": (f"webhook:{http_receiver.url('/h')}", False)}
    )
    add_notice(sessions, team, make_notice())
    with sessions.begin() as session:
        [stale] = claim_due(session, now=T0, limit=1, lease=LEASE)
    # The first claim's lease ended, and another process claimed the row.
    with sessions.begin() as session:
        [current] = claim_due(session, now=T0 + LEASE, limit=1, lease=LEASE)

    assert current.outbox_id == stale.outbox_id
    http_receiver.script = [Reply(500)]
    sender = _Sender(sessions, settings, Clock(T0 + LEASE), random.Random(1), LEASE, 5)
    await sender.attempt(stale, final=False)

    [attempt] = sender.report().attempts
    assert not attempt.recorded
    [row] = outbox_rows(sessions)
    assert row.attempts == 0
    assert row.next_attempt_at == current.lease_expires_at


def test_claims_never_share_rows(sessions: sessionmaker[Session]) -> None:
    team = make_team(sessions, "web", {"ops": ("email:ops@example.test", False)})
    for number in range(3):
        add_notice(sessions, team, make_notice(key=f"claim-{number}"))

    with sessions.begin() as session:
        first = claim_due(session, now=T0, limit=2, lease=LEASE)
    with sessions.begin() as session:
        second = claim_due(session, now=T0, limit=10, lease=LEASE)
    with sessions.begin() as session:
        third = claim_due(session, now=T0 + LEASE - timedelta(seconds=1), limit=10)

    assert len(first) == 2
    assert [claim.outbox_id for claim in second] == [outbox_rows(sessions)[2].id]
    assert third == []


def test_postgres_claims_skip_locked_rows(postgres_only_url: str) -> None:
    from certwatch.store.database import create_store_engine

    engine = create_store_engine(postgres_only_url)
    try:
        factory = session_factory(engine)
        team = make_team(factory, "web", {"ops": ("email:ops@example.test", False)})
        for number in range(2):
            add_notice(factory, team, make_notice(key=f"lock-{number}"))

        holder = factory()
        try:
            # The first claim's transaction stays open, so its row stays locked.
            held_claims = claim_due(holder, now=T0, limit=1, lease=LEASE)
            with factory.begin() as session:
                # A claim that waited for the lock would fail here, not hang.
                session.execute(text("SET LOCAL lock_timeout = '2s'"))
                other = claim_due(session, now=T0, limit=10, lease=LEASE)
        finally:
            holder.rollback()
            holder.close()
    finally:
        engine.dispose()

    assert len(held_claims) == 1
    assert len(other) == 1
    assert other[0].outbox_id != held_claims[0].outbox_id


async def test_unreadable_notice_given_up(
    sessions: sessionmaker[Session], http_receiver: HttpReceiver
) -> None:
    team = make_team(
        sessions, "web", {"hook": (f"webhook:{http_receiver.url('/h')}", False)}
    )
    add_notice(sessions, team, make_notice())
    with sessions.begin() as session:
        session.execute(update(OutboxRow).values(notice={"format": 1, "items": []}))

    report = await run_due(sessions, DeliverySettings(webhook=FAST_WEBHOOK), Clock())

    [attempt] = report.attempts
    assert attempt.state is DeliveryState.FAILED
    assert "notice.key is missing" in attempt.reason
    assert http_receiver.requests == []
    assert contact_row(sessions, team.contacts["hook"]).consecutive_failures == 0


# --- contact health ---------------------------------------------------------


async def test_failing_contact_reported_to_others(
    sessions: sessionmaker[Session],
    http_receiver: HttpReceiver,
    smtp_server: StartSmtp,
) -> None:
    broken = HttpReceiver().start()
    try:
        await _check_failing_contact(sessions, http_receiver, broken, smtp_server)
    finally:
        broken.close()


async def _check_failing_contact(
    sessions: sessionmaker[Session],
    working: HttpReceiver,
    broken: HttpReceiver,
    smtp_server: StartSmtp,
) -> None:
    server = await smtp_server(SmtpSecurity.PLAIN)
    settings = DeliverySettings(
        smtp=server.settings(SmtpSecurity.PLAIN), webhook=FAST_WEBHOOK
    )
    broken.script = [Reply(502)] * 5
    broken_url = broken.url(f"/hooks/{SECRET}")
    team = make_team(
        sessions,
        "web",
        {
            "broken": (f"webhook:{broken_url}", False),
            "working": (f"webhook:{working.url('/ok')}", False),
            "boss": ("email:boss@example.test", True),
        },
    )
    add_notice(sessions, team, make_notice(key="first"))
    clock = Clock()

    report = await run_due(sessions, settings, clock)
    for _ in range(4):
        assert report.unhealthy_contacts == ()
        [retry] = [a for a in report.attempts if a.state is DeliveryState.RETRYING]
        clock.move_to(retry.next_attempt_at)
        report = await run_due(sessions, settings, clock)

    redacted = f"webhook:http://127.0.0.1:{broken.port}/hooks/…"
    assert report.unhealthy_contacts == (redacted,)
    broken_row = contact_row(sessions, team.contacts["broken"])
    assert broken_row.unhealthy_since == clock.now
    assert broken_row.consecutive_failures == 5
    assert "HTTP 502" in (broken_row.last_error or "")

    # Workers that are free may already have sent the new notice.
    await run_due(sessions, settings, clock)

    problems = [row for row in outbox_rows(sessions) if row.event == "problem"]
    assert sorted(row.contact_id for row in problems) == [
        team.contacts["working"],
        team.contacts["boss"],
    ]
    assert all(row.delivered_at == clock.now for row in problems)
    problem = working.requests[-1].json()
    assert problem["event"] == "problem"
    [item] = problem["items"]
    assert item["finding_code"] == CONTACT_FAILING
    assert item["severity"] == "critical"
    assert redacted in item["message"]
    assert "no longer receives alerts" in item["message"]
    assert "HTTP 502" in item["message"]
    assert SECRET not in working.requests[-1].body.decode()
    [mail] = server.handler.received
    assert mail.recipients == ["boss@example.test"]
    assert redacted in mail.message["Subject"]
    assert SECRET not in mail.data.decode()

    # New alerts skip the unhealthy contact.
    assert add_notice(sessions, team, make_notice(key="second"), now=clock.now) == 1

    # Its first message is still retried; a delivery makes it healthy again.
    [pending] = [
        row
        for row in outbox_rows(sessions)
        if row.contact_id == team.contacts["broken"]
    ]
    clock.move_to(pending.next_attempt_at)
    recovered = await run_due(sessions, settings, clock)
    assert DeliveryState.DELIVERED in [a.state for a in recovered.attempts]
    healthy = contact_row(sessions, team.contacts["broken"])
    assert healthy.unhealthy_since is None
    assert healthy.consecutive_failures == 0


async def test_failing_contact_told_once(
    sessions: sessionmaker[Session], http_receiver: HttpReceiver
) -> None:
    http_receiver.script = [Reply(404), Reply(404)]
    team = make_team(
        sessions,
        "web",
        {
            "broken": (f"webhook:{http_receiver.url('/gone')}", False),
            "ops": ("email:ops@example.test", False),
        },
    )
    add_notice(sessions, team, make_notice(key="a"))
    add_notice(sessions, team, make_notice(key="b"))
    with sessions.begin() as session:
        # Both rows of the broken contact fail in one call. Only the first
        # failure marks it and notifies the other contact.
        session.execute(
            update(OutboxRow)
            .where(OutboxRow.contact_id == team.contacts["ops"])
            .values(delivered_at=T0)
        )

    report = await run_due(
        sessions, DeliverySettings(webhook=FAST_WEBHOOK), Clock(), limit=2
    )

    assert report.failed == 2
    assert len(report.unhealthy_contacts) == 1
    notices = [
        row
        for row in outbox_rows(sessions)
        if row.event == "problem" and row.contact_id == team.contacts["ops"]
    ]
    assert len(notices) == 1


async def test_recovered_contact_withdraws_unsent_failing_notice(
    sessions: sessionmaker[Session], http_receiver: HttpReceiver
) -> None:
    # 404 marks the webhook unhealthy at once; then it works again.
    http_receiver.script = [Reply(404), Reply(200)]
    team = make_team(
        sessions,
        "web",
        {
            "flaky": (f"webhook:{http_receiver.url('/hook')}", False),
            "ops": ("email:ops@example.test", False),
        },
    )
    add_notice(sessions, team, make_notice(key="a"))
    with sessions.begin() as session:
        session.execute(
            update(OutboxRow)
            .where(OutboxRow.contact_id == team.contacts["ops"])
            .values(delivered_at=T0)
        )
    # Without an SMTP server the notice to ops stays in the outbox.
    settings = DeliverySettings(webhook=FAST_WEBHOOK)
    await run_due(sessions, settings, Clock(), limit=1)
    queued = [row for row in outbox_rows(sessions) if row.event == "problem"]

    report = await asyncio.to_thread(
        deliver_now,
        sessions,
        team_id=team.id,
        notice=Notice(key="test-b", team="web", event=EventKind.TEST, generated_at=T0),
        settings=settings,
        now_fn=Clock(),
        concurrency=1,
    )

    assert [row.contact_id for row in queued] == [team.contacts["ops"]]
    assert queued[0].delivered_at is None
    states = {attempt.contact_id: attempt.state for attempt in report.attempts}
    assert states[team.contacts["flaky"]] is DeliveryState.DELIVERED
    assert contact_row(sessions, team.contacts["flaky"]).unhealthy_since is None
    assert [row for row in outbox_rows(sessions) if row.event == "problem"] == []


# --- deliver_now ------------------------------------------------------------


async def test_deliver_now_reaches_every_contact(
    sessions: sessionmaker[Session], http_receiver: HttpReceiver
) -> None:
    http_receiver.script = [Reply(200), Reply(410, b"gone")]
    team = make_team(
        sessions,
        "web",
        {
            "a": (f"webhook:{http_receiver.url('/a')}", False),
            "b": (f"webhook:{http_receiver.url('/b')}", True),
        },
    )
    with sessions.begin() as session:
        session.execute(
            update(ContactRow)
            .where(ContactRow.id == team.contacts["a"])
            .values(unhealthy_since=T0, consecutive_failures=7)
        )
    notice = Notice(key="test-now", team="web", event=EventKind.TEST, generated_at=T0)

    # One at a time, so the contacts get the scripted replies in id order.
    report = await asyncio.to_thread(
        deliver_now,
        sessions,
        team_id=team.id,
        notice=notice,
        settings=DeliverySettings(webhook=FAST_WEBHOOK),
        now_fn=Clock(),
        concurrency=1,
    )

    states = {attempt.contact_id: attempt.state for attempt in report.attempts}
    assert states == {
        team.contacts["a"]: DeliveryState.DELIVERED,
        team.contacts["b"]: DeliveryState.FAILED,
    }
    assert [request.path for request in http_receiver.requests] == ["/a", "/b"]
    rows = {row.contact_id: row for row in outbox_rows(sessions) if row.event == "test"}
    assert rows[team.contacts["a"]].delivered_at == T0
    assert rows[team.contacts["b"]].failed_at == T0
    assert rows[team.contacts["b"]].last_error == (
        "the receiver rejected the notice with HTTP 410 (gone)"
    )
    # The unhealthy contact that received the test message is healthy again.
    healed = contact_row(sessions, team.contacts["a"])
    assert healed.unhealthy_since is None
    assert healed.consecutive_failures == 0
    assert contact_row(sessions, team.contacts["b"]).unhealthy_since == T0
    # The permanent failure notifies the contact that works.
    [problem] = [row for row in outbox_rows(sessions) if row.event == "problem"]
    assert problem.contact_id == team.contacts["a"]


async def test_deliver_now_failure_not_retried(
    sessions: sessionmaker[Session], http_receiver: HttpReceiver
) -> None:
    http_receiver.script = [Reply(503)]
    team = make_team(
        sessions, "web", {"a": (f"webhook:{http_receiver.url('/a')}", False)}
    )
    notice = Notice(key="test-503", team="web", event=EventKind.TEST, generated_at=T0)
    settings = DeliverySettings(webhook=FAST_WEBHOOK)

    report = await asyncio.to_thread(
        deliver_now,
        sessions,
        team_id=team.id,
        notice=notice,
        settings=settings,
        now_fn=Clock(),
    )
    later = await run_due(sessions, settings, Clock(T0 + timedelta(days=1)))

    assert report.failed == 1
    assert later.attempts == ()
    assert len(http_receiver.requests) == 1
    with sessions() as session:
        count = session.scalar(select(func.count()).select_from(OutboxRow))
    assert count == 1
