"""Add endpoints to a team from the web: the one path of the add page and the API.

`add_endpoints` parses the texts like `certwatch check` arguments. It
rejects what a web user may not add: certificate file paths, and names
that resolve to non-public addresses on a site without
`allow_private_targets`. Then it enforces the team's endpoint limit,
stores the endpoints and probes them at once with
`certwatch.monitor.instant`, so the caller can show the instant report.
The probe runs in the calling thread, because the handlers are plain
`def` functions in FastAPI's thread pool, and each address is bounded by
the probe timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, replace

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from certwatch.arguments import CERTIFICATE_SUFFIXES
from certwatch.errors import CertwatchError, TargetError
from certwatch.monitor.instant import ScanSetup, StoredSources, scan_and_record
from certwatch.netpolicy import blocked_address_message, private_address_kind
from certwatch.probe.model import ProbeSettings
from certwatch.probe.resolve import ResolutionError, Resolver
from certwatch.result import Result
from certwatch.store.inventory import SourceSettings, normalize_tags, upsert_endpoint
from certwatch.store.models import EndpointRow, TeamRow
from certwatch.targets import (
    DEFAULT_PROTOCOL,
    Endpoint,
    parse_target,
    validate_protocol,
)
from certwatch.web.dependencies import WebContext
from certwatch.web.endpoint_labels import endpoint_label
from certwatch.web.settings import ENDPOINT_LIMIT_VARIABLE

MAX_TARGETS_PER_REQUEST = 100
"""The maximum number of targets per request, which bounds what one request probes."""


class AddingError(CertwatchError):
    """A request that adds nothing, such as one over the team's endpoint limit."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class AddedEndpoint:
    """An endpoint stored for the team, with the results of its instant probe.

    `created` is false when the team watched the endpoint already, and its
    tags are then replaced when the request gave tags. It is false too for
    a text that names the same endpoint as an earlier text of the request,
    such as `https://www.example.test/path` after `www.example.test`. `results`
    hold one result per address, or one without an address after a DNS
    failure. Other teams that watch the same endpoint have their own.
    """

    endpoint_id: int
    target: str
    created: bool
    results: list[Result]


@dataclass(frozen=True)
class RejectedTarget:
    """A text that was not added, and why, in a sentence that names the fix."""

    text: str
    reason: str


@dataclass(frozen=True)
class AddReport:
    """The endpoints one request added and the texts it rejected, in text order."""

    added: list[AddedEndpoint]
    rejected: list[RejectedTarget]


def add_endpoints(
    context: WebContext,
    team_id: int,
    texts: Sequence[str],
    *,
    tags: Sequence[str] = (),
    protocol: str | None = None,
    parsed: Sequence[Endpoint] = (),
) -> AddReport:
    """Store the targets in `texts` and the `parsed` endpoints for a team; probe them.

    The caller has checked that the user may add endpoints to the team.
    Blank texts are ignored and repeated ones added once. `parsed` contains
    endpoints that a text cannot express, such as CSV rows that pin an
    address or a server name. The report names each by `parsed_label`.
    Tags, when given, replace the tags of an endpoint the team watches
    already.

    Raises:
        AddingError: the request as a whole cannot be served: too many
            texts, an invalid tag or protocol, a team that does not exist,
            or more endpoints than the team's limit allows.
        ProbeSlotsFull: the team or the site runs the most instant probes
            allowed at once; nothing is stored then.
    """
    with context.probe_slots.hold(f"team:{team_id}"):
        return _add_endpoints(
            context, team_id, texts, tags=tags, protocol=protocol, parsed=parsed
        )


