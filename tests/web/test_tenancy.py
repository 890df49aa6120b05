"""Two teams on one site: the same target, renewals, tags and add reports.

The `site` fixture of test_api.py serves the application over SQLite and
PostgreSQL with teams alpha and beta, each with an endpoint and tokens.
"""

from __future__ import annotations

import html

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.servers import LocalServer, ServerOptions
from tests.web import test_api
from tests.web.test_api import NAME, Site, bearer

from certwatch.store.inventory import get_endpoint
from certwatch.web.auth import SESSION_COOKIE
from certwatch.web.settings import WebSettings

# The fixture of test_api.py, found by pytest under this name.
site = test_api.site


def add(site: Site, team_id: int, token: str, *targets: str) -> dict[str, object]:
    client = site.client()
    response = client.post(
        "/api/endpoints",
        json={"team_id": team_id, "targets": list(targets)},
        headers=bearer(token),
    )
    assert response.status_code == 201, response.text
    assert "another team" not in response.text
    document: dict[str, object] = response.json()
    return document


def test_api_same_target_in_two_teams(site: Site) -> None:
    target = f"127.0.0.1:{site.server.port}"
    beta = add(site, site.beta.id, site.beta.member_token, target)

    alpha = add(site, site.alpha.id, site.alpha.member_token, target)

    [beta_added] = beta["added"]  # type: ignore[misc]
    [alpha_added] = alpha["added"]  # type: ignore[misc]
    assert alpha_added["created"] is True
    assert alpha_added["endpoint_id"] != beta_added["endpoint_id"]
    assert alpha["rejected"] == []
    with site.sessions() as session:
        alpha_record = get_endpoint(session, alpha_added["endpoint_id"])
        beta_record = get_endpoint(session, beta_added["endpoint_id"])
    assert alpha_record is not None
    assert beta_record is not None
    assert (alpha_record.team, beta_record.team) == ("alpha", "beta")
    listed = site.client().get(
        "/api/endpoints", headers=bearer(site.alpha.member_token)
    )
    ids = [item["id"] for item in listed.json()["items"]]
    assert alpha_added["endpoint_id"] in ids
    assert beta_added["endpoint_id"] not in ids


def test_metrics_same_target_two_teams(site: Site) -> None:
    target = f"127.0.0.1:{site.server.port}"
    add(site, site.beta.id, site.beta.member_token, target)
    add(site, site.alpha.id, site.alpha.member_token, target)

    response = site.client().get("/metrics")

    assert response.status_code == 200, response.text
    families = {
        family.name: family for family in text_string_to_metric_families(response.text)
    }
    # One series per team: duplicate label sets would fail the whole scrape.
    for name in (
        "certwatch_certificate_not_after_timestamp_seconds",
        "certwatch_probe_success",
        "certwatch_last_scan_timestamp_seconds",
    ):
        samples = [s for s in families[name].samples if s.labels["target"] == target]
        assert sorted(s.labels["team"] for s in samples) == ["alpha", "beta"]


def test_api_other_teams_renewal_not_stale(site: Site) -> None:
    renewed = site.pki.renewed
    with LocalServer(ServerOptions(chain=site.pki.chain(renewed))) as server:
        add(site, site.beta.id, site.beta.member_token, f"127.0.0.1:{server.port}")
        scanned = site.client().post(
            f"/api/endpoints/{site.alpha.endpoint_id}/scan",
            headers=bearer(site.alpha.member_token),
        )

    assert scanned.status_code == 200, scanned.text
    codes = [f["code"] for r in scanned.json()["results"] for f in r["findings"]]
    assert "stale_deployment" not in codes
    assert renewed.cert.not_valid_after_utc.date().isoformat() not in scanned.text
    owner = site.client()
    owner.cookies.set(SESSION_COOKIE, site.alpha.owner_cookie)
    listing = owner.get("/certificates")
    page = html.unescape(listing.text)
    assert listing.status_code == 200
    assert site.alpha.certificate[:16] in page
    assert "still serve" not in page
    assert "other teams" not in page


@pytest.mark.parametrize(
    "tag", ["x\x00y", "\x1b[31mred", "bell\x07", "a\u202eb", "a;b", "a,b", "x" * 101]
)
def test_api_rejects_invalid_tag(site: Site, tag: str) -> None:
    client = site.client()
    headers = bearer(site.alpha.member_token)

    patched = client.patch(
        f"/api/endpoints/{site.alpha.endpoint_id}",
        json={"tags": [tag]},
        headers=headers,
    )
    created = client.post(
        "/api/endpoints",
        json={"team_id": site.alpha.id, "targets": ["new.example.test"], "tags": [tag]},
        headers=headers,
    )

    assert patched.status_code == 422, patched.text
    assert "Invalid tag" in patched.json()["detail"]
    assert created.status_code == 400, created.text
    assert "Invalid tag" in created.json()["detail"]
    read = client.get(f"/api/endpoints/{site.alpha.endpoint_id}", headers=headers)
    assert read.json()["tags"] == []


def test_api_rejects_too_many_tags(site: Site) -> None:
    client = site.client()
    headers = bearer(site.alpha.member_token)
    url = f"/api/endpoints/{site.alpha.endpoint_id}"

    many = client.patch(
        url, json={"tags": [f"t{i}" for i in range(21)]}, headers=headers
    )
    enough = client.patch(
        url, json={"tags": [f"t{i}" for i in range(20)]}, headers=headers
    )

    assert many.status_code == 422, many.text
    assert "give at most 20 tags" in many.json()["detail"]
    assert enough.status_code == 200, enough.text
    assert len(enough.json()["tags"]) == 20


def test_api_add_reports_every_spelling(site: Site) -> None:
    texts = [f"{NAME}:{site.server.port}", f"{NAME.upper()}.:{site.server.port}"]

    report = add(site, site.alpha.id, site.alpha.member_token, *texts)

    added = report["added"]
    assert isinstance(added, list)
    assert [item["target"] for item in added] == texts
    assert len({item["endpoint_id"] for item in added}) == 1
    assert report["rejected"] == []


def test_api_add_nothing_added_is_422(site: Site) -> None:
    client = site.client(WebSettings(signup="open", allow_private_targets=False))
    texts = ["127.0.0.1:8443", "https://127.0.0.1:8443/path"]

    response = client.post(
        "/api/endpoints",
        json={"team_id": site.alpha.id, "targets": texts},
        headers=bearer(site.alpha.member_token),
    )

    assert response.status_code == 422, response.text
    report = response.json()
    assert report["added"] == []
    assert [item["text"] for item in report["rejected"]] == texts
