"""Emails to account holders: address verification, password reset, invitations.

They go through the SMTP server configured for alerts (`CERTWATCH_SMTP_*`),
with the email channel's client and its error handling, and each has a
plain-text and an HTML part. Their links start with the public URL
(`CERTWATCH_WEB_PUBLIC_URL`), else the listening address, and never with
the Host header of a request, which a client chooses: a password reset link
built from it would send the token to another site.

The application reads the SMTP settings from the environment on first use,
unless `configure_account_mail` gave them. Without an SMTP server, the site
does not verify addresses and offers no password reset.
"""

from __future__ import annotations

import asyncio
import dataclasses
import html
import logging
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request

from certwatch.alerts.channels.email import send_email_message
from certwatch.alerts.channels.outcome import DeliveryOutcome
from certwatch.alerts.errors import DeliverySettingsError
from certwatch.alerts.settings import SmtpSettings, load_delivery_settings
from certwatch.store.accounts import (
    LoginSession,
    create_account_token,
    delete_account_token,
)
from certwatch.web.dependencies import WebContext
from certwatch.web.ratelimit import AddressLimiter

logger = logging.getLogger(__name__)

VERIFY_LIFETIME = timedelta(hours=48)
"""How long a verification link works."""

RESET_LIFETIME = timedelta(hours=1)
"""How long a password reset link works."""

RESEND_INTERVAL = timedelta(minutes=5)
"""The shortest time between two verification emails to one account."""

RESET_LIMIT_PER_ADDRESS = 3
RESET_LIMIT_PER_CLIENT = 10
RESET_LIMIT_WINDOW = timedelta(hours=1)

# A page waits for the SMTP server at most this long, even when the alert
# settings allow a longer timeout for the monitor.
MAX_SEND_SECONDS = 15.0

_STATE = "certwatch_account_mail"


@dataclass
class AccountMail:
    """The SMTP server of the account emails and the limits on reset requests.

    `smtp` is `None` when the site has no mail server. The limiters count
    password reset requests per email address and per client address, in
    memory and per process, for every address whether it has an account or
    not, so a limit reveals nothing about accounts.
    """

    smtp: SmtpSettings | None
    reset_addresses: AddressLimiter = field(
        default_factory=lambda: AddressLimiter(
            RESET_LIMIT_PER_ADDRESS, RESET_LIMIT_WINDOW
        )
    )
    reset_clients: AddressLimiter = field(
        default_factory=lambda: AddressLimiter(
            RESET_LIMIT_PER_CLIENT, RESET_LIMIT_WINDOW
        )
    )


@dataclass(frozen=True)
class AccountEmail:
    """The subject and both bodies of one account email."""

    subject: str
    text: str
    html: str


def configure_account_mail(app: FastAPI, smtp: SmtpSettings | None) -> AccountMail:
    """Give the application the SMTP server of its account emails, or none."""
    mail = AccountMail(smtp)
    setattr(app.state, _STATE, mail)
    return mail


def account_mail(request: Request) -> AccountMail:
    """Return the application's account mail settings, read once on first use.

    `certwatch serve` has checked the delivery settings at start-up, so an
    invalid one here means the environment changed. The error is logged,
    and the site then sends no account emails.
    """
    mail = getattr(request.app.state, _STATE, None)
    if isinstance(mail, AccountMail):
        return mail
    try:
        smtp = load_delivery_settings(os.environ).smtp
    except DeliverySettingsError as exc:
        logger.warning("account emails are off: %s", exc)
        smtp = None
    return configure_account_mail(request.app, smtp)


Mail = Annotated[AccountMail, Depends(account_mail)]
"""A handler parameter of this type receives the application's `AccountMail`."""


def verification_pending(mail: AccountMail, login: LoginSession | None) -> bool:
    """Tell whether the logged-in user must still verify the address.

    Verification applies only on a site with a mail server.
    """
    return login is not None and login.email_verified_at is None and bool(mail.smtp)


def unverified_problem(mail: AccountMail, login: LoginSession) -> str | None:
    """Return why an unverified user may not do something that sends email."""
    if not verification_pending(mail, login):
        return None
    return (
        f"Your address {login.email} is not verified yet: open the link in the "
        "verification email first, or ask for a new one with the button at "
        "the top of the page."
    )


def link_base(context: WebContext) -> str:
    """Return the URL that emailed links start with, without a final `/`."""
    return context.settings.base_url()


