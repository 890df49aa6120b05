"""Decide the alerts after a monitoring cycle and record them with their messages.

`evaluate_alerts` reads what the latest scans show, turns it into incidents
(one per certificate or finding and team, whatever the number of places),
and compares them with the alerts stored before:

- an incident that crossed a threshold not recorded yet gets one reminder,
  and every threshold it crossed is recorded, so a missed cycle sends the
  overdue reminder once and a repeated evaluation sends nothing;
- an alert whose incident is gone is resolved, with one `resolved` message
  when the team had heard of it. An expiry alert stays open while a place
  that served the certificate cannot be scanned, because an outage proves
  nothing about a renewal;
- a critical alert that no contact acknowledged in time goes to the
  escalation contacts too.

Everything new for a team becomes one `Notice`, most urgent first, queued in
the outbox in the caller's transaction. The caller commits, then delivers.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from certwatch.alerts.message import EventKind, Notice, NoticeItem, Place
from certwatch.alerts.outbox import enqueue
from certwatch.alerts.policy import (
    DEFAULT_SCHEDULE,
    OPEN,
    ReminderSchedule,
    ScheduleError,
    expiry_thresholds,
    newest_unsent,
    parse_schedule,
)
from certwatch.monitor.settings import SettingsError, parse_duration
from certwatch.store.chunks import chunked
from certwatch.store.models import (
    AlertRow,
    AlertThresholdRow,
    CertificateRow,
    EndpointRow,
    FileSourceRow,
    FindingRow,
    ObservationCertificateRow,
    ObservationRow,
    TeamRow,
)
from certwatch.store.stale import StaleDeployment, stale_deployments
from certwatch.x509.expiry import expiry_severity, expiry_windows
from certwatch.x509.facts import days_left
from certwatch.x509.model import CertificateFacts, Severity, Thresholds

logger = logging.getLogger(__name__)

# A self-signed leaf fails trust as an unknown root does, so it alerts too.
ALERTED_FINDINGS = (
    "hostname_mismatch",
    "untrusted_root",
    "self_signed",
    "incomplete_chain",
    "chain_expired",
    "chain_expiring",
)
"""The finding codes, besides expiry and stale deployments, that alert a team."""

RESOLVED = "resolved"
"""The threshold recorded once the resolved message of an alert was queued."""

UNREACHABLE = "unreachable"
"""The code of an alert for an endpoint that failed several scans in a row."""

UNREACHABLE_AFTER_VARIABLE = "CERTWATCH_ALERT_UNREACHABLE_AFTER"
ESCALATE_AFTER_VARIABLE = "CERTWATCH_ALERT_ESCALATE_AFTER"


@dataclass(frozen=True)
class AlertSettings:
    """The policy's settings for outages and escalation.

    `unreachable_after` is the number of failed scans in a row after which
    an endpoint alerts. `escalate_after` is the time a critical alert may
    stay unacknowledged before the escalation contacts hear of it, unless
    the team sets its own.
    """

    unreachable_after: int = 3
    escalate_after: timedelta = timedelta(hours=24)
    thresholds: Thresholds = field(default_factory=Thresholds)


def load_alert_settings(
    environ: Mapping[str, str] = os.environ, thresholds: Thresholds | None = None
) -> AlertSettings:
    """Read the alert settings from the environment.

    Raises:
        SettingsError: a value is invalid; the message names the variable.
    """
    settings = AlertSettings(thresholds=thresholds or Thresholds())
    text = environ.get(UNREACHABLE_AFTER_VARIABLE, "").strip()
    if text:
        if not text.isdigit() or not 1 <= int(text) <= 1000:
            raise SettingsError(
                f"Invalid {UNREACHABLE_AFTER_VARIABLE} {text!r}: give a whole "
                "number of failed scans from 1 to 1000."
            )
        settings = replace(settings, unreachable_after=int(text))
    text = environ.get(ESCALATE_AFTER_VARIABLE, "").strip()
    if text:
        try:
            escalate_after = parse_duration(text)
        except SettingsError as exc:
            raise SettingsError(f"{ESCALATE_AFTER_VARIABLE}: {exc}") from exc
        settings = replace(settings, escalate_after=escalate_after)
    return settings


@dataclass(frozen=True)
class PlaceRef:
    """A place as an alert stores it: the source's id and how to show it."""

    target: str
    address: str | None = None
    path: str | None = None
    endpoint_id: int | None = None
    file_source_id: int | None = None

    def document(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "address": self.address,
            "path": self.path,
            "endpoint_id": self.endpoint_id,
            "file_source_id": self.file_source_id,
        }

    @classmethod
    def from_document(cls, data: Mapping[str, Any]) -> PlaceRef:
        return cls(
            target=str(data.get("target") or ""),
            address=data.get("address"),
            path=data.get("path"),
            endpoint_id=data.get("endpoint_id"),
            file_source_id=data.get("file_source_id"),
        )

    def place(self) -> Place:
        if self.path is not None:
            return Place.file(self.path)
        return Place.endpoint(self.target, self.address)


