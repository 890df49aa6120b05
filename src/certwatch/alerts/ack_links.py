"""Signed links that acknowledge an alert from its email, without a login.

A link is `{public URL}/alerts/{id}/ack?until=UNIX&sig=SIGNATURE`. The
signature is an HMAC-SHA256, under a key kept in the store's
`site_secrets`, of the alert id, the contact the email went to and the
expiry time. So a link works only for its alert, only until its expiry,
and only while the contact is still one of the alert's team. The contact
is not in the URL: the web service tries the team's email contacts.

Links expire `LINK_LIFETIME` after the notice was decided. A retried email
thus carries the same links, and stays byte for byte the same message.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

ACK_KEY_NAME = "alert_ack_link_key"
"""The name of the signing key in `site_secrets`."""

LINK_LIFETIME = timedelta(days=30)
"""How long an acknowledge link works after the notice was decided."""

_DOMAIN = b"certwatch alert acknowledge link v1"


@dataclass(frozen=True)
class AckLinkSigner:
    """Makes and checks acknowledge links under one key.

    `base_url` is the public URL of the web service without a final `/`.
    `key` is the hex signing key from `site_secrets`.
    """

    base_url: str
    key: str = field(repr=False)

    def url(self, alert_id: int, contact: str, until: datetime) -> str:
        """Return the acknowledge link of an alert for one contact."""
        expires = int(until.timestamp())
        signature = self.signature(alert_id, contact, expires)
        return (
            f"{self.base_url.rstrip('/')}/alerts/{alert_id}/ack"
            f"?until={expires}&sig={signature}"
        )

    def signature(self, alert_id: int, contact: str, until: int) -> str:
        """Return the URL-safe base64 HMAC-SHA256 that a link carries."""
        message = b"\n".join(
            [_DOMAIN, str(alert_id).encode(), contact.encode(), str(until).encode()]
        )
        digest = hmac.new(bytes.fromhex(self.key), message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def matches(self, alert_id: int, contact: str, until: int, signature: str) -> bool:
        """Tell whether `signature` was made for this alert, contact and expiry."""
        expected = self.signature(alert_id, contact, until)
        return hmac.compare_digest(expected.encode(), signature.encode("utf-8"))


def link_expiry(generated_at: datetime) -> datetime:
    """Return when the links of a notice decided at `generated_at` expire."""
    return (generated_at + LINK_LIFETIME).astimezone(UTC)
