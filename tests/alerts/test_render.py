"""The notice model, subjects and the plain-text and HTML bodies."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from tests.alerts.conftest import GENERATED_AT, make_notice

from certwatch.alerts import EventKind, Notice, NoticeItem, Place
from certwatch.alerts.render import (
    MAX_LISTED_ITEMS,
    MAX_SUBJECT_LENGTH,
    describe_expiry,
    render_html,
    render_message,
    render_subject,
    render_text,
)
from certwatch.x509.model import Severity

NOT_AFTER = datetime(2027, 1, 10, 12, 0, 0, tzinfo=UTC)
OLD_PLACE = Place.endpoint("www.example.test:443", "192.0.2.11")


def _item(event: EventKind = EventKind.EXPIRING, **fields: Any) -> NoticeItem:
    values: dict[str, Any] = {
        "event": event,
        "severity": Severity.WARNING,
        "names": ("www.example.test",),
        "not_after": NOT_AFTER,
        "days_left": 7,
        "places": (Place.endpoint("www.example.test:443", "192.0.2.10"),),
    }
    values.update(fields)
    return NoticeItem(**values)


def _notice(*items: NoticeItem, event: EventKind = EventKind.EXPIRING) -> Notice:
    return Notice("k-1", "web", event, GENERATED_AT, items)


@pytest.mark.parametrize(
    ("days_left", "phrase"),
    [
        (30, "expires in 30 days (2027-01-10)"),
        (1, "expires in 1 day (2027-01-10)"),
        (0, "expires within a day (2027-01-10)"),
        (-1, "expired within the last day (2027-01-10)"),
        (-2, "expired 1 day ago (2027-01-10)"),
        (-10, "expired 9 days ago (2027-01-10)"),
    ],
)
def test_describe_expiry_days(days_left: int, phrase: str) -> None:
    assert describe_expiry(_item(days_left=days_left), GENERATED_AT) == phrase


def test_describe_expiry_without_days_left() -> None:
    before = NOT_AFTER - timedelta(seconds=1)
    after = NOT_AFTER + timedelta(seconds=1)

    item = _item(days_left=None)

    assert describe_expiry(item, before) == "expires on 2027-01-10"
    assert describe_expiry(item, NOT_AFTER) == "expired on 2027-01-10"
    assert describe_expiry(item, after) == "expired on 2027-01-10"
    assert (
        describe_expiry(_item(not_after=None), after) == "has no readable expiry date"
    )


def test_subject_expiring_single() -> None:
    places = (
        Place.endpoint("www.example.test:443", "192.0.2.10"),
        OLD_PLACE,
        Place.file("/etc/ssl/site.pem"),
    )

    subject = render_subject(_notice(_item(places=places)))

    assert subject == "www.example.test expires in 7 days (2027-01-10) at 3 places"


@pytest.mark.parametrize(
    ("item", "event", "subject"),
    [
        (
            _item(EventKind.EXPIRED, days_left=-3, severity=Severity.CRITICAL),
            EventKind.EXPIRED,
            "www.example.test expired 2 days ago (2027-01-10) at 1 place",
        ),
        (
            _item(
                EventKind.PROBLEM,
                message="The server does not send its intermediate.",
                finding_code="incomplete_chain",
            ),
            EventKind.PROBLEM,
            "www.example.test at 1 place: The server does not send its intermediate.",
        ),
        (
            _item(EventKind.PROBLEM, finding_code="weak_key"),
            EventKind.PROBLEM,
            "www.example.test at 1 place: weak_key",
        ),
        (
            _item(EventKind.CHANGED, new_not_after=NOT_AFTER + timedelta(days=90)),
            EventKind.CHANGED,
            "www.example.test changed at 1 place, now expires 2027-04-10",
        ),
        (
            _item(EventKind.RESOLVED, new_not_after=NOT_AFTER + timedelta(days=90)),
            EventKind.RESOLVED,
            "www.example.test renewed: now expires 2027-04-10 (was 2027-01-10)",
        ),
        (
            _item(EventKind.RESOLVED, message="The chain is complete again."),
            EventKind.RESOLVED,
            "www.example.test: The chain is complete again.",
        ),
        (
            _item(EventKind.STALE_DEPLOYMENT, stale_places=(OLD_PLACE,)),
            EventKind.STALE_DEPLOYMENT,
            "www.example.test: 1 place still serves the old certificate that expires "
            "2027-01-10",
        ),
        (
            _item(names=("a.example.test", "b.example.test", "c.example.test")),
            EventKind.EXPIRING,
            "a.example.test (+2 names) expires in 7 days (2027-01-10) at 1 place",
        ),
        (
            _item(names=(), fingerprint="3fa2910c" * 8),
            EventKind.EXPIRING,
            "certificate 3fa2910c3fa2910c expires in 7 days (2027-01-10) at 1 place",
        ),
    ],
)
def test_subject_per_event(item: NoticeItem, event: EventKind, subject: str) -> None:
    assert render_subject(_notice(item, event=event)) == subject


def test_subject_several_items_names_most_urgent() -> None:
    notice = _notice(
        _item(names=("later.example.test",), days_left=20),
        _item(names=("soon.example.test",), days_left=3),
        _item(names=("info.example.test",), severity=Severity.INFO, days_left=1),
    )

    assert render_subject(notice) == (
        "3 certificates need attention: soon.example.test expires in 3 days "
        "(2027-01-10) at 1 place, and 2 more"
    )


def test_subject_test_notice() -> None:
    notice = Notice("test-1", "web", EventKind.TEST, GENERATED_AT)

    assert render_subject(notice) == "certwatch test message for team web"


def test_subject_shortened_and_single_line() -> None:
    item = _item(names=("x" * 300 + "\r\nBcc: someone@example.test",))

    subject = render_subject(_notice(item))

    assert len(subject) == MAX_SUBJECT_LENGTH
    assert subject.endswith("…")
    assert "\n" not in subject
    assert "\r" not in subject


def test_items_sorted_most_urgent_first() -> None:
    expired = _item(EventKind.EXPIRED, severity=Severity.CRITICAL, days_left=-2)
    critical = _item(severity=Severity.CRITICAL, days_left=5)
    warning_soon = _item(days_left=10)
    warning_late = _item(days_left=25)
    unknown_days = _item(days_left=None, not_after=None)
    problem = _item(EventKind.PROBLEM, days_left=None)

    notice = _notice(
        unknown_days, warning_late, problem, critical, warning_soon, expired
    )

    assert notice.items == (
        expired,
        critical,
        warning_soon,
        warning_late,
        unknown_days,
        problem,
    )


def test_notice_rejects_invalid_key() -> None:
    for key in ("", "has space", "line\nbreak", "ü", "k" * 201):
        with pytest.raises(ValueError, match=r"Invalid idempotency key"):
            _notice(_item()).__class__(
                key, "web", EventKind.EXPIRING, GENERATED_AT, (_item(),)
            )


def test_notice_rejects_empty_items() -> None:
    with pytest.raises(ValueError, match=r"only a test notice may be empty"):
        Notice("k", "web", EventKind.EXPIRING, GENERATED_AT)


def test_notice_rejects_naive_time() -> None:
    with pytest.raises(ValueError, match=r"give a timezone-aware time"):
        Notice("k", "web", EventKind.TEST, datetime(2027, 1, 1))
    with pytest.raises(ValueError, match=r"Invalid not_after"):
        _item(not_after=datetime(2027, 1, 1))


def test_notice_converts_times_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    notice = Notice(
        "k", "web", EventKind.TEST, datetime(2027, 1, 3, 14, 0, tzinfo=plus_two)
    )

    assert notice.generated_at == GENERATED_AT
    assert notice.generated_at.tzinfo is UTC


def test_place_rejects_both_or_neither() -> None:
    with pytest.raises(ValueError, match=r"give either an endpoint target or a file"):
        Place()
    with pytest.raises(ValueError, match=r"give either an endpoint target or a file"):
        Place(target="www.example.test:443", path="/etc/ssl/site.pem")
    with pytest.raises(ValueError, match=r"a file has no address"):
        Place(path="/etc/ssl/site.pem", address="192.0.2.1")


def test_text_body_lists_details_and_places() -> None:
    text = render_text(make_notice())

    assert text.startswith("certwatch: 1 item for team web\n\n1. www.example.test")
    assert "   Severity: critical\n" in text
    assert "   Expires: 2027-01-10 12:00:00 UTC\n" in text
    assert "   Names: www.example.test, example.test\n" in text
    assert "   SHA-256: " + "3fa2910c" * 8 + "\n" in text
    assert "   Finding: expiring_soon\n" in text
    assert "   Places (3):\n     - www.example.test:443 at 192.0.2.10\n" in text
    assert "     - /etc/ssl/site.pem\n" in text
    assert text.endswith(
        "Sent by certwatch at 2027-01-03 12:00:00 UTC. Idempotency key: notice-0001\n"
    )


def test_text_body_stale_and_renewal() -> None:
    item = _item(
        EventKind.STALE_DEPLOYMENT,
        stale_places=(OLD_PLACE,),
        new_not_after=NOT_AFTER + timedelta(days=90),
        new_fingerprint="ab" * 32,
    )

    text = render_text(_notice(item, event=EventKind.STALE_DEPLOYMENT))

    assert "   New certificate expires: 2027-04-10 12:00:00 UTC\n" in text
    assert "   New SHA-256: " + "ab" * 32 + "\n" in text
    assert "   Still serving the old certificate (1):\n" in text
    assert "     - www.example.test:443 at 192.0.2.11\n" in text


def test_bodies_cap_items_and_places() -> None:
    many_places = tuple(
        Place.endpoint("www.example.test:443", f"192.0.2.{n}") for n in range(60)
    )
    items = [_item(places=many_places)] + [
        _item(names=(f"n{n}.example.test",)) for n in range(MAX_LISTED_ITEMS + 4)
    ]

    notice = _notice(*items)
    text = render_text(notice)
    html_body = render_html(notice)

    assert "     ... and 10 more places\n" in text
    assert "... and 5 more items not listed here." in text
    assert "<li>... and 10 more places</li>" in html_body
    assert "... and 5 more items not listed here." in html_body


def test_html_body_escapes_and_stays_self_contained() -> None:
    item = _item(
        EventKind.PROBLEM,
        names=('<img src="https://tracker.example.test/x.png">',),
        message="a & b < c",
        places=(Place.file("/etc/ssl/<b>site</b>.pem"),),
    )
    notice = replace(_notice(item, event=EventKind.PROBLEM), team="<web>")

    html_body = render_html(notice)

    assert "<img" not in html_body
    assert "&lt;img src=&quot;https://tracker.example.test/x.png&quot;&gt;" in html_body
    assert "a &amp; b &lt; c" in html_body
    assert "/etc/ssl/&lt;b&gt;site&lt;/b&gt;.pem" in html_body
    assert "team &lt;web&gt;" in html_body
    # Only inline styles, and nothing that a mail client would fetch.
    assert "<style" not in html_body
    assert "<link" not in html_body
    assert not re.search(r"<[^>]*\s(src|href)=", html_body)


def test_render_message_matches_parts() -> None:
    notice = make_notice()

    rendered = render_message(notice)

    assert rendered.subject == render_subject(notice)
    assert rendered.text == render_text(notice)
    assert rendered.html == render_html(notice)
