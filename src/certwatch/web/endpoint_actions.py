"""Change one endpoint from its page: scan it now, change its settings.

The same store functions serve the JSON API and the command line, so an
endpoint changed on the web behaves as one changed elsewhere. The settings
go through `upsert_endpoint`, which moves the next scan when the interval
changes, as `certwatch add --interval` does. A scan now goes through
`scan_and_record` under the team's probe slots, as
`POST /api/endpoints/{id}/scan` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from sqlalchemy.orm import Session

from certwatch.errors import CertwatchError
from certwatch.monitor.instant import StoredSources, scan_and_record
from certwatch.monitor.settings import SettingsError, parse_duration
from certwatch.result import Result
from certwatch.store.inventory import (
    FOLLOW_DEFAULT,
    EndpointRecord,
    SourceSettings,
    normalize_tags,
    upsert_endpoint,
)
from certwatch.web.adding import web_scan_setup
from certwatch.web.auth import Form
from certwatch.web.dependencies import WebContext


@dataclass(frozen=True)
class SettingsForm:
    """The settings form of the endpoint page, as the user typed it.

    `tags` and `interval` are the raw texts, so a form with an error is
    shown again as it was sent.
    """

    tags: str
    interval: str
    enabled: bool

    @classmethod
    def of(cls, form: Form) -> SettingsForm:
        """Read the form's fields; an unchecked checkbox is not sent at all."""
        return cls(
            tags=form.get("tags"),
            interval=form.get("interval"),
            enabled=form.get("enabled") == "on",
        )

    @classmethod
    def of_record(cls, record: EndpointRecord, interval: str) -> SettingsForm:
        """Fill the form with the endpoint's stored settings."""
        return cls(
            tags=", ".join(record.tags), interval=interval, enabled=record.enabled
        )


@dataclass(frozen=True)
class SettingsChange:
    """Valid settings to store: normalized tags, the interval and the enabled flag."""

    tags: tuple[str, ...]
    interval: timedelta | Literal["default"]
    enabled: bool


def parse_settings(form: SettingsForm) -> SettingsChange:
    """Check the settings form.

    Tags are separated by commas, as on the add page; an empty field
    removes every tag. The interval `default` makes the endpoint follow
    the configured default interval.

    Raises:
        CertwatchError: a tag or the interval is invalid; the message
            names the value and what to give instead.
    """
    tags = normalize_tags(tag for tag in form.tags.split(",") if tag.strip())
    if form.interval.strip().lower() == FOLLOW_DEFAULT:
        return SettingsChange(tags=tags, interval=FOLLOW_DEFAULT, enabled=form.enabled)
    try:
        interval = parse_duration(form.interval)
    except SettingsError as exc:
        raise CertwatchError(
            f"Scan interval: {exc} Or give {FOLLOW_DEFAULT!r} to follow the "
            "configured default."
        ) from exc
    return SettingsChange(tags=tags, interval=interval, enabled=form.enabled)


def save_settings(
    session: Session,
    record: EndpointRecord,
    change: SettingsChange,
    context: WebContext,
) -> None:
    """Store the settings of an endpoint of `record.team`.

    `upsert_endpoint` with `team_only` finds the team's own row by the
    endpoint's identity and moves `next_scan_at` when the interval changes.
    """
    upsert_endpoint(
        session,
        record.endpoint,
        now=context.now_fn(),
        settings=SourceSettings(
            team=record.team,
            tags=change.tags,
            interval=change.interval,
            enabled=change.enabled,
        ),
        default_interval=context.scans.monitor.default_interval,
        team_only=True,
    )


def scan_now(context: WebContext, record: EndpointRecord, team_id: int) -> list[Result]:
    """Scan the endpoint now, record the scan, and return one result per address.

    Raises:
        ProbeSlotsFull: the team or the site runs the most instant probes
            allowed at once; nothing is scanned then.
    """
    with context.probe_slots.hold(f"team:{team_id}"):
        scanned = scan_and_record(
            context.sessions,
            StoredSources(endpoints={record.id: record.endpoint}),
            web_scan_setup(context),
            now=context.now_fn(),
        )
    return scanned.by_endpoint.get(record.id, [])
