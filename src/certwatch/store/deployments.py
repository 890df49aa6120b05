"""Queries for the places each certificate is deployed now and was before.

A deployment is a certificate seen at one place: an address of an endpoint,
or a file of a file source. It is current when the place's source showed the
certificate in its latest scan. A scan replaces the whole previous picture
of its source, so an address that no longer resolves, or a file that was
removed, stops counting as a current place at the next scan.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, and_, case, func, select
from sqlalchemy.orm import Session, aliased

from certwatch.store.chunks import chunked
from certwatch.store.models import (
    CertificateNameRow,
    CertificateRow,
    EndpointRow,
    FileSourceRow,
    ObservationCertificateRow,
    ObservationRow,
)


@dataclass(frozen=True)
class Deployment:
    """One certificate at one place, over the scans that saw it there.

    `endpoint_id` and `address` are set for a network place, and
    `file_source_id` and `path` for a file. `target` is the
    endpoint's target or the file source's path. `position` is the lowest
    chain position the certificate had there (0 for the leaf).
    """

    certificate_sha256: str
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
class CertificateSummary:
    """The stored facts of one certificate; a field is `None` when unreadable."""

    sha256: str
    subject: str | None
    issuer: str | None
    common_name: str | None
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    not_before: datetime | None
    not_after: datetime | None
    spki_sha256: str | None
    key_type: str | None
    key_size: int | None
    is_ca: bool | None
    first_seen_at: datetime


@dataclass(frozen=True)
class DeployedCertificate:
    """A certificate with every place it is deployed now."""

    certificate: CertificateSummary
    deployments: tuple[Deployment, ...]


def deployments_now(
    session: Session, *, sha256: str | None = None, name: str | None = None
) -> list[Deployment]:
    """Return the current deployments of one certificate, or of a name's certificates.

    `name` matches a DNS name or IP address listed in a certificate exactly,
    ignoring case, so `*.example.test` finds wildcard certificates only when
    given as such. A certificate without DNS or IP SAN entries matches its
    subject CN instead, once `index_common_names` or the write that stored
    it indexed the CN.
    """
    query = _deployments(_certificate_filter(sha256, name))
    return _load(session, query.having(current_flag() == 1))


def deployment_history(
    session: Session, *, sha256: str | None = None, name: str | None = None
) -> list[Deployment]:
    """Return every place a certificate was ever seen, current or not."""
    return _load(session, _deployments(_certificate_filter(sha256, name)))


@dataclass(frozen=True)
class CertificatePage:
    """The first certificates of a listing by expiry.

    `truncated` is true when more certificates matched than the limit let in.
    """

    certificates: list[DeployedCertificate]
    truncated: bool


def served_certificates(
    session: Session,
    *,
    limit: int | None = None,
    not_after_before: datetime | None = None,
) -> CertificatePage:
    """Return the certificates served now as a leaf or stored in a file.

    Soonest not_after first, certificates whose not_after could not be read
    last; `limit` keeps the first that many and `not_after_before` those
    that expire before that instant. Each certificate lists all its current
    places, including those where it is sent after another leaf. The
    database sorts and limits, so a short page of a large inventory reads
    only the certificates on it.
    """
    condition = _served_now(CertificateRow.sha256)
    if not_after_before is not None:
        condition = and_(condition, CertificateRow.not_after < not_after_before)
    # Dated and undated certificates are read apart: a single ORDER BY on
    # "not_after IS NULL" would keep the database from walking the not_after
    # index and stopping after one page.
    wanted = None if limit is None else limit + 1
    sha256s = _served_sha256s(session, condition, dated=True, limit=wanted)
    if wanted is None or len(sha256s) < wanted:
        left = None if wanted is None else wanted - len(sha256s)
        sha256s += _served_sha256s(session, condition, dated=False, limit=left)
    # Reading one row more than the limit shows whether more rows match.
    truncated = limit is not None and len(sha256s) > limit
    sha256s = sha256s[:limit]
    places: dict[str, list[Deployment]] = {sha256: [] for sha256 in sha256s}
    column = ObservationCertificateRow.certificate_sha256
    if limit is None:
        # The whole inventory: one grouped query beats many chunked ones.
        served = select(CertificateRow.sha256).where(condition)
        conditions = [column.in_(served)]
    else:
        conditions = [column.in_(chunk) for chunk in chunked(sha256s)]
    for selected in conditions:
        current = _deployments(selected).having(current_flag() == 1)
        for deployment in _load(session, current):
            if deployment.certificate_sha256 in places:
                places[deployment.certificate_sha256].append(deployment)
    summaries = {s.sha256: s for s in certificate_summaries(session, sha256s)}
    return CertificatePage(
        [
            DeployedCertificate(summaries[sha256], tuple(places[sha256]))
            for sha256 in sha256s
            if sha256 in summaries
        ],
        truncated,
    )


def _served_sha256s(
    session: Session, condition: Any, *, dated: bool, limit: int | None
) -> list[str]:
    column = CertificateRow.not_after
    query = (
        select(CertificateRow.sha256)
        .where(condition, column.is_not(None) if dated else column.is_(None))
        .order_by(column, CertificateRow.sha256)
    )
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))


def _served_now(sha256: Any) -> Any:
    """Select whether a certificate is a leaf or in a file in some latest scan."""
    link = aliased(ObservationCertificateRow)
    observation = aliased(ObservationRow)
    return (
        select(link.observation_id)
        .join(observation, observation.id == link.observation_id)
        .where(
            link.certificate_sha256 == sha256,
            observation.latest.is_(True),
            (link.position == 0) | observation.file_source_id.is_not(None),
        )
        .exists()
    )


def certificate_summaries(
    session: Session, sha256s: list[str]
) -> list[CertificateSummary]:
    """Return the stored facts of the given certificates, unknown ones left out."""
    summaries: list[CertificateSummary] = []
    for chunk in chunked(sha256s):
        rows = session.execute(
            select(*_SUMMARY_COLUMNS).where(CertificateRow.sha256.in_(chunk))
        )
        summaries.extend(_summary(row) for row in rows)
    return summaries


def certificates_named(session: Session, name: str) -> list[str]:
    """Return the SHA-256 of every stored certificate indexed under `name`.

    A certificate stays stored after the sources that showed it are removed,
    so it can be found here without any deployment.
    """
    query = (
        select(CertificateNameRow.certificate_sha256)
        .where(CertificateNameRow.name == name.strip().rstrip(".").lower())
        .order_by(CertificateNameRow.certificate_sha256)
    )
    return list(session.scalars(query))


def serves_leaf(session: Session, endpoint_ids: Collection[int], sha256: str) -> bool:
    """Tell whether the latest scan of one of the endpoints found `sha256` as leaf."""
    if not endpoint_ids:
        return False
    found = session.scalar(
        select(ObservationRow.id)
        .join(
            ObservationCertificateRow,
            ObservationCertificateRow.observation_id == ObservationRow.id,
        )
        .where(
            ObservationRow.endpoint_id.in_(endpoint_ids),
            ObservationRow.latest.is_(True),
            ObservationCertificateRow.position == 0,
            ObservationCertificateRow.certificate_sha256 == sha256,
        )
        .limit(1)
    )
    return found is not None


def certificate_der(session: Session, sha256: str) -> bytes | None:
    """Return a stored certificate's DER, `None` when it is unknown."""
    return session.scalar(
        select(CertificateRow.der).where(CertificateRow.sha256 == sha256)
    )


