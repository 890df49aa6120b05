"""The JSON API: team scoping, token roles, CSRF, limits and the instant report.

Each test serves the application over the test store (SQLite and
PostgreSQL) with uvicorn on 127.0.0.1 and calls it with httpx. Two teams, alpha and
beta, each have an owner, an endpoint pinned to a local TLS server, a scan
of it, an alert, and member and viewer tokens.
"""

from __future__ import annotations

import contextlib
import html
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker
from tests.dialogue_servers import DialogueOptions, DialogueServer
from tests.monitor.helpers import Clock, Pki, pinned, settings
from tests.servers import LocalServer, ServerOptions

from certwatch.monitor.instant import ScanSetup, StoredSources, scan_and_record
from certwatch.probe.resolve import StaticResolver
from certwatch.store.accounts import (
    add_membership,
    create_session,
    create_user,
    find_session,
)
from certwatch.store.api_tokens import create_api_token, revoke_api_token
from certwatch.store.inventory import SourceSettings, ensure_team, upsert_endpoint
from certwatch.store.models import AlertRow, ApiTokenRow, EndpointRow, TeamRow
from certwatch.web.app import create_app
from certwatch.web.auth import SESSION_COOKIE, session_csrf_token
from certwatch.web.server import WebServer
from certwatch.web.settings import WebSettings

NAME = "www.example.test"


@dataclass
class Team:
    """One team of the site with its ids and credentials."""

    id: int
    endpoint_id: int
    alert_id: int
    certificate: str
    owner_cookie: str
    owner_csrf: str
    member_token: str
    viewer_token: str


@dataclass
class Site:
    """The application and two teams."""

    sessions: sessionmaker[Session]
    clock: Clock
    pki: Pki
    server: LocalServer
    alpha: Team
    beta: Team
    stack: contextlib.ExitStack

    def client(self, web: WebSettings | None = None) -> httpx.Client:
        """Serve the application with `web` and return a client of it."""
        chosen = replace(web or WebSettings(requests_per_minute=10_000), port=0)
        app = create_app(self.sessions, chosen, now_fn=self.clock)
        scans = ScanSetup(
            monitor=settings(),
            policy=self.pki.policy,
            resolver=StaticResolver({NAME: ["127.0.0.1"]}),
        )
        app.state.certwatch = replace(app.state.certwatch, scans=scans)
        server = WebServer(app, chosen)
        self.stack.enter_context(server.running(threading.Event()))
        base_url = f"http://{server.host}:{server.port}"
        return self.stack.enter_context(httpx.Client(base_url=base_url))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def make_team(
    sessions: sessionmaker[Session], clock: Clock, pki: Pki, name: str, port: int
) -> Team:
    now = clock()
    with sessions.begin() as session:
        team_id = ensure_team(session, name, now=now)
        user = create_user(session, f"{name}@example.test", "unused", now=now)
        add_membership(session, user.id, team_id, "owner", now=now)
        cookie = create_session(session, user.id, now=now, lifetime=timedelta(days=1))
        _, member = create_api_token(
            session, team_id, name="ci", role="member", created_by=user.id, now=now
        )
        _, viewer = create_api_token(
            session, team_id, name="read", role="viewer", created_by=user.id, now=now
        )
        endpoint = pinned(f"{name}.example.test", port)
        stored = upsert_endpoint(
            session, endpoint, now=now, settings=SourceSettings(team=name)
        )
        alert = AlertRow(
            team_id=team_id,
            identity=f"expiry:{name}",
            event="expiring",
            code="expiring_soon",
            severity="warning",
            message=f"{name} expires soon.",
            places=[],
            opened_at=now,
            updated_at=now,
        )
        session.add(alert)
        session.flush()
        alert_id = alert.id
        login = find_session(session, cookie, now=now)
    assert login is not None
    setup = ScanSetup(monitor=settings(), policy=pki.policy)
    sources = StoredSources(endpoints={stored.record.id: endpoint})
    scanned = scan_and_record(sessions, sources, setup, now=now)
    [result] = scanned.by_endpoint[stored.record.id]
    assert result.leaf is not None
    return Team(
        id=team_id,
        endpoint_id=stored.record.id,
        alert_id=alert_id,
        certificate=result.leaf.sha256,
        owner_cookie=cookie,
        owner_csrf=session_csrf_token(login),
        member_token=member,
        viewer_token=viewer,
    )