@dataclass
class Incident:
    """One alert as the latest scans show it, before it is compared with the store."""

    team_id: int
    identity: str
    event: EventKind
    code: str
    severity: Severity
    message: str
    thresholds: list[str]
    places: list[PlaceRef] = field(default_factory=list)
    stale_places: list[PlaceRef] = field(default_factory=list)
    certificate_sha256: str | None = None
    endpoint_id: int | None = None
    names: tuple[str, ...] = ()
    not_after: datetime | None = None
    days_left: int | None = None


@dataclass
class EvaluationReport:
    """The counts of what one evaluation decided."""

    opened: int = 0
    reminded: int = 0
    resolved: int = 0
    escalated: int = 0
    notices: int = 0
    queued: int = 0


# An arbitrary key of the PostgreSQL advisory lock that serialises alerting.
_ALERTING_LOCK = 0x63657274_616C7274


def lock_alerting(session: Session) -> None:
    """Wait until no other process decides alerts, for this transaction.

    Several `run --once` or `serve` processes may share a PostgreSQL store;
    two evaluating at once would both open the same alert. SQLite allows
    one writer at a time anyway.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ALERTING_LOCK}
        )


def evaluate_alerts(
    session: Session, *, now: datetime, settings: AlertSettings
) -> EvaluationReport:
    """Compare the incidents the latest scans show with the stored alerts.

    Records alerts, thresholds and outbox messages in the caller's
    transaction; nothing is committed or sent here.
    """
    lock_alerting(session)
    report = EvaluationReport()
    stale = stale_deployments(session, now=now, thresholds=settings.thresholds)
    incidents = [
        *_expiry_incidents(session, now, settings, stale),
        *_stale_incidents(session, stale),
        *_finding_incidents(session),
        *_unreachable_incidents(session, settings),
    ]
    stored = {
        (row.team_id, row.identity): row for row in session.scalars(select(AlertRow))
    }
    sent = _sent_thresholds(session)

    items: defaultdict[int, list[tuple[str, NoticeItem]]] = defaultdict(list)
    seen: set[tuple[int, str]] = set()
    for incident in incidents:
        key = (incident.team_id, incident.identity)
        if key in seen:
            continue
        seen.add(key)
        row = stored.get(key)
        if row is None or row.resolved_at is not None:
            report.opened += 1
        row = _upsert_alert(session, row, incident, now)
        crossed_before = sent.get(row.id, set())
        newest = newest_unsent(incident.thresholds, crossed_before - {RESOLVED})
        if newest is None:
            continue
        _record_thresholds(session, row, incident.thresholds, crossed_before, now)
        if _acknowledged(row, now, newest):
            continue
        row.acknowledged_threshold = None
        report.reminded += 1
        item = _item(incident, row.id)
        items[incident.team_id].append((f"{row.identity}@{newest}", item))

    for key, row in stored.items():
        if key in seen or row.resolved_at is not None:
            continue
        if not _can_resolve(session, row):
            continue
        row.resolved_at = now
        row.updated_at = now
        report.resolved += 1
        recorded = sent.get(row.id, set())
        # One resolved message per alert: a certificate that alternates with
        # its successor reopens the alert without a second one. An alert
        # whose places moved to another team, still serving the certificate,
        # ends without one: nothing was fixed.
        if recorded and RESOLVED not in recorded and not _still_served(session, row):
            session.add(
                AlertThresholdRow(alert_id=row.id, threshold=RESOLVED, crossed_at=now)
            )
            resolved = _resolved_item(session, row)
            items[row.team_id].append((f"{row.identity}@resolved", resolved))

    teams = {team.id: team for team in session.scalars(select(TeamRow))}
    for team_id, entries in items.items():
        notice = _notice(teams[team_id].name, entries, now, prefix="alert")
        report.notices += 1
        report.queued += enqueue(session, team_id=team_id, notice=notice, now=now)

    report.escalated += _escalate(session, teams, now, settings, report)
    session.flush()
    logger.info(
        "alerts evaluated: %d opened, %d reminders, %d resolved, %d escalated, "
        "%d messages queued",
        report.opened,
        report.reminded,
        report.resolved,
        report.escalated,
        report.queued,
    )
    return report


# --- Incidents ---------------------------------------------------------------


def _expiry_incidents(
    session: Session,
    now: datetime,
    settings: AlertSettings,
    stale: Sequence[StaleDeployment],
) -> list[Incident]:
    """Certificates served now whose expiry crossed a reminder threshold."""
    schedules = _team_schedules(session)
    # Stale deployments are per team, so one certificate may have several.
    stale_places = {
        (item.team_id, item.certificate.sha256): [
            PlaceRef(leaf.target, leaf.address, endpoint_id=leaf.endpoint_id)
            for leaf in item.stale
        ]
        for item in stale
    }
    grouped: dict[tuple[int, str], Incident] = {}
    for served in _served_leaves(session, now, settings.thresholds):
        facts = CertificateFacts(
            der=b"",
            sha256=served.sha256,
            not_before=served.not_before,
            not_after=served.not_after,
        )
        schedule = _schedule(served.schedule_text) or schedules.get(
            served.team_id, DEFAULT_SCHEDULE
        )
        windows = expiry_windows(facts, settings.thresholds)
        crossed = expiry_thresholds(facts, now, windows, schedule)
        severity = expiry_severity(facts, now, windows)
        if not crossed or severity is None or served.not_after is None:
            continue
        key = (served.team_id, served.sha256)
        incident = grouped.get(key)
        if incident is None:
            expired = served.not_after < now
            left = days_left(served.not_after, now)
            incident = Incident(
                team_id=served.team_id,
                identity=f"expiry:{served.sha256}",
                event=EventKind.EXPIRED if expired else EventKind.EXPIRING,
                code="expired" if expired else "expiring_soon",
                severity=severity,
                message=_expiry_message(served.not_after, now, left),
                thresholds=crossed,
                certificate_sha256=served.sha256,
                names=served.names,
                not_after=served.not_after,
                days_left=left,
                stale_places=stale_places.get(key, []),
            )
            grouped[key] = incident
        elif len(crossed) > len(incident.thresholds):
            # Places may follow different schedules; the fuller list wins.
            incident.thresholds = crossed
        incident.places.append(served.place)
    return list(grouped.values())


def _expiry_message(not_after: datetime, now: datetime, left: int) -> str:
    date = not_after.date().isoformat()
    if not_after < now:
        return f"The certificate expired on {date} and is still deployed."
    unit = "day" if left == 1 else "days"
    return f"The certificate expires on {date}, in {left} {unit}."


def _stale_incidents(
    session: Session, stale: Sequence[StaleDeployment]
) -> list[Incident]:
    teams = _endpoint_teams(
        session, {leaf.endpoint_id for item in stale for leaf in item.stale}
    )
    incidents = []
    for item in stale:
        by_team: defaultdict[int, list[PlaceRef]] = defaultdict(list)
        for leaf in item.stale:
            by_team[teams[leaf.endpoint_id]].append(
                PlaceRef(leaf.target, leaf.address, endpoint_id=leaf.endpoint_id)
            )
        summary = item.certificate
        for team_id, places in by_team.items():
            incidents.append(
                Incident(
                    team_id=team_id,
                    identity=f"stale:{summary.sha256}",
                    event=EventKind.STALE_DEPLOYMENT,
                    code=item.finding.code,
                    severity=item.finding.severity,
                    message=item.finding.message,
                    thresholds=[OPEN],
                    places=places,
                    stale_places=places,
                    certificate_sha256=summary.sha256,
                    names=(*summary.dns_names, *summary.ip_addresses),
                    not_after=summary.not_after,
                )
            )
    return incidents


def _finding_incidents(session: Session) -> list[Incident]:
    """Collect the alerted findings of the latest scans, one per certificate."""
    leaf = (
        select(
            ObservationCertificateRow.observation_id,
            ObservationCertificateRow.certificate_sha256,
        )
        .where(ObservationCertificateRow.position == 0)
        .subquery()
    )
    rows = session.execute(
        select(
            EndpointRow.team_id,
            EndpointRow.id,
            EndpointRow.target,
            ObservationRow.address,
            FindingRow.code,
            FindingRow.severity,
            FindingRow.message,
            leaf.c.certificate_sha256,
        )
        .join(ObservationRow, ObservationRow.id == FindingRow.observation_id)
        .join(EndpointRow, EndpointRow.id == ObservationRow.endpoint_id)
        .outerjoin(leaf, leaf.c.observation_id == ObservationRow.id)
        .where(
            ObservationRow.latest.is_(True),
            FindingRow.code.in_(ALERTED_FINDINGS),
            EndpointRow.enabled.is_(True),
        )
        .order_by(EndpointRow.target, ObservationRow.address)
    )
    grouped: dict[tuple[int, str], Incident] = {}
    for team_id, endpoint_id, target, address, code, severity, message, sha in rows:
        subject = sha or f"endpoint:{endpoint_id}"
        key = (team_id, f"finding:{code}:{subject}")
        incident = grouped.get(key)
        if incident is None:
            incident = Incident(
                team_id=team_id,
                identity=key[1],
                event=EventKind.PROBLEM,
                code=code,
                severity=Severity[severity.upper()],
                message=message,
                thresholds=[OPEN],
                certificate_sha256=sha,
                endpoint_id=None if sha else endpoint_id,
            )
            grouped[key] = incident
        incident.places.append(PlaceRef(target, address, endpoint_id=endpoint_id))
    return list(grouped.values())


def _unreachable_incidents(session: Session, settings: AlertSettings) -> list[Incident]:
    rows = session.execute(
        select(
            EndpointRow.team_id,
            EndpointRow.id,
            EndpointRow.target,
            EndpointRow.consecutive_failures,
        ).where(
            EndpointRow.enabled.is_(True),
            EndpointRow.consecutive_failures >= settings.unreachable_after,
        )
    ).all()
    errors = _latest_errors(session, [row.id for row in rows])
    incidents = []
    for team_id, endpoint_id, target, failures in rows:
        reason = errors.get(endpoint_id, "no certificate was obtained")
        incidents.append(
            Incident(
                team_id=team_id,
                identity=f"{UNREACHABLE}:{endpoint_id}",
                event=EventKind.PROBLEM,
                code=UNREACHABLE,
                severity=Severity.CRITICAL,
                message=(
                    f"The last {failures} scans obtained no certificate: {reason}. "
                    "Its expiry cannot be watched until it answers again."
                ),
                thresholds=[OPEN],
                places=[PlaceRef(target, endpoint_id=endpoint_id)],
                endpoint_id=endpoint_id,
            )
        )
    return incidents


def _latest_errors(session: Session, endpoint_ids: Sequence[int]) -> dict[int, str]:
    """Return the error message of the latest scan of each given endpoint."""
    errors: dict[int, str] = {}
    for chunk in chunked(endpoint_ids):
        rows = session.execute(
            select(ObservationRow.endpoint_id, ObservationRow.error_message).where(
                ObservationRow.endpoint_id.in_(chunk),
                ObservationRow.latest.is_(True),
                ObservationRow.error_message.is_not(None),
            )
        )
        for endpoint_id, message in rows:
            if endpoint_id is not None and message is not None:
                errors[endpoint_id] = message
    return errors


@dataclass(frozen=True)
class _Served:
    team_id: int
    sha256: str
    not_before: datetime | None
    not_after: datetime | None
    names: tuple[str, ...]
    schedule_text: str | None
    place: PlaceRef


def _served_leaves(
    session: Session, now: datetime, thresholds: Thresholds
) -> Iterable[_Served]:
    """Yield every certificate a source served as its leaf in its latest scan.

    Only certificates that can be inside a warning window are read: with the
    default thresholds (a window of at most 30 days) or a threshold in days,
    those that expire within it.
    """
    horizon = _horizon(thresholds)
    columns = (
        CertificateRow.sha256,
        CertificateRow.not_before,
        CertificateRow.not_after,
        CertificateRow.dns_names,
        CertificateRow.ip_addresses,
        ObservationRow.address,
        ObservationRow.path,
    )
    for owner, row_type in (
        (ObservationRow.endpoint_id, EndpointRow),
        (ObservationRow.file_source_id, FileSourceRow),
    ):
        name_column = (
            EndpointRow.target if row_type is EndpointRow else FileSourceRow.path
        )
        query = (
            select(
                row_type.team_id,
                row_type.id,
                name_column,
                row_type.reminder_schedule,
                *columns,
            )
            .join(ObservationRow, owner == row_type.id)
            .join(
                ObservationCertificateRow,
                ObservationCertificateRow.observation_id == ObservationRow.id,
            )
            .join(
                CertificateRow,
                CertificateRow.sha256 == ObservationCertificateRow.certificate_sha256,
            )
            .where(ObservationRow.latest.is_(True), row_type.enabled.is_(True))
        )
        if row_type is EndpointRow:
            query = query.where(ObservationCertificateRow.position == 0)
        if horizon is not None:
            query = query.where(CertificateRow.not_after <= now + horizon)
        for row in session.execute(query):
            team_id, source_id, name, schedule, sha, before, after = row[:7]
            dns_names, ip_addresses, address, path = row[7:]
            place = (
                PlaceRef(name, address, endpoint_id=source_id)
                if row_type is EndpointRow
                else PlaceRef(name, path=path, file_source_id=source_id)
            )
            yield _Served(
                team_id=team_id,
                sha256=sha,
                not_before=before,
                not_after=after,
                names=(*dns_names, *ip_addresses),
                schedule_text=schedule,
                place=place,
            )


def _horizon(thresholds: Thresholds) -> timedelta | None:
    warning = thresholds.warning
    if warning is None:
        return timedelta(days=30)
    if warning.days is not None:
        return timedelta(days=warning.days)
    return None


def _team_schedules(session: Session) -> dict[int, ReminderSchedule]:
    schedules = {}
    rows = session.execute(select(TeamRow.id, TeamRow.reminder_schedule))
    for team_id, schedule_text in rows:
        parsed = _schedule(schedule_text)
        if parsed is not None:
            schedules[team_id] = parsed
    return schedules


def _schedule(text: str | None) -> ReminderSchedule | None:
    if not text:
        return None
    try:
        return parse_schedule(text)
    except ScheduleError as exc:
        # The commands validate schedules before storing them, so only a
        # hand-edited row gets here; the default keeps reminders flowing.
        logger.warning("%s Using the default reminder schedule.", exc)
        return None


def _endpoint_teams(session: Session, ids: set[int]) -> dict[int, int]:
    if not ids:
        return {}
    rows = session.execute(
        select(EndpointRow.id, EndpointRow.team_id).where(EndpointRow.id.in_(ids))
    )
    return {endpoint_id: team_id for endpoint_id, team_id in rows}


# --- Alerts in the store -----------------------------------------------------


def _sent_thresholds(session: Session) -> dict[int, set[str]]:
    sent: defaultdict[int, set[str]] = defaultdict(set)
    for alert_id, threshold in session.execute(
        select(AlertThresholdRow.alert_id, AlertThresholdRow.threshold)
    ):
        sent[alert_id].add(threshold)
    return dict(sent)


def _upsert_alert(
    session: Session, row: AlertRow | None, incident: Incident, now: datetime
) -> AlertRow:
    if row is None:
        row = AlertRow(
            team_id=incident.team_id,
            identity=incident.identity,
            opened_at=now,
        )
        session.add(row)
    elif row.resolved_at is not None:
        # The same incident again (a certificate that came back): reopen it.
        # Its thresholds stay recorded, so no reminder is sent twice.
        row.resolved_at = None
        row.opened_at = now
        row.escalated_at = None
    row.event = incident.event.value
    row.code = incident.code
    row.severity = incident.severity.label
    row.certificate_sha256 = incident.certificate_sha256
    row.endpoint_id = incident.endpoint_id
    row.message = incident.message
    row.places = [place.document() for place in incident.places]
    row.updated_at = now
    session.flush()
    return row


def _record_thresholds(
    session: Session,
    row: AlertRow,
    crossed: Sequence[str],
    sent: set[str],
    now: datetime,
) -> None:
    for threshold in crossed:
        if threshold not in sent:
            session.add(
                AlertThresholdRow(alert_id=row.id, threshold=threshold, crossed_at=now)
            )


def _acknowledged(row: AlertRow, now: datetime, newest: str) -> bool:
    """Tell whether an acknowledgement holds back the reminder for `newest`."""
    if row.acknowledged_until is not None and now < row.acknowledged_until:
        return True
    # Acknowledged "until the next threshold": a new one ends it.
    return row.acknowledged_threshold == newest


def _can_resolve(session: Session, row: AlertRow) -> bool:
    """Tell whether an alert whose incident is gone can be resolved now.

    An expiry alert stays open while one of its endpoints got no certificate
    in its latest scan: the certificate may still be there behind an outage.
    """
    if not row.identity.startswith("expiry:"):
        return True
    ids = {
        place["endpoint_id"]
        for place in row.places
        if place.get("endpoint_id") is not None
    }
    if not ids:
        return True
    unknown = session.scalar(
        select(EndpointRow.id)
        .where(EndpointRow.id.in_(ids), EndpointRow.consecutive_failures > 0)
        .limit(1)
    )
    return unknown is None


def _still_served(session: Session, row: AlertRow) -> bool:
    """Tell whether an expiry alert's certificate is still a leaf at its places."""
    if not row.identity.startswith("expiry:") or row.certificate_sha256 is None:
        return False
    ids = {p["endpoint_id"] for p in row.places if p.get("endpoint_id") is not None}
    if not ids:
        return False
    found = session.scalar(
        select(ObservationRow.id)
        .join(
            ObservationCertificateRow,
            ObservationCertificateRow.observation_id == ObservationRow.id,
        )
        .where(
            ObservationRow.endpoint_id.in_(ids),
            ObservationRow.latest.is_(True),
            ObservationCertificateRow.position == 0,
            ObservationCertificateRow.certificate_sha256 == row.certificate_sha256,
        )
        .limit(1)
    )
    return found is not None