def send_account_email(
    smtp: SmtpSettings, recipient: str, email: AccountEmail, *, now: datetime
) -> DeliveryOutcome:
    """Send one account email and return the outcome.

    SMTP and network failures come back as a failed outcome, as the email
    channel returns them.
    """
    message = _message(smtp, recipient, email, now)
    limited = smtp
    if smtp.timeout > MAX_SEND_SECONDS:
        limited = dataclasses.replace(smtp, timeout=MAX_SEND_SECONDS)
    # Handlers run in worker threads without an event loop of their own.
    return asyncio.run(send_email_message(message, recipient, limited))


def send_verification(
    context: WebContext, smtp: SmtpSettings, user_id: int, email: str
) -> DeliveryOutcome:
    """Make a verification link for the account and send it to its address.

    A link that could not be sent is deleted, so it neither works nor
    counts against the resend limit.
    """
    now = context.now_fn()
    with context.sessions() as session, session.begin():
        token = create_account_token(
            session, user_id, "verify", email, now=now, lifetime=VERIFY_LIFETIME
        )
    link = f"{link_base(context)}/verify?token={quote(token)}"
    outcome = send_account_email(smtp, email, verification_email(link), now=now)
    _log_outcome("verification", user_id, outcome)
    if not outcome.delivered:
        with context.sessions() as session, session.begin():
            delete_account_token(session, token)
    return outcome


def send_reset_link(
    context: WebContext, smtp: SmtpSettings, user_id: int, email: str, token: str
) -> None:
    """Send a password reset link made by the request; runs after the response.

    The response to the requester is the same whatever happens, so a
    failure is only logged, and the link that was not sent is deleted.
    """
    link = f"{link_base(context)}/password-reset/confirm?token={quote(token)}"
    outcome = send_account_email(smtp, email, reset_email(link), now=context.now_fn())
    _log_outcome("password reset", user_id, outcome)
    if not outcome.delivered:
        with context.sessions() as session, session.begin():
            delete_account_token(session, token)


def verification_email(link: str) -> AccountEmail:
    """Build the email with the link that verifies an address."""
    hours = int(VERIFY_LIFETIME.total_seconds() // 3600)
    lines = [
        "Someone, probably you, made a certwatch account with this address.",
        "Open this link to confirm that the address is yours:",
        "",
        link,
        "",
        f"The link works once, within {hours} hours. If you did not make the",
        "account, ignore this email.",
    ]
    return _email("Verify your email address for certwatch", lines, link)


def reset_email(link: str) -> AccountEmail:
    """Build the email with the link that sets a new password."""
    minutes = int(RESET_LIFETIME.total_seconds() // 60)
    lines = [
        "Someone, probably you, asked to reset the password of the certwatch",
        "account with this address. Open this link to choose a new password:",
        "",
        link,
        "",
        f"The link works once, within {minutes} minutes. Setting a new password",
        "ends every login session of the account. If you did not ask, ignore",
        "this email: your password stays as it is.",
    ]
    return _email("Reset your certwatch password", lines, link)


def invitation_email(
    link: str, team: str, role: str, inviter: str, days: int
) -> AccountEmail:
    """Build the email that carries an invitation link to a team."""
    lines = [
        f"{inviter} invites you to the team “{team}” on certwatch, as {role}.",
        "Open this link to sign up, or to join with your account:",
        "",
        link,
        "",
        f"The link works once, for {days} days.",
    ]
    return _email(f"Invitation to the team {team} on certwatch", lines, link)


def _email(subject: str, lines: list[str], link: str) -> AccountEmail:
    text = "\n".join(lines) + "\n"
    paragraphs = []
    for line in lines:
        if line == link:
            escaped = html.escape(link, quote=True)
            paragraphs.append(f'<p><a href="{escaped}">{escaped}</a></p>')
        elif line:
            paragraphs.append(f"<p>{html.escape(line)}</p>")
    body = (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{html.escape(subject)}</title></head>"
        '<body style="font-family:Arial,Helvetica,sans-serif;font-size:14px;">'
        + "".join(paragraphs)
        + "</body></html>\n"
    )
    return AccountEmail(subject, text, body)


def _message(
    smtp: SmtpSettings, recipient: str, email: AccountEmail, now: datetime
) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = email.subject
    message["From"] = smtp.sender
    message["To"] = recipient
    message["Date"] = format_datetime(now, usegmt=True)
    domain = smtp.sender_address.rpartition("@")[2] or None
    message["Message-ID"] = make_msgid("certwatch", domain=domain)
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(email.text)
    message.add_alternative(email.html, subtype="html")
    return message


def _log_outcome(kind: str, user_id: int, outcome: DeliveryOutcome) -> None:
    if outcome.delivered:
        logger.info("sent the %s email of user %d: %s", kind, user_id, outcome.reason)
    else:
        logger.warning(
            "the %s email of user %d was not sent: %s", kind, user_id, outcome.reason
        )