@pytest.fixture
def site(sessions: sessionmaker[Session], clock: Clock, pki: Pki) -> Iterator[Site]:
    chains = {
        f"{name}.example.test": pki.chain(leaf)
        for name, leaf in (("alpha", pki.leaf), ("beta", pki.other))
    }
    options = ServerOptions(chain=pki.chain(pki.leaf), chains_by_name=chains)
    with LocalServer(options) as server, contextlib.ExitStack() as stack:
        alpha = make_team(sessions, clock, pki, "alpha", server.port)
        beta = make_team(sessions, clock, pki, "beta", server.port)
        yield Site(sessions, clock, pki, server, alpha, beta, stack)


def endpoint_row(site: Site, endpoint_id: int) -> EndpointRow | None:
    with site.sessions() as session:
        return session.get(EndpointRow, endpoint_id)


def alert_row(site: Site, alert_id: int) -> AlertRow:
    with site.sessions() as session:
        row = session.get(AlertRow, alert_id)
    assert row is not None
    return row


def test_api_create_returns_instant_report(site: Site) -> None:
    client = site.client()
    body = {"team_id": site.alpha.id, "targets": [f"{NAME}:{site.server.port}"]}

    response = client.post(
        "/api/endpoints", json=body, headers=bearer(site.alpha.member_token)
    )

    assert response.status_code == 201, response.text
    report = response.json()
    assert report["rejected"] == []
    [added] = report["added"]
    assert added["created"] is True
    [result] = added["results"]
    assert result["address"] == "127.0.0.1"
    assert result["days_left"] == 60
    assert result["error"] is None
    read = client.get(
        f"/api/endpoints/{added['endpoint_id']}",
        headers=bearer(site.alpha.viewer_token),
    )
    assert read.status_code == 200
    assert read.json()["team"] == "alpha"
    assert read.json()["last_status"] is not None


def cross_team_calls(beta: Team) -> list[tuple[str, str, dict[str, object] | None]]:
    """Every API route, called with team beta's ids."""
    endpoint = f"/api/endpoints/{beta.endpoint_id}"
    return [
        ("GET", f"/api/endpoints?team={beta.id}", None),
        ("POST", "/api/endpoints", {"team_id": beta.id, "targets": ["x.test"]}),
        ("GET", endpoint, None),
        ("PATCH", endpoint, {"tags": ["taken"], "enabled": False}),
        ("DELETE", endpoint, None),
        ("POST", f"{endpoint}/scan", None),
        ("GET", f"{endpoint}/observations", None),
        ("GET", f"/api/certificates?team={beta.id}", None),
        ("GET", f"/api/certificates/{beta.certificate}", None),
        ("GET", f"/api/alerts?team={beta.id}", None),
        ("POST", f"/api/alerts/{beta.alert_id}/acknowledge", {"until": None}),
    ]


@pytest.mark.parametrize("credential", ["token", "cookie"])
def test_api_other_team_ids_not_found(site: Site, credential: str) -> None:
    client = site.client()
    if credential == "token":
        headers = bearer(site.alpha.member_token)
    else:
        client.cookies.set(SESSION_COOKIE, site.alpha.owner_cookie)
        headers = {"X-CSRF-Token": site.alpha.owner_csrf}
    accepted = site.server.accepted

    for method, path, body in cross_team_calls(site.beta):
        response = client.request(method, path, json=body, headers=headers)
        assert response.status_code == 404, (method, path, response.text)
        assert "not found" in response.json()["detail"]

    row = endpoint_row(site, site.beta.endpoint_id)
    assert row is not None
    assert row.enabled
    assert alert_row(site, site.beta.alert_id).acknowledged_until is None
    assert site.server.accepted == accepted


def test_api_unknown_ids_same_answer(site: Site) -> None:
    client = site.client()
    headers = bearer(site.alpha.member_token)

    other = client.get(f"/api/endpoints/{site.beta.endpoint_id}", headers=headers)
    unknown = client.get("/api/endpoints/999999", headers=headers)

    assert other.status_code == unknown.status_code == 404
    assert other.json()["detail"].replace(str(site.beta.endpoint_id), "N") == (
        unknown.json()["detail"].replace("999999", "N")
    )


