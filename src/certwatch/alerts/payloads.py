"""The JSON bodies that webhooks receive: generic, Slack and Microsoft Teams.

The generic body is a documented, versioned schema (see docs/alerts.md):
new fields may be added, but no field is renamed or removed without a new
`schema_version`. Times are ISO 8601 in UTC with a `Z` suffix, to the
second, and fingerprints are lowercase hex, as in `certwatch check --json`.
The Slack and Teams bodies are for people, so they list at most
`MAX_CHAT_ITEMS` items and cut long texts to the limits of those services.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from certwatch.alerts.message import Notice, NoticeItem, Place
from certwatch.alerts.render import (
    clean,
    headline,
    item_facts,
    render_subject,
    shorten,
)
from certwatch.x509.model import Severity

WEBHOOK_SCHEMA_VERSION = 1
"""The `schema_version` of the generic webhook body."""

MAX_CHAT_ITEMS = 20
"""Items listed in a Slack or Teams message; the rest are counted."""

MAX_CHAT_PLACES = 10
"""Places listed per item in a Slack or Teams message; the rest are counted."""

# Slack limits a header block to 150 characters and a section text to 3000.
_SLACK_HEADER_LENGTH = 150
_SLACK_SECTION_LENGTH = 3000

_TEAMS_COLOURS = {
    Severity.CRITICAL: "Attention",
    Severity.WARNING: "Warning",
    Severity.INFO: "Default",
}


def webhook_payload(notice: Notice) -> dict[str, Any]:
    """Build the body of the generic JSON webhook, every item included."""
    return {
        "schema_version": WEBHOOK_SCHEMA_VERSION,
        "event": notice.event.value,
        "key": notice.key,
        "team": notice.team,
        "generated_at": _iso(notice.generated_at),
        "subject": render_subject(notice),
        "items": [_item_payload(item) for item in notice.items],
    }


def slack_payload(notice: Notice) -> dict[str, Any]:
    """Build a Slack incoming-webhook body: a header, then one section per item.

    Every text object is `plain_text`, so names such as `*.example.test` are
    shown as written instead of being read as Slack formatting.
    """
    subject = render_subject(notice)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": _plain(shorten(subject, _SLACK_HEADER_LENGTH))}
    ]
    for item in notice.items[:MAX_CHAT_ITEMS]:
        text = shorten(_chat_text(item, notice.generated_at), _SLACK_SECTION_LENGTH)
        blocks.append({"type": "section", "text": _plain(text)})
    blocks.append({"type": "context", "elements": [_plain(_chat_footer(notice))]})
    # Slack reads the top-level text (notifications, clients without blocks)
    # as markup, so `<!channel>` or `<url|label>` in a certificate name would
    # mention everyone or add a link. Escaping &, < and > prevents both.
    return {"text": _slack_escaped(subject), "blocks": blocks}


def _slack_escaped(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def teams_payload(notice: Notice) -> dict[str, Any]:
    """Build a Microsoft Teams incoming-webhook body holding an Adaptive Card.

    Both Teams Workflows webhooks and the older Office 365 connector webhooks
    accept this `message` envelope with one Adaptive Card attachment.
    """
    # NOTE: TextBlock and FactSet values take a subset of Markdown, which has
    # no escape that Teams honours, so a name like `*.a.test, *.b.test` may
    # show in italics. The text itself is kept as written.
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": render_subject(notice),
            "weight": "Bolder",
            "size": "Medium",
            "wrap": True,
        }
    ]
    for item in notice.items[:MAX_CHAT_ITEMS]:
        body.extend(_teams_item(item, notice.generated_at))
    body.append(
        {
            "type": "TextBlock",
            "text": _chat_footer(notice),
            "isSubtle": True,
            "wrap": True,
        }
    )
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
    }
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": card,
            }
        ],
    }


def _item_payload(item: NoticeItem) -> dict[str, Any]:
    return {
        "event": item.event.value,
        "severity": item.severity.label,
        "message": item.message,
        "finding_code": item.finding_code,
        "names": list(item.names),
        "fingerprint": item.fingerprint,
        "not_after": _iso(item.not_after),
        "days_left": item.days_left,
        "places": [_place_payload(place) for place in item.places],
        "new_fingerprint": item.new_fingerprint,
        "new_not_after": _iso(item.new_not_after),
        "stale_places": [_place_payload(place) for place in item.stale_places],
    }


def _place_payload(place: Place) -> dict[str, Any]:
    if place.path is not None:
        return {"kind": "file", "path": place.path}
    return {"kind": "endpoint", "target": place.target, "address": place.address}


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": False}


def _chat_text(item: NoticeItem, now: datetime) -> str:
    lines = [headline(item, now)]
    lines += [f"{label}: {value}" for label, value in item_facts(item)]
    lines += _chat_places("Places", item.places)
    lines += _chat_places("Still serving the old certificate", item.stale_places)
    return "\n".join(lines)


def _chat_places(title: str, places: tuple[Place, ...]) -> list[str]:
    if not places:
        return []
    return [f"{title}: {_places_summary(places)}"]


def _places_summary(places: tuple[Place, ...]) -> str:
    shown = ", ".join(clean(place.label) for place in places[:MAX_CHAT_PLACES])
    hidden = len(places) - MAX_CHAT_PLACES
    return f"{shown}, and {hidden} more" if hidden > 0 else shown


def _chat_footer(notice: Notice) -> str:
    hidden = len(notice.items) - MAX_CHAT_ITEMS
    more = f"{hidden} more items not shown. " if hidden > 0 else ""
    return f"{more}Team {clean(notice.team)}. Key {notice.key}."


def _teams_item(item: NoticeItem, now: datetime) -> list[dict[str, Any]]:
    facts = [{"title": label, "value": value} for label, value in item_facts(item)]
    if item.places:
        facts.append({"title": "Places", "value": _places_summary(item.places)})
    if item.stale_places:
        facts.append(
            {
                "title": "Still serving the old certificate",
                "value": _places_summary(item.stale_places),
            }
        )
    return [
        {
            "type": "TextBlock",
            "text": headline(item, now),
            "weight": "Bolder",
            "color": _TEAMS_COLOURS[item.severity],
            "wrap": True,
            "separator": True,
        },
        {"type": "FactSet", "facts": facts},
    ]
