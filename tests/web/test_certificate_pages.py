"""The certificate inventory pages, scoped to the user's teams.

Local TLS servers serve the test PKI's certificates, the monitor scans them
into the store (SQLite and PostgreSQL), and uvicorn serves the pages.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker
from tests.monitor.helpers import INTERVAL, Clock, Pki
from tests.servers import LocalServer
from tests.web.conftest import ServeApp
from tests.web.helpers import add_endpoint, add_file_source, scan_due
from tests.web.page_helpers import (  # noqa: F401
    Inventory,
    Visitors,
    build_inventory,
    make_team,
    visitors,
)

from certwatch.web import certificate_pages

StartServer = Callable[..., LocalServer]


@pytest.fixture
def inventory(
    sessions: sessionmaker[Session],
    clock: Clock,
    pki: Pki,
    local_server: StartServer,
    tmp_path: Path,
) -> Inventory:
    """The two teams of `Inventory`, stored and scanned once."""
    return build_inventory(sessions, clock, pki, local_server, tmp_path)


def test_certificates_list_only_own_teams(
    serve_app: ServeApp,
    visitors: Visitors,  # noqa: F811
    inventory: Inventory,
    pki: Pki,
) -> None:
    base_url = serve_app()
    web_user = visitors.make(base_url, "web@example.test", {inventory.web: "viewer"})
    ops_user = visitors.make(base_url, "ops@example.test", {inventory.ops: "member"})

    web_page = web_user.client.get("/certificates")
    ops_page = ops_user.client.get("/certificates")

    assert web_page.status_code == 200
    assert pki.leaf.sha256 in web_page.text
    assert pki.other.sha256 in web_page.text
    assert pki.renewed.sha256 not in web_page.text
    assert "ops.example.test" not in web_page.text
    assert "2 certificates deployed now" in web_page.text
    assert ops_page.status_code == 200
    assert pki.renewed.sha256 in ops_page.text
    assert pki.leaf.sha256 not in ops_page.text
    assert pki.other.sha256 not in ops_page.text
    assert "www.example.test:" not in ops_page.text


def test_certificate_other_team_fingerprint_404(
    serve_app: ServeApp,
    visitors: Visitors,  # noqa: F811
    inventory: Inventory,
    pki: Pki,
) -> None:
    base_url = serve_app()
    ops_user = visitors.make(base_url, "ops@example.test", {inventory.ops: "owner"})

    for sha256 in (pki.leaf.sha256, pki.other.sha256, "0" * 64, "not-a-fingerprint"):
        response = ops_user.client.get(f"/certificates/{sha256}")
        assert response.status_code == 404, sha256
        assert sha256 not in response.text or sha256 == "not-a-fingerprint"
    own = ops_user.client.get(f"/certificates/{pki.renewed.sha256}")
    team_filter = ops_user.client.get(f"/certificates?team={inventory.web}")
    assert own.status_code == 200
    assert team_filter.status_code == 404
    assert pki.leaf.sha256 not in team_filter.text


def test_certificate_page_other_team_renewal_not_stale(
    serve_app: ServeApp,
    visitors: Visitors,  # noqa: F811
    inventory: Inventory,
    pki: Pki,
) -> None:
    base_url = serve_app()
    web_user = visitors.make(base_url, "web@example.test", {inventory.web: "member"})

    page = web_user.client.get(f"/certificates/{pki.leaf.sha256.upper()}")
    text = html.unescape(page.text)

    assert page.status_code == 200
    assert f'href="/endpoints/{inventory.www}"' in page.text
    assert f'href="/endpoints/{inventory.api}"' in page.text
    assert f"/endpoints/{inventory.ops_endpoint}" not in page.text
    assert "ops.example.test" not in text
    assert pki.leaf.cert.not_valid_after_utc.strftime("%Y-%m-%d %H:%M") in text
    # Only team ops serves the renewal, and another team's servers never
    # make web's addresses stale.
    assert "still serve" not in text
    assert "other teams" not in text
    assert "Stale" not in text
    assert pki.renewed.sha256 not in page.text


def test_certificate_stale_counts_own_addresses(
    serve_app: ServeApp,
    visitors: Visitors,  # noqa: F811
    inventory: Inventory,
    pki: Pki,
    sessions: sessionmaker[Session],
    clock: Clock,
    local_server: StartServer,
) -> None:
    renewed_server = local_server(chain=pki.chain(pki.renewed))
    add_endpoint(
        sessions, "new.example.test", renewed_server.port, clock=clock, team="web"
    )
    scan_due(sessions, clock, pki)
    base_url = serve_app()
    web_user = visitors.make(base_url, "web@example.test", {inventory.web: "viewer"})

    listing = html.unescape(web_user.client.get("/certificates").text)
    page = web_user.client.get(f"/certificates/{pki.leaf.sha256}")

    old_date = pki.leaf.cert.not_valid_after_utc.date().isoformat()
    new_date = pki.renewed.cert.not_valid_after_utc.date().isoformat()
    expected = (
        "2 of 3 addresses still serve the certificate that expires on "
        f"{old_date}; the other address serves a "
        f"newer one that expires on {new_date}."
    )
    assert expected in listing
    assert expected in html.unescape(page.text)
    assert f'href="/certificates/{pki.renewed.sha256}"' in page.text
    assert "Stale" in listing


def test_certificate_deployed_before(
    serve_app: ServeApp,
    visitors: Visitors,  # noqa: F811
    inventory: Inventory,
    pki: Pki,
    sessions: sessionmaker[Session],
    clock: Clock,
) -> None:
    inventory.pem.write_bytes(pki.leaf.pem)
    clock.advance(INTERVAL + timedelta(minutes=1))
    scan_due(sessions, clock, pki)
    base_url = serve_app()
    web_user = visitors.make(base_url, "web@example.test", {inventory.web: "viewer"})

    page = web_user.client.get(f"/certificates/{pki.other.sha256}")
    listing = web_user.client.get("/certificates")

    text = page.text
    assert page.status_code == 200
    deployed_now, _, deployed_before = text.partition("<h2>Deployed before</h2>")
    assert "No endpoint or file of your teams shows this certificate" in deployed_now
    assert str(inventory.pem) in deployed_before
    assert pki.other.sha256 not in listing.text


def test_certificates_team_filter_and_pages(
    serve_app: ServeApp,
    visitors: Visitors,  # noqa: F811
    inventory: Inventory,
    pki: Pki,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(certificate_pages, "PAGE_SIZE", 1)
    base_url = serve_app()
    user = visitors.make(
        base_url,
        "both@example.test",
        {inventory.web: "viewer", inventory.ops: "viewer"},
    )

    everything = [user.client.get(f"/certificates?page={n}") for n in (1, 2, 3, 4)]
    ops_only = user.client.get(f"/certificates?team={inventory.ops}")
    invalid = user.client.get("/certificates?page=zero")

    # Soonest expiry first: the leaf and the other leaf expire together,
    # in 60 days, and the renewed certificate in 150.
    first_two = everything[0].text + everything[1].text
    assert pki.leaf.sha256 in first_two
    assert pki.other.sha256 in first_two
    assert pki.renewed.sha256 in everything[2].text
    assert "Page 1 of 3" in everything[0].text
    assert 'href="?page=2"' in everything[0].text
    assert "past the end of the list" in everything[3].text
    assert pki.renewed.sha256 in ops_only.text
    assert pki.leaf.sha256 not in ops_only.text
    assert invalid.status_code == 400
    assert "Invalid page number &#39;zero&#39;" in invalid.text


def test_certificate_hostile_names_escaped(
    serve_app: ServeApp,
    visitors: Visitors,  # noqa: F811
    sessions: sessionmaker[Session],
    clock: Clock,
    pki: Pki,
    tmp_path: Path,
) -> None:
    # No slash, so the text can also name a folder.
    hostile = "<img src=x onerror=alert(1)>"
    team_id = make_team(sessions, f"{hostile}team", clock)
    folder = tmp_path / f"{hostile}"
    folder.mkdir()
    pem = folder / "cert.pem"
    pem.write_bytes(pki.other.pem)
    add_file_source(sessions, pem, clock=clock, team=f"{hostile}team")
    scan_due(sessions, clock, pki)
    base_url = serve_app()
    user = visitors.make(base_url, "web@example.test", {team_id: "viewer"})

    listing = user.client.get("/certificates")
    page = user.client.get(f"/certificates/{pki.other.sha256}")

    for response in (listing, page):
        assert response.status_code == 200
        assert hostile not in response.text
        assert "&lt;img src=x onerror=alert(1)&gt;" in response.text


def test_certificates_need_login(serve_app: ServeApp) -> None:
    base_url = serve_app()

    response = httpx.get(f"{base_url}/certificates/{'a' * 64}")

    assert response.status_code == 303
    assert response.headers["location"] == f"/login?next=%2Fcertificates%2F{'a' * 64}"


@pytest.mark.usefixtures("inventory")
def test_certificates_user_without_team(
    serve_app: ServeApp,
    visitors: Visitors,  # noqa: F811
    sessions: sessionmaker[Session],
    clock: Clock,
    pki: Pki,
) -> None:
    empty = make_team(sessions, "empty", clock)
    base_url = serve_app()
    user = visitors.make(base_url, "alone@example.test", {empty: "owner"})

    response = user.client.get("/certificates")

    assert response.status_code == 200
    assert pki.leaf.sha256 not in response.text
    assert "No certificate is deployed now" in response.text