def test_api_own_team_reads(site: Site) -> None:
    client = site.client()
    headers = bearer(site.alpha.viewer_token)

    endpoints = client.get("/api/endpoints", headers=headers).json()
    observations = client.get(
        f"/api/endpoints/{site.alpha.endpoint_id}/observations", headers=headers
    ).json()
    certificates = client.get("/api/certificates", headers=headers).json()
    certificate = client.get(
        f"/api/certificates/{site.alpha.certificate}", headers=headers
    ).json()
    alerts = client.get("/api/alerts", headers=headers).json()

    assert [e["id"] for e in endpoints["items"]] == [site.alpha.endpoint_id]
    assert endpoints["total"] == 1
    [observation] = observations["items"]
    assert observation["latest"] is True
    assert observation["chain"][0] == site.alpha.certificate
    assert [c["sha256"] for c in certificates["items"]] == [site.alpha.certificate]
    [place] = certificate["deployments"]
    assert place["endpoint_id"] == site.alpha.endpoint_id
    assert place["current"] is True
    assert [a["id"] for a in alerts["items"]] == [site.alpha.alert_id]


def test_api_update_and_delete(site: Site) -> None:
    client = site.client()
    headers = bearer(site.alpha.member_token)
    path = f"/api/endpoints/{site.alpha.endpoint_id}"

    updated = client.patch(
        path,
        json={"tags": ["prod", "web"], "interval": "30m", "enabled": False},
        headers=headers,
    )
    invalid = client.patch(path, json={"interval": "soon"}, headers=headers)
    deleted = client.delete(path, headers=headers)
    again = client.get(path, headers=headers)

    assert updated.status_code == 200, updated.text
    assert updated.json()["tags"] == ["prod", "web"]
    assert updated.json()["interval_seconds"] == 1800
    assert updated.json()["enabled"] is False
    assert invalid.status_code == 422
    assert "'soon'" in invalid.json()["detail"]
    assert deleted.status_code == 204
    assert again.status_code == 404
    assert endpoint_row(site, site.alpha.endpoint_id) is None


def test_api_scan_now(site: Site) -> None:
    client = site.client()
    accepted = site.server.accepted

    response = client.post(
        f"/api/endpoints/{site.alpha.endpoint_id}/scan",
        headers=bearer(site.alpha.member_token),
    )

    assert response.status_code == 200, response.text
    [result] = response.json()["results"]
    assert result["days_left"] == 60
    assert site.server.accepted == accepted + 1


def test_api_list_filters_and_paging(site: Site) -> None:
    client = site.client()
    headers = bearer(site.alpha.member_token)
    body = {"team_id": site.alpha.id, "targets": ["a.test", "b.test"], "tags": ["x"]}
    client.post("/api/endpoints", json=body, headers=headers)

    tagged = client.get("/api/endpoints?tag=x", headers=headers).json()
    page = client.get("/api/endpoints?limit=1&offset=1", headers=headers).json()
    unknown = client.get("/api/endpoints?status=unknown", headers=headers).json()
    invalid = client.get("/api/endpoints?status=bad", headers=headers)

    assert sorted(e["target"] for e in tagged["items"]) == ["a.test", "b.test"]
    assert page["total"] == 3
    assert len(page["items"]) == 1
    assert page["offset"] == 1
    assert unknown["total"] == 2
    assert invalid.status_code == 422
    assert "'bad'" in invalid.json()["detail"]


def test_api_acknowledge_alert(site: Site) -> None:
    client = site.client()
    until = site.clock() + timedelta(days=3)
    path = f"/api/alerts/{site.alpha.alert_id}/acknowledge"
    headers = bearer(site.alpha.member_token)

    response = client.post(path, json={"until": until.isoformat()}, headers=headers)
    passed = client.post(
        path,
        json={"until": (site.clock() - timedelta(days=1)).isoformat()},
        headers=headers,
    )
    no_threshold = client.post(path, json={}, headers=headers)

    assert response.status_code == 200, response.text
    assert response.json()["acknowledged_by"].startswith("API token ")
    assert alert_row(site, site.alpha.alert_id).acknowledged_until == until
    assert passed.status_code == 422
    assert "it has passed" in passed.json()["detail"]
    assert no_threshold.status_code == 422
    assert "give until" in no_threshold.json()["detail"]