def _add_endpoints(
    context: WebContext,
    team_id: int,
    texts: Sequence[str],
    *,
    tags: Sequence[str] = (),
    protocol: str | None = None,
    parsed: Sequence[Endpoint] = (),
) -> AddReport:
    labels = {parsed_label(endpoint): endpoint for endpoint in parsed}
    wanted = _unique_texts([*texts, *labels])
    clean_tags = _clean_tags(tags)
    try:
        validate_protocol(protocol or DEFAULT_PROTOCOL)
    except TargetError as exc:
        raise AddingError(str(exc)) from exc
    texts_only = [text for text in wanted if text not in labels]
    endpoints, aliases, rejected = _parse(texts_only, protocol or DEFAULT_PROTOCOL)
    endpoints.update(labels)
    setup = web_scan_setup(context)
    if not context.settings.allow_private_targets:
        endpoints, blocked = _screen(endpoints, setup.resolver, setup.monitor.probe)
        rejected += blocked

    now = context.now_fn()
    with context.sessions() as session, session.begin():
        stored = _store(session, context, team_id, endpoints, clean_tags)

    by_endpoint: dict[int, list[Result]] = {}
    if stored:
        ids = {i: endpoints[text] for text, (i, _) in stored.items()}
        sources = StoredSources(endpoints=ids)
        by_endpoint = scan_and_record(
            context.sessions, sources, setup, now=now
        ).by_endpoint
    added = [
        AddedEndpoint(
            endpoint_id=endpoint_id,
            target=text,
            created=created,
            results=by_endpoint.get(endpoint_id, []),
        )
        for text, (endpoint_id, created) in stored.items()
    ]
    added, rejected = _with_aliases(added, rejected, aliases)
    order = {text: index for index, text in enumerate(wanted)}
    added.sort(key=lambda item: order.get(item.target, len(order)))
    rejected.sort(key=lambda item: order.get(item.text, len(order)))
    return AddReport(added=added, rejected=rejected)


def _with_aliases(
    added: list[AddedEndpoint],
    rejected: list[RejectedTarget],
    aliases: dict[str, str],
) -> tuple[list[AddedEndpoint], list[RejectedTarget]]:
    """Report each alias as its first text came out: added or rejected.

    An alias is a text that names the same endpoint as an earlier text of
    the request, mapped to that text.
    """
    added_by_text = {item.target: item for item in added}
    reasons = {item.text: item.reason for item in rejected}
    for alias, first in aliases.items():
        if first in added_by_text:
            item = added_by_text[first]
            added.append(replace(item, target=alias, created=False))
        elif first in reasons:
            reason = f"{alias!r} is the same endpoint as {first!r}: {reasons[first]}"
            rejected.append(RejectedTarget(alias, reason))
    return added, rejected


def parsed_label(endpoint: Endpoint) -> str:
    """Name a parsed endpoint as `certwatch list` does, with its server name if set."""
    label = endpoint_label(endpoint.target, endpoint.address)
    if endpoint.server_name is not None and endpoint.server_name != endpoint.host:
        label += f" (server name {endpoint.server_name})"
    return label


def _unique_texts(texts: Sequence[str]) -> list[str]:
    wanted = list(dict.fromkeys(t.strip() for t in texts if t.strip()))
    if len(wanted) > MAX_TARGETS_PER_REQUEST:
        raise AddingError(
            f"{len(wanted)} targets in one request is over the limit of "
            f"{MAX_TARGETS_PER_REQUEST}: send them in several requests."
        )
    return wanted


def _clean_tags(tags: Sequence[str]) -> tuple[str, ...]:
    try:
        return normalize_tags(tags)
    except CertwatchError as exc:
        raise AddingError(str(exc)) from exc


def _parse(
    texts: Sequence[str], protocol: str
) -> tuple[dict[str, Endpoint], dict[str, str], list[RejectedTarget]]:
    """Parse each text into an endpoint; one endpoint keeps its first text.

    Returns the endpoints by their first text, the later texts of the same
    endpoints mapped to that first text, and the rejected texts.
    """
    endpoints: dict[str, Endpoint] = {}
    first_texts: dict[tuple[str, str, int, str | None], str] = {}
    aliases: dict[str, str] = {}
    rejected: list[RejectedTarget] = []
    for text in texts:
        if _looks_like_path(text):
            rejected.append(RejectedTarget(text, _path_reason(text)))
            continue
        try:
            endpoint = parse_target(text, protocol)
        except TargetError as exc:
            rejected.append(RejectedTarget(text, str(exc)))
            continue
        key = (endpoint.protocol, endpoint.host, endpoint.port, endpoint.server_name)
        if key in first_texts:
            aliases[text] = first_texts[key]
            continue
        first_texts[key] = text
        endpoints[text] = endpoint
    return endpoints, aliases, rejected


def _looks_like_path(text: str) -> bool:
    # Unlike `certwatch.arguments.looks_like_path`, this never checks whether
    # a file of that name exists, because the result would reveal the
    # server's files to web users.
    if "://" in text:
        return False
    return (
        "/" in text
        or text.startswith("~")
        or text.lower().endswith(CERTIFICATE_SUFFIXES)
    )


def _path_reason(text: str) -> str:
    return (
        f"{text!r} looks like a certificate file path, and the web service "
        "watches network endpoints only: give a host name, address or URL, "
        "or add the file with 'certwatch add' on the server."
    )


