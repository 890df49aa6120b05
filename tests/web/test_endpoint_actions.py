"""Scan now, settings and removal on the endpoint page, and PATCH rescheduling.

The site of test_api.py serves two teams whose endpoints point at one
local TLS server. The forms are posted as a browser posts them, with the
session cookie and the CSRF token of the page.
"""

from __future__ import annotations

import html
import re
import threading
from dataclasses import replace
from datetime import timedelta

import httpx
from sqlalchemy import select
from tests.web.test_api import Site, bearer, endpoint_row, site  # noqa: F401

from certwatch.store.accounts import (
    add_membership,
    create_session,
    create_user,
    find_session,
)
from certwatch.store.models import EndpointTagRow, ObservationRow
from certwatch.web.app import create_app
from certwatch.web.auth import SESSION_COOKIE, session_csrf_token
from certwatch.web.probe_slots import ProbeSlots
from certwatch.web.server import WebServer
from certwatch.web.settings import WebSettings


def browser(site: Site, cookie: str) -> httpx.Client:  # noqa: F811
    client = site.client()
    client.cookies.set(SESSION_COOKIE, cookie)
    return client


def owner(site: Site) -> tuple[httpx.Client, str]:  # noqa: F811
    return browser(site, site.alpha.owner_cookie), site.alpha.owner_csrf


def viewer(site: Site) -> tuple[httpx.Client, str]:  # noqa: F811
    now = site.clock()
    with site.sessions.begin() as session:
        user = create_user(session, "viewer@example.test", "unused", now=now)
        add_membership(session, user.id, site.alpha.id, "viewer", now=now)
        cookie = create_session(session, user.id, now=now, lifetime=timedelta(days=1))
        login = find_session(session, cookie, now=now)
    assert login is not None
    return browser(site, cookie), session_csrf_token(login)


def observation_count(site: Site, endpoint_id: int) -> int:  # noqa: F811
    with site.sessions() as session:
        rows = session.scalars(
            select(ObservationRow.id).where(ObservationRow.endpoint_id == endpoint_id)
        )
        return len(list(rows))


