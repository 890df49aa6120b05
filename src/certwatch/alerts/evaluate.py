"""Decide the alerts after a monitoring cycle and record them with their messages.

`evaluate_alerts` reads what the latest scans show, turns it into incidents
(one per certificate or finding and team, whatever the number of places),
and compares them with the alerts stored before:

- an incident that crossed a threshold not recorded yet gets one reminder,
  and every threshold it crossed is recorded, so a missed cycle sends the
  overdue reminder once and a repeated evaluation sends nothing. While an
  acknowledgement holds, or while the team has no contact that receives
  alerts, nothing is recorded, so the newest threshold is sent once later;
- an alert whose incident is gone is resolved, with a `resolved` message
  when the team heard of it since its last `resolved` message. An expiry
  alert stays open while a place that served the certificate cannot be
  scanned, because an outage proves nothing about a renewal;
- a critical alert that no contact acknowledged in time after it became
  critical goes to the escalation contacts too.

Everything new for a team becomes one `Notice`, most urgent first, queued in
the outbox in the caller's transaction. The caller commits, then delivers.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, cast

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
    merge_schedules,
    newest_unsent,
    parse_schedule,
)
from certwatch.monitor.settings import SettingsError, parse_duration
from certwatch.store.alerts import (
    alert_thresholds,
    newest_threshold,
    teams_with_recipients,
)
from certwatch.store.chunks import chunked
from certwatch.store.deployments import serves_leaf
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

STARTTLS_NOT_OFFERED = "starttls_not_offered"
"""The finding of a server that replies but no longer offers STARTTLS."""

# A self-signed leaf fails trust as an unknown root does, so it alerts too.
ALERTED_FINDINGS = (
    "hostname_mismatch",
    "untrusted_root",
    "self_signed",
    "incomplete_chain",
    "chain_expired",
    "chain_expiring",
    STARTTLS_NOT_OFFERED,
)
"""The finding codes, besides expiry and stale deployments, that alert a team."""

RESOLVED = "resolved"
"""The threshold recorded when the latest resolved message of an alert was queued."""

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
    session: Session,
    *,
    now: datetime,
    settings: AlertSettings,
    extra_entries: Mapping[int, Sequence[tuple[str, NoticeItem]]] | None = None,
) -> EvaluationReport:
    """Compare the incidents the latest scans show with the stored alerts.

    Records alerts, thresholds and outbox messages in the caller's
    transaction; nothing is committed or sent here. `extra_entries` maps a
    team id to further items, each with a label for the idempotency key,
    that join the team's message of this evaluation (such as `changed`
    items).
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
    teams = {team.id: team for team in session.scalars(select(TeamRow))}
    reachable = teams_with_recipients(session)
    held_back: Counter[int] = Counter()

    items: defaultdict[int, list[tuple[str, NoticeItem]]] = defaultdict(list)
    current: dict[tuple[int, str], Incident] = {}
    for incident in incidents:
        key = (incident.team_id, incident.identity)
        if key in current:
            continue
        current[key] = incident
        row = stored.get(key)
        if row is None or row.resolved_at is not None:
            report.opened += 1
        row = _upsert_alert(session, row, incident, now)
        crossed_before = sent.get(row.id, {})
        newest = newest_unsent(incident.thresholds, set(crossed_before) - {RESOLVED})
        if newest is None:
            continue
        # Thresholds stay unrecorded while the reminder is held back, so the
        # newest one crossed meanwhile is sent once when that ends.
        if _acknowledged(row, now, newest):
            continue
        if incident.team_id not in reachable:
            held_back[incident.team_id] += 1
            continue
        _record_thresholds(session, row, incident.thresholds, crossed_before, now)
        # The new reminder ends an acknowledgement until the next threshold.
        # `acknowledged_by` and a past `acknowledged_until` stay, so the
        # escalation clock can restart when the acknowledgement ended.
        row.acknowledged_threshold = None
        report.reminded += 1
        item = _item(incident, row.id)
        items[incident.team_id].append((f"{row.identity}@{newest}", item))

    for key, row in stored.items():
        if key in current or row.resolved_at is not None:
            continue
        if not _can_resolve(session, row):
            continue
        row.resolved_at = now
        row.updated_at = now
        report.resolved += 1
        recorded = sent.get(row.id, {})
        # An alert whose places moved to another team, still serving the
        # certificate, ends without a resolved message: nothing was fixed.
        if not _owes_resolved(recorded) or _still_served(session, row):
            continue
        if row.team_id not in reachable:
            held_back[row.team_id] += 1
            continue
        _record_resolved(session, row, recorded, now)
        resolved = _resolved_item(session, row)
        label = f"{row.identity}@resolved@{_newest_reminder(recorded)}"
        items[row.team_id].append((label, resolved))

    for team_id, extra in (extra_entries or {}).items():
        items[team_id].extend(extra)
    for team_id, entries in items.items():
        notice = _notice(teams[team_id].name, entries, now, prefix="alert")
        report.notices += 1
        report.queued += enqueue(session, team_id=team_id, notice=notice, now=now)
    _log_held_back(teams, held_back)

    report.escalated += _escalate(session, teams, now, settings, report, current)
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
    grouped: defaultdict[tuple[int, str], list[_Served]] = defaultdict(list)
    for served in _served_leaves(session, now, settings.thresholds):
        grouped[(served.team_id, served.sha256)].append(served)

    incidents = []
    for key, places in grouped.items():
        served = places[0]
        facts = CertificateFacts(
            der=b"",
            sha256=served.sha256,
            not_before=served.not_before,
            not_after=served.not_after,
        )
        # Places may follow different schedules: the certificate gets the
        # reminders of each, so no place's schedule is dropped.
        schedule = merge_schedules(
            _schedule(place.schedule_text)
            or schedules.get(place.team_id, DEFAULT_SCHEDULE)
            for place in places
        )
        windows = expiry_windows(facts, settings.thresholds)
        crossed = expiry_thresholds(facts, now, windows, schedule)
        severity = expiry_severity(facts, now, windows)
        if not crossed or severity is None or served.not_after is None:
            continue
        expired = served.not_after < now
        left = days_left(served.not_after, now)
        incidents.append(
            Incident(
                team_id=served.team_id,
                identity=f"expiry:{served.sha256}",
                event=EventKind.EXPIRED if expired else EventKind.EXPIRING,
                code="expired" if expired else "expiring_soon",
                severity=severity,
                message=_expiry_message(served.not_after, now, left),
                thresholds=crossed,
                places=[place.place for place in places],
                certificate_sha256=served.sha256,
                names=served.names,
                not_after=served.not_after,
                days_left=left,
                stale_places=stale_places.get(key, []),
            )
        )
    return incidents


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
    _name_certificates(session, list(grouped.values()))
    return list(grouped.values())


