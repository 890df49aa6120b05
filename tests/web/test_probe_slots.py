"""The bound on instant probes, against endpoints that never respond.

Each instant probe holds a thread of FastAPI's pool for up to the probe
timeout. These tests send storms of scan-now and add requests to real
uvicorn, at a local TLS port that accepts connections and never answers,
and check that the requests over the limits get 429 at once while
`/healthz` stays fast.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from tests.monitor.helpers import Clock, Pki, pinned, settings
from tests.servers import LocalServer, Mode, ServerOptions

from certwatch.monitor.instant import ScanSetup
from certwatch.store.accounts import (
    add_membership,
    create_session,
    create_user,
    find_session,
)
from certwatch.store.api_tokens import create_api_token
from certwatch.store.inventory import SourceSettings, ensure_team, upsert_endpoint
from certwatch.store.models import EndpointRow
from certwatch.web.app import create_app
from certwatch.web.auth import SESSION_COOKIE, session_csrf_token
from certwatch.web.dependencies import WebContext
from certwatch.web.probe_slots import (
    HOLDER_LIMIT,
    RETRY_AFTER_SECONDS,
    SITE_LIMIT,
    ProbeSlots,
    ProbeSlotsFull,
)
from certwatch.web.server import WebServer
from certwatch.web.settings import WebSettings

PROBE_TIMEOUT = 10.0
# A health check waits for no probe, so anything near the probe timeout
# means that it queued for a thread. The margin covers a busy machine:
# up to 3.2 s was seen while other test suites ran beside this one.
QUICK_BOUND = PROBE_TIMEOUT * 0.4


@dataclass
class StallTeam:
    """A team whose one endpoint is the stalling server."""

    id: int
    endpoint_id: int
    token: str
    cookie: str
    csrf: str


@dataclass
class StallSite:
    """Real uvicorn serving the app, and the teams of the test."""

    base_url: str
    context: WebContext
    teams: list[StallTeam]
    stall_port: int


def _make_team(
    sessions: sessionmaker[Session], clock: Clock, name: str, port: int
) -> StallTeam:
    now = clock()
    with sessions.begin() as session:
        team_id = ensure_team(session, name, now=now)
        user = create_user(session, f"{name}@example.test", "unused", now=now)
        add_membership(session, user.id, team_id, "owner", now=now)
        cookie = create_session(session, user.id, now=now, lifetime=timedelta(days=1))
        _, token = create_api_token(
            session, team_id, name="ci", role="member", created_by=user.id, now=now
        )
        stored = upsert_endpoint(
            session,
            pinned(f"{name}.example.test", port),
            now=now,
            settings=SourceSettings(team=name),
        )
        login = find_session(session, cookie, now=now)
    assert login is not None
    return StallTeam(
        team_id, stored.record.id, token, cookie, session_csrf_token(login)
    )


@pytest.fixture
def stall_site(
    sessions: sessionmaker[Session], clock: Clock, pki: Pki
) -> Iterator[StallSite]:
    web = WebSettings(port=0, requests_per_minute=10_000)
    options = ServerOptions(mode=Mode.STALL)
    with LocalServer(options) as stall, contextlib.ExitStack() as stack:
        teams = [
            _make_team(sessions, clock, f"stall{number}", stall.port)
            for number in range(5)
        ]
        app = create_app(sessions, web, now_fn=clock)
        scans = ScanSetup(
            monitor=settings(probe=replace(settings().probe, timeout=PROBE_TIMEOUT)),
            policy=pki.policy,
        )
        context = replace(app.state.certwatch, scans=scans)
        app.state.certwatch = context
        server = WebServer(app, web)
        stack.enter_context(server.running(threading.Event()))
        base_url = f"http://{server.host}:{server.port}"
        yield StallSite(base_url, context, teams, stall.port)


def _timed_post(
    base_url: str, path: str, token: str, body: object = None
) -> tuple[int, float, httpx.Headers, str]:
    started = time.monotonic()
    with httpx.Client(base_url=base_url, timeout=60) as client:
        response = client.post(
            path, json=body, headers={"Authorization": f"Bearer {token}"}
        )
    return (
        response.status_code,
        time.monotonic() - started,
        response.headers,
        response.text,
    )


def _watch_healthz(base_url: str, stop: threading.Event) -> list[float]:
    durations = []
    with httpx.Client(base_url=base_url, timeout=60) as client:
        while not stop.is_set():
            started = time.monotonic()
            response = client.get("/healthz")
            durations.append(time.monotonic() - started)
            assert response.status_code in (200, 503)
            stop.wait(0.1)
    return durations


def _wait_running(slots: ProbeSlots, count: int) -> None:
    deadline = time.monotonic() + 30
    while slots.running < count:
        assert time.monotonic() < deadline, f"{slots.running} probes running"
        time.sleep(0.01)


def test_scan_storm_leaves_healthz_fast(stall_site: StallSite) -> None:
    # 60 requests at once, as in the storm that exhausted the thread pool.
    teams = [stall_site.teams[number % 5] for number in range(60)]
    stop = threading.Event()
    with concurrent.futures.ThreadPoolExecutor(len(teams) + 1) as pool:
        watcher = pool.submit(_watch_healthz, stall_site.base_url, stop)
        time.sleep(0.3)
        futures = [
            pool.submit(
                _timed_post,
                stall_site.base_url,
                f"/api/endpoints/{team.endpoint_id}/scan",
                team.token,
            )
            for team in teams
        ]
        outcomes = [future.result() for future in futures]
        stop.set()
        healthz = watcher.result()

    scanned = [outcome for outcome in outcomes if outcome[0] == 200]
    rejected = [outcome for outcome in outcomes if outcome[0] == 429]
    assert len(scanned) == SITE_LIMIT
    assert len(rejected) == len(teams) - SITE_LIMIT
    assert max(duration for _, duration, _, _ in scanned) < 2 * PROBE_TIMEOUT
    assert max(duration for _, duration, _, _ in rejected) < QUICK_BOUND
    for _, _, headers, _ in rejected:
        assert headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert len(healthz) >= 5
    assert max(healthz) < QUICK_BOUND


def test_scan_over_team_limit_gets_429(stall_site: StallSite) -> None:
    team = stall_site.teams[0]
    path = f"/api/endpoints/{team.endpoint_id}/scan"
    slots = stall_site.context.probe_slots
    with concurrent.futures.ThreadPoolExecutor(HOLDER_LIMIT) as pool:
        running = [
            pool.submit(_timed_post, stall_site.base_url, path, team.token)
            for _ in range(HOLDER_LIMIT)
        ]
        _wait_running(slots, HOLDER_LIMIT)
        status, duration, headers, text = _timed_post(
            stall_site.base_url, path, team.token
        )
        other = stall_site.teams[1]
        other_status = _timed_post(
            stall_site.base_url,
            f"/api/endpoints/{other.endpoint_id}/scan",
            other.token,
        )[0]
        finished = [future.result()[0] for future in running]

    assert status == 429
    assert duration < QUICK_BOUND
    assert headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert f"Your team already runs {HOLDER_LIMIT} scans" in text
    assert other_status == 200
    assert finished == [200] * HOLDER_LIMIT
    assert slots.running == 0


def test_add_over_team_limit_stores_nothing(
    stall_site: StallSite, sessions: sessionmaker[Session]
) -> None:
    team = stall_site.teams[0]
    scan_path = f"/api/endpoints/{team.endpoint_id}/scan"
    target = f"127.0.0.1:{stall_site.stall_port}"
    body = {"team_id": team.id, "targets": [target]}
    with concurrent.futures.ThreadPoolExecutor(HOLDER_LIMIT) as pool:
        running = [
            pool.submit(_timed_post, stall_site.base_url, scan_path, team.token)
            for _ in range(HOLDER_LIMIT)
        ]
        _wait_running(stall_site.context.probe_slots, HOLDER_LIMIT)
        api = _timed_post(stall_site.base_url, "/api/endpoints", team.token, body)
        with httpx.Client(base_url=stall_site.base_url, timeout=60) as browser:
            browser.cookies.set(SESSION_COOKIE, team.cookie)
            page = browser.post(
                "/endpoints/new",
                data={"csrf_token": team.csrf, "team": str(team.id), "targets": target},
            )
        for future in running:
            future.result()

    assert api[0] == 429
    assert api[2]["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert page.status_code == 429
    assert page.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert "Your team already runs" in page.text
    with sessions() as session:
        hosts = session.scalars(
            select(EndpointRow.host).where(EndpointRow.team_id == team.id)
        ).all()
    assert "127.0.0.1" not in hosts


def test_probe_slots_release_after_error() -> None:
    slots = ProbeSlots(site_limit=3, holder_limit=1)

    with pytest.raises(RuntimeError), slots.hold("team:1"):
        raise RuntimeError("probe failed")

    assert slots.running == 0
    with slots.hold("team:1"):
        assert slots.running == 1


def test_probe_slots_limits() -> None:
    slots = ProbeSlots(site_limit=2, holder_limit=1)

    with slots.hold("team:1"):
        with pytest.raises(ProbeSlotsFull, match="Your team already runs 1 scans"):
            slots._acquire("team:1")
        with slots.hold("team:2"):
            with pytest.raises(ProbeSlotsFull, match="This site already runs 2"):
                slots._acquire("team:3")
            assert slots.running == 2

    assert slots.running == 0
