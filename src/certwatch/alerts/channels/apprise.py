"""Deliver a notice through Apprise, for services without a channel here.

Apprise is an optional dependency (`pip install 'certwatch[apprise]'`). It
sends the subject as the title and the plain-text body as the message.
Apprise reports only success or failure, so every failure counts as one
that a later attempt may get past.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from certwatch.alerts import apprise_support
from certwatch.alerts.channels.outcome import DeliveryOutcome
from certwatch.alerts.channels.webhook import IDEMPOTENCY_HEADER, USER_AGENT, scrub_url
from certwatch.alerts.contacts import ContactAddress, ContactKind
from certwatch.alerts.message import EventKind, Notice
from certwatch.alerts.receivers import (
    ReceiverNotAllowed,
    receiver_addresses,
    receiver_host,
)
from certwatch.alerts.render import clean, render_message
from certwatch.alerts.settings import WebhookSettings
from certwatch.probe.resolve import ResolutionError, SystemResolver
from certwatch.x509.model import Severity

if TYPE_CHECKING:
    import apprise

# Apprise's DEBUG lines and those of urllib3, which Apprise sends through,
# contain full request URLs with their secret tokens (seen with apprise
# 2.3.0 and urllib3 2.x), so only their warnings and errors are kept.
_NOISY_LOGGERS = ("apprise", "urllib3.connectionpool")


class _DropBelowWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


_LOG_FILTER = _DropBelowWarning()


async def send_apprise(
    url: str, notice: Notice, settings: WebhookSettings
) -> DeliveryOutcome:
    """Send `notice` to the Apprise URL `url`.

    For Apprise's generic json://, form:// and xml:// targets, the
    idempotency key goes in the `Idempotency-Key` header as for webhooks.
    Apprise turns the errors of its plugins into a failed result, so a
    failed delivery is returned as an outcome rather than raised.
    """
    if not settings.allow_private_addresses:
        refusal = await _check_receiver(url, settings)
        if refusal is not None:
            return refusal
    try:
        notifier = _notifier(url, notice, settings)
    except ImportError:
        return DeliveryOutcome.transient(apprise_support.INSTALL_HINT)
    if notifier is None:
        return DeliveryOutcome.rejected("Apprise does not accept the contact URL")
    _filter_secret_logs()
    rendered = render_message(notice)
    result = await notifier.async_notify(
        body=rendered.text,
        title=rendered.subject,
        notify_type=_notify_type(notice),
        body_format="text",
        # Apprise applies this deadline to the whole call.
        timeout=settings.timeout,
    )
    if result:
        return DeliveryOutcome.success("accepted by the Apprise service")
    return DeliveryOutcome.transient(_failure_reason(result, url))


async def _check_receiver(
    url: str, settings: WebhookSettings
) -> DeliveryOutcome | None:
    """Return the outcome for a receiver that the address policy blocks.

    Apprise connects by name itself, so this checks the addresses that the
    name has now, not the one Apprise connects to.
    """
    contact = ContactAddress(ContactKind.APPRISE, url)
    host = receiver_host(contact)
    if host is None:
        return None
    try:
        await receiver_addresses(
            contact,
            host,
            443,
            SystemResolver(),
            allow_private=False,
            timeout=settings.timeout,
        )
    except ReceiverNotAllowed as exc:
        return DeliveryOutcome.rejected(str(exc))
    except ResolutionError as exc:
        return DeliveryOutcome.transient(f"the receiver's name did not resolve: {exc}")
    return None


def _notifier(
    url: str, notice: Notice, settings: WebhookSettings
) -> apprise.Apprise | None:
    import apprise

    asset = apprise.AppriseAsset(
        # Keep Apprise's persistent store in memory, so that delivering
        # writes no files in the home folder of the service account.
        storage_mode=apprise.PersistentStoreMode.MEMORY,
        secure_logging=True,
    )
    plugin = apprise_support.instantiate(url, asset)
    if plugin is None:
        return None
    plugin.socket_connect_timeout = settings.timeout
    plugin.socket_read_timeout = settings.timeout
    plugin.redirects = False
    headers = getattr(plugin, "headers", None)
    if isinstance(headers, dict):
        headers[IDEMPOTENCY_HEADER] = notice.key
        headers["User-Agent"] = USER_AGENT
    notifier = apprise.Apprise(asset=asset)
    notifier.add(plugin)
    return notifier


def _notify_type(notice: Notice) -> apprise.NotifyType:
    import apprise

    if notice.event is EventKind.RESOLVED:
        return apprise.NotifyType.SUCCESS
    worst = max((item.severity for item in notice.items), default=Severity.INFO)
    if worst is Severity.CRITICAL:
        return apprise.NotifyType.FAILURE
    if worst is Severity.WARNING:
        return apprise.NotifyType.WARNING
    return apprise.NotifyType.INFO


def _failure_reason(result: apprise.AppriseResult, url: str) -> str:
    messages = [
        entry.message
        for entry in result.logs()
        if entry.level in ("WARNING", "ERROR", "CRITICAL")
    ]
    status = getattr(result.status, "name", str(result.status)).lower()
    if not messages:
        return f"Apprise reported {status}"
    return f"Apprise reported {status}: {clean(scrub_url(messages[-1], url))[:200]}"


def _filter_secret_logs() -> None:
    for name in _NOISY_LOGGERS:
        logger = logging.getLogger(name)
        if _LOG_FILTER not in logger.filters:
            logger.addFilter(_LOG_FILTER)
