"""Signed acknowledge links in alert emails, on SQLite and PostgreSQL.

An alert is decided from recorded scans, its email is delivered through
the outbox to a real aiosmtpd server, and the link is taken out of the
received message and followed through the served application.
"""

# The fixtures `mailbox` and `start_site` are imported, and test arguments
# of the same names shadow them, as pytest expects.
# ruff: noqa: F811

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage

import httpx
from click.testing import CliRunner
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker
from tests.monitor.helpers import Clock
from tests.monitor.test_alerting import (
    SETTINGS,
    add_contact,
    add_endpoint,
    before_expiry,
    one_year_leaf,
    scan,
)
from tests.web.test_email_flows import (  # noqa: F401
    Site,
    StartSite,
    ThreadedSmtp,
    mailbox,
    start_site,
)

from certwatch.alerts.ack_links import ACK_KEY_NAME, AckLinkSigner, link_expiry
from certwatch.alerts.channels.email import build_email
from certwatch.alerts.evaluate import evaluate_alerts
from certwatch.alerts.message import EventKind, Notice, NoticeItem
from certwatch.alerts.outbox import deliver_due
from certwatch.alerts.render import ACK_LINK_LABEL, render_text
from certwatch.alerts.settings import DeliverySettings, SmtpSecurity, SmtpSettings
from certwatch.cli import cli
from certwatch.store.alerts import newest_threshold
from certwatch.store.models import AlertRow, ContactRow, SiteSecretRow
from certwatch.store.secrets import site_secret
from certwatch.x509.model import Severity

OPS = "ops@example.test"
DEV = "dev@example.test"
_ACK = re.compile(rf"{ACK_LINK_LABEL}: (\S+)")


@dataclass
class AlertMail:
    """The alert ids decided, the clock at the decision, and the emails to OPS."""

    alert_ids: list[int]
    messages: list[EmailMessage]


def decide_and_send(
    sessions: sessionmaker[Session],
    mailbox: ThreadedSmtp,
    clock: Clock,
    public_url: str | None,
    names: tuple[str, ...] = ("www.example.test",),
) -> AlertMail:
    """Open one expiry alert per name, 10 days before expiry, and email OPS."""
    at = before_expiry(10)
    with sessions() as session:
        add_contact(session, "default", f"email:{OPS}")
        add_contact(session, "default", f"email:{DEV}")
        for name in names:
            endpoint_id = add_endpoint(session, name)
            leaf = one_year_leaf(dns_names=[name])
            scan(session, endpoint_id, name, [("192.0.2.1", leaf)], at)
        evaluate_alerts(session, now=at, settings=SETTINGS)
        session.commit()
        alert_ids = list(session.scalars(select(AlertRow.id).order_by(AlertRow.id)))
    clock.now = at
    settings = DeliverySettings(smtp=mailbox.settings(), public_url=public_url)
    deliver_due(sessions, settings=settings, now_fn=clock)
    return AlertMail(alert_ids, mailbox.messages(OPS))


def ack_links(message: EmailMessage) -> list[str]:
    """Return the acknowledge links of an alert email, checked in both parts."""
    text_part = message.get_body(("plain",))
    html_part = message.get_body(("html",))
    assert text_part is not None
    assert html_part is not None
    links = _ACK.findall(text_part.get_content())
    for link in links:
        assert f'href="{html.escape(link)}"' in html_part.get_content()
    return [str(link) for link in links]


def open_link(site: Site, link: str) -> httpx.Response:
    return httpx.get(link.replace("http://certwatch.example.test", site.base_url))


def press(site: Site, alert_id: int, until: str, sig: str) -> httpx.Response:
    return httpx.post(
        f"{site.base_url}/alerts/{alert_id}/ack", data={"until": until, "sig": sig}
    )


def query(link: str) -> dict[str, str]:
    return dict(httpx.URL(link).params)


def acknowledgement(
    sessions: sessionmaker[Session], alert_id: int
) -> tuple[object, ...]:
    with sessions() as session:
        row = session.get(AlertRow, alert_id)
        assert row is not None
        return (row.acknowledged_until, row.acknowledged_threshold, row.acknowledged_by)


