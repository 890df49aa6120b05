"""Team calendar feeds: tokens, the iCalendar content, and `certwatch team calendar`.

The feeds are fetched over HTTP from uvicorn after real scans of local TLS
servers, and parsed back with the icalendar library.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from click.testing import Result as CliResult
from icalendar import Calendar
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from tests.monitor.helpers import Clock, Pki
from tests.servers import LocalServer
from tests.web.conftest import ServeApp
from tests.web.helpers import add_endpoint, add_file_source, scan_due

from certwatch.cli import cli
from certwatch.store.alerts import find_team
from certwatch.store.inventory import ensure_team
from certwatch.store.models import TeamCalendarRow
from certwatch.web.calendar_tokens import (
    calendar_team,
    has_calendar,
    issue_calendar_token,
    token_sha256,
)

StartServer = Callable[..., LocalServer]


def issue(sessions: sessionmaker[Session], team: str, clock: Clock) -> str:
    with sessions.begin() as session:
        team_id = ensure_team(session, team, now=clock())
        return issue_calendar_token(session, team_id, now=clock())


def fetch_calendar(base_url: str, token: str) -> Calendar:
    response = httpx.get(f"{base_url}/calendar/{token}.ics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/calendar; charset=utf-8"
    return Calendar.from_ical(response.content)


@pytest.fixture
def inventory(
    sessions: sessionmaker[Session],
    local_server: StartServer,
    pki: Pki,
    clock: Clock,
    tmp_path: Path,
) -> int:
    """Team web serves pki.leaf at two endpoints and pki.other in a file.

    Team ops serves pki.renewed at one endpoint. Returns the port that
    serves pki.leaf.
    """
    leaf_server = local_server(chain=pki.chain(pki.leaf))
    renewed_server = local_server(chain=pki.chain(pki.renewed))
    pem = tmp_path / "site.pem"
    pem.write_bytes(pki.other.pem)
    port = leaf_server.port
    add_endpoint(sessions, "www.example.test", port, clock=clock, team="web")
    add_endpoint(sessions, "api.example.test", port, clock=clock, team="web")
    add_file_source(sessions, pem, clock=clock, team="web")
    add_endpoint(
        sessions, "ops.example.test", renewed_server.port, clock=clock, team="ops"
    )
    scan_due(sessions, clock, pki)
    return port


def test_calendar_events_per_certificate(
    inventory: int,
    sessions: sessionmaker[Session],
    serve_app: ServeApp,
    pki: Pki,
    clock: Clock,
) -> None:
    token = issue(sessions, "web", clock)

    calendar = fetch_calendar(serve_app(), token)

    events = {event["uid"]: event for event in calendar.walk("VEVENT")}
    with sessions() as session:
        team_id = find_team(session, "web")
    leaf_uid = f"certwatch-{pki.leaf.sha256}-team-{team_id}"
    other_uid = f"certwatch-{pki.other.sha256}-team-{team_id}"
    assert sorted(events) == sorted([leaf_uid, other_uid])
    leaf_event = events[leaf_uid]
    assert leaf_event.decoded("dtstart") == pki.leaf.cert.not_valid_after_utc
    assert str(leaf_event["summary"]) == (
        "Certificate www.example.test expires (2 places)"
    )
    description = str(leaf_event["description"])
    assert pki.leaf.sha256 in description
    assert f"- www.example.test:{inventory} (127.0.0.1)" in description
    assert f"- api.example.test:{inventory} (127.0.0.1)" in description
    other_event = events[other_uid]
    assert str(other_event["summary"]) == (
        "Certificate www.example.test expires (1 place)"
    )
    assert other_event.decoded("dtstart") == pki.other.cert.not_valid_after_utc
    assert calendar["version"] == "2.0"
    assert "web" in str(calendar["x-wr-calname"])


def test_calendar_alarm_seven_days_before(
    inventory: int, sessions: sessionmaker[Session], serve_app: ServeApp, clock: Clock
) -> None:
    token = issue(sessions, "ops", clock)

    calendar = fetch_calendar(serve_app(), token)

    [event] = calendar.walk("VEVENT")
    [alarm] = event.walk("VALARM")
    assert str(alarm["action"]) == "DISPLAY"
    assert alarm.decoded("trigger") == timedelta(days=-7)
    assert str(alarm["description"]) == str(event["summary"])


def test_calendar_uid_stable_across_fetches(
    inventory: int, sessions: sessionmaker[Session], serve_app: ServeApp, clock: Clock
) -> None:
    token = issue(sessions, "web", clock)
    base_url = serve_app()

    first = fetch_calendar(base_url, token)
    clock.advance(timedelta(hours=1))
    second = fetch_calendar(base_url, token)

    uids = sorted(str(event["uid"]) for event in first.walk("VEVENT"))
    assert uids == sorted(str(event["uid"]) for event in second.walk("VEVENT"))
    stamps = {event.decoded("dtstamp") for event in second.walk("VEVENT")}
    assert stamps == {clock()}


def test_calendar_other_team_certificates_absent(
    inventory: int,
    sessions: sessionmaker[Session],
    serve_app: ServeApp,
    pki: Pki,
    clock: Clock,
) -> None:
    token = issue(sessions, "ops", clock)

    calendar = fetch_calendar(serve_app(), token)

    [event] = calendar.walk("VEVENT")
    assert pki.renewed.sha256 in str(event["uid"])
    assert str(event["summary"]) == "Certificate www.example.test expires (1 place)"


def test_calendar_team_without_certificates(
    sessions: sessionmaker[Session], serve_app: ServeApp, clock: Clock
) -> None:
    token = issue(sessions, "empty", clock)

    calendar = fetch_calendar(serve_app(), token)

    assert calendar.walk("VEVENT") == []
    assert str(calendar["prodid"]).startswith("-//certwatch//")


def test_calendar_unknown_token_404(
    sessions: sessionmaker[Session], serve_app: ServeApp, clock: Clock
) -> None:
    issue(sessions, "web", clock)

    response = httpx.get(f"{serve_app()}/calendar/not-a-token.ics")

    assert response.status_code == 404
    assert "No calendar has this URL" in response.text


def test_calendar_rotation_replaces_token(
    sessions: sessionmaker[Session], serve_app: ServeApp, clock: Clock
) -> None:
    old = issue(sessions, "web", clock)
    new = issue(sessions, "web", clock)
    base_url = serve_app()

    old_response = httpx.get(f"{base_url}/calendar/{old}.ics")
    new_response = httpx.get(f"{base_url}/calendar/{new}.ics")

    assert old != new
    assert old_response.status_code == 404
    assert new_response.status_code == 200


def test_calendar_token_stored_hashed(
    sessions: sessionmaker[Session], clock: Clock
) -> None:
    token = issue(sessions, "web", clock)

    with sessions() as session:
        team_id = find_team(session, "web")
        stored = list(session.scalars(select(TeamCalendarRow.token_sha256)))
        found = calendar_team(session, token)

    assert len(token) >= 43
    assert stored == [token_sha256(token)]
    assert token not in stored
    assert found == team_id


# --- certwatch team calendar --------------------------------------------------


def run_certwatch(database_url: str, *args: str, **env: str) -> CliResult:
    environment = {
        "CERTWATCH_DATABASE_URL": database_url,
        "CERTWATCH_WEB_PUBLIC_URL": "https://certwatch.example.test/",
        **env,
    }
    return CliRunner().invoke(cli, list(args), env=environment)


def test_team_calendar_command_prints_url_once(
    sessions: sessionmaker[Session], database_url: str, clock: Clock
) -> None:
    with sessions.begin() as session:
        ensure_team(session, "web", now=clock())

    made = run_certwatch(database_url, "team", "calendar", "web")
    again = run_certwatch(database_url, "team", "calendar", "web")
    rotated = run_certwatch(database_url, "team", "calendar", "web", "--rotate")

    assert made.exit_code == 0, made.output
    first_url = made.stdout.splitlines()[-1]
    assert first_url.startswith("https://certwatch.example.test/calendar/")
    assert first_url.endswith(".ics")
    assert again.exit_code != 0
    assert "already has a calendar URL" in again.output
    assert "--rotate" in again.output
    assert rotated.exit_code == 0, rotated.output
    second_url = rotated.stdout.splitlines()[-1]
    token = second_url.removeprefix("https://certwatch.example.test/calendar/")
    with sessions() as session:
        assert calendar_team(session, token.removesuffix(".ics")) is not None
        old_token = first_url.rsplit("/", 1)[1].removesuffix(".ics")
        assert calendar_team(session, old_token) is None
        team_id = find_team(session, "web")
        assert team_id is not None
        assert has_calendar(session, team_id)


def test_team_calendar_command_unknown_team(database_url: str) -> None:
    outcome = run_certwatch(database_url, "team", "calendar", "nobody")

    assert outcome.exit_code != 0
    assert "Team 'nobody' not found" in outcome.output


def test_team_calendar_command_invalid_setting(database_url: str) -> None:
    outcome = run_certwatch(
        database_url,
        "team",
        "calendar",
        "default",
        CERTWATCH_WEB_PUBLIC_URL="ftp://certwatch.example.test",
    )

    assert outcome.exit_code != 0
    assert "CERTWATCH_WEB_PUBLIC_URL" in outcome.output