def test_api_viewer_token_cannot_write(site: Site) -> None:
    client = site.client()
    headers = bearer(site.alpha.viewer_token)
    endpoint = f"/api/endpoints/{site.alpha.endpoint_id}"
    writes: list[tuple[str, str, dict[str, object] | None]] = [
        ("POST", "/api/endpoints", {"team_id": site.alpha.id, "targets": ["x.test"]}),
        ("PATCH", endpoint, {"enabled": False}),
        ("DELETE", endpoint, None),
        ("POST", f"{endpoint}/scan", None),
        ("POST", f"/api/alerts/{site.alpha.alert_id}/acknowledge", {}),
    ]

    for method, path, body in writes:
        response = client.request(method, path, json=body, headers=headers)
        assert response.status_code == 403, (method, path, response.text)
        assert "needs the member role" in response.json()["detail"]

    row = endpoint_row(site, site.alpha.endpoint_id)
    assert row is not None
    assert row.enabled


def test_api_token_revoked_or_invalid(site: Site) -> None:
    client = site.client()
    path = "/api/endpoints"
    assert client.get(path, headers=bearer(site.alpha.viewer_token)).status_code == 200
    with site.sessions.begin() as session:
        token_id = session.scalar(
            select(ApiTokenRow.id).where(
                ApiTokenRow.name == "read", ApiTokenRow.team_id == site.alpha.id
            )
        )
        assert token_id is not None
        assert revoke_api_token(session, site.alpha.id, token_id, now=site.clock())
        used = session.get(ApiTokenRow, token_id)
        assert used is not None
        assert used.last_used_at == site.clock()

    revoked = client.get(path, headers=bearer(site.alpha.viewer_token))
    made_up = client.get(path, headers=bearer("cw_" + "A" * 43))
    basic = client.get(path, headers={"Authorization": "Basic dXNlcjpwYXNz"})
    anonymous = client.get(path)

    for response in (revoked, made_up, basic, anonymous):
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "unknown or revoked" in revoked.json()["detail"]
    assert site.alpha.viewer_token not in revoked.text


def test_api_cookie_write_needs_csrf(site: Site) -> None:
    client = site.client()
    client.cookies.set(SESSION_COOKIE, site.alpha.owner_cookie)
    path = f"/api/endpoints/{site.alpha.endpoint_id}"

    read = client.get(path)
    forged = client.patch(path, json={"enabled": False})
    wrong = client.patch(path, json={"enabled": False}, headers={"X-CSRF-Token": "x"})
    row = endpoint_row(site, site.alpha.endpoint_id)
    assert row is not None
    assert row.enabled
    allowed = client.patch(
        path, json={"enabled": False}, headers={"X-CSRF-Token": site.alpha.owner_csrf}
    )

    assert read.status_code == 200
    assert forged.status_code == 403
    assert "X-CSRF-Token" in forged.json()["detail"]
    assert wrong.status_code == 403
    assert allowed.status_code == 200
    assert allowed.json()["enabled"] is False


def test_api_rate_limit_per_token(site: Site) -> None:
    client = site.client(WebSettings(requests_per_minute=3))
    member = bearer(site.alpha.member_token)

    answers = [client.get("/api/endpoints", headers=member) for _ in range(4)]
    other = client.get("/api/endpoints", headers=bearer(site.alpha.viewer_token))
    site.clock.advance(timedelta(seconds=60))
    later = client.get("/api/endpoints", headers=member)

    assert [r.status_code for r in answers] == [200, 200, 200, 429]
    assert answers[3].headers["Retry-After"] == "60"
    assert "More than 3 requests in a minute" in answers[3].json()["detail"]
    assert other.status_code == 200
    assert later.status_code == 200