def web_scan_setup(context: WebContext) -> ScanSetup:
    """Return the scan setup of the context under the site's address policy.

    Analysis stays in the request's thread: a process pool per request
    would cost more than it saves for at most `MAX_TARGETS_PER_REQUEST`
    endpoints.
    """
    setup = context.scans
    probe = replace(
        setup.monitor.probe,
        allow_private_addresses=context.settings.allow_private_targets,
    )
    return replace(setup, monitor=replace(setup.monitor, probe=probe, workers=0))


def _screen(
    endpoints: dict[str, Endpoint], resolver: Resolver, settings: ProbeSettings
) -> tuple[dict[str, Endpoint], list[RejectedTarget]]:
    """Reject the endpoints with a non-public address, before anything is stored.

    The probe checks each address again before it connects, so a later DNS
    answer that points elsewhere is blocked there. This check only keeps
    such targets out of the inventory.
    """
    checks = asyncio.run(_blocked_reasons(list(endpoints.items()), resolver, settings))
    kept = {text: e for text, e in endpoints.items() if checks.get(text) is None}
    rejected = [RejectedTarget(t, r) for t, r in checks.items() if r is not None]
    return kept, rejected


async def _blocked_reasons(
    endpoints: list[tuple[str, Endpoint]], resolver: Resolver, settings: ProbeSettings
) -> dict[str, str | None]:
    async def check(text: str, endpoint: Endpoint) -> tuple[str, str | None]:
        return text, await _blocked_reason(endpoint, resolver, settings)

    found = await asyncio.gather(*(check(text, e) for text, e in endpoints))
    return dict(found)


async def _blocked_reason(
    endpoint: Endpoint, resolver: Resolver, settings: ProbeSettings
) -> str | None:
    if endpoint.address is not None:
        addresses = [endpoint.address]
    elif endpoint.is_ip:
        addresses = [endpoint.host]
    else:
        try:
            async with asyncio.timeout(settings.timeout):
                addresses = await resolver.resolve(endpoint.host, endpoint.port)
        except (TimeoutError, ResolutionError):
            # Stored anyway: the instant probe reports the DNS failure, and
            # every later probe checks the addresses the name resolves to.
            return None
    for address in addresses:
        kind = private_address_kind(address)
        if kind is not None:
            return blocked_address_message(endpoint.target, address, kind)
    return None


def _store(
    session: Session,
    context: WebContext,
    team_id: int,
    endpoints: dict[str, Endpoint],
    tags: tuple[str, ...],
) -> dict[str, tuple[int, bool]]:
    """Upsert the team's endpoints; return (id, created) per text.

    Only the team's own endpoints are looked up. Another team that watches
    the same endpoint keeps its own, and the request learns nothing of it.
    """
    # The row lock makes concurrent requests for one team count in turn on
    # PostgreSQL; SQLite lets one writer at a time anyway.
    team = session.scalar(
        select(TeamRow).where(TeamRow.id == team_id).with_for_update()
    )
    if team is None:
        raise AddingError(
            f"Team {team_id} not found: add endpoints to one of your teams."
        )

    stored: dict[str, tuple[int, bool]] = {}
    settings = SourceSettings(team=team.name, tags=tags or None)
    interval = context.scans.monitor.default_interval
    now = context.now_fn()
    for text, endpoint in endpoints.items():
        upserted = upsert_endpoint(
            session,
            endpoint,
            now=now,
            settings=settings,
            default_interval=interval,
            team_only=True,
        )
        stored[text] = (upserted.record.id, upserted.created)
    _check_limit(session, context, team)
    return stored


def _check_limit(session: Session, context: WebContext, team: TeamRow) -> None:
    """Raise `AddingError` when the team now has more endpoints than allowed.

    Raising inside the caller's transaction rolls back every endpoint of
    the request.
    """
    limit = team.endpoint_limit
    if limit is None:
        limit = context.settings.team_endpoint_limit
    if limit is None:
        return
    count = session.scalar(
        select(func.count())
        .select_from(EndpointRow)
        .where(EndpointRow.team_id == team.id)
    )
    if count is not None and count > limit:
        raise AddingError(
            f"Team {team.name!r} may watch at most {limit} endpoints, and this "
            f"request would make {count}: remove endpoints the team no longer "
            f"needs, or ask the operator to raise {ENDPOINT_LIMIT_VARIABLE} or "
            "the team's own limit."
        )