PUBLIC = "http://certwatch.example.test"


def test_alert_email_carries_ack_link(
    start_site: StartSite,
    mailbox: ThreadedSmtp,
    sessions: sessionmaker[Session],
    clock: Clock,
) -> None:
    site = start_site(None)
    sent = decide_and_send(sessions, mailbox, clock, PUBLIC)
    [alert_id] = sent.alert_ids
    [message] = sent.messages
    [link] = ack_links(message)
    parameters = query(link)

    opened = open_link(site, link)
    after_get = acknowledgement(sessions, alert_id)
    pressed = press(site, alert_id, parameters["until"], parameters["sig"])
    with sessions() as session:
        threshold = newest_threshold(session, alert_id)

    assert link.startswith(f"{PUBLIC}/alerts/{alert_id}/ack?until=")
    assert int(parameters["until"]) == int(link_expiry(clock()).timestamp())
    assert opened.status_code == 200
    assert "Acknowledge until the next reminder" in opened.text
    assert f"acknowledged by {OPS}" in opened.text
    assert after_get == (None, None, None)
    assert pressed.status_code == 200
    assert threshold is not None
    assert f"until a reminder threshold after {threshold}" in pressed.text
    assert acknowledgement(sessions, alert_id) == (None, threshold, OPS)


def test_ack_link_changes_alert_as_cli_does(
    start_site: StartSite,
    mailbox: ThreadedSmtp,
    sessions: sessionmaker[Session],
    clock: Clock,
    database_url: str,
) -> None:
    site = start_site(None)
    sent = decide_and_send(sessions, mailbox, clock, PUBLIC)
    [alert_id] = sent.alert_ids
    parameters = query(ack_links(sent.messages[0])[0])

    press(site, alert_id, parameters["until"], parameters["sig"])
    by_link = acknowledgement(sessions, alert_id)
    with sessions.begin() as session:
        session.execute(
            update(AlertRow).values(
                acknowledged_until=None,
                acknowledged_threshold=None,
                acknowledged_by=None,
            )
        )
    result = CliRunner().invoke(
        cli,
        ["alerts", "ack", str(alert_id), "--by", OPS],
        env={"CERTWATCH_DATABASE_URL": database_url},
    )
    by_cli = acknowledgement(sessions, alert_id)

    assert result.exit_code == 0, result.output
    assert by_link == by_cli
    assert by_link[1] is not None


def test_ack_link_signed_per_contact(
    mailbox: ThreadedSmtp, sessions: sessionmaker[Session], clock: Clock
) -> None:
    sent = decide_and_send(sessions, mailbox, clock, PUBLIC)
    [to_dev] = mailbox.messages(DEV)

    ops_link = ack_links(sent.messages[0])[0]
    dev_link = ack_links(to_dev)[0]

    assert query(ops_link)["until"] == query(dev_link)["until"]
    assert query(ops_link)["sig"] != query(dev_link)["sig"]


def test_ack_link_rejects_tampering(
    start_site: StartSite,
    mailbox: ThreadedSmtp,
    sessions: sessionmaker[Session],
    clock: Clock,
) -> None:
    site = start_site(None)
    sent = decide_and_send(
        sessions, mailbox, clock, PUBLIC, names=("a.example.test", "b.example.test")
    )
    first, second = sent.alert_ids
    links = ack_links(sent.messages[0])
    assert len(links) == 2
    link = next(item for item in links if f"/alerts/{first}/ack" in item)
    until, sig = query(link)["until"], query(link)["sig"]
    tampered = sig[:-2] + ("AA" if not sig.endswith("AA") else "BB")
    later = str(int(until) + 86400)

    cases = {
        "tampered signature": (first, until, tampered),
        "other alert id": (second, until, sig),
        "other expiry": (first, later, sig),
        "missing signature": (first, until, ""),
        "unknown alert": (second + 1000, until, sig),
    }
    for case, (alert_id, case_until, case_sig) in cases.items():
        page = httpx.get(
            f"{site.base_url}/alerts/{alert_id}/ack",
            params={"until": case_until, "sig": case_sig},
        )
        pressed = press(site, alert_id, case_until, case_sig)
        assert page.status_code == 403, case
        assert "acknowledge link is invalid" in page.text, case
        assert pressed.status_code == 403, case
    assert acknowledgement(sessions, first) == (None, None, None)
    assert acknowledgement(sessions, second) == (None, None, None)


