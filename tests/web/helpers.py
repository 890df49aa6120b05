"""Build inventories for the web tests and read what the service returns."""

from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from sqlalchemy.orm import Session, sessionmaker
from tests.monitor.helpers import INTERVAL, Clock, Pki, pinned, settings

from certwatch.monitor.cycle import CycleReport, run_cycle
from certwatch.store.inventory import (
    SourceSettings,
    upsert_endpoint,
    upsert_file_source,
)


def add_endpoint(
    sessions: sessionmaker[Session],
    name: str,
    port: int,
    *,
    clock: Clock,
    team: str = "default",
    enabled: bool = True,
) -> int:
    """Store an endpoint for `name` pinned to 127.0.0.1:`port`; return its id."""
    with sessions.begin() as session:
        stored = upsert_endpoint(
            session,
            pinned(name, port),
            now=clock(),
            settings=SourceSettings(team=team, interval=INTERVAL, enabled=enabled),
        )
        return stored.record.id


def add_file_source(
    sessions: sessionmaker[Session], path: Path, *, clock: Clock, team: str = "default"
) -> int:
    """Store a certificate file as a source; return its id."""
    with sessions.begin() as session:
        stored = upsert_file_source(
            session,
            str(path),
            now=clock(),
            settings=SourceSettings(team=team, interval=INTERVAL),
        )
        return stored.record.id


def scan_due(sessions: sessionmaker[Session], clock: Clock, pki: Pki) -> CycleReport:
    """Run one monitoring cycle over the due sources and record the results."""
    return run_cycle(sessions, now_fn=clock, settings=settings(), policy=pki.policy)


def metric_samples(text: str) -> dict[str, list[Sample]]:
    """Parse a Prometheus text exposition into samples by sample name."""
    samples: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def fetch_metrics(
    base_url: str, headers: dict[str, str] | None = None
) -> dict[str, list[Sample]]:
    """GET /metrics, which must succeed, and parse it."""
    response = httpx.get(f"{base_url}/metrics", headers=headers)
    assert response.status_code == 200, response.text
    return metric_samples(response.text)
