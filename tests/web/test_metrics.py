"""`/metrics`: the exposition after real scans, and who may read it.

The content tests scan local TLS servers with the monitor's cycle, so the
metrics come from rows written by the store's own write path, and read
them over HTTP from uvicorn. The access tests run the app in-process,
where the ASGI scope's client address stands for a remote client.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker
from tests.monitor.helpers import Clock, Pki
from tests.servers import LocalServer, closed_port
from tests.web.conftest import ServeApp
from tests.web.helpers import (
    add_endpoint,
    add_file_source,
    fetch_metrics,
    scan_due,
)

from certwatch import __version__
from certwatch.store.database import create_store_engine, session_factory
from certwatch.web.app import create_app
from certwatch.web.heartbeat import record_cycle_completed
from certwatch.web.settings import WebSettings

StartServer = Callable[..., LocalServer]
TOKEN = "metrics-token-for-tests-0123456789"
ODD_TEAM = 'ops "blue" \\ team'


def value_by_target(samples: list[object]) -> dict[str, float]:
    return {
        sample.labels["target"]: sample.value  # type: ignore[attr-defined]
        for sample in samples
    }


@pytest.fixture
def scanned(
    sessions: sessionmaker[Session],
    local_server: StartServer,
    pki: Pki,
    clock: Clock,
    tmp_path: Path,
) -> dict[str, str]:
    """Scan an inventory of two teams once; return the targets by role.

    `www` and `api` serve the same leaf, `down` refuses connections, `off`
    is disabled, and `file` is a PEM file whose name needs escaping.
    """
    server = local_server(chain=pki.chain(pki.leaf))
    pem = tmp_path / 'we"ird\\name.pem'
    pem.write_bytes(pki.other.pem)
    with closed_port() as refused:
        add_endpoint(sessions, "www.example.test", server.port, clock=clock, team="web")
        add_endpoint(sessions, "api.example.test", server.port, clock=clock, team="web")
        add_endpoint(sessions, "down.example.test", refused, clock=clock, team=ODD_TEAM)
        add_endpoint(
            sessions, "off.example.test", server.port, clock=clock, enabled=False
        )
        add_file_source(sessions, pem, clock=clock, team=ODD_TEAM)
        report = scan_due(sessions, clock, pki)
    assert report.endpoints == 3
    assert report.file_sources == 1
    return {
        "www": f"www.example.test:{server.port}",
        "api": f"api.example.test:{server.port}",
        "down": f"down.example.test:{refused}",
        "off": f"off.example.test:{server.port}",
        "file": str(pem),
    }


def test_metrics_not_after_per_deployment(
    scanned: dict[str, str], serve_app: ServeApp, pki: Pki
) -> None:
    samples = fetch_metrics(serve_app())

    not_after = samples["certwatch_certificate_not_after_timestamp_seconds"]
    by_target = {sample.labels["target"]: sample for sample in not_after}
    assert sorted(by_target) == sorted(
        [scanned["www"], scanned["api"], scanned["file"]]
    )
    www = by_target[scanned["www"]]
    assert www.labels == {
        "team": "web",
        "target": scanned["www"],
        "address": "127.0.0.1",
        "path": "",
        "sha256": pki.leaf.sha256,
        "common_name": "www.example.test",
    }
    assert www.value == pki.leaf.cert.not_valid_after_utc.timestamp()
    assert by_target[scanned["api"]].labels["sha256"] == pki.leaf.sha256
    in_file = by_target[scanned["file"]]
    assert in_file.labels["team"] == ODD_TEAM
    assert in_file.labels["path"] == scanned["file"]
    assert in_file.labels["address"] == ""
    assert in_file.labels["sha256"] == pki.other.sha256
    assert in_file.value == pki.other.cert.not_valid_after_utc.timestamp()


def test_metrics_probe_success_and_last_scan(
    scanned: dict[str, str], serve_app: ServeApp, clock: Clock
) -> None:
    samples = fetch_metrics(serve_app())

    success = value_by_target(samples["certwatch_probe_success"])
    scanned_at = value_by_target(samples["certwatch_last_scan_timestamp_seconds"])
    assert success == {
        scanned["www"]: 1.0,
        scanned["api"]: 1.0,
        scanned["down"]: 0.0,
        scanned["file"]: 1.0,
    }
    assert scanned_at == dict.fromkeys(success, clock().timestamp())
    kinds = {
        sample.labels["target"]: (sample.labels["team"], sample.labels["kind"])
        for sample in samples["certwatch_probe_success"]
    }
    assert kinds[scanned["down"]] == (ODD_TEAM, "endpoint")
    assert kinds[scanned["file"]] == (ODD_TEAM, "file")


def test_metrics_due_endpoints_follow_clock(
    scanned: dict[str, str], serve_app: ServeApp, clock: Clock
) -> None:
    base_url = serve_app()

    just_scanned = fetch_metrics(base_url)
    # The refused endpoint is retried after 5 minutes; the others after 6 hours.
    clock.advance(timedelta(minutes=5))
    after_backoff = fetch_metrics(base_url)

    assert just_scanned["certwatch_due_endpoints"][0].value == 0
    assert after_backoff["certwatch_due_endpoints"][0].value == 1
    assert after_backoff["certwatch_due_file_sources"][0].value == 0


def test_metrics_monitor_last_cycle(
    sessions: sessionmaker[Session], serve_app: ServeApp, clock: Clock
) -> None:
    base_url = serve_app()

    before = fetch_metrics(base_url)
    with sessions.begin() as session:
        record_cycle_completed(session, now=clock())
    after = fetch_metrics(base_url)

    assert "certwatch_monitor_last_cycle_timestamp_seconds" not in before
    [sample] = after["certwatch_monitor_last_cycle_timestamp_seconds"]
    assert sample.value == clock().timestamp()
    [info] = after["certwatch_build_info"]
    assert info.labels["version"] == __version__
    assert info.value == 1


def test_metrics_empty_inventory_has_families(
    sessions: sessionmaker[Session], serve_app: ServeApp
) -> None:
    response = httpx.get(f"{serve_app()}/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "# TYPE certwatch_certificate_not_after_timestamp_seconds gauge" in (
        response.text
    )
    assert "certwatch_due_endpoints 0.0" in response.text


def test_metrics_openmetrics_and_gzip(
    scanned: dict[str, str], serve_app: ServeApp
) -> None:
    headers = {
        "Accept": "application/openmetrics-text; version=1.0.0",
        "Accept-Encoding": "gzip",
    }
    response = httpx.get(f"{serve_app()}/metrics", headers=headers)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    # httpx has already decompressed the body.
    assert response.headers["content-encoding"] == "gzip"
    assert response.text.endswith("# EOF\n")
    assert "certwatch_probe_success" in response.text


# --- access -----------------------------------------------------------------


async def get_metrics(
    sessions: sessionmaker[Session],
    *,
    client: str,
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """GET /metrics in-process, as if from `client`."""
    app = create_app(sessions, WebSettings(metrics_token=token))
    transport = httpx.ASGITransport(app=app, client=(client, 40000))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://certwatch.test"
    ) as http:
        return await http.get("/metrics", headers=headers)


@pytest.mark.parametrize(
    "client", ["127.0.0.1", "127.0.0.53", "::1", "::ffff:127.0.0.1"]
)
async def test_metrics_loopback_without_token(
    sessions: sessionmaker[Session], client: str
) -> None:
    response = await get_metrics(sessions, client=client)

    assert response.status_code == 200
    assert "certwatch_due_endpoints" in response.text


@pytest.mark.parametrize("client", ["192.0.2.10", "2001:db8::1", "::ffff:192.0.2.10"])
async def test_metrics_remote_without_token_forbidden(
    sessions: sessionmaker[Session], client: str
) -> None:
    response = await get_metrics(sessions, client=client)

    assert response.status_code == 403
    assert "set CERTWATCH_METRICS_TOKEN" in response.text
    assert "certwatch_" not in response.text


@pytest.mark.parametrize("header", ["X-Forwarded-For", "Forwarded", "X-Real-IP"])
async def test_metrics_proxied_loopback_forbidden(
    sessions: sessionmaker[Session], header: str
) -> None:
    response = await get_metrics(
        sessions, client="127.0.0.1", headers={header: "192.0.2.10"}
    )

    assert response.status_code == 403


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token-0123456789", f"Basic {TOKEN}", f"Bearer {TOKEN}x", ""],
)
async def test_metrics_token_rejects(
    sessions: sessionmaker[Session], authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}

    response = await get_metrics(
        sessions, client="127.0.0.1", token=TOKEN, headers=headers
    )

    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert TOKEN not in response.text


@pytest.mark.parametrize("scheme", ["Bearer", "bearer"])
@pytest.mark.parametrize("client", ["127.0.0.1", "192.0.2.10"])
async def test_metrics_token_accepts(
    sessions: sessionmaker[Session], scheme: str, client: str
) -> None:
    response = await get_metrics(
        sessions,
        client=client,
        token=TOKEN,
        headers={"Authorization": f"{scheme} {TOKEN}"},
    )

    assert response.status_code == 200
    assert "certwatch_due_endpoints" in response.text


async def test_metrics_database_failure_is_503(tmp_path: Path) -> None:
    # A folder where the SQLite file should be: every query fails.
    broken = tmp_path / "store.db"
    broken.mkdir()
    engine = create_store_engine(f"sqlite:///{broken}")
    try:
        response = await get_metrics(session_factory(engine), client="127.0.0.1")
    finally:
        engine.dispose()

    assert response.status_code == 503
    assert response.json() == {
        "detail": "The inventory database cannot be read; try again later."
    }
