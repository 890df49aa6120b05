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
left out. The places compared are the latest observations of every endpoint
address, across all endpoints, so a renewal that reached one endpoint of a
name but not another counts too. Files are not compared.

The finding is computed when asked for, not stored, because it changes
whenever any of the addresses involved is scanned again.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from certwatch.store.chunks import chunked
from certwatch.store.deployments import CertificateSummary, certificate_summaries
from certwatch.store.models import (
    CertificateNameRow,
    EndpointRow,
    ObservationCertificateRow,
    ObservationRow,
)
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


@dataclass(frozen=True)
class StaleDeployment:
    """An older certificate still served at some addresses after its renewal.

    `certificate` is the older certificate and `stale` the addresses that
    still serve it. `renewed` lists the addresses that serve a newer
    certificate for the same names, and `newer_sha256s` those certificates.
    `finding` is the `stale_deployment` finding: a warning, or critical when
    the older certificate is expired or inside its critical window.
    """

    certificate: CertificateSummary
    stale: tuple[ServedLeaf, ...]
    renewed: tuple[ServedLeaf, ...]
    newer_sha256s: tuple[str, ...]
    finding: Finding


def stale_deployments(
    session: Session,
    *,
    now: datetime,
    thresholds: Thresholds | None = None,
    endpoint_id: int | None = None,
    sha256: str | None = None,
    name: str | None = None,
) -> list[StaleDeployment]:
    """Return the stale deployments, soonest expiring older certificate first.

    With no filter every currently served certificate is considered. At most
    one filter may be given: `endpoint_id` keeps the certificates that
    endpoint serves now, `sha256` one certificate, and `name` the
    certificates listing that DNS name or IP address (exact, any case).
    `thresholds` sets the critical window (default: the lifetime-aware one).
    """
    if sum(value is not None for value in (endpoint_id, sha256, name)) > 1:
        raise ValueError("Give at most one of endpoint_id, sha256 and name.")
    olds = _filtered_certificates(session, endpoint_id, sha256, name)
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

    Leaves whose certificate is missing from `summaries` are ignored.
    """
    places: defaultdict[str, list[ServedLeaf]] = defaultdict(list)
    for leaf in served:
        if leaf.certificate_sha256 in summaries:
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
    found.sort(
        key=lambda item: (item.certificate.not_after or now, item.certificate.sha256)
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
    session: Session, endpoint_id: int | None, sha256: str | None, name: str | None
) -> set[str] | None:
    if sha256 is not None:
        return {sha256.lower()}
    if name is not None:
        wanted = name.strip().rstrip(".").lower()
        return set(
            session.scalars(
                select(CertificateNameRow.certificate_sha256).where(
                    CertificateNameRow.name == wanted
                )
            )
        )
    if endpoint_id is not None:
        query = _served_query().where(ObservationRow.endpoint_id == endpoint_id)
        return {row[0] for row in session.execute(query)}
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
