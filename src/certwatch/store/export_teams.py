"""Teams, their alert settings and their contacts in an inventory export.

A team entry carries what a new database needs to alert the same people
in the same way: the reminder schedule, the escalation delay, the endpoint
limit and each contact with its escalation flag. Contact addresses are
exported in full, webhook secrets included, because a redacted URL could
not deliver anything after an import. The state of a team (the last
digest, contact health, alerts) stays behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from certwatch.alerts.contacts import parse_contact
from certwatch.alerts.errors import ContactError
from certwatch.alerts.policy import ScheduleError, parse_schedule
from certwatch.store.alerts import add_contact
from certwatch.store.errors import StoreError
from certwatch.store.inventory import ensure_team
from certwatch.store.models import ContactRow, TeamRow

# The maximum escalation delay an import accepts, as `--escalate-after` does.
MAX_ESCALATE_AFTER_SECONDS = 365 * 86400


@dataclass(frozen=True)
class ContactEntry:
    """A contact to give a team: its kind, normalised address and flag."""

    kind: str
    address: str
    escalation: bool


@dataclass(frozen=True)
class TeamEntry:
    """A checked team entry of an export.

    `settings` is `False` for a team given by name only, as version 1 of
    the document wrote teams: its stored settings are then left alone.
    """

    name: str
    reminders: str | None
    escalate_after_seconds: int | None
    endpoint_limit: int | None
    contacts: tuple[ContactEntry, ...]
    settings: bool = True


def export_teams(session: Session) -> list[dict[str, Any]]:
    """Return every team with its settings and contacts, sorted by name."""
    contacts: dict[int, list[dict[str, Any]]] = {}
    for row in session.scalars(select(ContactRow).order_by(ContactRow.id)):
        contacts.setdefault(row.team_id, []).append(
            {"kind": row.kind, "address": row.address, "escalation": row.escalation}
        )
    return [
        {
            "name": team.name,
            "reminders": team.reminder_schedule,
            "escalate_after_seconds": team.escalate_after_seconds,
            "endpoint_limit": team.endpoint_limit,
            "contacts": contacts.get(team.id, []),
        }
        for team in session.scalars(select(TeamRow).order_by(TeamRow.name))
    ]


def team_from(entry: Any) -> TeamEntry:
    """Check one entry of the `teams` list: a name, or an object.

    Raises:
        StoreError: a field is invalid; the message names it and its value,
            with contact URLs redacted.
    """
    if isinstance(entry, str):
        return TeamEntry(_name(entry), None, None, None, (), settings=False)
    if not isinstance(entry, dict):
        raise StoreError(
            f"Invalid team entry {entry!r}: expected an object with a name."
        )
    contacts = entry.get("contacts", [])
    if not isinstance(contacts, list):
        raise StoreError(f"Invalid contacts {contacts!r}: expected a list.")
    return TeamEntry(
        name=_name(entry.get("name")),
        reminders=_reminders(entry.get("reminders")),
        escalate_after_seconds=_escalate_after(entry.get("escalate_after_seconds")),
        endpoint_limit=_endpoint_limit(entry.get("endpoint_limit")),
        contacts=tuple(_contact(item) for item in contacts),
    )


def import_team(session: Session, team: TeamEntry, *, now: datetime) -> None:
    """Create or update a team with its settings, and add its missing contacts.

    The team's settings become those of the entry, `None` included. A
    contact already stored gets the entry's escalation flag; contacts that
    the entry does not list are kept.
    """
    team_id = ensure_team(session, team.name, now=now)
    if team.settings:
        row = session.get(TeamRow, team_id)
        assert row is not None
        row.reminder_schedule = team.reminders
        row.escalate_after_seconds = team.escalate_after_seconds
        row.endpoint_limit = team.endpoint_limit
    for contact in team.contacts:
        add_contact(
            session,
            team_id,
            kind=contact.kind,
            address=contact.address,
            escalation=contact.escalation,
            now=now,
        )


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise StoreError(f"Invalid team name {value!r}: expected a non-empty string.")
    return value


def _reminders(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise StoreError(f"Invalid team reminders {value!r}: expected a string.")
    try:
        return parse_schedule(value).text
    except ScheduleError as exc:
        raise StoreError(str(exc)) from exc


def _escalate_after(value: Any) -> int | None:
    if value is None:
        return None
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or not 1 <= value <= MAX_ESCALATE_AFTER_SECONDS
    ):
        raise StoreError(
            f"Invalid escalate_after_seconds {value!r}: give a whole number of "
            f"seconds from 1 to {MAX_ESCALATE_AFTER_SECONDS} (365 days), or null."
        )
    return value


def _endpoint_limit(value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise StoreError(
            f"Invalid endpoint_limit {value!r}: give a whole number of endpoints, "
            "or null for the site's limit."
        )
    return value


def _contact(entry: Any) -> ContactEntry:
    if not isinstance(entry, dict):
        raise StoreError(
            "Invalid contact entry: expected an object with kind, address and "
            "escalation."
        )
    kind, address = entry.get("kind"), entry.get("address")
    if not isinstance(kind, str) or not isinstance(address, str):
        raise StoreError(
            f"Invalid contact of kind {kind!r}: kind and address must be strings."
        )
    escalation = entry.get("escalation", False)
    if not isinstance(escalation, bool):
        raise StoreError(
            f"Invalid contact escalation {escalation!r}: use true or false."
        )
    try:
        parsed = parse_contact(f"{kind}:{address}")
    except ContactError as exc:
        raise StoreError(str(exc)) from exc
    return ContactEntry(parsed.kind.value, parsed.value, escalation)
