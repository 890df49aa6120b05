"""Alert delivery: contacts, the message model and the channels.

The alert policy decides what a team must hear and builds a `Notice`.
`deliver` sends it to one `ContactAddress` and returns a `DeliveryOutcome`
that reports whether to try again, and `next_attempt_delay` returns when.
Delivery settings come from `load_delivery_settings`. See docs/alerts.md
for the contact kinds and the webhook schema, and docs/configuration.md
for the settings.
"""

from certwatch.alerts.channels import DeliveryOutcome, deliver
from certwatch.alerts.contacts import (
    ContactAddress,
    ContactKind,
    parse_contact,
)
from certwatch.alerts.errors import ContactError, DeliverySettingsError
from certwatch.alerts.message import EventKind, Notice, NoticeItem, Place
from certwatch.alerts.retry import next_attempt_delay
from certwatch.alerts.settings import (
    DeliverySettings,
    RetryPolicy,
    SmtpSecurity,
    SmtpSettings,
    WebhookSettings,
    load_delivery_settings,
)

__all__ = [
    "ContactAddress",
    "ContactError",
    "ContactKind",
    "DeliveryOutcome",
    "DeliverySettings",
    "DeliverySettingsError",
    "EventKind",
    "Notice",
    "NoticeItem",
    "Place",
    "RetryPolicy",
    "SmtpSecurity",
    "SmtpSettings",
    "WebhookSettings",
    "deliver",
    "load_delivery_settings",
    "next_attempt_delay",
    "parse_contact",
]
