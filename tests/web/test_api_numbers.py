"""Numbers out of range in API requests get 422 or 404, never a server error.

A JSON number can be larger than any row id, larger than 64 bits, or
infinite (`1e999` parses as infinity), and each once reached the
database or the error response and failed there. Each case runs on
SQLite and on PostgreSQL, over uvicorn on 127.0.0.1.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker
from tests.monitor.helpers import Clock
from tests.web.conftest import ServeApp

from certwatch.store.accounts import create_user
from certwatch.store.api_tokens import create_api_token
from certwatch.store.inventory import ensure_team
from certwatch.store.models import AlertRow

BAD_NUMBERS = [
    "1e999",
    "-1e999",
    "NaN",
    "9223372036854775808",
    "18446744073709551616",
    "2147483648",
    "1e300",
    "1.5",
    "0",
    "-1",
]


@pytest.fixture
def alert_id(sessions: sessionmaker[Session], clock: Clock) -> int:
    """An open alert of `default`."""
    with sessions.begin() as session:
        alert = AlertRow(
            team_id=ensure_team(session, "default", now=clock()),
            identity="expiry:www.example.test",
            event="expiring",
            code="expiring_soon",
            severity="warning",
            message="www.example.test expires soon.",
            places=[],
            opened_at=clock(),
            updated_at=clock(),
        )
        session.add(alert)
        session.flush()
        return alert.id


@pytest.fixture
def client(
    serve_app: ServeApp, sessions: sessionmaker[Session], clock: Clock
) -> Iterator[httpx.Client]:
    """A client of the served app with a member token of `default`."""
    with sessions.begin() as session:
        team_id = ensure_team(session, "default", now=clock())
        user = create_user(session, "owner@example.test", "unused", now=clock())
        _, token = create_api_token(
            session, team_id, name="ci", role="member", created_by=user.id, now=clock()
        )
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    with httpx.Client(base_url=serve_app(), headers=headers) as made:
        yield made


@pytest.mark.parametrize("number", BAD_NUMBERS)
def test_api_numbers_team_id_rejected(
    client: httpx.Client, number: str, caplog: pytest.LogCaptureFixture
) -> None:
    body = '{"team_id": ' + number + ', "targets": ["www.example.test"]}'

    with caplog.at_level(logging.ERROR):
        response = client.post("/api/endpoints", content=body)

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "team_id"]
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_api_numbers_team_id_largest_accepted(client: httpx.Client) -> None:
    """The largest row id passes validation and gets the 404 of a foreign team."""
    body = '{"team_id": 2147483647, "targets": ["www.example.test"]}'

    response = client.post("/api/endpoints", content=body)

    assert response.status_code == 404
    assert "Team 2147483647 not found" in response.json()["detail"]


@pytest.mark.parametrize("number", ["1e999", "-1e999", "NaN", "1e20"])
def test_api_numbers_until_rejected(client: httpx.Client, number: str) -> None:
    response = client.post(
        "/api/alerts/1/acknowledge", content='{"until": ' + number + "}"
    )

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "until"]


@pytest.mark.parametrize(
    "until", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"]
)
def test_api_numbers_until_outside_utc(
    client: httpx.Client, alert_id: int, until: str
) -> None:
    """A time that has no UTC form is rejected before it reaches the store."""
    response = client.post(
        f"/api/alerts/{alert_id}/acknowledge", content='{"until": "' + until + '"}'
    )

    assert response.status_code == 422
    assert f"Invalid until {until!r}" in response.json()["detail"]
    assert "outside the years 1 to 9999 in UTC" in response.json()["detail"]


def test_api_numbers_until_accepted(client: httpx.Client, alert_id: int) -> None:
    response = client.post(
        f"/api/alerts/{alert_id}/acknowledge",
        content='{"until": "9999-12-31T09:59:59-14:00"}',
    )

    assert response.status_code == 200
    assert response.json()["acknowledged_until"].startswith("9999-12-31T23:59:59")


def test_api_numbers_non_finite_input_shown(client: httpx.Client) -> None:
    """The 422 names the rejected value, written as text when JSON cannot hold it."""
    response = client.post(
        "/api/endpoints", content='{"team_id": 1e999, "targets": ["www.example.test"]}'
    )

    assert response.json()["detail"][0]["input"] == "inf"


@pytest.mark.parametrize(
    "path",
    [
        "/api/endpoints?team=9223372036854775808",
        "/api/certificates?team=9223372036854775808",
        "/api/alerts?team=9223372036854775808",
        "/api/endpoints/9223372036854775808",
        "/api/alerts/18446744073709551616/acknowledge",
    ],
)
def test_api_numbers_large_ids_not_found(client: httpx.Client, path: str) -> None:
    if path.endswith("/acknowledge"):
        response = client.post(path, content="{}")
    else:
        response = client.get(path)

    assert response.status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/api/endpoints?team=1e999",
        "/api/endpoints?offset=9223372036854775808",
        "/api/endpoints?limit=1e999",
    ],
)
def test_api_numbers_bad_query_rejected(client: httpx.Client, path: str) -> None:
    response = client.get(path)

    assert response.status_code == 422