def _name_certificates(session: Session, incidents: Sequence[Incident]) -> None:
    """Give finding incidents the names and expiry of their certificate.

    A message about a self-signed or misnamed certificate then says which
    certificate it is. A certificate without subject alternative names is
    named by its subject's common name.
    """
    wanted = {i.certificate_sha256 for i in incidents if i.certificate_sha256}
    if not wanted:
        return
    rows = session.execute(
        select(
            CertificateRow.sha256,
            CertificateRow.dns_names,
            CertificateRow.ip_addresses,
            CertificateRow.common_name,
            CertificateRow.not_after,
        ).where(CertificateRow.sha256.in_(sorted(wanted)))
    ).all()
    facts = {row.sha256: row for row in rows}
    for incident in incidents:
        row = facts.get(incident.certificate_sha256 or "")
        if row is None:
            continue
        names = (*(row.dns_names or ()), *(row.ip_addresses or ()))
        if not names and row.common_name:
            names = (row.common_name,)
        incident.names = names
        incident.not_after = row.not_after


def _unreachable_incidents(session: Session, settings: AlertSettings) -> list[Incident]:
    """Collect the endpoints that failed the configured number of scans in a row.

    An endpoint whose latest scan found `starttls_not_offered` is left out:
    it replied, and its finding alerts with the server's reply.
    """
    refusing = (
        select(ObservationRow.endpoint_id)
        .join(FindingRow, FindingRow.observation_id == ObservationRow.id)
        .where(
            ObservationRow.latest.is_(True),
            ObservationRow.endpoint_id.is_not(None),
            FindingRow.code == STARTTLS_NOT_OFFERED,
        )
    )
    rows = session.execute(
        select(
            EndpointRow.team_id,
            EndpointRow.id,
            EndpointRow.target,
            EndpointRow.consecutive_failures,
        ).where(
            EndpointRow.enabled.is_(True),
            EndpointRow.consecutive_failures >= settings.unreachable_after,
            EndpointRow.id.not_in(refusing),
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
    """Return why the latest scan of each given endpoint obtained no certificate.

    That is the scan's error message or, for a scan that recorded none,
    the message of its first finding, which quotes what the server
    replied. An endpoint with neither is left out.
    """
    errors: dict[int, str] = {}
    for chunk in chunked(endpoint_ids):
        rows = session.execute(
            select(ObservationRow.endpoint_id, ObservationRow.error_message)
            .where(
                ObservationRow.endpoint_id.in_(chunk),
                ObservationRow.latest.is_(True),
            )
            .order_by(ObservationRow.id)
        )
        for endpoint_id, message in rows:
            if endpoint_id is not None and message:
                errors.setdefault(endpoint_id, message)
        missing = [endpoint_id for endpoint_id in chunk if endpoint_id not in errors]
        if missing:
            errors.update(_latest_finding_messages(session, missing))
    return errors


def _latest_finding_messages(
    session: Session, endpoint_ids: Sequence[int]
) -> dict[int, str]:
    """Return the first finding's message of the latest scans of each endpoint."""
    rows = session.execute(
        select(ObservationRow.endpoint_id, FindingRow.message)
        .join(FindingRow, FindingRow.observation_id == ObservationRow.id)
        .where(
            ObservationRow.endpoint_id.in_(endpoint_ids),
            ObservationRow.latest.is_(True),
        )
        .order_by(ObservationRow.id, FindingRow.position)
    )
    messages: dict[int, str] = {}
    for endpoint_id, message in rows:
        if endpoint_id is not None and message:
            messages.setdefault(endpoint_id, message)
    return messages


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


def _sent_thresholds(session: Session) -> dict[int, dict[str, datetime]]:
    """Return the recorded thresholds of every alert, each with when it was crossed."""
    sent: defaultdict[int, dict[str, datetime]] = defaultdict(dict)
    for alert_id, threshold, crossed_at in session.execute(
        select(
            AlertThresholdRow.alert_id,
            AlertThresholdRow.threshold,
            AlertThresholdRow.crossed_at,
        )
    ):
        sent[alert_id][threshold] = crossed_at
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
    sent: Mapping[str, datetime],
    now: datetime,
) -> None:
    for threshold in crossed:
        if threshold not in sent:
            session.add(
                AlertThresholdRow(alert_id=row.id, threshold=threshold, crossed_at=now)
            )


def _acknowledged(row: AlertRow, now: datetime, newest: str | None) -> bool:
    """Tell whether an acknowledgement is in effect while `newest` is the newest one.

    An acknowledgement is in effect until its `until` time, or, given without one,
    while the threshold it acknowledged is still the newest one crossed.
    """
    if row.acknowledged_until is not None and now < row.acknowledged_until:
        return True
    return (
        row.acknowledged_threshold is not None and row.acknowledged_threshold == newest
    )


def _owes_resolved(recorded: Mapping[str, datetime]) -> bool:
    """Tell whether the team heard of an alert since its last resolved message.

    A certificate that alternates with its successor reopens its alert.
    When a reminder went out after the first resolved message, the team
    believes the certificate is expiring again, so it gets another
    resolved message once the alert resolves again.
    """
    reminders = [at for threshold, at in recorded.items() if threshold != RESOLVED]
    if not reminders:
        return False
    resolved_at = recorded.get(RESOLVED)
    return resolved_at is None or max(reminders) > resolved_at


def _newest_reminder(recorded: Mapping[str, datetime]) -> str:
    """Return the threshold recorded last, for a key that changes with each reminder."""
    reminders = {t: at for t, at in recorded.items() if t != RESOLVED}
    return max(reminders, key=lambda threshold: (reminders[threshold], threshold))


def _record_resolved(
    session: Session, row: AlertRow, recorded: Mapping[str, datetime], now: datetime
) -> None:
    """Record when the resolved message was queued, replacing an earlier time."""
    if RESOLVED not in recorded:
        session.add(
            AlertThresholdRow(alert_id=row.id, threshold=RESOLVED, crossed_at=now)
        )
        return
    previous = session.get(AlertThresholdRow, (row.id, RESOLVED))
    assert previous is not None
    previous.crossed_at = now


def _log_held_back(teams: Mapping[int, TeamRow], held_back: Counter[int]) -> None:
    """Log each team whose alerts were not sent because no contact receives them."""
    for team_id, count in sorted(held_back.items()):
        name = teams[team_id].name
        logger.error(
            "Team %s has no contact that receives alerts, so %d alert message(s) "
            "for it were not sent: add one with 'certwatch contact add %s "
            "email:ADDRESS' (or webhook:, slack:, teams:), and the next cycle "
            "sends them.",
            name,
            count,
            name,
        )


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
    # The JSON column is typed as text, but places store endpoint ids as numbers.
    ids = {cast(int, p["endpoint_id"]) for p in row.places if p.get("endpoint_id")}
    return serves_leaf(session, ids, row.certificate_sha256)


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
    """Return the certificate found now at the first of `places` that has another.

    At an endpoint address that is the leaf it serves. In a certificate
    file it is the first certificate of the file, in the order read.
    """
    for place in places:
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
                ObservationRow.latest.is_(True),
                ObservationCertificateRow.position == 0,
            )
            .order_by(ObservationRow.id)
        )
        if place.endpoint_id is not None:
            query = query.where(ObservationRow.endpoint_id == place.endpoint_id)
            if place.address is not None:
                query = query.where(ObservationRow.address == place.address)
        elif place.file_source_id is not None:
            query = query.where(ObservationRow.file_source_id == place.file_source_id)
            if place.path is not None:
                query = query.where(ObservationRow.path == place.path)
        else:
            continue
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
    current: Mapping[tuple[int, str], Incident],
) -> int:
    """Queue the unacknowledged, overdue critical alerts to escalation contacts.

    `current` maps each alert's team and identity to its incident in the
    latest scans; an alert kept open by an outage has none.
    """
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
        incident = current.get((row.team_id, row.identity))
        newest = (
            incident.thresholds[-1]
            if incident is not None
            else newest_threshold(session, row.id)
        )
        if _acknowledged(row, now, newest):
            continue
        if now - _escalation_start(session, row, settings.thresholds) >= after:
            by_team[row.team_id].append(row)

    escalated = 0
    for team_id, alerts in by_team.items():
        entries = [
            (
                f"{row.identity}@escalation",
                _escalation_item(
                    session, row, current.get((row.team_id, row.identity)), now
                ),
            )
            for row in alerts
        ]
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