def test_ack_link_expires(
    start_site: StartSite,
    mailbox: ThreadedSmtp,
    sessions: sessionmaker[Session],
    clock: Clock,
) -> None:
    site = start_site(None)
    sent = decide_and_send(sessions, mailbox, clock, PUBLIC)
    [alert_id] = sent.alert_ids
    link = ack_links(sent.messages[0])[0]
    parameters = query(link)

    clock.advance(timedelta(days=30) - timedelta(seconds=1))
    in_time = open_link(site, link)
    clock.advance(timedelta(seconds=1))
    late = open_link(site, link)
    pressed = press(site, alert_id, parameters["until"], parameters["sig"])

    assert in_time.status_code == 200
    assert late.status_code == 403
    assert "This acknowledge link expired on" in late.text
    assert pressed.status_code == 403
    assert acknowledgement(sessions, alert_id) == (None, None, None)


def test_ack_link_stops_when_contact_removed(
    start_site: StartSite,
    mailbox: ThreadedSmtp,
    sessions: sessionmaker[Session],
    clock: Clock,
) -> None:
    site = start_site(None)
    sent = decide_and_send(sessions, mailbox, clock, PUBLIC)
    link = ack_links(sent.messages[0])[0]
    with sessions.begin() as session:
        session.execute(delete(ContactRow).where(ContactRow.address == OPS))

    opened = open_link(site, link)

    assert opened.status_code == 403


def test_alert_email_without_public_url_has_no_link(
    mailbox: ThreadedSmtp, sessions: sessionmaker[Session], clock: Clock
) -> None:
    sent = decide_and_send(sessions, mailbox, clock, None)

    [message] = sent.messages

    assert ack_links(message) == []
    with sessions() as session:
        keys = session.scalar(select(func.count()).select_from(SiteSecretRow))
    assert keys == 0


def test_ack_link_same_in_retried_email(
    sessions: sessionmaker[Session], clock: Clock
) -> None:
    with sessions.begin() as session:
        key = site_secret(session, ACK_KEY_NAME, now=clock())
    item = NoticeItem(event=EventKind.EXPIRING, severity=Severity.WARNING, alert_id=7)
    plain = NoticeItem(event=EventKind.EXPIRING, severity=Severity.WARNING)
    notice = Notice("notice-ack", "default", EventKind.EXPIRING, clock(), (item,))
    other = Notice("notice-plain", "default", EventKind.EXPIRING, clock(), (plain,))
    until = link_expiry(notice.generated_at)

    def ack_url(alert_id: int) -> str:
        # The outbox makes a new signer for each delivery run.
        return AckLinkSigner(PUBLIC, key).url(alert_id, OPS, until)

    smtp = SmtpSettings(
        host="127.0.0.1", sender="certwatch@example.test", security=SmtpSecurity.PLAIN
    )
    first = build_email(notice, OPS, smtp, ack_url).as_bytes()
    retried = build_email(notice, OPS, smtp, ack_url).as_bytes()
    signature = query(ack_url(7))["sig"]
    expires = int(until.timestamp())

    assert first == retried
    assert f"{ACK_LINK_LABEL}: {ack_url(7)}" in render_text(notice, ack_url)
    assert ACK_LINK_LABEL not in render_text(other, ack_url)
    assert AckLinkSigner(PUBLIC, key).matches(7, OPS, expires, signature)
    assert not AckLinkSigner(PUBLIC, key).matches(7, DEV, expires, signature)
    assert not AckLinkSigner(PUBLIC, key).matches(8, OPS, expires, signature)
