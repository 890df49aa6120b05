"""The Prometheus metrics of the inventory, read from the store per scrape.

`read_snapshot` reads everything a scrape needs in a few whole-table
queries. `SnapshotCollector` turns the snapshot into metric families for
prometheus-client's exposition functions, which escape the label values.
A new collector is made for every request and registered nowhere, so no
state outlives a scrape.
"""

from __future__ import annotations

import platform
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session

from certwatch import __version__
from certwatch.web.heartbeat import last_cycle_completed
from certwatch.web.queries import (
    CurrentDeployment,
    SourceKind,
    SourceState,
    current_deployments,
    due_counts,
    source_states,
)

DEPLOYMENT_LABELS = ("team", "target", "address", "path", "sha256", "common_name")


@dataclass(frozen=True)
class MetricsSnapshot:
    """The store's state for one scrape.

    `last_cycle_at` is `None` before the monitor's first cycle.
    """

    deployments: list[CurrentDeployment]
    sources: list[SourceState]
    last_cycle_at: datetime | None
    due: dict[SourceKind, int]


def read_snapshot(session: Session, *, now: datetime) -> MetricsSnapshot:
    """Read the deployments, source states, heartbeat and due counts."""
    sources = source_states(session)
    return MetricsSnapshot(
        deployments=current_deployments(session, sources=sources),
        sources=sources,
        last_cycle_at=last_cycle_completed(session),
        due=due_counts(session, now=now),
    )


class SnapshotCollector(Collector):
    """Yield the metric families of one `MetricsSnapshot`."""

    def __init__(self, snapshot: MetricsSnapshot) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snapshot = self._snapshot
        yield _not_after(snapshot.deployments)
        yield from _source_families(snapshot.sources)
        yield from _monitor_families(snapshot)
        yield _build_info()


NOT_AFTER = "certwatch_certificate_not_after_timestamp_seconds"
PROBE_SUCCESS = "certwatch_probe_success"
LAST_SCAN = "certwatch_last_scan_timestamp_seconds"

# The families are filled with `Metric.add_sample` and ready label dicts,
# which took half the time of `GaugeMetricFamily.add_metric` for 100,000
# series (prometheus-client 0.26).


def _not_after(deployments: list[CurrentDeployment]) -> Metric:
    family = Metric(
        NOT_AFTER,
        "When the certificate deployed at this place expires (its not_after), "
        "as a Unix time. One series per leaf at an endpoint address and per "
        "certificate in a file.",
        "gauge",
    )
    seen: set[tuple[str, ...]] = set()
    for deployment in deployments:
        if deployment.not_after is None:
            continue
        values = (
            deployment.team,
            deployment.target,
            deployment.address,
            deployment.path,
            deployment.sha256,
            deployment.common_name or "",
        )
        # A file that contains the same certificate twice is one deployment.
        if values in seen:
            continue
        seen.add(values)
        labels = dict(zip(DEPLOYMENT_LABELS, values, strict=True))
        family.add_sample(NOT_AFTER, labels, deployment.not_after.timestamp())
    return family


def _source_families(sources: list[SourceState]) -> Iterator[Metric]:
    # Sources that share a team, kind and target text (the same name pinned
    # to two addresses, say) would give duplicate series, which Prometheus
    # rejects. So they are merged into one series: success only when all of
    # them succeeded, and the latest scan time of any of them.
    merged: dict[tuple[str, str, str], tuple[float, float]] = {}
    for source in sources:
        if source.last_scanned_at is None:
            continue
        key = (source.team, source.kind, source.target)
        success = 1.0 if source.consecutive_failures == 0 else 0.0
        scanned_at = source.last_scanned_at.timestamp()
        earlier = merged.get(key)
        if earlier is not None:
            success = min(success, earlier[0])
            scanned_at = max(scanned_at, earlier[1])
        merged[key] = (success, scanned_at)

    success_family = Metric(
        PROBE_SUCCESS,
        "1 when the latest scan of the endpoint obtained a certificate at some "
        "address (of a file source: read one), 0 when it obtained none.",
        "gauge",
    )
    scanned_family = Metric(
        LAST_SCAN,
        "When the latest scan of the endpoint or file source finished, as a Unix time.",
        "gauge",
    )
    for (team, kind, target), (success, scanned_at) in merged.items():
        labels = {"team": team, "kind": kind, "target": target}
        success_family.add_sample(PROBE_SUCCESS, labels, success)
        scanned_family.add_sample(LAST_SCAN, labels, scanned_at)
    yield success_family
    yield scanned_family


def _monitor_families(snapshot: MetricsSnapshot) -> Iterator[Metric]:
    if snapshot.last_cycle_at is not None:
        yield GaugeMetricFamily(
            "certwatch_monitor_last_cycle_timestamp_seconds",
            "When the monitor last completed a cycle, as a Unix time; absent "
            "before the first cycle.",
            value=snapshot.last_cycle_at.timestamp(),
        )
    yield GaugeMetricFamily(
        "certwatch_due_endpoints",
        "Enabled endpoints due for a scan now that no scanner has claimed.",
        value=snapshot.due.get("endpoint", 0),
    )
    yield GaugeMetricFamily(
        "certwatch_due_file_sources",
        "Enabled file sources due for a scan now that no scanner has claimed.",
        value=snapshot.due.get("file", 0),
    )


def _build_info() -> Metric:
    family = InfoMetricFamily(
        "certwatch_build", "The certwatch version serving these metrics."
    )
    family.add_metric(
        [], {"version": __version__, "python_version": platform.python_version()}
    )
    return family
