"""Render a notice as a subject line, a plain-text body and an HTML body.

The subject states what expires and when, and at how many places, such as
"www.example.test expires in 7 days (2027-01-10) at 3 places". Every value
that comes from a certificate or the inventory has its control characters
replaced, so a crafted name cannot add lines to a header or a body, and the
HTML body escapes it as well. The HTML uses inline styles only and loads
nothing from elsewhere, because mail clients block remote resources.

With an `AckUrl` function, each item of an open alert also carries a link
that acknowledges the alert (see `certwatch.alerts.ack_links`).
"""

from __future__ import annotations

import html
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from certwatch.alerts.message import EventKind, Notice, NoticeItem, Place
from certwatch.x509.model import Severity

MAX_SUBJECT_LENGTH = 200
"""Longer subjects are cut and end in `…`."""

MAX_LISTED_ITEMS = 100
"""Items past this many are counted in the bodies but not listed."""

MAX_LISTED_PLACES = 50
"""Places of one item past this many are counted but not listed."""

ACK_LINK_LABEL = "Acknowledge until the next reminder"
"""The text of the acknowledge link in both bodies."""

AckUrl = Callable[[int], str]
"""Return the acknowledge link of an alert id, for the message's recipient."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")

_SEVERITY_COLOURS = {
    Severity.CRITICAL: "#b42318",
    Severity.WARNING: "#b54708",
    Severity.INFO: "#175cd3",
}


@dataclass(frozen=True)
class RenderedMessage:
    """A notice rendered for email: subject, plain-text body and HTML body."""

    subject: str
    text: str
    html: str


def render_message(notice: Notice, ack_url: AckUrl | None = None) -> RenderedMessage:
    """Render `notice` as the subject and both bodies of an email.

    With `ack_url`, each item that names an alert gets its acknowledge link.
    """
    return RenderedMessage(
        subject=render_subject(notice),
        text=render_text(notice, ack_url),
        html=render_html(notice, ack_url),
    )


def render_subject(notice: Notice) -> str:
    """Build a one-line subject stating what expires or changed, and when.

    One item gives its headline. Several give their count by what they
    are and the headline of the most urgent, as in "2 certificates and 1
    endpoint need attention: ...".
    """
    if not notice.items:
        subject = f"certwatch test message for team {clean(notice.team)}"
    elif len(notice.items) == 1:
        subject = headline(notice.items[0], notice.generated_at)
    else:
        first = headline(notice.items[0], notice.generated_at)
        subject = f"{_count_phrase(notice)}: {first}, and {len(notice.items) - 1} more"
    return shorten(subject, MAX_SUBJECT_LENGTH)


def headline(item: NoticeItem, now: datetime) -> str:
    """Describe one item in one line, such as "x expires in 7 days (2027-01-10)".

    `now` decides between "expires" and "expired" when `days_left` is unknown.
    """
    certificate = describe_certificate(item)
    places = _places_phrase(len(item.places))
    if item.event in (EventKind.EXPIRING, EventKind.EXPIRED):
        return f"{certificate} {describe_expiry(item, now)}{places}"
    if item.event is EventKind.CHANGED:
        return f"{certificate} changed{places}{_new_expiry_phrase(item)}"
    if item.event is EventKind.RESOLVED:
        return _resolved_headline(item, certificate)
    if item.event is EventKind.STALE_DEPLOYMENT:
        return _stale_headline(item, certificate)
    if item.event is EventKind.TEST:
        return clean(item.message) or "test message from certwatch"
    reason = clean(item.message) or clean(item.finding_code or "a problem")
    if not item.names and item.fingerprint is None and not item.places:
        # A problem that concerns no certificate, such as a contact that
        # stopped working, is its reason alone.
        return reason
    return f"{certificate}{places}: {reason}"


def describe_certificate(item: NoticeItem) -> str:
    """Name a certificate by its first name, else by its fingerprint."""
    if item.names:
        first = clean(item.names[0])
        others = len(item.names) - 1
        if others == 0:
            return first
        return f"{first} (+{_plural(others, 'name')})"
    if item.fingerprint:
        return f"certificate {clean(item.fingerprint)[:16]}"
    return "a certificate"


def describe_expiry(item: NoticeItem, now: datetime) -> str:
    """Say when the item's certificate expires or expired, with the date.

    `days_left` is a floor, as in the JSON output: 0 means less than a day
    left, -1 means expired less than a day ago.
    """
    if item.not_after is None:
        return "has no readable expiry date"
    date = item.not_after.date().isoformat()
    days = item.days_left
    if days is None:
        verb = "expired on" if item.not_after <= now else "expires on"
        return f"{verb} {date}"
    if days >= 1:
        return f"expires in {_plural(days, 'day')} ({date})"
    if days == 0:
        return f"expires within a day ({date})"
    if days == -1:
        return f"expired within the last day ({date})"
    return f"expired {_plural(-days - 1, 'day')} ago ({date})"


def render_text(notice: Notice, ack_url: AckUrl | None = None) -> str:
    """Build the plain-text body: every item with its details and places."""
    lines = [_title(notice), ""]
    for number, item in enumerate(notice.items[:MAX_LISTED_ITEMS], start=1):
        lines.append(f"{number}. {headline(item, notice.generated_at)}")
        lines.extend(f"   {label}: {value}" for label, value in item_facts(item))
        lines.extend(_text_places("Places", item.places))
        lines.extend(
            _text_places("Still serving the old certificate", item.stale_places)
        )
        link = _ack_link(item, ack_url)
        if link is not None:
            lines.append(f"   {ACK_LINK_LABEL}: {link}")
        lines.append("")
    hidden = len(notice.items) - MAX_LISTED_ITEMS
    if hidden > 0:
        lines += [f"... and {_plural(hidden, 'more item')} not listed here.", ""]
    lines.append(_footer(notice))
    return "\n".join(lines) + "\n"


def render_html(notice: Notice, ack_url: AckUrl | None = None) -> str:
    """Build the HTML body, with inline styles and every value escaped."""
    parts = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8">',
        f"<title>{_escape(render_subject(notice))}</title></head>",
        '<body style="font-family:Arial,Helvetica,sans-serif;font-size:14px;'
        'color:#101828;margin:0;padding:16px;">',
        f'<h1 style="font-size:18px;margin:0 0 16px 0;">{_escape(_title(notice))}</h1>',
    ]
    for item in notice.items[:MAX_LISTED_ITEMS]:
        parts.append(_html_item(item, notice.generated_at, _ack_link(item, ack_url)))
    hidden = len(notice.items) - MAX_LISTED_ITEMS
    if hidden > 0:
        parts.append(f"<p>... and {_plural(hidden, 'more item')} not listed here.</p>")
    parts.append(
        f'<p style="color:#667085;font-size:12px;">{_escape(_footer(notice))}</p>'
    )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def item_facts(item: NoticeItem) -> list[tuple[str, str]]:
    """List the details of an item as (label, value) pairs for the bodies."""
    facts = [("Severity", item.severity.label)]
    if item.not_after is not None:
        facts.append(("Expires", _time_text(item.not_after)))
    if item.days_left is not None:
        facts.append(("Days left", str(item.days_left)))
    if item.names:
        facts.append(("Names", ", ".join(clean(name) for name in item.names)))
    if item.fingerprint:
        facts.append(("SHA-256", clean(item.fingerprint)))
    if item.finding_code:
        facts.append(("Finding", clean(item.finding_code)))
    if item.message:
        facts.append(("Message", clean(item.message)))
    if item.new_not_after is not None:
        facts.append(("New certificate expires", _time_text(item.new_not_after)))
    if item.new_fingerprint:
        facts.append(("New SHA-256", clean(item.new_fingerprint)))
    return facts


def clean(text: str) -> str:
    """Replace control characters and line breaks in `text` by spaces."""
    return _CONTROL.sub(" ", text)


def shorten(text: str, limit: int) -> str:
    """Cut `text` to at most `limit` characters, ending in `…` when cut."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _count_phrase(notice: Notice) -> str:
    """Count the items by what they are, as in "2 certificates and 1 endpoint".

    Items that need attention come first, then resolved and changed ones.
    """
    attention: Counter[str] = Counter()
    resolved = changed = 0
    for item in notice.items:
        if item.event is EventKind.RESOLVED:
            resolved += 1
        elif item.event is EventKind.CHANGED:
            changed += 1
        else:
            attention[_subject_noun(item)] += 1
    parts = []
    if attention:
        counts = [_plural(attention[noun], noun) for noun in _NOUNS if attention[noun]]
        verb = "needs" if attention.total() == 1 else "need"
        parts.append(f"{_join(counts)} {verb} attention")
    if resolved:
        parts.append(f"{_plural(resolved, 'alert')} resolved")
    if changed:
        parts.append(f"{_plural(changed, 'certificate')} changed")
    return ", ".join(parts)


