# ruff: noqa: F811 (the tests take the imported `site` fixture as a parameter)
"""Numbers, filters and concurrent writes at the edges of what the store takes.

The API and the pages check ids and offsets before a query uses them, so a
number past the database's integers gets the response to an unknown id
(404) or to an invalid parameter (422), never a 500 or a 503 that reads as an outage.
Concurrent adds on SQLite wait for the write lock instead of failing.
"""

from __future__ import annotations

import concurrent.futures
import logging
import shutil
import sqlite3
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event, func, select
from tests.monitor.helpers import Clock
from tests.web.test_api import Site, Team, bearer, site  # noqa: F401

from certwatch.store.api_tokens import create_api_token
from certwatch.store.database import create_store_engine, session_factory
from certwatch.store.inventory import ensure_team
from certwatch.store.models import EndpointRow
from certwatch.web.app import create_app
from certwatch.web.auth import SESSION_COOKIE
from certwatch.web.ids import MAX_BIG_ID, MAX_ID, MAX_OFFSET
from certwatch.web.server import WebServer
from certwatch.web.settings import WebSettings

HUGE = 2**63


def endpoint_count(site: Site, team_id: int) -> int:
    with site.sessions() as session:
        count = session.scalar(
            select(func.count()).where(EndpointRow.team_id == team_id)
        )
    return count or 0


def test_api_concurrent_adds_all_stored(site: Site) -> None:
    """Two adds for each team at once, the most that a team may run."""
    client = site.client()
    requests = [
        (team, f"{scheme}://127.0.0.1:1")
        for team in (site.alpha, site.beta)
        for scheme in ("smtps", "imaps")
    ]
    before = endpoint_count(site, site.alpha.id), endpoint_count(site, site.beta.id)
    start = threading.Barrier(len(requests))

    def add(request: tuple[Team, str]) -> httpx.Response:
        team, target = request
        with httpx.Client(base_url=client.base_url, timeout=60) as own:
            start.wait()
            return own.post(
                "/api/endpoints",
                json={"team_id": team.id, "targets": [target]},
                headers=bearer(team.member_token),
            )

    with concurrent.futures.ThreadPoolExecutor(len(requests)) as pool:
        responses = list(pool.map(add, requests))

    for response in responses:
        assert response.status_code == 201, response.text
    assert endpoint_count(site, site.alpha.id) == before[0] + 2
    assert endpoint_count(site, site.beta.id) == before[1] + 2


def test_api_concurrent_updates_all_applied(site: Site) -> None:
    """Each PATCH reads the endpoint, then writes it: the case SQLite rejected."""
    client = site.client()
    tags = [f"wave-{number}" for number in range(8)]
    start = threading.Barrier(len(tags))

    def patch(tag: str) -> int:
        with httpx.Client(base_url=client.base_url, timeout=60) as own:
            start.wait()
            response = own.patch(
                f"/api/endpoints/{site.alpha.endpoint_id}",
                json={"tags": [tag]},
                headers=bearer(site.alpha.member_token),
            )
            return response.status_code

    with concurrent.futures.ThreadPoolExecutor(len(tags)) as pool:
        codes = list(pool.map(patch, tags))

    assert codes == [200] * len(tags)


ENDPOINT_ROUTES = [
    ("GET", "/api/endpoints/{}"),
    ("PATCH", "/api/endpoints/{}"),
    ("DELETE", "/api/endpoints/{}"),
    ("POST", "/api/endpoints/{}/scan"),
    ("GET", "/api/endpoints/{}/observations"),
]


@pytest.mark.parametrize("number", [MAX_ID + 1, HUGE, 2**100, 0, -1])
@pytest.mark.parametrize(("method", "template"), ENDPOINT_ROUTES)
def test_api_endpoint_id_out_of_range_is_404(
    site: Site, method: str, template: str, number: int
) -> None:
    client = site.client()
    body = {"tags": ["x"]} if method == "PATCH" else None

    response = client.request(
        method,
        template.format(number),
        json=body,
        headers=bearer(site.alpha.member_token),
    )

    assert response.status_code == 404, response.text
    assert response.json()["detail"].startswith(f"Endpoint {number} not found")


@pytest.mark.parametrize("number", [MAX_BIG_ID + 1, 2**100, 0])
def test_api_alert_id_out_of_range_is_404(site: Site, number: int) -> None:
    client = site.client()

    response = client.post(
        f"/api/alerts/{number}/acknowledge",
        json={},
        headers=bearer(site.alpha.member_token),
    )

    assert response.status_code == 404, response.text
    assert response.json()["detail"].startswith(f"Alert {number} not found")


def test_api_largest_alert_id_is_unknown(site: Site) -> None:
    """The largest BIGINT reaches the query, which finds no alert."""
    client = site.client()

    response = client.post(
        f"/api/alerts/{MAX_BIG_ID}/acknowledge",
        json={},
        headers=bearer(site.alpha.member_token),
    )

    assert response.status_code == 404, response.text