def test_form_posts_rate_limited(site: Site) -> None:
    client = site.client(WebSettings(requests_per_minute=2))
    client.cookies.set(SESSION_COOKIE, site.alpha.owner_cookie)
    form = {"csrf_token": site.alpha.owner_csrf, "name": "ci", "role": "viewer"}
    path = f"/teams/{site.alpha.id}/tokens"

    answers = [client.post(path, data=form) for _ in range(3)]

    assert [r.status_code for r in answers] == [200, 200, 429]
    assert answers[2].headers["Retry-After"] == "60"


def test_api_team_endpoint_limit(site: Site) -> None:
    with site.sessions.begin() as session:
        session.execute(
            update(TeamRow).where(TeamRow.id == site.alpha.id).values(endpoint_limit=2)
        )
    client = site.client()
    headers = bearer(site.alpha.member_token)

    first = client.post(
        "/api/endpoints",
        json={"team_id": site.alpha.id, "targets": ["a.test"]},
        headers=headers,
    )
    over = client.post(
        "/api/endpoints",
        json={"team_id": site.alpha.id, "targets": ["b.test"]},
        headers=headers,
    )

    assert first.status_code == 201
    assert over.status_code == 400
    assert "may watch at most 2 endpoints" in over.json()["detail"]
    listed = client.get("/api/endpoints", headers=headers).json()
    assert listed["total"] == 2


def test_api_private_address_open_site(site: Site) -> None:
    web = WebSettings(signup="open", allow_private_targets=False)
    client = site.client(web)
    accepted = site.server.accepted
    targets = [f"127.0.0.1:{site.server.port}", f"{NAME}:{site.server.port}"]

    response = client.post(
        "/api/endpoints",
        json={"team_id": site.alpha.id, "targets": targets},
        headers=bearer(site.alpha.member_token),
    )

    assert response.status_code == 422
    report = response.json()
    assert report["added"] == []
    assert [r["text"] for r in report["rejected"]] == targets
    for rejected in report["rejected"]:
        assert "(loopback address)" in rejected["reason"]
        assert "CERTWATCH_ALLOW_PRIVATE_TARGETS=true" in rejected["reason"]
    assert site.server.accepted == accepted


def test_openapi_documents_api(site: Site) -> None:
    client = site.client()

    document = client.get("/openapi.json").json()

    paths = document["paths"]
    assert set(paths) >= {
        "/api/endpoints",
        "/api/endpoints/{endpoint_id}",
        "/api/endpoints/{endpoint_id}/scan",
        "/api/endpoints/{endpoint_id}/observations",
        "/api/certificates",
        "/api/certificates/{sha256}",
        "/api/alerts",
        "/api/alerts/{alert_id}/acknowledge",
    }
    created = paths["/api/endpoints"]["post"]["responses"]["201"]
    assert created["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/AddReportOut"
    }


def test_docs_served_without_cdn(site: Site) -> None:
    client = site.client()

    page = client.get("/docs")
    script = client.get("/docs/assets/swagger-ui-bundle.js")
    styles = client.get("/docs/assets/swagger-ui.css")
    other = client.get("/docs/assets/index.html")

    assert page.status_code == 200
    assert '"/docs/assets/swagger-ui-bundle.js"' in page.text
    assert "https://" not in page.text
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert "SwaggerUIBundle" in script.text[:2000]
    assert styles.status_code == 200
    assert other.status_code == 404


def test_token_pages_owner_only(site: Site) -> None:
    client = site.client()
    client.cookies.set(SESSION_COOKIE, site.alpha.owner_cookie)
    path = f"/teams/{site.alpha.id}/tokens"
    form = {"csrf_token": site.alpha.owner_csrf, "name": "deploy", "role": "member"}

    made = client.post(path, data=form)
    token = re.search(r'value="(cw_[^"]+)"', made.text)
    listed = client.get(path)
    other_team = client.get(f"/teams/{site.beta.id}/tokens")
    owner_role = client.post(path, data={**form, "role": "owner"})
    forged = client.post(path, data={**form, "csrf_token": "x"})

    assert made.status_code == 200
    assert token is not None
    secret = token.group(1)
    assert len(secret) >= 3 + 43
    assert secret not in listed.text
    assert secret[:10] + "…" in listed.text
    assert "deploy" in listed.text
    assert other_team.status_code == 404
    assert owner_role.status_code == 400
    assert "Invalid token role 'owner'" in html.unescape(owner_role.text)
    assert forged.status_code == 403
    api = client.get("/api/endpoints", headers=bearer(secret))
    assert api.status_code == 200
    assert [e["id"] for e in api.json()["items"]] == [site.alpha.endpoint_id]


