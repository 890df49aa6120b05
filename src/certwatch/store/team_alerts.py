"""The alerts of some teams and the delivery of each to the teams' contacts.

Every function takes the ids of the teams the caller may see and returns
only their alerts. An alert is in one of three states: `open` (not
resolved and not acknowledged), `acknowledged` (not resolved, and an
acknowledgement holds: until a time still ahead, or until a threshold
newer than the one recorded) and `resolved`.

`alert_deliveries` finds the outbox messages about an alert by the
`alert_id` of their items. Messages stored before items carried it are
matched by the alert's certificate and finding code (or, for an alert
without a certificate, its finding code and one of its endpoints).
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, or_, select
from sqlalchemy.orm import Session

from certwatch.store.alerts import _threshold_order, alerts_with_teams
from certwatch.store.chunks import chunked
from certwatch.store.models import (
    AlertRow,
    AlertThresholdRow,
    ContactRow,
    OutboxRow,
)


class AlertState(enum.StrEnum):
    """The states an alert listing filters by."""

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


# The finding codes an expiry alert takes: it is `expiring_soon` until the
# certificate expires, then `expired`, under the same identity.
_EXPIRY_CODES = frozenset({"expiring_soon", "expired"})


@dataclass(frozen=True)
class TeamAlert:
    """An alert of one of the caller's teams.

    `places` are the documents the alert stores: `target`, `address`,
    `path`, `endpoint_id` and `file_source_id`, each possibly `None`.
    `certificate_sha256` is `None` for an alert about an endpoint, such as
    `unreachable`. `threshold` is the reminder threshold crossed last,
    `None` when none was recorded. The acknowledgement fields are as in
    `certwatch.store.alerts.AlertRecord`.
    """

    id: int
    team_id: int
    team: str
    identity: str
    event: str
    code: str
    severity: str
    message: str
    places: tuple[Mapping[str, Any], ...]
    certificate_sha256: str | None
    endpoint_id: int | None
    opened_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    acknowledged_until: datetime | None
    acknowledged_threshold: str | None
    acknowledged_by: str | None
    escalated_at: datetime | None
    threshold: str | None

    def state(self, now: datetime) -> AlertState:
        """Return the alert's state at `now`."""
        if self.resolved_at is not None:
            return AlertState.RESOLVED
        if self.acknowledged_threshold is not None:
            return AlertState.ACKNOWLEDGED
        if self.acknowledged_until is not None and now < self.acknowledged_until:
            return AlertState.ACKNOWLEDGED
        return AlertState.OPEN


@dataclass(frozen=True)
class TeamAlertPage:
    """One page of alerts in a state; `total` counts all alerts in it."""

    alerts: list[TeamAlert]
    total: int


@dataclass(frozen=True)
class AlertDelivery:
    """The latest outbox message about an alert to one contact.

    `contact_address` contains the contact's secrets: show it only
    redacted. `delivered_at` is set once the message was delivered, and
    `failed_at` once certwatch gave up; until then `next_attempt_at` is when
    it is tried next. `last_error` is the reason of the latest failed
    attempt, `None` before any.
    """

    outbox_id: int
    contact_id: int
    contact_kind: str
    contact_address: str
    event: str
    created_at: datetime
    attempts: int
    delivered_at: datetime | None
    failed_at: datetime | None
    next_attempt_at: datetime
    last_error: str | None


def team_alert_page(
    session: Session,
    team_ids: Collection[int],
    *,
    state: AlertState,
    now: datetime,
    offset: int,
    limit: int,
) -> TeamAlertPage:
    """Return a page of the teams' alerts in `state`.

    Open and acknowledged alerts come critical first, then newest first;
    resolved alerts come most recently resolved first.
    """
    if not team_ids:
        return TeamAlertPage([], 0)
    condition = and_(
        AlertRow.team_id.in_(sorted(team_ids)), _state_condition(state, now)
    )
    total = session.scalar(select(func.count()).where(condition)) or 0
    order: tuple[Any, ...]
    if state is AlertState.RESOLVED:
        order = (AlertRow.resolved_at.desc(), AlertRow.id.desc())
    else:
        order = (_severity_rank(), AlertRow.opened_at.desc(), AlertRow.id.desc())
    rows = session.execute(
        alerts_with_teams()
        .where(condition)
        .order_by(*order)
        .offset(offset)
        .limit(limit)
    ).all()
    thresholds = newest_thresholds(session, [row.id for row, _ in rows])
    alerts = [_alert(row, team, thresholds.get(row.id)) for row, team in rows]
    return TeamAlertPage(alerts, total)


def team_alert_counts(
    session: Session, team_ids: Collection[int], *, now: datetime
) -> dict[AlertState, int]:
    """Return how many of the teams' alerts are in each state."""
    counts = dict.fromkeys(AlertState, 0)
    if not team_ids:
        return counts
    for state in AlertState:
        condition = and_(
            AlertRow.team_id.in_(sorted(team_ids)), _state_condition(state, now)
        )
        counts[state] = session.scalar(select(func.count()).where(condition)) or 0
    return counts


def team_alert(
    session: Session, alert_id: int, team_ids: Collection[int]
) -> TeamAlert | None:
    """Return an alert of the teams, `None` when there is none with that id."""
    if not team_ids:
        return None
    found = session.execute(
        alerts_with_teams().where(
            AlertRow.id == alert_id, AlertRow.team_id.in_(sorted(team_ids))
        )
    ).first()
    if found is None:
        return None
    row, team = found
    return _alert(row, team, newest_thresholds(session, [row.id]).get(row.id))