_NOUNS = ("certificate", "endpoint", "file", "problem")


def _subject_noun(item: NoticeItem) -> str:
    """Name what an item is about: a certificate, else its places' kind."""
    if item.fingerprint or item.names:
        return "certificate"
    kinds = {place.kind for place in item.places}
    if len(kinds) == 1:
        return kinds.pop()
    return "problem"


def _join(phrases: list[str]) -> str:
    if len(phrases) == 1:
        return phrases[0]
    return f"{', '.join(phrases[:-1])} and {phrases[-1]}"


def _resolved_headline(item: NoticeItem, certificate: str) -> str:
    if item.new_not_after is None:
        reason = clean(item.message) or "no longer needs attention"
        return f"{certificate}: {reason}"
    new_date = item.new_not_after.date().isoformat()
    if item.not_after is None:
        return f"{certificate} renewed: now expires {new_date}"
    return (
        f"{certificate} renewed: now expires {new_date} "
        f"(was {item.not_after.date().isoformat()})"
    )


def _stale_headline(item: NoticeItem, certificate: str) -> str:
    stale = len(item.stale_places) or len(item.places)
    verb = "serves" if stale == 1 else "serve"
    old = ""
    if item.not_after is not None:
        old = f" that expires {item.not_after.date().isoformat()}"
    places = _plural(stale, "place")
    return f"{certificate}: {places} still {verb} the old certificate{old}"


