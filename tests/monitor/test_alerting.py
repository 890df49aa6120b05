"""Alert evaluation after cycles: thresholds once, incidents, resolution, escalation.

Scans are recorded through the store's write path with a clock moved by
hand, so each test walks a certificate through its reminder thresholds in
a few steps. The messages land in the outbox; one test delivers them to a
real HTTP receiver.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from tests.alerts.conftest import (  # noqa: F401
    HttpReceiver,
    StartSmtp,
    http_receiver,
    smtp_pki,
    smtp_server,
)
from tests.certs import Issued, make_intermediate, make_leaf, make_root
from tests.store.builders import endpoint, failed_result, file_result, network_result

from certwatch.alerts.cycle import alert_after_cycle
from certwatch.alerts.digest import send_digests
from certwatch.alerts.evaluate import AlertSettings, evaluate_alerts
from certwatch.alerts.render import render_subject
from certwatch.alerts.serialize import notice_from_json
from certwatch.alerts.settings import DeliverySettings, SmtpSecurity
from certwatch.probe.model import ErrorReason
from certwatch.result import Result, Status
from certwatch.store.inventory import (
    SourceSettings,
    ensure_team,
    upsert_endpoint,
    upsert_file_source,
)
from certwatch.store.models import (
    AlertRow,
    AlertThresholdRow,
    ContactRow,
    EndpointRow,
    OutboxRow,
    TeamRow,
)
from certwatch.store.observations import CompletedScan, record_observations
from certwatch.store.stale import record_stale_findings
from certwatch.x509.model import Finding, Severity

START = datetime(2027, 1, 1, tzinfo=UTC)
NOT_AFTER = START + timedelta(days=60)
ROOT = make_root()
INTERMEDIATE = make_intermediate(ROOT)
SETTINGS = AlertSettings(unreachable_after=2, escalate_after=timedelta(hours=4))


def one_year_leaf(not_after: datetime = NOT_AFTER, **options: object) -> Issued:
    return make_leaf(
        INTERMEDIATE,
        not_before=not_after - timedelta(days=365),
        not_after=not_after,
        **options,  # type: ignore[arg-type]
    )


def add_contact(session: Session, team: str, address: str, **columns: object) -> None:
    team_id = ensure_team(session, team, now=START)
    kind, _, value = address.partition(":")
    session.add(
        ContactRow(
            team_id=team_id,
            kind=kind,
            address=value,
            escalation=bool(columns.get("escalation", False)),
            created_at=START,
            consecutive_failures=0,
        )
    )
    session.commit()


def add_endpoint(session: Session, name: str, team: str = "default") -> int:
    stored = upsert_endpoint(
        session, endpoint(name), now=START, settings=SourceSettings(team=team)
    )
    session.commit()
    return stored.record.id


def scan(
    session: Session,
    endpoint_id: int,
    name: str,
    served: Sequence[tuple[str, Issued | None]],
    at: datetime,
) -> None:
    """Record one scan: the leaf each address served, `None` for a timeout."""
    target = endpoint(name)
    results = tuple(
        network_result(target, address, [leaf.der, INTERMEDIATE.der])
        if leaf is not None
        else failed_result(target, address, ErrorReason.TIMEOUT, "timed out")
        for address, leaf in served
    )
    completed = CompletedScan(at, results, endpoint_id=endpoint_id)
    record_observations(session, [completed])
    record_stale_findings(session, [completed], now=at)
    if all(leaf is None for _, leaf in served):
        session.execute(
            EndpointRow.__table__.update()  # type: ignore[attr-defined]
            .where(EndpointRow.id == endpoint_id)
            .values(consecutive_failures=EndpointRow.consecutive_failures + 1)
        )
    session.commit()


def evaluate(session: Session, at: datetime) -> list[dict[str, object]]:
    """Evaluate at `at`; return the notices queued by this evaluation."""
    before = {row.id for row in session.scalars(select(OutboxRow))}
    evaluate_alerts(session, now=at, settings=SETTINGS)
    session.commit()
    rows = session.scalars(select(OutboxRow).order_by(OutboxRow.id))
    return [row.notice for row in rows if row.id not in before]


def items(notice: dict[str, object]) -> list[dict[str, object]]:
    found = notice["items"]
    assert isinstance(found, list)
    return found


def before_expiry(days: float) -> datetime:
    return NOT_AFTER - timedelta(days=days)


def test_every_threshold_once_and_missed_cycles(
    sessions: sessionmaker[Session],
) -> None:
    leaf = one_year_leaf()
    with sessions() as session:
        add_contact(session, "default", "email:ops@example.test")
        endpoint_id = add_endpoint(session, "www.example.test")
        addresses = ["192.0.2.1", "192.0.2.2"]

        sent: list[tuple[float, int]] = []
        for days in (31, 29.5, 29, 13.5, 13, 2.5, -0.5, -0.4, -1.5):
            at = before_expiry(days)
            scan(
                session,
                endpoint_id,
                "www.example.test",
                [(a, leaf) for a in addresses],
                at,
            )
            sent.append((days, len(evaluate(session, at))))

    # 31 days: outside the 30-day window. 29.5: the window opens. 13.5: 14
    # days passed. 2.5: the 7- and 3-day reminders were both missed, one
    # message. -0.5: expired. -0.4: same day, nothing. -1.5: the next day.
    assert sent == [
        (31, 0),
        (29.5, 1),
        (29, 0),
        (13.5, 1),
        (13, 0),
        (2.5, 1),
        (-0.5, 1),
        (-0.4, 0),
        (-1.5, 1),
    ]


def test_several_addresses_and_alternation_make_one_incident(
    sessions: sessionmaker[Session],
) -> None:
    old = one_year_leaf()
    new = one_year_leaf(NOT_AFTER + timedelta(days=365))
    with sessions() as session:
        add_contact(session, "default", "email:ops@example.test")
        endpoint_id = add_endpoint(session, "www.example.test")
        at = before_expiry(10)
        addresses = [f"192.0.2.{i}" for i in range(1, 9)]
        scan(
            session, endpoint_id, "www.example.test", [(a, old) for a in addresses], at
        )
        [first] = evaluate(session, at)

        # A roll-out in progress: the certificate at the first address
        # alternates between the old and the new one.
        flips = []
        for step in range(1, 5):
            at += timedelta(hours=1)
            leaf_at_first = new if step % 2 else old
            served = [(addresses[0], leaf_at_first), *((a, old) for a in addresses[1:])]
            scan(session, endpoint_id, "www.example.test", served, at)
            flips.extend(evaluate(session, at))

        alerts = session.scalars(select(AlertRow)).all()

    [item] = items(first)
    assert len(item["places"]) == 8  # type: ignore[arg-type]
    assert item["event"] == "expiring"
    # The stale deployment opens once and resolves once, when every address
    # is back on one certificate. Nothing repeats while it keeps flipping,
    # and the expiry reminder is not sent again.
    assert [items(n)[0]["event"] for n in flips] == ["stale_deployment", "resolved"]
    assert sorted(alert.code for alert in alerts) == [
        "expiring_soon",
        "stale_deployment",
    ]


def test_partial_then_full_renewal_resolves_once(
    sessions: sessionmaker[Session],
) -> None:
    old = one_year_leaf()
    new = one_year_leaf(NOT_AFTER + timedelta(days=365))
    with sessions() as session:
        add_contact(session, "default", "email:ops@example.test")
        endpoint_id = add_endpoint(session, "www.example.test")
        addresses = ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
        at = before_expiry(20)
        scan(
            session, endpoint_id, "www.example.test", [(a, old) for a in addresses], at
        )
        evaluate(session, at)

        at = before_expiry(13)
        partial = [(addresses[0], new), (addresses[1], new), (addresses[2], old)]
        scan(session, endpoint_id, "www.example.test", partial, at)
        [reminder] = evaluate(session, at)

        at = before_expiry(12)
        scan(
            session, endpoint_id, "www.example.test", [(a, new) for a in addresses], at
        )
        [resolution] = evaluate(session, at)
        at = before_expiry(11)
        scan(
            session, endpoint_id, "www.example.test", [(a, new) for a in addresses], at
        )
        again = evaluate(session, at)

    expiring = next(i for i in items(reminder) if i["event"] == "expiring")
    assert [p["address"] for p in expiring["places"]] == ["192.0.2.3"]  # type: ignore[index, union-attr]
    assert [p["address"] for p in expiring["stale_places"]] == ["192.0.2.3"]  # type: ignore[index, union-attr]
    resolved = [i for i in items(resolution) if i["event"] == "resolved"]
    assert {i["finding_code"] for i in resolved} == {
        "expiring_soon",
        "stale_deployment",
    }
    expiry = next(i for i in resolved if i["finding_code"] == "expiring_soon")
    assert expiry["not_after"] == NOT_AFTER.isoformat()
    assert expiry["new_fingerprint"] == new.sha256
    assert again == []


def test_outage_does_not_resolve_expiry(sessions: sessionmaker[Session]) -> None:
    leaf = one_year_leaf()
    with sessions() as session:
        add_contact(session, "default", "email:ops@example.test")
        endpoint_id = add_endpoint(session, "www.example.test")
        at = before_expiry(5)
        scan(session, endpoint_id, "www.example.test", [("192.0.2.1", leaf)], at)
        evaluate(session, at)
        for hours in (1, 2):
            scan(
                session,
                endpoint_id,
                "www.example.test",
                [("192.0.2.1", None)],
                at + timedelta(hours=hours),
            )
        notices = evaluate(session, at + timedelta(hours=2))
        open_codes = sorted(
            row.code
            for row in session.scalars(
                select(AlertRow).where(AlertRow.resolved_at.is_(None))
            )
        )

    # Two failed scans in a row: the endpoint alerts as unreachable, and
    # the expiry alert stays open, without a resolved message.
    assert [items(n)[0]["finding_code"] for n in notices] == ["unreachable"]
    assert open_codes == ["expiring_soon", "unreachable"]


def test_acknowledge_until_next_threshold_and_escalation(
    sessions: sessionmaker[Session],
) -> None:
    leaf = one_year_leaf()
    with sessions() as session:
        add_contact(session, "default", "email:ops@example.test")
        add_contact(session, "default", "email:boss@example.test", escalation=True)
        endpoint_id = add_endpoint(session, "www.example.test")
        at = before_expiry(6)
        scan(session, endpoint_id, "www.example.test", [("192.0.2.1", leaf)], at)
        evaluate(session, at)
        alert = session.scalars(select(AlertRow)).one()
        alert.acknowledged_threshold = "days:7"
        alert.acknowledged_by = "ops@example.test"
        session.commit()

        # Acknowledged: no reminder, and no escalation after the 4 hours.
        later = at + timedelta(hours=5)
        scan(session, endpoint_id, "www.example.test", [("192.0.2.1", leaf)], later)
        quiet = evaluate(session, later)
        # The next threshold ends the acknowledgement.
        at = before_expiry(2.9)
        scan(session, endpoint_id, "www.example.test", [("192.0.2.1", leaf)], at)
        reminded = evaluate(session, at)

    with sessions() as session:
        team = session.scalars(select(TeamRow)).one()
        other = upsert_endpoint(
            session, endpoint("api.example.test"), now=START
        ).record.id
        session.commit()
        expired = one_year_leaf(START, dns_names=["api.example.test"])
        at = START + timedelta(days=1)
        scan(session, other, "api.example.test", [("192.0.2.9", expired)], at)
        opened = evaluate(session, at)
        escalated = evaluate(session, at + timedelta(hours=5))
        contacts = {row.id: row.address for row in session.scalars(select(ContactRow))}
        outbox = session.scalars(select(OutboxRow).order_by(OutboxRow.id)).all()

    assert team.name == "default"
    assert quiet == []
    assert len(reminded) == 1
    assert items(opened[0])[0]["event"] == "expired"
    # The escalation goes to the escalation contact only; the critical
    # alert of the first certificate was acknowledged, so only the expired
    # one escalates.
    assert len(escalated) == 1
    escalation_rows = [
        row for row in outbox if row.notice_key.startswith("certwatch-escalation")
    ]
    assert [contacts[row.contact_id] for row in escalation_rows] == [
        "boss@example.test"
    ]
    assert [i["finding_code"] for i in items(escalated[0])] == ["expired"]


def test_messages_reach_a_real_webhook(
    sessions: sessionmaker[Session],
    http_receiver: HttpReceiver,  # noqa: F811
) -> None:
    leaf = one_year_leaf()
    with sessions() as session:
        add_contact(session, "default", f"webhook:{http_receiver.url('/hook')}")
        endpoint_id = add_endpoint(session, "www.example.test")
        at = before_expiry(10)
        scan(session, endpoint_id, "www.example.test", [("192.0.2.1", leaf)], at)

    report = alert_after_cycle(
        sessions, now_fn=lambda: at, settings=SETTINGS, delivery=DeliverySettings()
    )
    again = alert_after_cycle(
        sessions, now_fn=lambda: at, settings=SETTINGS, delivery=DeliverySettings()
    )

    assert report.evaluation.reminded == 1
    assert report.delivery.delivered == 1
    assert again.delivery.delivered == 0
    [request] = http_receiver.requests
    body = json.loads(request.body)
    assert body["event"] == "expiring"
    assert body["items"][0]["fingerprint"] == leaf.sha256
    assert request.headers["Idempotency-Key"] == body["key"]


def test_digest_rescans_and_drops_renewed(sessions: sessionmaker[Session]) -> None:
    soon = one_year_leaf(dns_names=["www.example.test"])
    renewed_since = one_year_leaf(dns_names=["api.example.test"])
    replacement = one_year_leaf(
        NOT_AFTER + timedelta(days=365), dns_names=["api.example.test"]
    )
    at = before_expiry(40)
    with sessions() as session:
        add_contact(session, "default", "email:ops@example.test")
        www = add_endpoint(session, "www.example.test")
        api = add_endpoint(session, "api.example.test")
        scan(session, www, "www.example.test", [("192.0.2.1", soon)], at)
        scan(session, api, "api.example.test", [("192.0.2.2", renewed_since)], at)

    rescanned: list[tuple[list[int], list[int]]] = []

    def rescan(endpoint_ids: Sequence[int], file_ids: Sequence[int]) -> None:
        # The renewal reached the api server after its last scan.
        rescanned.append((list(endpoint_ids), list(file_ids)))
        with sessions() as session:
            scan(session, api, "api.example.test", [("192.0.2.2", replacement)], at)

    later = at + timedelta(hours=1)
    queued = send_digests(
        sessions, now_fn=lambda: later, interval=timedelta(days=7), rescan=rescan
    )
    again = send_digests(
        sessions, now_fn=lambda: later, interval=timedelta(days=7), rescan=rescan
    )
    with sessions() as session:
        [row] = session.scalars(select(OutboxRow)).all()

    assert queued == 1
    assert again == 0
    assert rescanned == [([www, api], [])]
    fingerprints = [item["fingerprint"] for item in items(row.notice)]
    assert fingerprints == [soon.sha256]


def test_endpoint_schedule_overrides_team(sessions: sessionmaker[Session]) -> None:
    leaf = one_year_leaf()
    with sessions() as session:
        add_contact(session, "default", "email:ops@example.test")
        endpoint_id = add_endpoint(session, "www.example.test")
        session.execute(
            EndpointRow.__table__.update()  # type: ignore[attr-defined]
            .where(EndpointRow.id == endpoint_id)
            .values(reminder_schedule="10")
        )
        session.commit()
        counts = []
        for days in (29, 13, 9.5, 2):
            at = before_expiry(days)
            scan(session, endpoint_id, "www.example.test", [("192.0.2.1", leaf)], at)
            counts.append(len(evaluate(session, at)))

    # Only the window and the 10-day point: no 14, 7, 3 or 1-day reminders.
    assert counts == [1, 0, 1, 0]


def test_moving_to_another_team_sends_no_resolved(
    sessions: sessionmaker[Session],
) -> None:
    leaf = one_year_leaf()
    with sessions() as session:
        add_contact(session, "default", "email:ops@example.test")
        add_contact(session, "web", "email:web@example.test")
        endpoint_id = add_endpoint(session, "www.example.test")
        at = before_expiry(10)
        scan(session, endpoint_id, "www.example.test", [("192.0.2.1", leaf)], at)
        evaluate(session, at)
        web = session.scalars(select(TeamRow).where(TeamRow.name == "web")).one()
        session.execute(
            EndpointRow.__table__.update()  # type: ignore[attr-defined]
            .where(EndpointRow.id == endpoint_id)
            .values(team_id=web.id)
        )
        session.commit()
        later = at + timedelta(hours=1)
        notices = evaluate(session, later)

    # The new team hears of the expiry; the old one gets no false "resolved".
    assert [(n["team"], items(n)[0]["event"]) for n in notices] == [("web", "expiring")]


def test_delivery_without_evaluation(
    sessions: sessionmaker[Session],
    http_receiver: HttpReceiver,  # noqa: F811
) -> None:
    leaf = one_year_leaf()
    with sessions() as session:
        add_contact(session, "default", f"webhook:{http_receiver.url('/hook')}")
        endpoint_id = add_endpoint(session, "www.example.test")
        at = before_expiry(10)
        scan(session, endpoint_id, "www.example.test", [("192.0.2.1", leaf)], at)

    skipped = alert_after_cycle(
        sessions,
        now_fn=lambda: at,
        settings=SETTINGS,
        delivery=DeliverySettings(),
        evaluate=False,
    )
    evaluated = alert_after_cycle(
        sessions, now_fn=lambda: at, settings=SETTINGS, delivery=DeliverySettings()
    )

    assert skipped.evaluation.reminded == 0
    assert skipped.delivery.delivered == 0
    assert evaluated.evaluation.reminded == 1
    assert evaluated.delivery.delivered == 1


def set_schedule(session: Session, endpoint_id: int, schedule: str) -> None:
    session.execute(
        EndpointRow.__table__.update()  # type: ignore[attr-defined]
        .where(EndpointRow.id == endpoint_id)
        .values(reminder_schedule=schedule)
    )
    session.commit()


def escalations(notices: list[dict[str, object]]) -> list[dict[str, object]]:
    return [n for n in notices if str(n["key"]).startswith("certwatch-escalation")]


async def test_team_without_contacts_sent_after_contact_add(
    sessions: sessionmaker[Session],
    smtp_server: StartSmtp,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = await smtp_server(SmtpSecurity.PLAIN)
    delivery = DeliverySettings(smtp=server.settings(SmtpSecurity.PLAIN))
    leaf = one_year_leaf()
    at = before_expiry(10)
    with sessions() as session:
        endpoint_id = add_endpoint(session, "www.example.test")
        scan(session, endpoint_id, "www.example.test", [("192.0.2.1", leaf)], at)

    with caplog.at_level(logging.ERROR, logger="certwatch.alerts"):
        lost = await asyncio.to_thread(
            alert_after_cycle,
            sessions,
            now_fn=lambda: at,
            settings=SETTINGS,
            delivery=delivery,
        )
    with sessions() as session:
        outbox_rows = session.scalars(select(OutboxRow)).all()
        recorded = session.scalars(select(AlertThresholdRow)).all()
        add_contact(session, "default", "email:ops@example.test")
    later = at + timedelta(hours=1)
    sent = await asyncio.to_thread(
        alert_after_cycle,
        sessions,
        now_fn=lambda: later,
        settings=SETTINGS,
        delivery=delivery,
    )

    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "Team default has no contact" in errors[0]
    assert "certwatch contact add default email:" in errors[0]
    assert lost.evaluation.reminded == 0
    assert outbox_rows == []
    assert recorded == []
    assert sent.evaluation.reminded == 1
    assert sent.delivery.delivered == 1
    [received] = server.handler.received
    assert received.recipients == ["ops@example.test"]


def test_escalation_counts_from_critical(sessions: sessionmaker[Session]) -> None:
    leaf = one_year_leaf()
    with sessions() as session:
        add_contact(session, "default", "email:ops@example.test")
        add_contact(session, "default", "email:boss@example.test", escalation=True)
        endpoint_id = add_endpoint(session, "www.example.test")
        found = []
        # Warning at 10 days, critical from 7 days; the escalation delay is 4h.
        for at in (
            before_expiry(10),
            before_expiry(6.5),
            before_expiry(6.5) + timedelta(hours=3),
            before_expiry(6.5) + timedelta(hours=5),
        ):
            scan(session, endpoint_id, "www.example.test", [("192.0.2.1", leaf)], at)
            found.append(len(escalations(evaluate(session, at))))

    assert found == [0, 0, 0, 1]


def test_expired_acknowledgement_allows_escalation(
    sessions: sessionmaker[Session],
) -> None:
    leaf = one_year_leaf()
    with sessions() as session:
        add_contact(session, "default", "email:ops@example.test")
        add_contact(session, "default", "email:boss@example.test", escalation=True)
        endpoint_id = add_endpoint(session, "www.example.test")
        at = before_expiry(5)
        scan(session, endpoint_id, "www.example.test", [("192.0.2.1", leaf)], at)
        evaluate(session, at)
        alert = session.scalars(select(AlertRow)).one()
        alert.acknowledged_until = at + timedelta(hours=1)
        alert.acknowledged_by = "ops@example.test"
        session.commit()

        found = []
        # The acknowledgement ends 1 hour in; the 4-hour delay counts from then.
        for hours in (0.5, 4.5, 5.5, 6.5):
            later = at + timedelta(hours=hours)
            scan(session, endpoint_id, "www.example.test", [("192.0.2.1", leaf)], later)
            found.append(len(escalations(evaluate(session, later))))

    assert found == [0, 0, 1, 0]


def test_new_reminder_ends_acknowledgement(sessions: sessionmaker[Session]) -> None:
    leaf = one_year_leaf()
    with sessions() as session:
        add_contact(session, "default", "email:ops@example.test")
        add_contact(session, "default", "email:boss@example.test", escalation=True)
        endpoint_id = add_endpoint(session, "www.example.test")
        at = before_expiry(6)
        scan(session, endpoint_id, "www.example.test", [("192.0.2.1", leaf)], at)
        evaluate(session, at)
        alert = session.scalars(select(AlertRow)).one()
        alert.acknowledged_threshold = "days:7"
        alert.acknowledged_by = "ops@example.test"
        session.commit()

        found = []
        for at in (
            before_expiry(5),
            before_expiry(2.9),
            before_expiry(2.9) + timedelta(hours=5),
        ):
            scan(session, endpoint_id, "www.example.test", [("192.0.2.1", leaf)], at)
            notices = evaluate(session, at)
            found.append(
                (len(notices) - len(escalations(notices)), len(escalations(notices)))
            )

    # Held back while days:7 is the newest threshold. The 3-day reminder
    # ends the acknowledgement, and 4 hours later the alert escalates.
    assert found == [(0, 0), (1, 0), (0, 1)]


@pytest.mark.parametrize("outage", [False, True], ids=["served", "outage"])
def test_escalation_item_describes_certificate(
    sessions: sessionmaker[Session], outage: bool
) -> None:
    leaf = one_year_leaf(dns_names=["www.example.test"])
    with sessions() as session:
        add_contact(session, "default", "email:ops@example.test")
        add_contact(session, "default", "email:boss@example.test", escalation=True)
        endpoint_id = add_endpoint(session, "www.example.test")
        at = before_expiry(5)
        scan(session, endpoint_id, "www.example.test", [("192.0.2.1", leaf)], at)
        evaluate(session, at)
        # During an outage, one failed scan keeps the expiry alert open
        # without an incident, so its facts come from the store.
        later = at + timedelta(hours=5)
        served = None if outage else leaf
        scan(session, endpoint_id, "www.example.test", [("192.0.2.1", served)], later)
        [escalation] = escalations(evaluate(session, later))

    [item] = items(escalation)
    assert item["finding_code"] == "expiring_soon"
    assert item["names"] == ["www.example.test"]
    assert item["not_after"] == NOT_AFTER.isoformat()
    assert item["days_left"] == 4
    subject = render_subject(notice_from_json(escalation))
    assert "no readable expiry date" not in subject
    assert "www.example.test" in subject


def test_flapping_certificate_resolved_after_renewal(
    sessions: sessionmaker[Session],
) -> None:
    old = one_year_leaf()
    new = one_year_leaf(NOT_AFTER + timedelta(days=365))
    with sessions() as session:
        add_contact(session, "default", "email:ops@example.test")
        endpoint_id = add_endpoint(session, "www.example.test")
        heard = []
        for days, leaf in ((10, old), (9.9, new), (9.8, old), (6.5, old), (6.4, new)):
            at = before_expiry(days)
            scan(session, endpoint_id, "www.example.test", [("192.0.2.1", leaf)], at)
            heard.append((days, [items(n)[0]["event"] for n in evaluate(session, at)]))

    assert heard == [
        (10, ["expiring"]),
        (9.9, ["resolved"]),
        (9.8, []),
        (6.5, ["expiring"]),
        (6.4, ["resolved"]),
    ]


def test_resolved_file_has_new_expiry(sessions: sessionmaker[Session]) -> None:
    old = one_year_leaf()
    new = one_year_leaf(NOT_AFTER + timedelta(days=365))
    path = "/etc/ssl/site.pem"
    with sessions() as session:
        add_contact(session, "default", "email:ops@example.test")
        source_id = upsert_file_source(session, path, now=START).record.id
        session.commit()
        notices = []
        for days, leaf in ((10, old), (9, new)):
            at = before_expiry(days)
            completed = CompletedScan(
                at, (file_result(path, 0, leaf.der),), file_source_id=source_id
            )
            record_observations(session, [completed])
            session.commit()
            notices.extend(evaluate(session, at))

    resolved = items(notices[-1])[0]
    assert resolved["event"] == "resolved"
    assert resolved["new_fingerprint"] == new.sha256
    assert resolved["new_not_after"] == (NOT_AFTER + timedelta(days=365)).isoformat()


def test_snooze_end_sends_one_catch_up(sessions: sessionmaker[Session]) -> None:
    leaf = one_year_leaf()
    with sessions() as session:
        add_contact(session, "default", "email:ops@example.test")
        endpoint_id = add_endpoint(session, "www.example.test")
        at = before_expiry(20)
        scan(session, endpoint_id, "www.example.test", [("192.0.2.1", leaf)], at)
        evaluate(session, at)
        alert = session.scalars(select(AlertRow)).one()
        alert.acknowledged_until = before_expiry(2.5)
        alert.acknowledged_by = "ops@example.test"
        session.commit()

        sent = []
        for days in (13.5, 6.5, 2.9, 2.4, 2.3):
            at = before_expiry(days)
            scan(session, endpoint_id, "www.example.test", [("192.0.2.1", leaf)], at)
            notices = [n for n in evaluate(session, at) if not escalations([n])]
            sent.append((days, len(notices)))
        recorded = set(session.scalars(select(AlertThresholdRow.threshold)))

    # The 14-, 7- and 3-day reminders fell in the snooze: one reminder when
    # it ends, and nothing more.
    assert sent == [(13.5, 0), (6.5, 0), (2.9, 0), (2.4, 1), (2.3, 0)]
    assert recorded == {"window", "days:14", "days:7", "days:3"}


def test_places_with_different_schedules_unite(
    sessions: sessionmaker[Session],
) -> None:
    leaf = one_year_leaf()
    with sessions() as session:
        add_contact(session, "default", "email:ops@example.test")
        www = add_endpoint(session, "www.example.test")
        alt = add_endpoint(session, "alt.example.test")
        set_schedule(session, www, "10")
        set_schedule(session, alt, "20,15")
        counts = []
        for days in (25, 19.5, 14.5, 9.5, 8):
            at = before_expiry(days)
            scan(session, www, "www.example.test", [("192.0.2.1", leaf)], at)
            scan(session, alt, "alt.example.test", [("192.0.2.2", leaf)], at)
            counts.append((days, len(evaluate(session, at))))

    # The window, then 20 and 15 days from one schedule, 10 from the other.
    assert counts == [(25, 1), (19.5, 1), (14.5, 1), (9.5, 1), (8, 0)]


def test_unreachable_without_error_quotes_finding(
    sessions: sessionmaker[Session],
) -> None:
    target = endpoint("mail.example.test")
    answered = Result(
        target=target.target,
        status=Status.UNKNOWN,
        host=target.host,
        port=target.port,
        server_name=target.server_name,
        address="192.0.2.25",
        protocol=target.protocol,
        findings=(
            Finding("no_certificate", Severity.CRITICAL, "The server replied: 554."),
        ),
    )
    with sessions() as session:
        add_contact(session, "default", "email:ops@example.test")
        endpoint_id = add_endpoint(session, "mail.example.test")
        for hours in (0, 1):
            at = START + timedelta(hours=hours)
            completed = CompletedScan(at, (answered,), endpoint_id=endpoint_id)
            record_observations(session, [completed])
            session.execute(
                EndpointRow.__table__.update()  # type: ignore[attr-defined]
                .where(EndpointRow.id == endpoint_id)
                .values(consecutive_failures=EndpointRow.consecutive_failures + 1)
            )
            session.commit()
        evaluate(session, START + timedelta(hours=1))
        alert = session.scalars(select(AlertRow)).one()

    assert alert.code == "unreachable"
    assert "The server replied: 554." in alert.message
    assert "no certificate was obtained" not in alert.message
