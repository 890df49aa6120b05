"""Deliver a notice as an email through the configured SMTP server.

The message is multipart/alternative with a plain-text and an HTML part.
Its Message-ID is derived from the notice's idempotency key and its Date
is the notice's `generated_at`, so a retried message is byte-for-byte the
same and a receiver can drop a duplicate by its Message-ID. The key itself
is sent in the `X-Certwatch-Key` header.

`send_email_message` sends any prepared message with the same client and
error handling; the web service sends its account emails through it.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import ssl
from email.message import EmailMessage
from email.utils import format_datetime

import aiosmtplib

from certwatch.alerts.channels.outcome import DeliveryOutcome
from certwatch.alerts.contacts import is_loopback_host
from certwatch.alerts.message import Notice
from certwatch.alerts.render import AckUrl, clean, render_message
from certwatch.alerts.settings import SmtpSecurity, SmtpSettings, tls_context

KEY_HEADER = "X-Certwatch-Key"
"""The email header that carries the notice's idempotency key."""

EVENT_HEADER = "X-Certwatch-Event"
"""The email header that carries the notice's event kind."""

NO_SMTP_REASON = (
    "no SMTP server is configured; set CERTWATCH_SMTP_HOST and CERTWATCH_SMTP_FROM"
)
"""The reason of a failed email delivery when no SMTP server is configured."""

# SMTP reply codes from 500 on are permanent failures (RFC 5321, 4.2.1).
_PERMANENT_CODE = 500


async def send_email(
    recipient: str,
    notice: Notice,
    smtp: SmtpSettings | None,
    ack_url: AckUrl | None = None,
) -> DeliveryOutcome:
    """Send `notice` to the address `recipient` through the SMTP server `smtp`.

    With `ack_url`, each item of an open alert carries its acknowledge link.
    A network or SMTP failure is returned as an outcome, with the reason and
    whether a retry may help, rather than raised.
    """
    if smtp is None:
        return DeliveryOutcome.transient(NO_SMTP_REASON)
    message = build_email(notice, recipient, smtp, ack_url)
    return await send_email_message(message, recipient, smtp)


async def send_email_message(
    message: EmailMessage, recipient: str, smtp: SmtpSettings
) -> DeliveryOutcome:
    """Send a prepared `message` to `recipient` through the SMTP server `smtp`.

    Failures are returned as outcomes, as `send_email` returns them, with
    the SMTP password removed from every reason.
    """
    try:
        response = await _send(message, recipient, smtp)
    except aiosmtplib.SMTPRecipientsRefused as exc:
        return _recipients_refused(exc, recipient)
    except aiosmtplib.SMTPResponseException as exc:
        return _smtp_reply_failure(exc, smtp)
    except (aiosmtplib.SMTPException, OSError) as exc:
        return DeliveryOutcome.transient(_scrub(_describe_error(exc, smtp), smtp))
    return DeliveryOutcome.success(
        f"accepted by {smtp.host}:{smtp.server_port} ({clean(response)[:200]})"
    )


def build_email(
    notice: Notice,
    recipient: str,
    smtp: SmtpSettings,
    ack_url: AckUrl | None = None,
) -> EmailMessage:
    """Build the email for `notice` to `recipient`, From `smtp.sender`."""
    rendered = render_message(notice, ack_url)
    message = EmailMessage()
    message["Subject"] = rendered.subject
    message["From"] = smtp.sender
    message["To"] = recipient
    message["Date"] = format_datetime(notice.generated_at, usegmt=True)
    message["Message-ID"] = message_id(notice.key, smtp.sender_address)
    message[KEY_HEADER] = notice.key
    message[EVENT_HEADER] = notice.event.value
    # This RFC 3834 header keeps vacation responders and ticket systems
    # from replying.
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(rendered.text)
    message.add_alternative(rendered.html, subtype="html")
    # The email package picks a random boundary; one derived from the key
    # keeps a retried message identical to the first attempt.
    message.set_boundary(f"=_certwatch_{_digest(notice.key)[:32]}")
    return message


def message_id(key: str, sender_address: str) -> str:
    """Derive a Message-ID from an idempotency key: the same key, the same ID.

    The key is hashed, so any key gives a valid Message-ID, and the domain
    is the sender's, as RFC 5322 recommends for uniqueness.
    """
    domain = sender_address.rpartition("@")[2] or "certwatch.invalid"
    return f"<certwatch.{_digest(key)[:40]}@{domain}>"


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("ascii")).hexdigest()


