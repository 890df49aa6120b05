"""The team settings page: contacts, reminders, escalation and test messages.

The test message goes to a real aiosmtpd server and a real HTTP receiver
on 127.0.0.1, and to a webhook on a port where nothing listens.
"""

from __future__ import annotations

import html
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker
from tests.alerts.conftest import (  # noqa: F401
    HttpReceiver,
    StartSmtp,
    http_receiver,
    smtp_pki,
    smtp_server,
)
from tests.monitor.helpers import Clock
from tests.servers import closed_port
from tests.web.conftest import ServeApp
from tests.web.page_helpers import (  # noqa: F401
    Visitor,
    Visitors,
    make_team,
    visitors,
)

from certwatch.alerts.settings import SmtpSecurity
from certwatch.store.alerts import add_contact, list_contacts, team_summaries

SECRET = "T0KEN-s3cret-value"


@pytest.fixture
def teams(sessions: sessionmaker[Session], clock: Clock) -> Iterator[tuple[int, int]]:
    """Teams web and ops, each with a webhook contact whose URL contains a secret."""
    web = make_team(sessions, "web", clock)
    ops = make_team(sessions, "ops", clock)
    with sessions.begin() as session:
        for team_id in (web, ops):
            add_contact(
                session,
                team_id,
                kind="webhook",
                address=f"https://hooks.example.test/services/{SECRET}?key={SECRET}",
                escalation=False,
                now=clock(),
            )
    yield web, ops


def contacts_of(sessions: sessionmaker[Session], team_id: int) -> list[str]:
    with sessions() as session:
        return [f"{c.kind}:{c.address}" for c in list_contacts(session, team_id)]


def contact_id(sessions: sessionmaker[Session], team_id: int) -> int:
    with sessions() as session:
        return list_contacts(session, team_id)[0].id


def web_users(
    serve_app: ServeApp, users: Visitors, teams: tuple[int, int], *roles: str
) -> list[Visitor]:
    """Serve the pages and log in `ROLE@example.test` with each role in team web."""
    base_url = serve_app()
    web, _ = teams
    return [users.make(base_url, f"{role}@example.test", {web: role}) for role in roles]


def test_settings_page_masks_secrets(
    serve_app: ServeApp,
    visitors: Visitors,  # noqa: F811
    teams: tuple[int, int],
) -> None:
    web, _ = teams
    owner, member, viewer = web_users(
        serve_app, visitors, teams, "owner", "member", "viewer"
    )

    owner_page = owner.client.get(f"/teams/{web}/settings")
    member_page = member.client.get(f"/teams/{web}/settings")
    viewer_page = viewer.client.get(f"/teams/{web}/settings")
    team_page = viewer.client.get(f"/teams/{web}")

    for page in (owner_page, member_page, viewer_page):
        assert page.status_code == 200
        assert SECRET not in page.text
        assert "webhook:https://hooks.example.test/services/…?…" in page.text
        assert "30,14,7,3,1 (the default)" in page.text
        assert "1d (the site default)" in page.text
    assert "Add the contact" in owner_page.text
    assert "/remove" in owner_page.text
    for page in (member_page, viewer_page):
        assert "Add the contact" not in page.text
        assert "/remove" not in page.text
        assert "Save the settings" not in page.text
    assert "Send a test notification" in member_page.text
    assert "Send a test notification" not in viewer_page.text
    assert f'href="/teams/{web}/settings"' in team_page.text


def test_settings_other_team_404(
    serve_app: ServeApp,
    visitors: Visitors,  # noqa: F811
    teams: tuple[int, int],
    sessions: sessionmaker[Session],
) -> None:
    web, ops = teams
    [owner] = web_users(serve_app, visitors, teams, "owner")
    ops_contact = contact_id(sessions, ops)
    before = contacts_of(sessions, ops)

    responses = [
        owner.client.get(f"/teams/{ops}/settings"),
        owner.post(f"/teams/{ops}/contacts", {"kind": "email", "address": "a@b.test"}),
        owner.post(f"/teams/{ops}/contacts/{ops_contact}/remove", {}),
        owner.post(f"/teams/{web}/contacts/{ops_contact}/remove", {}),
        owner.post(f"/teams/{ops}/settings", {"reminders": "7"}),
        owner.post(f"/teams/{ops}/notify-test", {}),
        owner.client.get("/teams/99999999999999999999/settings"),
    ]

    for response in responses:
        assert response.status_code == 404, response.request.url
        assert SECRET not in response.text
    assert contacts_of(sessions, ops) == before


