"""The certificate inventory as the members of some teams see it.

A certificate belongs to a team's view when one of the team's endpoints
or file sources showed it in a scan, now or before. Every function takes
the ids of the teams the caller may see and returns only places of those
teams, so a page built from the results reveals nothing about other
teams: neither their places nor how many there are.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select, union
from sqlalchemy.orm import Session

from certwatch.store.chunks import chunked
from certwatch.store.deployments import (
    CertificateSummary,
    certificate_summaries,
    current_flag,
    join_places,
    place_history,
    place_key,
)
from certwatch.store.models import (
    CertificateRow,
    EndpointRow,
    FileSourceRow,
    FindingRow,
    ObservationCertificateRow,
    ObservationRow,
    TeamRow,
)
from certwatch.store.stale import ServedLeaf, stale_deployments
from certwatch.x509.model import Severity, Thresholds


@dataclass(frozen=True)
class TeamPlace:
    """One place of a team where a certificate was seen, now or before.

    `endpoint_id` and `address` are set for an endpoint address
    (`address` is `None` when the scan resolved none), `file_source_id`
    and `path` for a file. `target` is the endpoint's target or the file
    source's path. `position` is the lowest chain position the certificate
    had there (0 for the leaf). `current` is true when the place's latest
    scan showed the certificate.
    """

    certificate_sha256: str
    team_id: int
    team: str
    target: str
    endpoint_id: int | None
    address: str | None
    file_source_id: int | None
    path: str | None
    position: int
    first_seen_at: datetime
    last_seen_at: datetime
    current: bool


@dataclass(frozen=True)
class TeamCertificate:
    """A certificate with its places in the given teams."""

    certificate: CertificateSummary
    places: tuple[TeamPlace, ...]


@dataclass(frozen=True)
class TeamCertificatePage:
    """One page of the certificates that the given teams serve now.

    `total` counts every such certificate, not only those on the page.
    """

    certificates: list[TeamCertificate]
    total: int


@dataclass(frozen=True)
class TeamStaleDeployment:
    """A renewal that reached only some addresses, seen from the given teams.

    `stale` lists the teams' addresses that still serve `certificate` and
    `renewed` those of the same teams that serve a newer certificate for
    the same names. `newer` contains the newer certificates served at
    `renewed`. `severity` is critical when the older certificate is expired
    or inside its critical window, and warning otherwise.
    """

    certificate: CertificateSummary
    stale: tuple[ServedLeaf, ...]
    renewed: tuple[ServedLeaf, ...]
    newer: tuple[CertificateSummary, ...]
    severity: Severity


def team_certificate_page(
    session: Session, team_ids: Collection[int], *, offset: int, limit: int
) -> TeamCertificatePage:
    """Return a page of the certificates that the teams serve now.

    A certificate counts when it is the leaf at one of the teams' endpoint
    addresses, or in one of their files, in the latest scan. The soonest
    not_after comes first and certificates with an unreadable not_after
    last. Each certificate lists its current places in the teams, also
    those where it is sent after another leaf.
    """
    if not team_ids:
        return TeamCertificatePage([], 0)
    served = CertificateRow.sha256.in_(_served_now(team_ids))
    total = session.scalar(select(func.count()).where(served)) or 0
    sha256s = list(
        session.scalars(
            select(CertificateRow.sha256)
            .where(served)
            .order_by(
                CertificateRow.not_after.is_(None),
                CertificateRow.not_after,
                CertificateRow.sha256,
            )
            .offset(offset)
            .limit(limit)
        )
    )
    places = team_places(session, sha256s, team_ids, current_only=True)
    summaries = {s.sha256: s for s in certificate_summaries(session, sha256s)}
    certificates = [
        TeamCertificate(summaries[sha256], tuple(places.get(sha256, ())))
        for sha256 in sha256s
        if sha256 in summaries
    ]
    return TeamCertificatePage(certificates, total)


def team_certificate(
    session: Session, sha256: str, team_ids: Collection[int]
) -> TeamCertificate | None:
    """Return a certificate with every place in the teams, current or not.

    Returns `None` when the certificate is unknown or no place of the
    teams ever showed it, at any chain position.
    """
    places = team_places(session, [sha256], team_ids, current_only=False)
    if not places.get(sha256):
        return None
    summaries = certificate_summaries(session, [sha256])
    if not summaries:
        return None
    return TeamCertificate(summaries[0], tuple(places[sha256]))


def team_places(
    session: Session,
    sha256s: Sequence[str],
    team_ids: Collection[int],
    *,
    current_only: bool,
) -> dict[str, list[TeamPlace]]:
    """Return the places of the teams where each certificate was seen.

    With `current_only`, only places whose latest scan showed it. The
    places of one certificate are sorted by team, target, address and path.
    """
    found: defaultdict[str, list[TeamPlace]] = defaultdict(list)
    if not team_ids:
        return {}
    for chunk in chunked(list(sha256s)):
        query = _places_query(chunk, team_ids)
        if current_only:
            query = query.having(current_flag() == 1)
        for row in session.execute(query):
            place = _place(row)
            found[place.certificate_sha256].append(place)
    for places in found.values():
        places.sort(key=_place_order)
    return dict(found)


def team_current_findings(
    session: Session, sha256s: Sequence[str], team_ids: Collection[int]
) -> dict[str, dict[str, Severity]]:
    """Return the finding codes of the teams' latest scans of each certificate.

    Each code maps to its worst severity over those scans. A finding counts
    for the leaf of an endpoint's scan and for every certificate of a
    file's scan, the places where `team_certificate_page` counts a
    certificate as served. Up to 1,000 certificates take one query.
    """
    if not sha256s or not team_ids:
        return {}
    link = ObservationCertificateRow
    observation = ObservationRow
    team_id = func.coalesce(EndpointRow.team_id, FileSourceRow.team_id)
    found: defaultdict[str, dict[str, Severity]] = defaultdict(dict)
    for chunk in chunked(list(sha256s)):
        query = (
            select(link.certificate_sha256, FindingRow.code, FindingRow.severity)
            .distinct()
            .join(observation, observation.id == link.observation_id)
            .join(FindingRow, FindingRow.observation_id == observation.id)
            .outerjoin(EndpointRow, EndpointRow.id == observation.endpoint_id)
            .outerjoin(FileSourceRow, FileSourceRow.id == observation.file_source_id)
            .where(
                link.certificate_sha256.in_(chunk),
                observation.latest.is_(True),
                (link.position == 0) | observation.endpoint_id.is_(None),
                team_id.in_(sorted(team_ids)),
            )
        )
        for sha256, code, severity_text in session.execute(query):
            codes = found[sha256]
            severity = Severity[severity_text.upper()]
            codes[code] = max(codes.get(code, severity), severity)
    return dict(found)


def team_stale_deployments(
    session: Session,
    sha256s: Collection[str],
    team_ids: Collection[int],
    *,
    now: datetime,
    thresholds: Thresholds | None = None,
) -> dict[str, TeamStaleDeployment]:
    """Return the stale deployments of the given certificates at the teams' addresses.

    The rule is that of `certwatch.store.stale`, which compares the
    addresses of each team apart, so another team's renewal never makes
    these teams' addresses stale. When several of the given teams have a
    stale deployment of one certificate, their addresses are listed
    together. A certificate that no address of the teams still serves is
    left out.
    """
    if not sha256s or not team_ids:
        return {}
    wanted = set(team_ids)
    found = [
        item
        for item in stale_deployments(
            session, now=now, thresholds=thresholds, sha256s=sha256s
        )
        if item.team_id in wanted
    ]
    newer_ids = {sha for item in found for sha in item.newer_sha256s}
    summaries = {s.sha256: s for s in certificate_summaries(session, sorted(newer_ids))}

    result: dict[str, TeamStaleDeployment] = {}
    for item in found:
        sha256 = item.certificate.sha256
        earlier = result.get(sha256)
        stale = item.stale if earlier is None else (*earlier.stale, *item.stale)
        renewed = item.renewed if earlier is None else (*earlier.renewed, *item.renewed)
        newer = () if earlier is None else earlier.newer
        listed = {summary.sha256 for summary in newer}
        newer += tuple(
            summaries[sha]
            for sha in item.newer_sha256s
            if sha in summaries and sha not in listed
        )
        result[sha256] = TeamStaleDeployment(
            certificate=item.certificate,
            stale=stale,
            renewed=renewed,
            newer=newer,
            severity=item.finding.severity,
        )
    return result


def _served_now(team_ids: Collection[int]) -> Any:
    """Select the certificates that the teams serve in their latest scans."""
    link = ObservationCertificateRow
    observation = ObservationRow
    ids = sorted(team_ids)
    at_endpoints = (
        select(link.certificate_sha256)
        .join(observation, observation.id == link.observation_id)
        .join(EndpointRow, EndpointRow.id == observation.endpoint_id)
        .where(
            observation.latest.is_(True),
            link.position == 0,
            EndpointRow.team_id.in_(ids),
        )
    )
    in_files = (
        select(link.certificate_sha256)
        .join(observation, observation.id == link.observation_id)
        .join(FileSourceRow, FileSourceRow.id == observation.file_source_id)
        .where(observation.latest.is_(True), FileSourceRow.team_id.in_(ids))
    )
    return union(at_endpoints, in_files).subquery().select()


def _places_query(sha256s: Sequence[str], team_ids: Collection[int]) -> Select[Any]:
    sha256 = ObservationCertificateRow.certificate_sha256
    team_id = func.coalesce(EndpointRow.team_id, FileSourceRow.team_id)
    columns = (sha256, team_id, TeamRow.name, *place_key())
    return (
        join_places(select(*columns, *place_history()))
        .join(TeamRow, TeamRow.id == team_id)
        .where(sha256.in_(sha256s), team_id.in_(sorted(team_ids)))
        .group_by(*columns)
    )


def _place(row: Any) -> TeamPlace:
    (sha256, team_id, team, target, endpoint_id, address, file_id, path) = row[:8]
    position, first_seen, last_seen, current = row[8:]
    return TeamPlace(
        certificate_sha256=sha256,
        team_id=team_id,
        team=team,
        target=target,
        endpoint_id=endpoint_id,
        address=address,
        file_source_id=file_id,
        path=path,
        position=position,
        first_seen_at=first_seen,
        last_seen_at=last_seen,
        current=bool(current),
    )


def _place_order(place: TeamPlace) -> tuple[str, str, str, str]:
    return (place.team, place.target, place.address or "", place.path or "")