async def _send(message: EmailMessage, recipient: str, smtp: SmtpSettings) -> str:
    client = aiosmtplib.SMTP(
        hostname=smtp.host.strip("[]"),
        port=smtp.server_port,
        username=smtp.username,
        password=smtp.password,
        timeout=smtp.timeout,
        use_tls=smtp.security is SmtpSecurity.TLS,
        # True requires STARTTLS and fails when the server does not offer it;
        # False never upgrades, for plain SMTP on loopback.
        start_tls=smtp.security is SmtpSecurity.STARTTLS,
        tls_context=_context(smtp),
    )
    async with client:
        _, response = await client.send_message(
            message, sender=smtp.sender_address, recipients=[recipient]
        )
    return response


def _context(smtp: SmtpSettings) -> ssl.SSLContext | None:
    if smtp.security is SmtpSecurity.PLAIN:
        return None
    return _cached_tls_context(smtp)


@functools.lru_cache(maxsize=8)
def _cached_tls_context(smtp: SmtpSettings) -> ssl.SSLContext:
    # Loading the certifi bundle takes milliseconds; one context per
    # settings object serves every delivery.
    return tls_context(smtp.ca_file)


def _recipients_refused(
    exc: aiosmtplib.SMTPRecipientsRefused, recipient: str
) -> DeliveryOutcome:
    refusal = exc.recipients[0] if exc.recipients else None
    if refusal is None:
        return DeliveryOutcome.transient(f"the SMTP server refused {recipient}")
    reason = (
        f"the SMTP server refused the recipient {recipient}: "
        f"{refusal.code} {clean(refusal.message)[:200]}"
    )
    if refusal.code >= _PERMANENT_CODE:
        return DeliveryOutcome.rejected(reason)
    return DeliveryOutcome.transient(reason)


def _smtp_reply_failure(
    exc: aiosmtplib.SMTPResponseException, smtp: SmtpSettings
) -> DeliveryOutcome:
    reply = _scrub(f"{exc.code} {clean(exc.message)[:200]}", smtp)
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        # Wrong credentials are fixed in the settings, after which the
        # same message goes through, so the failure is not permanent.
        return DeliveryOutcome.transient(
            f"the SMTP server rejected the login of {smtp.username!r}: {reply}; "
            "check CERTWATCH_SMTP_USERNAME and CERTWATCH_SMTP_PASSWORD"
        )
    if isinstance(exc, aiosmtplib.SMTPDataError) and exc.code >= _PERMANENT_CODE:
        return DeliveryOutcome.rejected(
            f"the SMTP server rejected the message: {reply}"
        )
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        return DeliveryOutcome.transient(
            f"the SMTP server refused the sender {smtp.sender_address}: {reply}; "
            "check CERTWATCH_SMTP_FROM"
        )
    return DeliveryOutcome.transient(f"the SMTP server replied {reply}")


def _describe_error(exc: BaseException, smtp: SmtpSettings) -> str:
    server = f"{smtp.host}:{smtp.server_port}"
    if isinstance(exc, TimeoutError):
        return f"the SMTP server {server} timed out after {smtp.timeout:g} s"
    verification = _verification_error(exc)
    if verification is not None:
        return (
            f"the certificate of the SMTP server {server} failed verification "
            f"({verification.verify_message}); when an internal CA issued it, set "
            "CERTWATCH_SMTP_CA_FILE to that CA's certificate"
        )
    if isinstance(exc, ConnectionRefusedError) or isinstance(
        exc.__cause__, ConnectionRefusedError
    ):
        return f"the SMTP server {server} refused the connection"
    if "STARTTLS extension not supported" in str(exc):
        # aiosmtplib's words when the EHLO reply does not list STARTTLS.
        plain = (
            ", or CERTWATCH_SMTP_SECURITY=plain for a relay on loopback"
            if is_loopback_host(smtp.host)
            else ""
        )
        return (
            f"the SMTP server {server} does not offer STARTTLS: set "
            f"CERTWATCH_SMTP_SECURITY=tls with the server's TLS port{plain}"
        )
    detail = clean(str(exc))[:200] or type(exc).__name__
    return f"sending through the SMTP server {server} failed: {detail}"


def _verification_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    # aiosmtplib raises the ssl error itself for implicit TLS and wraps it
    # in SMTPConnectError (as __cause__) for some connection paths.
    for candidate in (exc, exc.__cause__, exc.__context__):
        if isinstance(candidate, ssl.SSLCertVerificationError):
            return candidate
    return None


def _scrub(text: str, smtp: SmtpSettings) -> str:
    """Remove the password, plain and in its SMTP AUTH encodings, from `text`."""
    if not smtp.password:
        return text
    username = smtp.username or ""
    secrets = [
        smtp.password,
        _base64(smtp.password),
        _base64(f"\0{username}\0{smtp.password}"),
    ]
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def _base64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")