def test_contact_add_and_remove(
    serve_app: ServeApp,
    visitors: Visitors,  # noqa: F811
    teams: tuple[int, int],
    sessions: sessionmaker[Session],
) -> None:
    web, _ = teams
    [owner] = web_users(serve_app, visitors, teams, "owner")

    added = owner.post(
        f"/teams/{web}/contacts",
        {"kind": "email", "address": "Ops@Example.test", "escalation": "on"},
    )
    page = owner.client.get(added.headers["location"])
    with sessions() as session:
        email = next(c for c in list_contacts(session, web) if c.kind == "email")
    removed = owner.post(f"/teams/{web}/contacts/{email.id}/remove", {})

    assert added.status_code == 303
    assert added.headers["location"] == f"/teams/{web}/settings?done=added"
    assert "The contact was added." in page.text
    # The parser lowers the domain only: local parts may be case-sensitive.
    assert "email:Ops@example.test" in page.text
    assert email.address == "Ops@example.test"
    assert email.escalation is True
    assert removed.status_code == 303
    assert "email:Ops@example.test" not in contacts_of(sessions, web)


@pytest.mark.parametrize(
    ("kind", "address", "message"),
    [
        ("email", "not-an-address", "Invalid email address 'not-an-address'"),
        (
            "slack",
            f"http://hooks.example.test/services/{SECRET}",
            "slack webhooks use https; write https:// instead of http://.",
        ),
        ("pager", "https://pager.example.test/x", "Invalid contact kind 'pager'"),
        ("webhook", "", "give an address after 'webhook:'"),
    ],
)
def test_contact_add_invalid(
    serve_app: ServeApp,
    visitors: Visitors,  # noqa: F811
    teams: tuple[int, int],
    sessions: sessionmaker[Session],
    kind: str,
    address: str,
    message: str,
) -> None:
    web, _ = teams
    [owner] = web_users(serve_app, visitors, teams, "owner")
    before = contacts_of(sessions, web)

    response = owner.post(f"/teams/{web}/contacts", {"kind": kind, "address": address})

    assert response.status_code == 400
    assert message in html.unescape(response.text)
    assert SECRET not in response.text
    assert contacts_of(sessions, web) == before


def test_contact_escalation_flag(
    serve_app: ServeApp,
    visitors: Visitors,  # noqa: F811
    teams: tuple[int, int],
    sessions: sessionmaker[Session],
) -> None:
    web, _ = teams
    [owner] = web_users(serve_app, visitors, teams, "owner")
    identifier = contact_id(sessions, web)

    made = owner.post(
        f"/teams/{web}/contacts/{identifier}/escalation", {"escalation": "on"}
    )
    with sessions() as session:
        escalation = list_contacts(session, web)[0].escalation
    cleared = owner.post(f"/teams/{web}/contacts/{identifier}/escalation", {})
    with sessions() as session:
        after = list_contacts(session, web)[0].escalation

    assert made.status_code == 303
    assert escalation is True
    assert cleared.status_code == 303
    assert after is False