def _resolved_item(session: Session, row: AlertRow) -> NoticeItem:
    places = [PlaceRef.from_document(place) for place in row.places]
    old = (
        session.get(CertificateRow, row.certificate_sha256)
        if row.certificate_sha256
        else None
    )
    new_sha, new_not_after = _successor(session, places, row.certificate_sha256)
    names: tuple[str, ...] = ()
    if old is not None:
        names = (*old.dns_names, *old.ip_addresses)
    return NoticeItem(
        event=EventKind.RESOLVED,
        severity=Severity.INFO,
        message=f"Resolved: {row.message}",
        names=names,
        fingerprint=row.certificate_sha256,
        not_after=old.not_after if old is not None else None,
        places=tuple(place.place() for place in places),
        finding_code=row.code,
        new_fingerprint=new_sha,
        new_not_after=new_not_after,
    )


def _successor(
    session: Session, places: Sequence[PlaceRef], old_sha: str | None
) -> tuple[str | None, datetime | None]:
    """Return the leaf served now at the first of `places` that serves another."""
    for place in places:
        if place.endpoint_id is None:
            continue
        query = (
            select(CertificateRow.sha256, CertificateRow.not_after)
            .join(
                ObservationCertificateRow,
                ObservationCertificateRow.certificate_sha256 == CertificateRow.sha256,
            )
            .join(
                ObservationRow,
                ObservationRow.id == ObservationCertificateRow.observation_id,
            )
            .where(
                ObservationRow.endpoint_id == place.endpoint_id,
                ObservationRow.latest.is_(True),
                ObservationCertificateRow.position == 0,
            )
        )
        if place.address is not None:
            query = query.where(ObservationRow.address == place.address)
        for sha, not_after in session.execute(query):
            if sha != old_sha:
                return sha, not_after
    return None, None


