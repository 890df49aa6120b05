"""The periodic digest: per team, what expires soon and every open problem.

A team's digest is due once `interval` has passed since the last one, or
since the team was created for its first. Just before it is built, the
sources it would list are scanned again, so a certificate renewed since its
last scan drops out instead of raising a false alarm.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from certwatch.alerts.evaluate import PlaceRef, lock_alerting
from certwatch.alerts.message import EventKind, Notice, NoticeItem
from certwatch.alerts.outbox import enqueue
from certwatch.monitor.settings import SettingsError, parse_duration
from certwatch.store.models import (
    AlertRow,
    CertificateRow,
    EndpointRow,
    FileSourceRow,
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
) -> int:
    """Queue the due digests; return how many were queued.

    The listed sources are scanned again first (with `rescan`), then each
    team's digest is built from what the store shows and queued with the
    team's `digest_sent_at`, in one transaction per team.
    """
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
                *_expiring_items(session, team_id, now),
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
    """Return the team's sources whose latest scan saw a certificate expiring soon."""
    horizon = now + DIGEST_HORIZON
    endpoints = session.scalars(
        select(EndpointRow.id).where(
            EndpointRow.team_id == team_id,
            EndpointRow.enabled.is_(True),
            EndpointRow.not_after <= horizon,
        )
    )
    files = session.scalars(
        select(FileSourceRow.id).where(
            FileSourceRow.team_id == team_id,
            FileSourceRow.enabled.is_(True),
            FileSourceRow.not_after <= horizon,
        )
    )
    return list(endpoints), list(files)


def _expiring_items(session: Session, team_id: int, now: datetime) -> list[NoticeItem]:
    """Build one item per certificate served now that expires within the horizon."""
    horizon = now + DIGEST_HORIZON
    rows = session.execute(
        select(
            CertificateRow.sha256,
            CertificateRow.not_before,
            CertificateRow.not_after,
            CertificateRow.dns_names,
            CertificateRow.ip_addresses,
            EndpointRow.target,
            ObservationRow.address,
        )
        .join(
            ObservationCertificateRow,
            ObservationCertificateRow.certificate_sha256 == CertificateRow.sha256,
        )
        .join(
            ObservationRow,
            ObservationRow.id == ObservationCertificateRow.observation_id,
        )
        .join(EndpointRow, EndpointRow.id == ObservationRow.endpoint_id)
        .where(
            EndpointRow.team_id == team_id,
            EndpointRow.enabled.is_(True),
            ObservationRow.latest.is_(True),
            ObservationCertificateRow.position == 0,
            CertificateRow.not_after <= horizon,
        )
        .order_by(CertificateRow.not_after, EndpointRow.target, ObservationRow.address)
    )
    places: defaultdict[str, list[PlaceRef]] = defaultdict(list)
    facts: dict[str, tuple[CertificateFacts, tuple[str, ...]]] = {}
    for sha, not_before, not_after, dns_names, ip_addresses, target, address in rows:
        places[sha].append(PlaceRef(target, address))
        certificate = CertificateFacts(
            der=b"", sha256=sha, not_before=not_before, not_after=not_after
        )
        facts[sha] = (certificate, (*dns_names, *ip_addresses))
    items = []
    for sha, (certificate, names) in facts.items():
        not_after = certificate.not_after
        assert not_after is not None
        left = days_left(not_after, now)
        expired = not_after < now
        windows = expiry_windows(certificate, Thresholds())
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


def _problem_items(session: Session, team_id: int) -> list[NoticeItem]:
    """Build one item per open alert other than expiry, which the list covers."""
    rows = session.scalars(
        select(AlertRow)
        .where(
            AlertRow.team_id == team_id,
            AlertRow.resolved_at.is_(None),
            AlertRow.identity.not_like("expiry:%"),
        )
        .order_by(AlertRow.opened_at)
    )
    return [
        NoticeItem(
            event=EventKind(row.event),
            severity=Severity[row.severity.upper()],
            message=row.message,
            fingerprint=row.certificate_sha256,
            places=tuple(PlaceRef.from_document(p).place() for p in row.places),
            finding_code=row.code,
        )
        for row in rows
    ]
