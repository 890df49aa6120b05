"""Deliver a notice to one contact over the channel of its kind.

`deliver` is the one entry point: it picks email, webhook, Slack, Teams or
Apprise from the contact's kind, never raises for a delivery failure, and
logs each outcome with the redacted contact. `next_attempt_delay` in
`certwatch.alerts.retry` says when to try a failed delivery again.
"""

from __future__ import annotations

import logging
from typing import assert_never

from certwatch.alerts.ack_links import AckLinkSigner, link_expiry
from certwatch.alerts.channels.apprise import send_apprise
from certwatch.alerts.channels.email import send_email
from certwatch.alerts.channels.outcome import DeliveryOutcome
from certwatch.alerts.channels.webhook import post_webhook
from certwatch.alerts.contacts import ContactAddress, ContactKind
from certwatch.alerts.message import Notice
from certwatch.alerts.render import AckUrl
from certwatch.alerts.settings import DeliverySettings

__all__ = ["DeliveryOutcome", "deliver"]

logger = logging.getLogger(__name__)


async def deliver(
    contact: ContactAddress,
    notice: Notice,
    settings: DeliverySettings,
    *,
    ack_links: AckLinkSigner | None = None,
) -> DeliveryOutcome:
    """Deliver `notice` to `contact` once, and log the outcome.

    With `ack_links`, an email gives each item of an open alert a link that
    acknowledges it, signed for this contact. A delivered notice is logged
    at INFO level, a failure at WARNING level with the contact (redacted),
    whether the failure is permanent or temporary, and the reason. Retrying
    is the caller's job, with the idempotency key of `notice` unchanged, so
    the caller logs whether it retries: the outbox retries temporary
    failures of alerts, and a test message is never retried.
    """
    outcome = await _deliver_once(contact, notice, settings, ack_links)
    if outcome.delivered:
        logger.info(
            "Delivered %s notice %s to %s: %s",
            notice.event.value,
            notice.key,
            contact.redacted(),
            outcome.reason,
        )
    else:
        logger.warning(
            "Delivery of %s notice %s to %s failed (%s failure): %s",
            notice.event.value,
            notice.key,
            contact.redacted(),
            "permanent" if outcome.permanent else "temporary",
            outcome.reason,
        )
    return outcome


async def _deliver_once(
    contact: ContactAddress,
    notice: Notice,
    settings: DeliverySettings,
    ack_links: AckLinkSigner | None,
) -> DeliveryOutcome:
    match contact.kind:
        case ContactKind.EMAIL:
            ack_url = _ack_url(ack_links, contact.value, notice)
            return await send_email(contact.value, notice, settings.smtp, ack_url)
        case ContactKind.WEBHOOK | ContactKind.SLACK | ContactKind.TEAMS:
            return await post_webhook(contact, notice, settings.webhook)
        case ContactKind.APPRISE:
            return await send_apprise(contact.value, notice, settings.webhook)
        case _:
            assert_never(contact.kind)


def _ack_url(
    signer: AckLinkSigner | None, recipient: str, notice: Notice
) -> AckUrl | None:
    if signer is None:
        return None
    until = link_expiry(notice.generated_at)

    def ack_url(alert_id: int) -> str:
        return signer.url(alert_id, recipient, until)

    return ack_url
