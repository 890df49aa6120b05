"""Teams' alert settings, contacts, alerts and failed deliveries in the store.

Every function works inside the caller's session and never commits. The
contact address is returned as stored, secrets included: callers turn it
into a `certwatch.alerts.contacts.ContactAddress` and show only its
redacted form.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, delete, func, select, update
from sqlalchemy.orm import Session

from certwatch.store.models import (
    AlertRow,
    AlertThresholdRow,
    ContactRow,
    EndpointRow,
    FileSourceRow,
    OutboxRow,
    TeamRow,
)


@dataclass(frozen=True)
class TeamSummary:
    """A team with its alert settings and how much it owns.

    `reminder_schedule` and `escalate_after` are `None` when the team uses
    the defaults. `open_alerts` counts alerts not resolved yet.
    """

    id: int
    name: str
    reminder_schedule: str | None
    escalate_after: timedelta | None
    contacts: int
    endpoints: int
    file_sources: int
    open_alerts: int


@dataclass(frozen=True)
class ContactRecord:
    """A stored contact and its delivery health.

    `kind` and `address` are as stored, the address with its secrets.
    `last_error` is the reason of the latest failed delivery, `None` after
    a success. `unhealthy_since` is set while the contact gets no alerts
    because its deliveries kept failing.
    """

    id: int
    team_id: int
    kind: str
    address: str
    escalation: bool
    created_at: datetime
    consecutive_failures: int
    last_error: str | None
    unhealthy_since: datetime | None


@dataclass(frozen=True)
class AlertRecord:
    """An alert as listed by `certwatch alerts`.

    `resolved_at` is `None` while the alert is open. An acknowledgement
    holds until `acknowledged_until`, or until a threshold newer than
    `acknowledged_threshold` is crossed; both are `None` when nobody
    acknowledged the alert.
    """

    id: int
    team: str
    event: str
    code: str
    severity: str
    message: str
    places: tuple[dict[str, str | None], ...]
    opened_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    acknowledged_until: datetime | None
    acknowledged_threshold: str | None
    acknowledged_by: str | None


@dataclass(frozen=True)
class PendingDelivery:
    """An outbox message that failed at least once and is not delivered.

    `failed_at` is set once certwatch gave up (a permanent failure or too
    many attempts); until then `next_attempt_at` is when it is tried again.
    """

    id: int
    team: str
    contact_id: int
    contact_kind: str
    contact_address: str
    event: str
    notice_key: str
    created_at: datetime
    attempts: int
    last_error: str | None
    next_attempt_at: datetime
    failed_at: datetime | None


@dataclass(frozen=True)
class ContactFailure:
    """A contact's count of failed deliveries in a row, after one more failure.

    `became_unhealthy` is true when this failure marked the contact
    unhealthy. `failures` is 0 when the contact no longer exists.
    """

    failures: int
    became_unhealthy: bool


def find_team(session: Session, name: str) -> int | None:
    """Return the id of the team called `name`, `None` when there is none."""
    return session.scalar(select(TeamRow.id).where(TeamRow.name == name.strip()))


def update_team_settings(
    session: Session,
    team_id: int,
    *,
    reminder_schedule: str | None = None,
    escalate_after: timedelta | None = None,
) -> None:
    """Set the reminder schedule and escalation delay that are given.

    An argument left `None` keeps the stored value.
    """
    values: dict[str, Any] = {}
    if reminder_schedule is not None:
        values["reminder_schedule"] = reminder_schedule
    if escalate_after is not None:
        values["escalate_after_seconds"] = int(escalate_after.total_seconds())
    if values:
        session.execute(update(TeamRow).where(TeamRow.id == team_id).values(**values))


def team_summaries(session: Session, team_id: int | None = None) -> list[TeamSummary]:
    """Return every team, or the one with `team_id`, sorted by name."""
    contacts = _counts_by_team(session, ContactRow)
    endpoints = _counts_by_team(session, EndpointRow)
    file_sources = _counts_by_team(session, FileSourceRow)
    open_alerts = _counts_by_team(session, AlertRow, AlertRow.resolved_at.is_(None))
    query = select(TeamRow).order_by(TeamRow.name)
    if team_id is not None:
        query = query.where(TeamRow.id == team_id)
    return [
        TeamSummary(
            id=row.id,
            name=row.name,
            reminder_schedule=row.reminder_schedule,
            escalate_after=(
                None
                if row.escalate_after_seconds is None
                else timedelta(seconds=row.escalate_after_seconds)
            ),
            contacts=contacts.get(row.id, 0),
            endpoints=endpoints.get(row.id, 0),
            file_sources=file_sources.get(row.id, 0),
            open_alerts=open_alerts.get(row.id, 0),
        )
        for row in session.scalars(query)
    ]


def list_contacts(session: Session, team_id: int) -> list[ContactRecord]:
    """Return the contacts of a team, in the order they were added."""
    rows = session.scalars(
        select(ContactRow).where(ContactRow.team_id == team_id).order_by(ContactRow.id)
    )
    return [_contact_record(row) for row in rows]


def add_contact(
    session: Session,
    team_id: int,
    *,
    kind: str,
    address: str,
    escalation: bool,
    now: datetime,
) -> tuple[ContactRecord, bool]:
    """Add a contact to a team, or set the escalation flag of an existing one.

    Returns the stored contact and whether it was newly created.
    """
    row = session.scalar(
        select(ContactRow).where(
            ContactRow.team_id == team_id,
            ContactRow.kind == kind,
            ContactRow.address == address,
        )
    )
    created = row is None
    if row is None:
        row = ContactRow(
            team_id=team_id,
            kind=kind,
            address=address,
            escalation=escalation,
            created_at=now,
            consecutive_failures=0,
        )
        session.add(row)
    else:
        row.escalation = escalation
    session.flush()
    return _contact_record(row), created


def remove_contact(session: Session, contact_id: int) -> bool:
    """Delete a contact and its outbox messages; return whether it existed."""
    result = session.execute(delete(ContactRow).where(ContactRow.id == contact_id))
    return bool(result.rowcount)  # type: ignore[attr-defined]


def alerts_with_teams() -> Select[AlertRow, str]:
    """Build a query for each alert row with the name of its team."""
    return select(AlertRow, TeamRow.name).join(TeamRow, TeamRow.id == AlertRow.team_id)


def list_alerts(
    session: Session, *, include_resolved: bool, team_id: int | None = None
) -> list[AlertRecord]:
    """Return the open alerts, or all of them, of every team or one; newest first."""
    query = alerts_with_teams().order_by(AlertRow.opened_at.desc(), AlertRow.id.desc())
    if not include_resolved:
        query = query.where(AlertRow.resolved_at.is_(None))
    if team_id is not None:
        query = query.where(AlertRow.team_id == team_id)
    return [_alert_record(row, team) for row, team in session.execute(query)]


def get_alert(session: Session, alert_id: int) -> AlertRecord | None:
    """Return the alert with `alert_id`, `None` when there is none."""
    found = session.execute(alerts_with_teams().where(AlertRow.id == alert_id)).first()
    if found is None:
        return None
    row, team = found
    return _alert_record(row, team)


def newest_threshold(session: Session, alert_id: int) -> str | None:
    """Return the threshold of the alert crossed last, `None` when none was.

    One evaluation records every threshold it finds crossed at the same
    time, so among those the one latest in a certificate's life wins:
    `expired:` (the latest day) after `days:N` and `share:P` (the smallest
    number), after `window` and `open`.
    """
    latest = session.scalar(
        select(func.max(AlertThresholdRow.crossed_at)).where(
            AlertThresholdRow.alert_id == alert_id
        )
    )
    if latest is None:
        return None
    thresholds = session.scalars(
        select(AlertThresholdRow.threshold).where(
            AlertThresholdRow.alert_id == alert_id,
            AlertThresholdRow.crossed_at == latest,
        )
    )
    return max(thresholds, key=_threshold_order)


def _threshold_order(threshold: str) -> tuple[int, float, str]:
    kind, _, value = threshold.partition(":")
    if kind == "expired":
        return (2, 0.0, value)
    if kind in ("days", "share"):
        try:
            return (1, -float(value), "")
        except ValueError:
            return (1, 0.0, value)
    return (0, 0.0, threshold)


def acknowledge_alert(
    session: Session,
    alert_id: int,
    *,
    until: datetime | None,
    threshold: str | None,
    by: str | None,
) -> None:
    """Record an acknowledgement until a time or until a newer threshold.

    Give exactly one of `until` and `threshold`; the other form of an
    earlier acknowledgement is cleared.
    """
    if (until is None) == (threshold is None):
        raise ValueError("Give exactly one of until and threshold.")
    session.execute(
        update(AlertRow)
        .where(AlertRow.id == alert_id)
        .values(
            acknowledged_until=until,
            acknowledged_threshold=threshold,
            acknowledged_by=by,
        )
    )


def pending_deliveries(session: Session) -> list[PendingDelivery]:
    """Return the outbox messages that failed and were not delivered, newest first.

    These are the ones given up (`failed_at` set) and the ones still being
    retried after at least one failed attempt.
    """
    query = (
        select(OutboxRow, TeamRow.name, ContactRow.kind, ContactRow.address)
        .join(TeamRow, TeamRow.id == OutboxRow.team_id)
        .join(ContactRow, ContactRow.id == OutboxRow.contact_id)
        .where(
            OutboxRow.delivered_at.is_(None),
            OutboxRow.failed_at.is_not(None) | (OutboxRow.attempts > 0),
        )
        .order_by(OutboxRow.created_at.desc(), OutboxRow.id.desc())
    )
    return [
        PendingDelivery(
            id=row.id,
            team=team,
            contact_id=row.contact_id,
            contact_kind=kind,
            contact_address=address,
            event=row.event,
            notice_key=row.notice_key,
            created_at=row.created_at,
            attempts=row.attempts,
            last_error=row.last_error,
            next_attempt_at=row.next_attempt_at,
            failed_at=row.failed_at,
        )
        for row, team, kind, address in session.execute(query)
    ]


def _counts_by_team(
    session: Session,
    row_type: type[ContactRow | EndpointRow | FileSourceRow | AlertRow],
    *conditions: ColumnElement[bool],
) -> dict[int, int]:
    query = (
        select(row_type.team_id, func.count())
        .where(*conditions)
        .group_by(row_type.team_id)
    )
    return dict(session.execute(query).all())


def _contact_record(row: ContactRow) -> ContactRecord:
    return ContactRecord(
        id=row.id,
        team_id=row.team_id,
        kind=row.kind,
        address=row.address,
        escalation=row.escalation,
        created_at=row.created_at,
        consecutive_failures=row.consecutive_failures,
        last_error=row.last_error,
        unhealthy_since=row.unhealthy_since,
    )


def _alert_record(row: AlertRow, team: str) -> AlertRecord:
    return AlertRecord(
        id=row.id,
        team=team,
        event=row.event,
        code=row.code,
        severity=row.severity,
        message=row.message,
        places=tuple(row.places),
        opened_at=row.opened_at,
        updated_at=row.updated_at,
        resolved_at=row.resolved_at,
        acknowledged_until=row.acknowledged_until,
        acknowledged_threshold=row.acknowledged_threshold,
        acknowledged_by=row.acknowledged_by,
    )


def record_contact_success(session: Session, contact_id: int) -> bool:
    """Reset a contact's failure count after a delivery.

    Returns whether the contact was marked unhealthy until now.
    """
    was_unhealthy = session.scalar(
        select(ContactRow.unhealthy_since.is_not(None)).where(
            ContactRow.id == contact_id
        )
    )
    session.execute(
        update(ContactRow)
        .where(ContactRow.id == contact_id)
        .values(consecutive_failures=0, last_error=None, unhealthy_since=None)
    )
    return bool(was_unhealthy)


def record_contact_failure(
    session: Session,
    contact_id: int,
    *,
    reason: str,
    now: datetime,
    limit: int,
    permanent: bool,
) -> ContactFailure:
    """Count a failed delivery to a contact and mark it unhealthy at `limit`.

    A permanent failure marks the contact unhealthy at once. The returned
    `became_unhealthy` is true for one call only until a delivery
    succeeds, even when several processes record failures at the same time.
    """
    failures = session.scalar(
        update(ContactRow)
        .where(ContactRow.id == contact_id)
        .values(
            consecutive_failures=ContactRow.consecutive_failures + 1,
            last_error=reason,
        )
        .returning(ContactRow.consecutive_failures)
    )
    if failures is None:
        return ContactFailure(failures=0, became_unhealthy=False)
    if failures < limit and not permanent:
        return ContactFailure(failures=failures, became_unhealthy=False)
    marked = session.execute(
        update(ContactRow)
        .where(ContactRow.id == contact_id, ContactRow.unhealthy_since.is_(None))
        .values(unhealthy_since=now)
    )
    return ContactFailure(
        failures=failures,
        became_unhealthy=bool(marked.rowcount),  # type: ignore[attr-defined]
    )


def healthy_contact_ids(
    session: Session,
    team_id: int,
    *,
    escalation: bool | None,
    exclude: int | None = None,
) -> list[int]:
    """Return the ids of a team's contacts that are not marked unhealthy.

    `escalation` keeps only escalation contacts (`True`), only the others
    (`False`), or both (`None`). `exclude` leaves one contact out.
    """
    query = select(ContactRow.id).where(
        ContactRow.team_id == team_id, ContactRow.unhealthy_since.is_(None)
    )
    if escalation is not None:
        query = query.where(ContactRow.escalation.is_(escalation))
    if exclude is not None:
        query = query.where(ContactRow.id != exclude)
    return list(session.scalars(query.order_by(ContactRow.id)))


def teams_with_recipients(session: Session) -> set[int]:
    """Return the ids of the teams with a contact that receives their alerts.

    Such a contact is neither an escalation contact nor marked unhealthy,
    as in `healthy_contact_ids` with `escalation=False`.
    """
    return set(
        session.scalars(
            select(ContactRow.team_id)
            .where(
                ContactRow.unhealthy_since.is_(None), ContactRow.escalation.is_(False)
            )
            .distinct()
        )
    )


def alert_thresholds(session: Session, alert_id: int) -> dict[str, datetime]:
    """Return the recorded thresholds of an alert, each with when it was crossed."""
    rows = session.execute(
        select(AlertThresholdRow.threshold, AlertThresholdRow.crossed_at).where(
            AlertThresholdRow.alert_id == alert_id
        )
    )
    return {threshold: crossed_at for threshold, crossed_at in rows}


def team_contact_ids(session: Session, team_id: int) -> list[int]:
    """Return the ids of all contacts of a team, unhealthy and escalation ones too."""
    return list(
        session.scalars(
            select(ContactRow.id)
            .where(ContactRow.team_id == team_id)
            .order_by(ContactRow.id)
        )
    )