def test_token_revoke_form(site: Site) -> None:
    client = site.client()
    client.cookies.set(SESSION_COOKIE, site.alpha.owner_cookie)
    with site.sessions() as session:
        token_id = session.scalar(
            select(ApiTokenRow.id).where(
                ApiTokenRow.team_id == site.alpha.id, ApiTokenRow.name == "ci"
            )
        )
        beta_token = session.scalar(
            select(ApiTokenRow.id).where(ApiTokenRow.team_id == site.beta.id)
        )
    form = {"csrf_token": site.alpha.owner_csrf}

    cross = client.post(f"/teams/{site.alpha.id}/tokens/{beta_token}/revoke", data=form)
    revoked = client.post(
        f"/teams/{site.alpha.id}/tokens/{token_id}/revoke",
        data=form,
        follow_redirects=False,
    )

    assert cross.status_code == 404
    assert revoked.status_code == 303
    headers = bearer(site.alpha.member_token)
    assert client.get("/api/endpoints", headers=headers).status_code == 401
    beta = bearer(site.beta.member_token)
    assert client.get("/api/endpoints", headers=beta).status_code == 200


def test_token_page_member_forbidden(site: Site) -> None:
    now = site.clock()
    with site.sessions.begin() as session:
        user = create_user(session, "member@example.test", "unused", now=now)
        add_membership(session, user.id, site.alpha.id, "member", now=now)
        cookie = create_session(session, user.id, now=now, lifetime=timedelta(days=1))
    client = site.client()
    client.cookies.set(SESSION_COOKIE, cookie)

    response = client.get(f"/teams/{site.alpha.id}/tokens")

    assert response.status_code == 403


def test_api_create_with_protocol(site: Site) -> None:
    client = site.client()
    headers = bearer(site.alpha.member_token)
    options = DialogueOptions("smtp", site.pki.chain(site.pki.leaf))

    with DialogueServer(options) as smtp:
        smtp_target = f"{NAME}:{smtp.port}"
        body = {"team_id": site.alpha.id, "targets": [smtp_target], "protocol": "smtp"}
        response = client.post("/api/endpoints", json=body, headers=headers)

    assert response.status_code == 201, response.text
    [added] = response.json()["added"]
    [result] = added["results"]
    assert result["error"] is None
    assert result["days_left"] == 60
    assert smtp.server_names == [NAME]
    read = client.get(f"/api/endpoints/{added['endpoint_id']}", headers=headers)
    assert read.json()["protocol"] == "smtp"
    assert read.json()["target"] == smtp_target


def test_api_create_with_protocol_auto(site: Site) -> None:
    client = site.client()
    headers = bearer(site.alpha.member_token)
    # An unknown port means https, which the site's TLS server speaks.
    body = {
        "team_id": site.alpha.id,
        "targets": [f"{NAME}:{site.server.port}"],
        "protocol": "auto",
    }

    response = client.post("/api/endpoints", json=body, headers=headers)

    assert response.status_code == 201, response.text
    [added] = response.json()["added"]
    assert added["results"][0]["days_left"] == 60
    read = client.get(f"/api/endpoints/{added['endpoint_id']}", headers=headers)
    assert read.json()["protocol"] == "https"


def test_api_create_unknown_protocol(site: Site) -> None:
    client = site.client()
    body = {"team_id": site.alpha.id, "targets": [NAME], "protocol": "gopher"}

    response = client.post(
        "/api/endpoints", json=body, headers=bearer(site.alpha.member_token)
    )

    assert response.status_code == 400, response.text
    assert "Unknown protocol 'gopher'" in response.text


def test_openapi_protocol_mentions_auto(site: Site) -> None:
    document = site.client().get("/openapi.json").json()

    fields = document["components"]["schemas"]["EndpointCreate"]["properties"]
    assert "auto to pick it from the port" in fields["protocol"]["description"]