def newest_thresholds(session: Session, alert_ids: Sequence[int]) -> dict[int, str]:
    """Return the threshold crossed last of each alert that has one.

    The choice is that of `certwatch.store.alerts.newest_threshold`, which
    `certwatch alerts ack` uses, made for many alerts in one query per
    chunk of ids.
    """
    crossed: defaultdict[int, list[tuple[datetime, str]]] = defaultdict(list)
    for chunk in chunked(list(alert_ids)):
        rows = session.execute(
            select(
                AlertThresholdRow.alert_id,
                AlertThresholdRow.crossed_at,
                AlertThresholdRow.threshold,
            ).where(AlertThresholdRow.alert_id.in_(chunk))
        )
        for alert_id, crossed_at, threshold in rows:
            crossed[alert_id].append((crossed_at, threshold))
    newest: dict[int, str] = {}
    for alert_id, entries in crossed.items():
        latest = max(crossed_at for crossed_at, _ in entries)
        candidates = [threshold for at, threshold in entries if at == latest]
        newest[alert_id] = max(candidates, key=_threshold_order)
    return newest


def alert_deliveries(
    session: Session, alerts: Sequence[TeamAlert]
) -> dict[int, list[AlertDelivery]]:
    """Return, per alert id, the latest message about it to each contact.

    Messages queued before the alert was (re)opened are left out. The
    deliveries of one alert are sorted by contact id.
    """
    by_team: defaultdict[int, list[TeamAlert]] = defaultdict(list)
    for alert in alerts:
        by_team[alert.team_id].append(alert)
    latest: dict[int, dict[int, AlertDelivery]] = {alert.id: {} for alert in alerts}
    for team_id, team_alerts in by_team.items():
        # NOTE: this reads every message of the team since the oldest alert
        # on the page was opened. A page of alerts opened long ago, with many
        # messages since, is therefore slow to render.
        since = min(alert.opened_at for alert in team_alerts)
        rows = session.execute(
            select(OutboxRow, ContactRow.kind, ContactRow.address)
            .join(ContactRow, ContactRow.id == OutboxRow.contact_id)
            .where(OutboxRow.team_id == team_id, OutboxRow.created_at >= since)
            .order_by(OutboxRow.created_at, OutboxRow.id)
        )
        for row, kind, address in rows:
            items = _items(row.notice)
            for alert in team_alerts:
                if row.created_at < alert.opened_at:
                    continue
                if any(_mentions(alert, item) for item in items):
                    latest[alert.id][row.contact_id] = _delivery(row, kind, address)
    return {
        alert_id: [contacts[key] for key in sorted(contacts)]
        for alert_id, contacts in latest.items()
    }


def _state_condition(state: AlertState, now: datetime) -> ColumnElement[bool]:
    acknowledged = or_(
        AlertRow.acknowledged_threshold.is_not(None),
        AlertRow.acknowledged_until > now,
    )
    if state is AlertState.RESOLVED:
        return AlertRow.resolved_at.is_not(None)
    if state is AlertState.ACKNOWLEDGED:
        return and_(AlertRow.resolved_at.is_(None), acknowledged)
    return and_(
        AlertRow.resolved_at.is_(None),
        AlertRow.acknowledged_threshold.is_(None),
        or_(AlertRow.acknowledged_until.is_(None), AlertRow.acknowledged_until <= now),
    )


def _severity_rank() -> Any:
    return case(
        (AlertRow.severity == "critical", 0),
        (AlertRow.severity == "warning", 1),
        else_=2,
    )


def _alert(row: AlertRow, team: str, threshold: str | None) -> TeamAlert:
    return TeamAlert(
        id=row.id,
        team_id=row.team_id,
        team=team,
        identity=row.identity,
        event=row.event,
        code=row.code,
        severity=row.severity,
        message=row.message,
        places=tuple(row.places),
        certificate_sha256=row.certificate_sha256,
        endpoint_id=row.endpoint_id,
        opened_at=row.opened_at,
        updated_at=row.updated_at,
        resolved_at=row.resolved_at,
        acknowledged_until=row.acknowledged_until,
        acknowledged_threshold=row.acknowledged_threshold,
        acknowledged_by=row.acknowledged_by,
        escalated_at=row.escalated_at,
        threshold=threshold,
    )


def _items(notice: object) -> list[Mapping[str, Any]]:
    if not isinstance(notice, Mapping):
        return []
    items = notice.get("items")
    if not isinstance(items, list):
        return []
    return [item for item in items if isinstance(item, Mapping)]


def _mentions(alert: TeamAlert, item: Mapping[str, Any]) -> bool:
    """Tell whether a stored notice item is about the alert.

    Items name their alert by id since that field was added; older items
    are matched by certificate, finding code and places.
    """
    alert_id = item.get("alert_id")
    if alert_id is not None:
        return bool(alert_id == alert.id)
    code = item.get("finding_code")
    if alert.identity.startswith("expiry:"):
        codes: Collection[str] = _EXPIRY_CODES
    else:
        codes = (alert.code,)
    if code not in codes:
        return False
    if alert.certificate_sha256 is not None:
        return bool(item.get("fingerprint") == alert.certificate_sha256)
    if item.get("fingerprint") is not None:
        return False
    places = item.get("places")
    if not isinstance(places, list):
        return False
    targets = {place.get("target") for place in alert.places}
    return any(
        isinstance(place, Mapping) and place.get("target") in targets
        for place in places
    )


def _delivery(row: OutboxRow, kind: str, address: str) -> AlertDelivery:
    return AlertDelivery(
        outbox_id=row.id,
        contact_id=row.contact_id,
        contact_kind=kind,
        contact_address=address,
        event=row.event,
        created_at=row.created_at,
        attempts=row.attempts,
        delivered_at=row.delivered_at,
        failed_at=row.failed_at,
        next_attempt_at=row.next_attempt_at,
        last_error=row.last_error,
    )