def _new_expiry_phrase(item: NoticeItem) -> str:
    if item.new_not_after is None:
        return ""
    return f", now expires {item.new_not_after.date().isoformat()}"


def _places_phrase(count: int) -> str:
    return f" at {_plural(count, 'place')}" if count else ""


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _title(notice: Notice) -> str:
    if not notice.items:
        return f"certwatch test message for team {clean(notice.team)}"
    count = _plural(len(notice.items), "item")
    return f"certwatch: {count} for team {clean(notice.team)}"


def _footer(notice: Notice) -> str:
    return (
        f"Sent by certwatch at {_time_text(notice.generated_at)}. "
        f"Idempotency key: {notice.key}"
    )


def _time_text(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


def _text_places(title: str, places: tuple[Place, ...]) -> list[str]:
    if not places:
        return []
    lines = [f"   {title} ({len(places)}):"]
    lines += [f"     - {clean(place.label)}" for place in places[:MAX_LISTED_PLACES]]
    hidden = len(places) - MAX_LISTED_PLACES
    if hidden > 0:
        lines.append(f"     ... and {_plural(hidden, 'more place')}")
    return lines


def _ack_link(item: NoticeItem, ack_url: AckUrl | None) -> str | None:
    if ack_url is None or item.alert_id is None:
        return None
    return ack_url(item.alert_id)


def _html_item(item: NoticeItem, now: datetime, ack_link: str | None) -> str:
    colour = _SEVERITY_COLOURS[item.severity]
    rows = "".join(
        '<tr><th style="text-align:left;padding:2px 12px 2px 0;'
        f'vertical-align:top;font-weight:normal;color:#667085;">{_escape(label)}</th>'
        f'<td style="padding:2px 0;">{_escape(value)}</td></tr>'
        for label, value in item_facts(item)
    )
    title = _escape(headline(item, now))
    return (
        f'<div style="border-left:4px solid {colour};padding:4px 0 4px 12px;'
        'margin:0 0 16px 0;">'
        f'<p style="font-weight:bold;margin:0 0 8px 0;">{title}</p>'
        f'<table style="border-collapse:collapse;font-size:13px;">{rows}</table>'
        f"{_html_places('Places', item.places)}"
        f"{_html_places('Still serving the old certificate', item.stale_places)}"
        f"{_html_ack_link(ack_link)}"
        "</div>"
    )


def _html_ack_link(link: str | None) -> str:
    if link is None:
        return ""
    return (
        f'<p style="margin:8px 0 0 0;"><a href="{html.escape(link, quote=True)}" '
        f'style="color:#175cd3;">{_escape(ACK_LINK_LABEL)}</a></p>'
    )


def _html_places(title: str, places: tuple[Place, ...]) -> str:
    if not places:
        return ""
    entries = "".join(
        f"<li>{_escape(place.label)}</li>" for place in places[:MAX_LISTED_PLACES]
    )
    hidden = len(places) - MAX_LISTED_PLACES
    if hidden > 0:
        entries += f"<li>... and {_plural(hidden, 'more place')}</li>"
    return (
        f'<p style="margin:8px 0 4px 0;">{_escape(title)} ({len(places)}):</p>'
        f'<ul style="margin:0;padding-left:20px;">{entries}</ul>'
    )


def _escape(text: str) -> str:
    return html.escape(clean(text), quote=True)