def _certificate_filter(sha256: str | None, name: str | None) -> Any:
    if (sha256 is None) == (name is None):
        raise ValueError("Give exactly one of sha256 and name.")
    column = ObservationCertificateRow.certificate_sha256
    if sha256 is not None:
        return column == sha256.lower()
    assert name is not None
    named = select(CertificateNameRow.certificate_sha256).where(
        CertificateNameRow.name == name.strip().rstrip(".").lower()
    )
    return column.in_(named)


def current_flag() -> Any:
    """Build an aggregate that is 1 when the latest scan of a place showed it."""
    return func.max(case((ObservationRow.latest.is_(True), 1), else_=0))


def place_key() -> tuple[Any, ...]:
    """Return the columns that tell one place of a certificate from another.

    They are the target, the endpoint id and address, and the file source
    id and path, in that order. Grouping by them gives one row a place.
    """
    target = func.coalesce(EndpointRow.target, FileSourceRow.path)
    observation = ObservationRow
    return (
        target,
        observation.endpoint_id,
        observation.address,
        observation.file_source_id,
        observation.path,
    )


def place_history() -> tuple[Any, ...]:
    """Return a place's lowest position, first and last sighting, and current flag."""
    return (
        func.min(ObservationCertificateRow.position),
        func.min(ObservationRow.observed_at),
        func.max(ObservationRow.observed_at),
        current_flag(),
    )


