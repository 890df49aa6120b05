"""The wording of expired certificates: whole days or hours since not_after.

Days left are rounded down, so one second past one day after not_after is
-2 days left. The pages must still show "expired 1 day ago".
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker
from tests.certs import NOW, Issued
from tests.web.conftest import ServeApp
from tests.web.test_dashboard import Users, intermediate, scanned_endpoint  # noqa: F401

from certwatch.result import Status
from certwatch.web.expiry_words import expired_words, plural
from certwatch.x509.facts import days_left


@pytest.fixture
def users(serve_app: ServeApp, sessions: sessionmaker[Session]) -> Iterator[Users]:
    """Accounts on a served application; their clients close after the test."""
    accounts = Users(sessions, serve_app())
    yield accounts
    accounts.close()


def page_text(page: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


@pytest.mark.parametrize(
    ("elapsed", "expected"),
    [
        (timedelta(seconds=1), "expired less than an hour ago"),
        (timedelta(hours=1), "expired 1 hour ago"),
        (timedelta(hours=23, minutes=59), "expired 23 hours ago"),
        (timedelta(days=1), "expired 1 day ago"),
        (timedelta(days=1, seconds=1), "expired 1 day ago"),
        (timedelta(days=2) - timedelta(seconds=1), "expired 1 day ago"),
        (timedelta(days=2), "expired 2 days ago"),
        (timedelta(days=400, hours=5), "expired 400 days ago"),
    ],
)
def test_expired_words_counts_whole_days(elapsed: timedelta, expected: str) -> None:
    assert expired_words(NOW - elapsed, NOW) == expected


def test_expired_words_not_expired() -> None:
    assert expired_words(NOW + timedelta(seconds=1), NOW) == "expires later"


def test_plural_counts() -> None:
    assert plural(1, "attempt") == "1 attempt"
    assert plural(0, "attempt") == "0 attempts"
    assert plural(2, "delivery", "deliveries") == "2 deliveries"


def test_pages_word_expiry_one_day_ago(
    users: Users,
    sessions: sessionmaker[Session],
    intermediate: Issued,  # noqa: F811
) -> None:
    not_after = NOW - timedelta(days=1, seconds=1)
    assert days_left(not_after, NOW) == -2
    client = users.login("admin@example.test")
    endpoint_id = scanned_endpoint(
        sessions, intermediate, "www.example.test", not_after, Status.CRITICAL
    )

    dashboard = page_text(client.get("/dashboard").text)
    endpoint = page_text(client.get(f"/endpoints/{endpoint_id}").text)

    assert "expired 1 day ago" in dashboard
    assert "2 days ago" not in dashboard
    assert "expired 1 day ago" in endpoint
    assert "2 days ago" not in endpoint