def text_of(page: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def test_endpoint_page_forms_for_members_only(site: Site) -> None:  # noqa: F811
    client, _ = owner(site)
    viewing, _ = viewer(site)
    path = f"/endpoints/{site.alpha.endpoint_id}"

    owned = client.get(path).text
    viewed = viewing.get(path).text

    for action in ("/scan", "/settings", "/remove"):
        assert f'{path}{action}"' in owned
        assert f'{path}{action}"' not in viewed


def test_endpoint_scan_now(site: Site) -> None:  # noqa: F811
    client, csrf = owner(site)
    endpoint_id = site.alpha.endpoint_id
    before = observation_count(site, endpoint_id)
    accepted = site.server.accepted

    response = client.post(f"/endpoints/{endpoint_id}/scan", data={"csrf_token": csrf})

    assert response.status_code == 303
    assert response.headers["location"] == f"/endpoints/{endpoint_id}?done=scanned"
    assert site.server.accepted == accepted + 1
    assert observation_count(site, endpoint_id) == before + 1
    assert "Scanned now" in client.get(response.headers["location"]).text


def test_endpoint_scan_now_slots_full(site: Site) -> None:  # noqa: F811
    chosen = WebSettings(requests_per_minute=10_000, port=0)
    app = create_app(site.sessions, chosen, now_fn=site.clock)
    no_slots = ProbeSlots(holder_limit=0)
    app.state.certwatch = replace(app.state.certwatch, probe_slots=no_slots)
    server = WebServer(app, chosen)
    site.stack.enter_context(server.running(threading.Event()))
    client = site.stack.enter_context(
        httpx.Client(
            base_url=f"http://{server.host}:{server.port}",
            cookies={SESSION_COOKIE: site.alpha.owner_cookie},
        )
    )
    endpoint_id = site.alpha.endpoint_id
    accepted = site.server.accepted

    response = client.post(
        f"/endpoints/{endpoint_id}/scan", data={"csrf_token": site.alpha.owner_csrf}
    )

    assert response.status_code == 429
    assert "Your team already runs 0 scans or adds at once" in text_of(response.text)
    assert "<h1>Endpoint <code>alpha.example.test:" in response.text
    assert site.server.accepted == accepted


def test_endpoint_settings_reschedule(site: Site) -> None:  # noqa: F811
    client, csrf = owner(site)
    endpoint_id = site.alpha.endpoint_id
    before = endpoint_row(site, endpoint_id)
    assert before is not None and before.last_scanned_at is not None

    response = client.post(
        f"/endpoints/{endpoint_id}/settings",
        data={
            "csrf_token": csrf,
            "tags": "web, prod",
            "interval": "30m",
            "enabled": "on",
        },
    )
    after = endpoint_row(site, endpoint_id)
    with site.sessions() as session:
        tags = sorted(
            session.scalars(
                select(EndpointTagRow.tag).where(
                    EndpointTagRow.endpoint_id == endpoint_id
                )
            )
        )

    assert response.status_code == 303
    assert after is not None
    assert after.interval_seconds == 1800
    # One new interval after the last scan, moved by at most 10 % either way.
    planned = before.last_scanned_at + timedelta(minutes=30)
    assert abs(after.next_scan_at - planned) <= timedelta(minutes=3)
    assert after.enabled is True
    assert tags == ["prod", "web"]


def test_endpoint_settings_disable_and_invalid(site: Site) -> None:  # noqa: F811
    client, csrf = owner(site)
    endpoint_id = site.alpha.endpoint_id

    disabled = client.post(
        f"/endpoints/{endpoint_id}/settings",
        data={"csrf_token": csrf, "tags": "", "interval": "6h"},
    )
    invalid = client.post(
        f"/endpoints/{endpoint_id}/settings",
        data={"csrf_token": csrf, "tags": "ok", "interval": "soon", "enabled": "on"},
    )
    row = endpoint_row(site, endpoint_id)

    assert disabled.status_code == 303
    assert row is not None and row.enabled is False
    assert invalid.status_code == 400
    assert "Invalid duration 'soon'" in text_of(invalid.text)
    assert 'value="soon"' in invalid.text


def test_endpoint_remove_after_confirmation(site: Site) -> None:  # noqa: F811
    client, csrf = owner(site)
    endpoint_id = site.alpha.endpoint_id

    confirmation = client.get(f"/endpoints/{endpoint_id}/remove")
    assert endpoint_row(site, endpoint_id) is not None
    removed = client.post(f"/endpoints/{endpoint_id}/remove", data={"csrf_token": csrf})

    assert confirmation.status_code == 200
    assert "Remove endpoint" in confirmation.text
    assert f'action="/endpoints/{endpoint_id}/remove"' in confirmation.text
    assert removed.status_code == 303
    assert endpoint_row(site, endpoint_id) is None
    assert client.get(f"/endpoints/{endpoint_id}").status_code == 404


def test_endpoint_actions_rejected(site: Site) -> None:  # noqa: F811
    client, csrf = owner(site)
    viewing, viewer_csrf = viewer(site)
    own, other = site.alpha.endpoint_id, site.beta.endpoint_id
    settings = {"tags": "", "interval": "1h", "enabled": "on"}

    for action in ("scan", "settings", "remove"):
        foreign = client.post(
            f"/endpoints/{other}/{action}", data={"csrf_token": csrf, **settings}
        )
        by_viewer = viewing.post(
            f"/endpoints/{own}/{action}", data={"csrf_token": viewer_csrf, **settings}
        )
        forged = client.post(f"/endpoints/{own}/{action}", data=settings)
        assert foreign.status_code == 404, action
        assert by_viewer.status_code == 403, action
        assert forged.status_code == 403, action
    assert client.get(f"/endpoints/{other}/remove").status_code == 404
    assert viewing.get(f"/endpoints/{own}/remove").status_code == 403
    assert endpoint_row(site, own) is not None
    assert endpoint_row(site, other) is not None


def test_api_patch_interval_reschedules(site: Site) -> None:  # noqa: F811
    client = site.client()
    path = f"/api/endpoints/{site.alpha.endpoint_id}"
    before = endpoint_row(site, site.alpha.endpoint_id)
    assert before is not None and before.last_scanned_at is not None

    response = client.patch(
        path, json={"interval": "30m"}, headers=bearer(site.alpha.member_token)
    )
    after = endpoint_row(site, site.alpha.endpoint_id)

    assert response.status_code == 200, response.text
    assert after is not None
    # One new interval after the last scan, moved by at most 10 % either way.
    planned = before.last_scanned_at + timedelta(minutes=30)
    assert abs(after.next_scan_at - planned) <= timedelta(minutes=3)
    assert response.json()["next_scan_at"].startswith(
        after.next_scan_at.strftime("%Y-%m-%dT%H:%M")
    )
