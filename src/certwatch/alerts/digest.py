"""The periodic digest: per team, what expires soon and every open problem.

A team's digest is due once `interval` has passed since the last one, or
since the team was created for its first. Just before it is built, the
sources it would list are scanned again: those whose latest scan saw a
certificate expiring soon and those behind each open problem. A certificate
renewed since its last scan then drops out, and so does a problem that the
new scans show fixed, instead of raising a false alarm.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from certwatch.alerts.evaluate import UNREACHABLE, PlaceRef, lock_alerting
from certwatch.alerts.message import EventKind, Notice, NoticeItem
from certwatch.alerts.outbox import enqueue
from certwatch.monitor.settings import SettingsError, parse_duration
from certwatch.store.deployments import serves_leaf
from certwatch.store.models import (
    AlertRow,
    CertificateRow,
    EndpointRow,
    FileSourceRow,
    FindingRow,
    ObservationCertificateRow,
    ObservationRow,
    TeamRow,
)
from certwatch.x509.expiry import expiry_severity, expiry_windows
from certwatch.x509.facts import days_left
from certwatch.x509.model import CertificateFacts, Severity, Thresholds

logger = logging.getLogger(__name__)

DIGEST_INTERVAL_VARIABLE = "CERTWATCH_DIGEST_INTERVAL"
DEFAULT_DIGEST_INTERVAL = timedelta(days=7)
DIGEST_HORIZON = timedelta(days=60)
"""How far ahead the digest looks for expiring certificates."""

Rescan = Callable[[Sequence[int], Sequence[int]], object]
"""Scans the given endpoint and file source ids now and records the results."""


def digest_interval(environ: Mapping[str, str] = os.environ) -> timedelta:
    """Return `CERTWATCH_DIGEST_INTERVAL`, or one week when unset.

    Raises:
        SettingsError: the value is not a valid duration.
    """
    text = environ.get(DIGEST_INTERVAL_VARIABLE, "").strip()
    if not text:
        return DEFAULT_DIGEST_INTERVAL
    try:
        return parse_duration(text)
    except SettingsError as exc:
        raise SettingsError(f"{DIGEST_INTERVAL_VARIABLE}: {exc}") from exc


def due_teams(session: Session, now: datetime, interval: timedelta) -> list[int]:
    """Return the ids of the teams whose digest is due."""
    return list(
        session.scalars(
            select(TeamRow.id)
            .where(
                func.coalesce(TeamRow.digest_sent_at, TeamRow.created_at)
                <= now - interval
            )
            .order_by(TeamRow.id)
        )
    )


def send_digests(
    sessions: Callable[[], Session],
    *,
    now_fn: Callable[[], datetime],
    interval: timedelta,
    rescan: Rescan | None,
    thresholds: Thresholds | None = None,
) -> int:
    """Queue the due digests; return how many were queued.

    The listed sources are scanned again first (with `rescan`), then each
    team's digest is built from what the store shows and queued with the
    team's `digest_sent_at`, in one transaction per team. `thresholds` are
    the configured warning and critical thresholds that decide each
    certificate's severity, the defaults when `None`.
    """
    thresholds = thresholds or Thresholds()
    with sessions() as session:
        teams = due_teams(session, now_fn(), interval)
        listed = {
            team_id: _listed_sources(session, team_id, now_fn()) for team_id in teams
        }
    endpoint_ids = sorted({i for ids, _ in listed.values() for i in ids})
    file_ids = sorted({i for _, ids in listed.values() for i in ids})
    if rescan is not None and (endpoint_ids or file_ids):
        rescan(endpoint_ids, file_ids)

    queued = 0
    for team_id in teams:
        with sessions() as session, session.begin():
            lock_alerting(session)
            now = now_fn()
            team = session.get(TeamRow, team_id)
            # Another process may have sent it since the list was read.
            if team is None or team_id not in due_teams(session, now, interval):
                continue
            items = [
                *_expiring_items(session, team_id, now, thresholds),
                *_problem_items(session, team_id),
            ]
            team.digest_sent_at = now
            if not items:
                continue
            notice = Notice(
                key=f"certwatch-digest-{team_id}-{now.strftime('%Y%m%dT%H%M%S')}",
                team=team.name,
                event=EventKind.PROBLEM,
                generated_at=now,
                items=tuple(items),
            )
            enqueue(session, team_id=team_id, notice=notice, now=now)
            queued += 1
    if queued:
        logger.info("queued %d digests", queued)
    return queued


def _listed_sources(
    session: Session, team_id: int, now: datetime
) -> tuple[list[int], list[int]]:
    """Return the team's sources that the digest would list, to scan them again.

    These are the sources whose latest scan saw a certificate expiring
    within the horizon, and the sources behind each open problem.
    """
    horizon = now + DIGEST_HORIZON
    endpoints = set(
        session.scalars(
            select(EndpointRow.id).where(
                EndpointRow.team_id == team_id,
                EndpointRow.enabled.is_(True),
                EndpointRow.not_after <= horizon,
            )
        )
    )
    files = set(
        session.scalars(
            select(FileSourceRow.id).where(
                FileSourceRow.team_id == team_id,
                FileSourceRow.enabled.is_(True),
                FileSourceRow.not_after <= horizon,
            )
        )
    )
    for row in _open_problems(session, team_id):
        endpoints |= _problem_endpoints(row)
        files |= {
            place.file_source_id
            for place in _places(row)
            if place.file_source_id is not None
        }
    return sorted(endpoints), sorted(files)


@dataclass(frozen=True)
class _Served:
    sha256: str
    certificate: CertificateFacts
    names: tuple[str, ...]
    place: PlaceRef


def _expiring_items(
    session: Session, team_id: int, now: datetime, thresholds: Thresholds
) -> list[NoticeItem]:
    """Build one item per certificate served now that expires within the horizon.

    Endpoints count their leaf certificates, and file sources every
    certificate of their files, as the reminders do.
    """
    places: defaultdict[str, list[PlaceRef]] = defaultdict(list)
    facts: dict[str, tuple[CertificateFacts, tuple[str, ...]]] = {}
    for item in _served(session, team_id, now):
        places[item.sha256].append(item.place)
        facts[item.sha256] = (item.certificate, item.names)

    items = []
    for sha, (certificate, names) in facts.items():
        not_after = certificate.not_after
        assert not_after is not None
        left = days_left(not_after, now)
        expired = not_after < now
        windows = expiry_windows(certificate, thresholds)
        severity = expiry_severity(certificate, now, windows) or Severity.INFO
        items.append(
            NoticeItem(
                event=EventKind.EXPIRED if expired else EventKind.EXPIRING,
                severity=severity,
                message=(
                    f"Expired on {not_after.date().isoformat()}."
                    if expired
                    else f"Expires on {not_after.date().isoformat()}, in {left} days."
                ),
                names=names,
                fingerprint=sha,
                not_after=not_after,
                days_left=left,
                places=tuple(place.place() for place in places[sha]),
                finding_code="expired" if expired else "expiring_soon",
            )
        )
    return items


def _served(session: Session, team_id: int, now: datetime) -> list[_Served]:
    """Return each certificate the team's sources serve that expires within the horizon.

    A certificate is returned once per place, soonest not_after first.
    """
    horizon = now + DIGEST_HORIZON
    columns = (
        CertificateRow.sha256,
        CertificateRow.not_before,
        CertificateRow.not_after,
        CertificateRow.dns_names,
        CertificateRow.ip_addresses,
        ObservationRow.address,
        ObservationRow.path,
    )
    served: list[_Served] = []
    for owner, row_type in (
        (ObservationRow.endpoint_id, EndpointRow),
        (ObservationRow.file_source_id, FileSourceRow),
    ):
        is_endpoint = row_type is EndpointRow
        name_column = EndpointRow.target if is_endpoint else FileSourceRow.path
        query = (
            select(row_type.id, name_column, *columns)
            .join(ObservationRow, owner == row_type.id)
            .join(
                ObservationCertificateRow,
                ObservationCertificateRow.observation_id == ObservationRow.id,
            )
            .join(
                CertificateRow,
                CertificateRow.sha256 == ObservationCertificateRow.certificate_sha256,
            )
            .where(
                row_type.team_id == team_id,
                row_type.enabled.is_(True),
                ObservationRow.latest.is_(True),
                CertificateRow.not_after <= horizon,
            )
        )
        if is_endpoint:
            query = query.where(ObservationCertificateRow.position == 0)
        for row in session.execute(query):
            source_id, name, sha, before, after = row[:5]
            dns_names, ip_addresses, address, path = row[5:]
            place = (
                PlaceRef(name, address, endpoint_id=source_id)
                if is_endpoint
                else PlaceRef(name, path=path, file_source_id=source_id)
            )
            certificate = CertificateFacts(
                der=b"", sha256=sha, not_before=before, not_after=after
            )
            served.append(_Served(sha, certificate, (*dns_names, *ip_addresses), place))
    served.sort(key=lambda item: (item.certificate.not_after, item.place.place().label))
    return served


def _problem_items(session: Session, team_id: int) -> list[NoticeItem]:
    """Build one item per open problem that the latest scans still show.

    Expiry is left out because the expiring list covers it.
    """
    return [
        NoticeItem(
            event=EventKind(row.event),
            severity=Severity[row.severity.upper()],
            message=row.message,
            fingerprint=row.certificate_sha256,
            places=tuple(place.place() for place in _places(row)),
            finding_code=row.code,
        )
        for row in _open_problems(session, team_id)
        if not _shows_fixed(session, row)
    ]


def _open_problems(session: Session, team_id: int) -> list[AlertRow]:
    """Return the team's open alerts other than expiry, oldest first."""
    return list(
        session.scalars(
            select(AlertRow)
            .where(
                AlertRow.team_id == team_id,
                AlertRow.resolved_at.is_(None),
                AlertRow.identity.not_like("expiry:%"),
            )
            .order_by(AlertRow.opened_at, AlertRow.id)
        )
    )