def _escalation_start(
    session: Session, row: AlertRow, thresholds: Thresholds
) -> datetime:
    """Return when the escalation clock of an unacknowledged critical alert starts.

    It starts when the team was sent the alert as a critical one, and restarts
    when an acknowledgement ended: at its `until` time, or at the newest
    reminder, which ended an acknowledgement until the next threshold.
    """
    recorded = alert_thresholds(session, row.id)
    recorded.pop(RESOLVED, None)
    start = _critical_since(session, row, thresholds, recorded)
    if row.acknowledged_by is None and row.acknowledged_until is None:
        return start
    ended = [start, *recorded.values()]
    if row.acknowledged_until is not None:
        ended.append(row.acknowledged_until)
    return max(ended)


def _critical_since(
    session: Session,
    row: AlertRow,
    thresholds: Thresholds,
    recorded: Mapping[str, datetime],
) -> datetime:
    """Return when the team was first sent an alert as a critical one.

    That is the first threshold recorded since the certificate entered its
    critical window for an expiry, and the first recorded threshold for
    other findings, whose severity comes with their code. Without such a
    threshold (the team had no contact, or no reminder point lies between
    the critical window and now) an expiry counts from the start of its
    critical window. A reopened alert never counts from before it reopened.
    """
    certificate = (
        session.get(CertificateRow, row.certificate_sha256)
        if row.identity.startswith("expiry:") and row.certificate_sha256
        else None
    )
    if certificate is None or certificate.not_after is None:
        reminded = list(recorded.values())
        return max(row.opened_at, min(reminded)) if reminded else row.opened_at

    facts = CertificateFacts(
        der=b"",
        sha256=certificate.sha256,
        not_before=certificate.not_before,
        not_after=certificate.not_after,
    )
    critical_start = certificate.not_after - expiry_windows(facts, thresholds).critical
    reminded = [at for at in recorded.values() if at >= critical_start]
    return max(row.opened_at, min(reminded) if reminded else critical_start)


def _escalation_item(
    session: Session, row: AlertRow, incident: Incident | None, now: datetime
) -> NoticeItem:
    """Describe an escalated alert as its reminders do.

    An alert kept open by an outage has no incident in the latest scans,
    so its certificate's names and expiry are read from the store.
    """
    if incident is not None:
        return _item(incident, row.id)
    certificate = (
        session.get(CertificateRow, row.certificate_sha256)
        if row.certificate_sha256
        else None
    )
    names: tuple[str, ...] = ()
    not_after = None
    if certificate is not None:
        names = (*certificate.dns_names, *certificate.ip_addresses)
        not_after = certificate.not_after
    return NoticeItem(
        event=EventKind(row.event),
        severity=Severity[row.severity.upper()],
        message=row.message,
        names=names,
        fingerprint=row.certificate_sha256,
        not_after=not_after,
        days_left=None if not_after is None else days_left(not_after, now),
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
