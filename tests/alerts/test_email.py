"""Email delivery against real aiosmtpd servers on 127.0.0.1."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from email.message import EmailMessage
from email.utils import parsedate_to_datetime

import pytest
from tests.alerts.conftest import (
    BUSY_RECIPIENT,
    GENERATED_AT,
    REFUSED_RECIPIENT,
    SMTP_PASSWORD,
    SMTP_USERNAME,
    SmtpPki,
    StartSmtp,
    make_notice,
)
from tests.servers import LocalServer, Mode, closed_port

from certwatch.alerts import (
    DeliverySettings,
    EventKind,
    NoticeItem,
    SmtpSecurity,
    SmtpSettings,
    deliver,
    parse_contact,
)
from certwatch.alerts.channels.email import message_id
from certwatch.x509.model import Severity

OPS = parse_contact("email:ops@example.test")


def _parts(message: EmailMessage) -> dict[str, str]:
    return {
        part.get_content_type(): str(part.get_content())
        for part in message.iter_parts()
    }


async def test_email_plain_delivers_both_parts(smtp_server: StartSmtp) -> None:
    server = await smtp_server(SmtpSecurity.PLAIN)
    settings = DeliverySettings(smtp=server.settings(SmtpSecurity.PLAIN))

    outcome = await deliver(OPS, make_notice(), settings)

    assert outcome.delivered
    assert not outcome.permanent
    assert len(server.handler.received) == 1
    received = server.handler.received[0]
    assert received.sender == "certwatch@example.test"
    assert received.recipients == ["ops@example.test"]
    assert not received.tls
    message = received.message
    assert message.get_content_type() == "multipart/alternative"
    parts = _parts(message)
    assert set(parts) == {"text/plain", "text/html"}
    assert "www.example.test:443 at 192.0.2.10" in parts["text/plain"]
    assert "/etc/ssl/site.pem" in parts["text/plain"]
    assert "www.example.test:443 at 192.0.2.11" in parts["text/html"]


async def test_email_headers(smtp_server: StartSmtp) -> None:
    server = await smtp_server(SmtpSecurity.PLAIN)
    settings = DeliverySettings(smtp=server.settings(SmtpSecurity.PLAIN))

    await deliver(OPS, make_notice(key="notice-42"), settings)

    message = server.handler.received[0].message
    assert message["Subject"] == (
        "www.example.test (+1 name) expires in 7 days (2027-01-10) at 3 places"
    )
    assert message["From"] == "certwatch <certwatch@example.test>"
    assert message["To"] == "ops@example.test"
    assert parsedate_to_datetime(message["Date"]) == GENERATED_AT
    assert message["X-Certwatch-Key"] == "notice-42"
    assert message["X-Certwatch-Event"] == "expiring"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Message-ID"] == message_id("notice-42", "certwatch@example.test")
    assert message["Message-ID"].endswith("@example.test>")


async def test_email_message_id_stable_per_key(smtp_server: StartSmtp) -> None:
    server = await smtp_server(SmtpSecurity.PLAIN)
    settings = DeliverySettings(smtp=server.settings(SmtpSecurity.PLAIN))

    await deliver(OPS, make_notice(key="same-key"), settings)
    await deliver(OPS, make_notice(key="same-key"), settings)
    await deliver(OPS, make_notice(key="other-key"), settings)

    ids = [received.message["Message-ID"] for received in server.handler.received]
    assert ids[0] == ids[1]
    assert ids[2] != ids[0]
    # The whole retried message is the same, so any duplicate check works.
    assert server.handler.received[0].data == server.handler.received[1].data


async def test_email_starttls_delivers(
    smtp_server: StartSmtp, smtp_pki: SmtpPki
) -> None:
    server = await smtp_server(SmtpSecurity.STARTTLS)
    smtp = server.settings(SmtpSecurity.STARTTLS, ca_file=smtp_pki.ca_file)

    outcome = await deliver(OPS, make_notice(), DeliverySettings(smtp=smtp))

    assert outcome.delivered, outcome.reason
    assert server.handler.received[0].tls


async def test_email_starttls_untrusted_certificate(smtp_server: StartSmtp) -> None:
    server = await smtp_server(SmtpSecurity.STARTTLS)
    smtp = server.settings(SmtpSecurity.STARTTLS)

    outcome = await deliver(OPS, make_notice(), DeliverySettings(smtp=smtp))

    assert not outcome.delivered
    assert not outcome.permanent
    assert "failed verification" in outcome.reason
    assert "CERTWATCH_SMTP_CA_FILE" in outcome.reason
    assert server.handler.received == []


async def test_email_starttls_not_offered(smtp_server: StartSmtp) -> None:
    server = await smtp_server(SmtpSecurity.PLAIN)
    smtp = server.settings(SmtpSecurity.STARTTLS)

    outcome = await deliver(OPS, make_notice(), DeliverySettings(smtp=smtp))

    assert not outcome.delivered
    assert not outcome.permanent
    assert "does not offer STARTTLS" in outcome.reason
    assert "CERTWATCH_SMTP_SECURITY=tls" in outcome.reason
    assert "CERTWATCH_SMTP_SECURITY=plain for a relay on loopback" in outcome.reason
    assert server.handler.received == []


async def test_email_implicit_tls_delivers(
    smtp_server: StartSmtp, smtp_pki: SmtpPki
) -> None:
    server = await smtp_server(SmtpSecurity.TLS)
    smtp = server.settings(SmtpSecurity.TLS, ca_file=smtp_pki.ca_file)

    outcome = await deliver(OPS, make_notice(), DeliverySettings(smtp=smtp))

    assert outcome.delivered, outcome.reason
    assert server.handler.received[0].tls


async def test_email_auth_over_starttls(
    smtp_server: StartSmtp, smtp_pki: SmtpPki
) -> None:
    server = await smtp_server(SmtpSecurity.STARTTLS, auth=True)
    smtp = server.settings(
        SmtpSecurity.STARTTLS,
        ca_file=smtp_pki.ca_file,
        username=SMTP_USERNAME,
        password=SMTP_PASSWORD,
    )

    outcome = await deliver(OPS, make_notice(), DeliverySettings(smtp=smtp))

    assert outcome.delivered, outcome.reason
    assert server.handler.received[0].login == SMTP_USERNAME


async def test_email_auth_plain_on_loopback(smtp_server: StartSmtp) -> None:
    server = await smtp_server(SmtpSecurity.PLAIN, auth=True)
    smtp = server.settings(
        SmtpSecurity.PLAIN, username=SMTP_USERNAME, password=SMTP_PASSWORD
    )

    outcome = await deliver(OPS, make_notice(), DeliverySettings(smtp=smtp))

    assert outcome.delivered, outcome.reason
    assert server.handler.received[0].login == SMTP_USERNAME


async def test_email_auth_required_without_login(
    smtp_server: StartSmtp, smtp_pki: SmtpPki
) -> None:
    server = await smtp_server(SmtpSecurity.STARTTLS, auth=True)
    smtp = server.settings(SmtpSecurity.STARTTLS, ca_file=smtp_pki.ca_file)

    outcome = await deliver(OPS, make_notice(), DeliverySettings(smtp=smtp))

    assert not outcome.delivered
    assert not outcome.permanent
    assert server.handler.received == []


async def test_email_wrong_password_kept_secret(
    smtp_server: StartSmtp, smtp_pki: SmtpPki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server = await smtp_server(SmtpSecurity.STARTTLS, auth=True)
    wrong_password = "wrong-pass-9f2c"
    smtp = server.settings(
        SmtpSecurity.STARTTLS,
        ca_file=smtp_pki.ca_file,
        username=SMTP_USERNAME,
        password=wrong_password,
    )

    outcome = await deliver(OPS, make_notice(), DeliverySettings(smtp=smtp))

    assert not outcome.delivered
    assert not outcome.permanent
    assert "rejected the login of 'certwatch'" in outcome.reason
    assert wrong_password not in outcome.reason
    assert "Delivery of expiring notice notice-0001 to email:ops@example.test" in (
        caplog.text
    )
    assert wrong_password not in caplog.text
    assert wrong_password not in repr(smtp)


async def test_email_server_down() -> None:
    with closed_port() as port:
        smtp = SmtpSettings(
            host="127.0.0.1",
            sender="certwatch@example.test",
            port=port,
            security=SmtpSecurity.PLAIN,
            timeout=2.0,
        )
        outcome = await deliver(OPS, make_notice(), DeliverySettings(smtp=smtp))

    assert not outcome.delivered
    assert not outcome.permanent
    assert "refused the connection" in outcome.reason


async def test_email_server_hangs(local_server: Callable[..., LocalServer]) -> None:
    server = local_server(mode=Mode.STALL)
    smtp = SmtpSettings(
        host="127.0.0.1",
        sender="certwatch@example.test",
        port=server.port,
        security=SmtpSecurity.PLAIN,
        timeout=0.3,
    )

    outcome = await deliver(OPS, make_notice(), DeliverySettings(smtp=smtp))

    assert not outcome.delivered
    assert not outcome.permanent
    assert outcome.reason == (
        f"the SMTP server 127.0.0.1:{server.port} timed out after 0.3 s"
    )


async def test_email_recipient_refused_permanent(smtp_server: StartSmtp) -> None:
    server = await smtp_server(SmtpSecurity.PLAIN)
    settings = DeliverySettings(smtp=server.settings(SmtpSecurity.PLAIN))
    contact = parse_contact(f"email:{REFUSED_RECIPIENT}")

    outcome = await deliver(contact, make_notice(), settings)

    assert not outcome.delivered
    assert outcome.permanent
    assert "550" in outcome.reason
    assert REFUSED_RECIPIENT in outcome.reason
    assert server.handler.received == []


async def test_email_recipient_busy_transient(smtp_server: StartSmtp) -> None:
    server = await smtp_server(SmtpSecurity.PLAIN)
    settings = DeliverySettings(smtp=server.settings(SmtpSecurity.PLAIN))
    contact = parse_contact(f"email:{BUSY_RECIPIENT}")

    outcome = await deliver(contact, make_notice(), settings)

    assert not outcome.delivered
    assert not outcome.permanent
    assert "450" in outcome.reason


async def test_email_without_smtp_settings() -> None:
    outcome = await deliver(OPS, make_notice(), DeliverySettings(smtp=None))

    assert not outcome.delivered
    assert not outcome.permanent
    assert "CERTWATCH_SMTP_HOST" in outcome.reason


async def test_email_escapes_certificate_names(smtp_server: StartSmtp) -> None:
    server = await smtp_server(SmtpSecurity.PLAIN)
    settings = DeliverySettings(smtp=server.settings(SmtpSecurity.PLAIN))
    hostile = NoticeItem(
        event=EventKind.PROBLEM,
        severity=Severity.WARNING,
        message="Name <b>bold</b> & more",
        names=("evil.test\r\nBcc: victim@example.test", "<script>x</script>"),
        finding_code="hostname_mismatch",
    )
    notice = replace(make_notice(), event=EventKind.PROBLEM, items=(hostile,))

    outcome = await deliver(OPS, notice, settings)

    assert outcome.delivered, outcome.reason
    message = server.handler.received[0].message
    assert message["Bcc"] is None
    assert "\n" not in message["Subject"]
    assert server.handler.received[0].recipients == ["ops@example.test"]
    html_part = _parts(message)["text/html"]
    assert "<script>" not in html_part
    assert "&lt;script&gt;x&lt;/script&gt;" in html_part
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; more" in html_part