def _places(row: AlertRow) -> list[PlaceRef]:
    return [PlaceRef.from_document(place) for place in row.places]


def _problem_endpoints(row: AlertRow) -> set[int]:
    ids = {place.endpoint_id for place in _places(row) if place.endpoint_id is not None}
    if row.endpoint_id is not None:
        ids.add(row.endpoint_id)
    return ids


def _shows_fixed(session: Session, row: AlertRow) -> bool:
    """Tell whether the latest scans of an open problem's endpoints show it fixed.

    An unreachable endpoint is fixed once it answers again. A finding is
    fixed when no endpoint shows it any more, and a stale deployment when
    no endpoint serves the old certificate any more. While one of the
    endpoints is failing, nothing is proven, so the problem stays.
    """
    endpoint_ids = _problem_endpoints(row)
    if not endpoint_ids or _any_failing(session, endpoint_ids):
        return False
    if row.identity.startswith(f"{UNREACHABLE}:"):
        return True
    if row.identity.startswith("stale:") and row.certificate_sha256 is not None:
        return not serves_leaf(session, endpoint_ids, row.certificate_sha256)
    if row.identity.startswith("finding:"):
        return not _shows_finding(
            session, endpoint_ids, row.code, row.certificate_sha256
        )
    return False


def _any_failing(session: Session, endpoint_ids: Collection[int]) -> bool:
    failing = session.scalar(
        select(EndpointRow.id)
        .where(EndpointRow.id.in_(endpoint_ids), EndpointRow.consecutive_failures > 0)
        .limit(1)
    )
    return failing is not None


def _shows_finding(
    session: Session, endpoint_ids: Collection[int], code: str, sha256: str | None
) -> bool:
    """Tell whether a latest scan of the endpoints has the finding `code`.

    With `sha256`, only scans that found that certificate as the leaf count.
    """
    query = (
        select(ObservationRow.id)
        .join(FindingRow, FindingRow.observation_id == ObservationRow.id)
        .where(
            ObservationRow.endpoint_id.in_(endpoint_ids),
            ObservationRow.latest.is_(True),
            FindingRow.code == code,
        )
        .limit(1)
    )
    if sha256 is not None:
        query = query.join(
            ObservationCertificateRow,
            ObservationCertificateRow.observation_id == ObservationRow.id,
        ).where(
            ObservationCertificateRow.position == 0,
            ObservationCertificateRow.certificate_sha256 == sha256,
        )
    return session.scalar(query) is not None