def join_places(query: Select[Any]) -> Select[Any]:
    """Join the observations and their endpoint or file source to a link query."""
    link = ObservationCertificateRow
    observation = ObservationRow
    return (
        query.join(observation, observation.id == link.observation_id)
        .outerjoin(EndpointRow, EndpointRow.id == observation.endpoint_id)
        .outerjoin(FileSourceRow, FileSourceRow.id == observation.file_source_id)
    )


def _deployments(condition: Any) -> Select[Any]:
    sha256 = ObservationCertificateRow.certificate_sha256
    key = place_key()
    query = join_places(select(sha256, *key, *place_history())).group_by(sha256, *key)
    if condition is not None:
        query = query.where(condition)
    return query


def _load(session: Session, query: Select[Any]) -> list[Deployment]:
    deployments = []
    for row in session.execute(query):
        (sha256, target, endpoint_id, address, file_source_id, path) = row[:6]
        position, first_seen, last_seen, current = row[6:]
        deployments.append(
            Deployment(
                certificate_sha256=sha256,
                target=target,
                endpoint_id=endpoint_id,
                address=address,
                file_source_id=file_source_id,
                path=path,
                position=position,
                first_seen_at=first_seen,
                last_seen_at=last_seen,
                current=bool(current),
            )
        )
    deployments.sort(key=_place_order)
    return deployments


def _place_order(deployment: Deployment) -> tuple[Any, ...]:
    return (
        deployment.certificate_sha256,
        deployment.target,
        deployment.address or "",
        deployment.path or "",
    )


# The columns a summary reads: the DER and the other columns stay unread.
_SUMMARY_COLUMNS: tuple[Any, ...] = (
    CertificateRow.sha256,
    CertificateRow.subject,
    CertificateRow.issuer,
    CertificateRow.common_name,
    CertificateRow.dns_names,
    CertificateRow.ip_addresses,
    CertificateRow.not_before,
    CertificateRow.not_after,
    CertificateRow.spki_sha256,
    CertificateRow.key_type,
    CertificateRow.key_size,
    CertificateRow.is_ca,
    CertificateRow.first_seen_at,
)


def _summary(row: Row[Any]) -> CertificateSummary:
    return CertificateSummary(
        sha256=row.sha256,
        subject=row.subject,
        issuer=row.issuer,
        common_name=row.common_name,
        dns_names=tuple(row.dns_names),
        ip_addresses=tuple(row.ip_addresses),
        not_before=row.not_before,
        not_after=row.not_after,
        spki_sha256=row.spki_sha256,
        key_type=row.key_type,
        key_size=row.key_size,
        is_ca=row.is_ca,
        first_seen_at=row.first_seen_at,
    )
