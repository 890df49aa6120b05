"""Stale deployments: a renewal that reached only some of the addresses.

A certificate is stale at an address when that address still serves it as
its leaf while other addresses already serve a newer certificate for the
same names. Newer means, for certificate N over the old certificate O:

- N's subject alternative names (DNS names and IP addresses) include all of
  O's, so N could replace O everywhere O is served;
- both have the same key type, so a server that offers an RSA and an ECDSA
  certificate side by side does not make the older of the two stale;
- N's not_after is later than O's.

Certificates without a subject alternative name, and CA certificates, are
left out. The places compared are the latest observations of the endpoint
addresses of one team, across the team's endpoints, so a renewal that
reached one endpoint of a name but not another counts too. Addresses of
other teams never take part: a team's finding and its alerts neither
reveal another team's servers nor follow from what another team serves,
which could be any certificate for the same names. Files are not compared.

Listings compute the finding when asked, because it changes whenever any of
the addresses involved is scanned again. A cycle also stores it with the
observations it records, as it stood when they were recorded.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Select, func, insert, select, update
from sqlalchemy.orm import Session

from certwatch.result import Result, status_from, worst_status
from certwatch.store.chunks import chunked
from certwatch.store.deployments import CertificateSummary, certificate_summaries
from certwatch.store.models import (
    CertificateNameRow,
    EndpointRow,
    FindingRow,
    ObservationCertificateRow,
    ObservationRow,
)
from certwatch.store.observations import CompletedScan
from certwatch.x509.expiry import expiry_severity, expiry_windows
from certwatch.x509.model import CertificateFacts, Finding, Severity, Thresholds

STALE_DEPLOYMENT = "stale_deployment"
"""The finding code of a certificate still served after its renewal elsewhere."""


@dataclass(frozen=True)
class ServedLeaf:
    """A certificate that an endpoint address serves as its leaf now."""

    certificate_sha256: str
    endpoint_id: int
    target: str
    address: str
    team_id: int


@dataclass(frozen=True)
class StaleDeployment:
    """An older certificate still served at some addresses of a team after its renewal.

    `certificate` is the older certificate and `stale` the addresses of
    team `team_id` that still serve it. `renewed` lists the team's
    addresses that serve a newer certificate for the same names, and
    `newer_sha256s` those certificates.
    `finding` is the `stale_deployment` finding: a warning, or critical when
    the older certificate is expired or inside its critical window.
    """

    certificate: CertificateSummary
    stale: tuple[ServedLeaf, ...]
    renewed: tuple[ServedLeaf, ...]
    newer_sha256s: tuple[str, ...]
    finding: Finding
    team_id: int


def stale_deployments(
    session: Session,
    *,
    now: datetime,
    thresholds: Thresholds | None = None,
    endpoint_ids: Collection[int] | None = None,
    sha256s: Collection[str] | None = None,
    name: str | None = None,
) -> list[StaleDeployment]:
    """Return the stale deployments, soonest expiring older certificate first.

    A certificate that is stale in several teams has one item per team.

    With no filter every currently served certificate is considered. At most
    one filter may be given: `endpoint_ids` keeps the certificates those
    endpoints serve now, `sha256s` those certificates, and `name` the
    certificates listing that DNS name or IP address (exact, any case).
    `thresholds` sets the critical window (default: the lifetime-aware one).
    """
    if sum(value is not None for value in (endpoint_ids, sha256s, name)) > 1:
        raise ValueError("Give at most one of endpoint_ids, sha256s and name.")
    olds = _filtered_certificates(session, endpoint_ids, sha256s, name)
    if olds is not None and not olds:
        return []

    served = _served_leaves(session, olds)
    summaries = _summaries_sharing_names(session, served)
    stale = find_stale(
        served, summaries, now=now, thresholds=thresholds or Thresholds()
    )
    if olds is not None:
        stale = [item for item in stale if item.certificate.sha256 in olds]
    return stale


def find_stale(
    served: Iterable[ServedLeaf],
    summaries: Mapping[str, CertificateSummary],
    *,
    now: datetime,
    thresholds: Thresholds,
) -> list[StaleDeployment]:
    """Apply the stale deployment rule to served leaves and their facts.

    The rule compares the leaves of each team apart from other teams'.
    Leaves whose certificate is missing from `summaries` are ignored.
    """
    by_team: defaultdict[int, list[ServedLeaf]] = defaultdict(list)
    for leaf in served:
        if leaf.certificate_sha256 in summaries:
            by_team[leaf.team_id].append(leaf)
    found = []
    for leaves in by_team.values():
        found.extend(
            _find_stale_in_team(leaves, summaries, now=now, thresholds=thresholds)
        )
    found.sort(
        key=lambda item: (
            item.certificate.not_after or now,
            item.certificate.sha256,
            item.team_id,
        )
    )
    return found


def _find_stale_in_team(
    served: Iterable[ServedLeaf],
    summaries: Mapping[str, CertificateSummary],
    *,
    now: datetime,
    thresholds: Thresholds,
) -> list[StaleDeployment]:
    places: defaultdict[str, list[ServedLeaf]] = defaultdict(list)
    for leaf in served:
        places[leaf.certificate_sha256].append(leaf)

    by_name: defaultdict[str, set[str]] = defaultdict(set)
    for sha256 in places:
        for item in _names(summaries[sha256]):
            by_name[item].add(sha256)

    found = []
    for sha256, stale in places.items():
        old = summaries[sha256]
        names = _names(old)
        if not names or old.is_ca:
            continue
        candidates = set.intersection(*(by_name[item] for item in names))
        newer = sorted(c for c in candidates if _supersedes(summaries[c], old))
        if newer:
            renewed = [leaf for c in newer for leaf in places[c]]
            found.append(
                _stale(
                    old,
                    stale,
                    renewed,
                    [summaries[c] for c in newer],
                    now=now,
                    thresholds=thresholds,
                )
            )
    return found


def _supersedes(new: CertificateSummary, old: CertificateSummary) -> bool:
    return (
        new.sha256 != old.sha256
        and not new.is_ca
        and new.key_type == old.key_type
        and new.not_after is not None
        and old.not_after is not None
        and new.not_after > old.not_after
        and _names(new) >= _names(old)
    )


def _stale(
    old: CertificateSummary,
    stale: list[ServedLeaf],
    renewed: list[ServedLeaf],
    newer: list[CertificateSummary],
    *,
    now: datetime,
    thresholds: Thresholds,
) -> StaleDeployment:
    assert old.not_after is not None
    facts = CertificateFacts(
        der=b"", sha256=old.sha256, not_before=old.not_before, not_after=old.not_after
    )
    urgency = expiry_severity(facts, now, expiry_windows(facts, thresholds))
    severity = Severity.CRITICAL if urgency is Severity.CRITICAL else Severity.WARNING
    latest = max(item.not_after for item in newer if item.not_after is not None)
    finding = Finding(
        STALE_DEPLOYMENT,
        severity,
        stale_message(
            len(stale),
            len(stale) + len(renewed),
            old_not_after=old.not_after,
            new_not_after=latest,
            now=now,
        ),
    )
    return StaleDeployment(
        certificate=old,
        stale=tuple(sorted(stale, key=_place_order)),
        renewed=tuple(sorted(renewed, key=_place_order)),
        newer_sha256s=tuple(item.sha256 for item in newer),
        finding=finding,
        team_id=stale[0].team_id,
    )


def stale_message(
    stale: int,
    total: int,
    *,
    old_not_after: datetime,
    new_not_after: datetime,
    now: datetime,
) -> str:
    """Word the finding: "3 of 8 addresses still serve the certificate that ..."."""
    verb = "serves" if stale == 1 else "serve"
    expires = "expired" if old_not_after < now else "expires"
    renewed = total - stale
    others = "other address serves" if renewed == 1 else f"other {renewed} serve"
    return (
        f"{stale} of {total} addresses still {verb} the certificate that "
        f"{expires} on {old_not_after.date().isoformat()}; the {others} a newer "
        f"one that expires on {new_not_after.date().isoformat()}."
    )


def _filtered_certificates(
    session: Session,
    endpoint_ids: Collection[int] | None,
    sha256s: Collection[str] | None,
    name: str | None,
) -> set[str] | None:
    if sha256s is not None:
        return {sha256.lower() for sha256 in sha256s}
    if name is not None:
        wanted = name.strip().rstrip(".").lower()
        return set(
            session.scalars(
                select(CertificateNameRow.certificate_sha256).where(
                    CertificateNameRow.name == wanted
                )
            )
        )
    if endpoint_ids is not None:
        found: set[str] = set()
        for chunk in chunked(sorted(endpoint_ids)):
            query = _served_query().where(ObservationRow.endpoint_id.in_(chunk))
            found.update(row[0] for row in session.execute(query))
        return found
    return None


def _served_query() -> Select[Any]:
    link = ObservationCertificateRow
    observation = ObservationRow
    query = (
        select(
            link.certificate_sha256,
            observation.endpoint_id,
            EndpointRow.target,
            observation.address,
            EndpointRow.team_id,
        )
        .join(observation, observation.id == link.observation_id)
        .join(EndpointRow, EndpointRow.id == observation.endpoint_id)
        .where(
            observation.latest.is_(True),
            link.position == 0,
            observation.address.is_not(None),
        )
    )
    return cast(Select[Any], query)


def _served_leaves(session: Session, olds: Collection[str] | None) -> list[ServedLeaf]:
    """Return the leaves served now: all, or those sharing a name with `olds`."""
    query = _served_query()
    if olds is None:
        return [ServedLeaf(*row) for row in session.execute(query)]

    names: set[str] = set()
    for summary in certificate_summaries(session, sorted(olds)):
        names |= _names(summary)
    related = set(olds)
    for chunk in chunked(sorted(names)):
        related.update(
            session.scalars(
                select(CertificateNameRow.certificate_sha256).where(
                    CertificateNameRow.name.in_(chunk)
                )
            )
        )
    column = ObservationCertificateRow.certificate_sha256
    served: list[ServedLeaf] = []
    for chunk in chunked(sorted(related)):
        served.extend(
            ServedLeaf(*row) for row in session.execute(query.where(column.in_(chunk)))
        )
    return served


def _summaries_sharing_names(
    session: Session, served: Iterable[ServedLeaf]
) -> dict[str, CertificateSummary]:
    """Load the facts of the served certificates that share a name with another.

    Only those can be stale or newer, and loading them alone keeps a large
    inventory with few renewals in flight cheap.
    """
    shas = sorted({leaf.certificate_sha256 for leaf in served})
    by_name: defaultdict[str, set[str]] = defaultdict(set)
    for chunk in chunked(shas):
        rows = session.execute(
            select(
                CertificateNameRow.name, CertificateNameRow.certificate_sha256
            ).where(CertificateNameRow.certificate_sha256.in_(chunk))
        )
        for item, sha256 in rows:
            by_name[item].add(sha256)
    shared = sorted({s for group in by_name.values() if len(group) > 1 for s in group})
    return {
        summary.sha256: summary for summary in certificate_summaries(session, shared)
    }


def _names(summary: CertificateSummary) -> set[str]:
    return {item.lower() for item in summary.dns_names} | set(summary.ip_addresses)


def _place_order(leaf: ServedLeaf) -> tuple[str, str, int]:
    return (leaf.target, leaf.address, leaf.endpoint_id)


def stale_by_endpoint(
    stale: Iterable[StaleDeployment],
) -> dict[int, list[StaleDeployment]]:
    """Group stale deployments by the endpoints that still serve the old certificate."""
    grouped: defaultdict[int, list[StaleDeployment]] = defaultdict(list)
    for item in stale:
        for endpoint_id in sorted({leaf.endpoint_id for leaf in item.stale}):
            grouped[endpoint_id].append(item)
    return dict(grouped)


def record_stale_findings(
    session: Session,
    scans: Sequence[CompletedScan],
    *,
    now: datetime,
    thresholds: Thresholds | None = None,
) -> list[CompletedScan]:
    """Add `stale_deployment` to the results of the scans just recorded.

    Call after `record_observations` in the same transaction, so the batch's
    own addresses take part in the comparison. Each result at an address
    that still serves an older certificate gets the finding, stored with its
    observation, and its status and its endpoint's latest status become at
    least the finding's. Returns the scans with the findings added, for
    reports; scans without a stale address are returned as they were.
    """
    endpoint_ids = [scan.endpoint_id for scan in scans if scan.endpoint_id is not None]
    if not endpoint_ids:
        return list(scans)
    found: dict[tuple[int, str], Finding] = {}
    for item in stale_deployments(
        session, now=now, thresholds=thresholds, endpoint_ids=endpoint_ids
    ):
        for leaf in item.stale:
            found[(leaf.endpoint_id, leaf.address)] = item.finding
    if not found:
        return list(scans)

    amended = []
    for scan in scans:
        if scan.endpoint_id is None:
            amended.append(scan)
            continue
        results = tuple(
            _with_finding(result, found.get((scan.endpoint_id, result.address or "")))
            for result in scan.results
        )
        if results != scan.results:
            _store_findings(session, scan, results)
            scan = replace(scan, results=results)
        amended.append(scan)
    return amended


def _with_finding(result: Result, finding: Finding | None) -> Result:
    if finding is None:
        return result
    status = worst_status([result.status, status_from((finding,))])
    return replace(result, findings=(*result.findings, finding), status=status)


def _store_findings(
    session: Session, scan: CompletedScan, results: Sequence[Result]
) -> None:
    """Store the added findings on the scan's latest observations."""
    observations = {
        address: (observation_id, count)
        for observation_id, address, count in session.execute(
            select(
                ObservationRow.id,
                ObservationRow.address,
                select(func.count())
                .where(FindingRow.observation_id == ObservationRow.id)
                .scalar_subquery(),
            ).where(
                ObservationRow.endpoint_id == scan.endpoint_id,
                ObservationRow.latest.is_(True),
            )
        )
    }
    for result in results:
        if not result.findings or result.findings[-1].code != STALE_DEPLOYMENT:
            continue
        stored = observations.get(result.address)
        if stored is None:
            continue
        observation_id, count = stored
        finding = result.findings[-1]
        session.execute(
            insert(FindingRow).values(
                observation_id=observation_id,
                position=count,
                code=finding.code,
                severity=finding.severity.label,
                message=finding.message,
            )
        )
        session.execute(
            update(ObservationRow)
            .where(ObservationRow.id == observation_id)
            .values(status=str(result.status))
        )
    session.execute(
        update(EndpointRow)
        .where(EndpointRow.id == scan.endpoint_id)
        .values(last_status=str(worst_status([r.status for r in results])))
    )