def _escalate(
    session: Session,
    teams: Mapping[int, TeamRow],
    now: datetime,
    settings: AlertSettings,
    report: EvaluationReport,
) -> int:
    """Queue the unacknowledged, overdue critical alerts to escalation contacts."""
    rows = session.scalars(
        select(AlertRow).where(
            AlertRow.resolved_at.is_(None),
            AlertRow.escalated_at.is_(None),
            AlertRow.severity == Severity.CRITICAL.label,
        )
    )
    by_team: defaultdict[int, list[AlertRow]] = defaultdict(list)
    for row in rows:
        team = teams[row.team_id]
        after = (
            timedelta(seconds=team.escalate_after_seconds)
            if team.escalate_after_seconds
            else settings.escalate_after
        )
        acknowledged = (
            row.acknowledged_by is not None
            or row.acknowledged_threshold is not None
            or (row.acknowledged_until is not None and now < row.acknowledged_until)
        )
        if not acknowledged and now - row.opened_at >= after:
            by_team[row.team_id].append(row)

    escalated = 0
    for team_id, alerts in by_team.items():
        entries = [(f"{row.identity}@escalation", _stored_item(row)) for row in alerts]
        notice = _notice(teams[team_id].name, entries, now, prefix="escalation")
        queued = enqueue(
            session, team_id=team_id, notice=notice, now=now, escalation=True
        )
        report.queued += queued
        report.notices += 1
        for row in alerts:
            row.escalated_at = now
        escalated += len(alerts)
    return escalated