def test_settings_save_and_validate(
    serve_app: ServeApp,
    visitors: Visitors,  # noqa: F811
    teams: tuple[int, int],
    sessions: sessionmaker[Session],
) -> None:
    web, _ = teams
    owner, member = web_users(serve_app, visitors, teams, "owner", "member")

    saved = owner.post(
        f"/teams/{web}/settings", {"reminders": "7, 30", "escalate_after": "4h"}
    )
    kept = owner.post(f"/teams/{web}/settings", {"reminders": "", "escalate_after": ""})
    bad_schedule = owner.post(f"/teams/{web}/settings", {"reminders": "soon"})
    bad_delay = owner.post(f"/teams/{web}/settings", {"escalate_after": "forever"})
    forbidden = member.post(f"/teams/{web}/settings", {"reminders": "1"})
    no_token = owner.client.post(f"/teams/{web}/settings", data={"reminders": "1"})

    with sessions() as session:
        summary = team_summaries(session, web)[0]
    assert saved.status_code == 303
    assert kept.status_code == 303
    assert summary.reminder_schedule == "30,7"
    assert summary.escalate_after is not None
    assert summary.escalate_after.total_seconds() == 4 * 3600
    assert bad_schedule.status_code == 400
    assert "Reminders: " in bad_schedule.text
    assert "&#39;soon&#39;" in bad_schedule.text
    assert bad_delay.status_code == 400
    assert "Escalate after: Invalid duration &#39;forever&#39;" in bad_delay.text
    assert forbidden.status_code == 403
    assert no_token.status_code == 403
    page = owner.client.get(f"/teams/{web}/settings")
    assert "<td>30,7</td>" in page.text
    assert "<td>4h</td>" in page.text


def test_settings_hostile_team_name_escaped(
    serve_app: ServeApp,
    visitors: Visitors,  # noqa: F811
    sessions: sessionmaker[Session],
    clock: Clock,
) -> None:
    hostile = "<script>alert(1)</script>"
    team_id = make_team(sessions, hostile, clock)
    base_url = serve_app()
    owner = visitors.make(base_url, "owner@example.test", {team_id: "owner"})

    page = owner.client.get(f"/teams/{team_id}/settings")
    test = owner.post(f"/teams/{team_id}/notify-test", {})

    assert page.status_code == 200
    assert hostile not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert test.status_code == 409
    assert hostile not in test.text
    assert "has no contacts" in test.text


async def test_notify_test_reports_each_contact(
    serve_app: ServeApp,
    visitors: Visitors,  # noqa: F811
    sessions: sessionmaker[Session],
    clock: Clock,
    smtp_server: StartSmtp,  # noqa: F811
    http_receiver: HttpReceiver,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    smtp = await smtp_server(SmtpSecurity.PLAIN)
    monkeypatch.delenv("CERTWATCH_CONFIG", raising=False)
    monkeypatch.setenv("CERTWATCH_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("CERTWATCH_SMTP_PORT", str(smtp.port))
    monkeypatch.setenv("CERTWATCH_SMTP_SECURITY", "plain")
    monkeypatch.setenv("CERTWATCH_SMTP_FROM", "certwatch@example.test")
    team_id = make_team(sessions, "web", clock)
    with closed_port() as down:
        with sessions.begin() as session:
            for kind, address in (
                ("email", "ops@example.test"),
                ("webhook", http_receiver.url(f"/hook/{SECRET}")),
                ("webhook", f"http://127.0.0.1:{down}/hook/{SECRET}"),
            ):
                add_contact(
                    session,
                    team_id,
                    kind=kind,
                    address=address,
                    escalation=kind == "email",
                    now=clock(),
                )
        base_url = serve_app()
        member = visitors.make(base_url, "member@example.test", {team_id: "member"})
        async with httpx.AsyncClient(
            base_url=base_url, cookies=member.client.cookies
        ) as client:
            response = await client.post(
                f"/teams/{team_id}/notify-test",
                data={"csrf_token": member.csrf},
                timeout=30,
            )

    text = html.unescape(response.text)
    assert response.status_code == 200
    assert "2 of 3 contacts received it" in text
    rows = text.split("<caption>Test notification", 1)[1].split("</table>", 1)[0]
    assert rows.count("Delivered") == 2
    assert rows.count("Failed") == 1
    assert f"webhook:http://127.0.0.1:{down}/hook/…" in rows
    assert "connecting to the receiver failed" in rows
    assert SECRET not in response.text
    assert len(smtp.handler.received) == 1
    assert smtp.handler.received[0].recipients == ["ops@example.test"]
    assert len(http_receiver.requests) == 1
    assert http_receiver.requests[0].json()["event"] == "test"