OFFSET_ROUTES = [
    "/api/endpoints",
    "/api/alerts",
    "/api/certificates",
    "/api/endpoints/{endpoint_id}/observations",
]


@pytest.mark.parametrize("path", OFFSET_ROUTES)
def test_api_offset_past_limit_is_422(site: Site, path: str) -> None:
    client = site.client()
    url = path.format(endpoint_id=site.alpha.endpoint_id)

    response = client.get(
        url, params={"offset": MAX_OFFSET + 1}, headers=bearer(site.alpha.member_token)
    )

    assert response.status_code == 422, response.text
    assert "offset" in response.text


@pytest.mark.parametrize("path", OFFSET_ROUTES)
def test_api_largest_offset_gives_empty_page(site: Site, path: str) -> None:
    client = site.client()
    url = path.format(endpoint_id=site.alpha.endpoint_id)

    response = client.get(
        url, params={"offset": MAX_OFFSET}, headers=bearer(site.alpha.member_token)
    )

    assert response.status_code == 200, response.text
    assert response.json()["items"] == []
    assert response.json()["offset"] == MAX_OFFSET


@pytest.mark.parametrize("count", [21, 3000])
def test_api_tag_filters_over_limit_is_422(site: Site, count: int) -> None:
    client = site.client()
    params = [("tag", f"t{number % 2}") for number in range(count)]

    response = client.get(
        "/api/endpoints", params=params, headers=bearer(site.alpha.member_token)
    )

    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail.startswith(f"{count} tag parameters is over the limit")
    assert "at most 20 tags" in detail


def test_api_tag_filters_at_limit_are_applied(site: Site) -> None:
    client = site.client()
    params = [("tag", f"t{number}") for number in range(20)]

    response = client.get(
        "/api/endpoints", params=params, headers=bearer(site.alpha.member_token)
    )

    assert response.status_code == 200, response.text
    assert response.json()["items"] == []


def test_dashboard_many_tag_parameters_use_one(site: Site) -> None:
    """The dashboard filters by one tag, so more parameters add no conditions."""
    client = site.client()
    client.cookies.set(SESSION_COOKIE, site.alpha.owner_cookie)
    params = [("tag", f"t{number}") for number in range(3000)]

    response = client.get("/dashboard", params=params)

    assert response.status_code == 200, response.text[:500]


PAGE_ROUTES = [
    ("GET", "/teams/{}"),
    ("POST", "/teams/{}/invitations"),
    ("GET", "/teams/{}/tokens"),
    ("POST", "/teams/{}/tokens"),
    ("POST", "/teams/{team}/tokens/{}/revoke"),
    ("GET", "/teams/{}/settings"),
    ("GET", "/endpoints/{}"),
]


@pytest.mark.parametrize("number", [MAX_ID + 1, HUGE])
@pytest.mark.parametrize(("method", "template"), PAGE_ROUTES)
def test_pages_id_out_of_range_is_404(
    site: Site, method: str, template: str, number: int
) -> None:
    client = site.client()
    client.cookies.set(SESSION_COOKIE, site.alpha.owner_cookie)
    data = {"csrf_token": site.alpha.owner_csrf, "email": "x@example.test"}

    response = client.request(
        method,
        template.format(number, team=site.alpha.id),
        data=data if method == "POST" else None,
        headers={"Accept": "text/html"},
    )

    assert response.status_code == 404, response.text[:500]


def test_api_busy_database_says_retry(
    tmp_path: Path,
    sqlite_template: Path,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A lock held past the busy timeout gives a 503 that suggests a retry."""
    path = tmp_path / "store.db"
    shutil.copy(sqlite_template, path)
    engine = create_store_engine(f"sqlite:///{path}")

    def short_busy_timeout(connection: Any, _record: Any) -> None:
        # Runs after the store's own settings, so a test waits 0.2 s, not 30.
        connection.execute("PRAGMA busy_timeout=200")

    event.listen(engine, "connect", short_busy_timeout)
    sessions = session_factory(engine)
    with sessions.begin() as session:
        team_id = ensure_team(session, "locked", now=clock())
        _, token = create_api_token(
            session, team_id, name="ci", role="member", created_by=None, now=clock()
        )
    settings = replace(WebSettings(), port=0)
    server = WebServer(create_app(sessions, settings, now_fn=clock), settings)
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        with server.running(threading.Event()):
            holder.execute("BEGIN IMMEDIATE")
            base_url = f"http://{server.host}:{server.port}"
            with caplog.at_level(logging.WARNING, logger="certwatch.web"):
                response = httpx.get(f"{base_url}/api/endpoints", headers=bearer(token))
            holder.execute("ROLLBACK")
            after = httpx.get(f"{base_url}/api/endpoints", headers=bearer(token))
    finally:
        holder.close()
        engine.dispose()

    assert response.status_code == 503
    detail = response.json()["detail"]
    assert "busy" in detail
    assert "retry" in detail
    assert "cannot be read" not in detail
    assert "locked" not in detail
    assert "cannot read the inventory database" not in caplog.text
    assert "gave up waiting for a database lock" in caplog.text
    assert after.status_code == 200