def _stored_item(row: AlertRow) -> NoticeItem:
    return NoticeItem(
        event=EventKind(row.event),
        severity=Severity[row.severity.upper()],
        message=row.message,
        fingerprint=row.certificate_sha256,
        places=tuple(PlaceRef.from_document(p).place() for p in row.places),
        finding_code=row.code,
        alert_id=row.id,
    )


def _item(incident: Incident, alert_id: int) -> NoticeItem:
    return NoticeItem(
        event=incident.event,
        severity=incident.severity,
        message=incident.message,
        names=incident.names,
        fingerprint=incident.certificate_sha256,
        not_after=incident.not_after,
        days_left=incident.days_left,
        places=tuple(place.place() for place in incident.places),
        finding_code=incident.code,
        stale_places=tuple(place.place() for place in incident.stale_places),
        alert_id=alert_id,
    )


def _notice(
    team: str,
    entries: Sequence[tuple[str, NoticeItem]],
    now: datetime,
    *,
    prefix: str,
) -> Notice:
    """Build one notice; its key depends only on what it reports.

    Evaluating the same state twice (after a crash before the commit) gives
    the same key, so the outbox keeps one message per contact.
    """
    digest = hashlib.sha256(
        "\n".join(sorted(label for label, _ in entries)).encode()
    ).hexdigest()
    notice = Notice(
        key=f"certwatch-{prefix}-{digest[:40]}",
        team=team,
        event=EventKind.PROBLEM,
        generated_at=now,
        items=tuple(item for _, item in entries),
    )
    # The notice sorts its items most urgent first; the first names the event.
    return replace(notice, event=notice.items[0].event)
