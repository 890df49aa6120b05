"""Tell a team when the certificate at one of its places was replaced.

The monitor stores a change event in `certificate_changes` when a scan finds
a leaf at a place other than the one the place showed before. A place that
alternates with a certificate it showed recently stores no event, so it
sends nothing here. `change_entries` turns the events not reported yet into
`changed` items, one per old and new certificate and team, which join the
team's message of the evaluation at low urgency.

Each event is reported at most once. It is recorded as an alert with the
identity `changed:CHANGE_ID`, resolved when it is created, in the
transaction that queues the message, so a restart does not send it again
and the team's alert history lists the change.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, aliased

from certwatch.alerts.evaluate import PlaceRef
from certwatch.alerts.message import EventKind, NoticeItem
from certwatch.store.alerts import teams_with_recipients
from certwatch.store.chunks import chunked
from certwatch.store.models import (
    AlertRow,
    CertificateChangeRow,
    CertificateRow,
    EndpointRow,
    FileSourceRow,
)
from certwatch.x509.model import Severity

CHANGED_CODE = "certificate_changed"
"""The finding code of `changed` items and of the alerts that record them."""

CHANGE_NOTICE_WINDOW = timedelta(days=7)
"""The age up to which a change event is reported.

Older events are not reported, so a store that recorded changes before
these notices existed does not send its whole history at once.
"""

Entries = dict[int, list[tuple[str, NoticeItem]]]
"""Per team id, the items for its message, each with a label for the key."""


@dataclass(frozen=True)
class _Change:
    id: int
    team_id: int
    place: PlaceRef
    old_sha256: str
    new_sha256: str
    old_not_after: datetime | None
    new_not_after: datetime | None
    old_names: tuple[str, ...]


def change_entries(session: Session, *, now: datetime) -> Entries:
    """Record the change events not reported yet and return their items per team.

    Only events detected within `CHANGE_NOTICE_WINDOW` before `now`, at an
    enabled source of a team with a contact that receives alerts, are
    reported. A team without one has its events left unrecorded, so they
    are reported if a contact is added within the window. The caller holds
    the alerting lock, queues the items and commits.
    """
    recipients = teams_with_recipients(session)
    changes = [
        change for change in _unreported(session, now) if change.team_id in recipients
    ]
    grouped: defaultdict[tuple[int, str, str], list[_Change]] = defaultdict(list)
    for change in changes:
        grouped[(change.team_id, change.old_sha256, change.new_sha256)].append(change)

    entries: Entries = defaultdict(list)
    for (team_id, _, _), group in grouped.items():
        item = _item(group)
        label = "changed:" + ",".join(str(change.id) for change in group)
        entries[team_id].append((label, item))
        for change in group:
            _record(session, change, item.message, now)
    session.flush()
    return dict(entries)


def _unreported(session: Session, now: datetime) -> list[_Change]:
    """Return the recent change events that no alert records yet, oldest first."""
    change = CertificateChangeRow
    old = aliased(CertificateRow)
    new = aliased(CertificateRow)
    query = (
        select(
            change,
            EndpointRow.team_id,
            EndpointRow.target,
            FileSourceRow.team_id,
            FileSourceRow.path,
            old.not_after,
            old.dns_names,
            old.ip_addresses,
            new.not_after,
        )
        .join(old, old.sha256 == change.old_sha256)
        .join(new, new.sha256 == change.new_sha256)
        .outerjoin(EndpointRow, EndpointRow.id == change.endpoint_id)
        .outerjoin(FileSourceRow, FileSourceRow.id == change.file_source_id)
        .where(
            change.detected_at > now - CHANGE_NOTICE_WINDOW,
            change.detected_at <= now,
            or_(EndpointRow.enabled.is_(True), FileSourceRow.enabled.is_(True)),
        )
        .order_by(change.detected_at, change.id)
    )
    found = []
    for row in session.execute(query):
        stored: CertificateChangeRow = row[0]
        endpoint_team, target, file_team, source_path = row[1:5]
        old_not_after, dns_names, ip_addresses, new_not_after = row[5:]
        if stored.endpoint_id is not None:
            team_id = endpoint_team
            place = PlaceRef(target, stored.address, endpoint_id=stored.endpoint_id)
        else:
            team_id = file_team
            place = PlaceRef(
                source_path, path=stored.path, file_source_id=stored.file_source_id
            )
        found.append(
            _Change(
                id=stored.id,
                team_id=team_id,
                place=place,
                old_sha256=stored.old_sha256,
                new_sha256=stored.new_sha256,
                old_not_after=old_not_after,
                new_not_after=new_not_after,
                old_names=(*dns_names, *ip_addresses),
            )
        )
    reported = _reported_identities(session, [_identity(c.id) for c in found])
    return [change for change in found if _identity(change.id) not in reported]


def _reported_identities(session: Session, identities: Sequence[str]) -> set[str]:
    # Any team's record counts: a source that moved to another team since
    # its change was reported is not reported again.
    reported: set[str] = set()
    for chunk in chunked(identities):
        reported.update(
            session.scalars(
                select(AlertRow.identity).where(AlertRow.identity.in_(chunk))
            )
        )
    return reported


def _identity(change_id: int) -> str:
    return f"changed:{change_id}"


def _item(group: Sequence[_Change]) -> NoticeItem:
    first = group[0]
    return NoticeItem(
        event=EventKind.CHANGED,
        severity=Severity.INFO,
        message=_message(first.new_not_after),
        names=first.old_names,
        fingerprint=first.old_sha256,
        not_after=first.old_not_after,
        places=tuple(change.place.place() for change in group),
        finding_code=CHANGED_CODE,
        new_fingerprint=first.new_sha256,
        new_not_after=first.new_not_after,
    )


def _message(new_not_after: datetime | None) -> str:
    if new_not_after is None:
        return "The certificate was replaced by another."
    date = new_not_after.date().isoformat()
    return f"The certificate was replaced by one that expires on {date}."


def _record(session: Session, change: _Change, message: str, now: datetime) -> None:
    session.add(
        AlertRow(
            team_id=change.team_id,
            identity=_identity(change.id),
            event=EventKind.CHANGED.value,
            code=CHANGED_CODE,
            severity=Severity.INFO.label,
            certificate_sha256=change.old_sha256,
            message=message,
            places=[change.place.document()],
            opened_at=now,
            updated_at=now,
            resolved_at=now,
        )
    )
