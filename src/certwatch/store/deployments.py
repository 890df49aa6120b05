"""Queries for the places each certificate is deployed now and was before.

A deployment is a certificate seen at one place: an address of an endpoint,
or a file of a file source. It is current when the place's source showed the
certificate in its latest scan. A scan replaces the whole previous picture
of its source, so an address that no longer resolves, or a file that was
removed, stops counting as a current place at the next scan.
"""

from __future__ import annotations

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
    given as such.
    """
    query = _deployments(_certificate_filter(sha256, name))
    return _load(session, query.having(_current_flag() == 1))


def deployment_history(
    session: Session, *, sha256: str | None = None, name: str | None = None
) -> list[Deployment]:
    """Return every place a certificate was ever seen, current or not."""
    return _load(session, _deployments(_certificate_filter(sha256, name)))


def certificates_with_deployments(
    session: Session,
    *,
    not_after_before: datetime | None = None,
    leaves_only: bool = False,
) -> list[DeployedCertificate]:
    """Return every currently deployed certificate with its places.

    The list is sorted by not_after, soonest first, with certificates whose
    not_after could not be read last. `not_after_before` keeps only those
    that expire before that instant. `leaves_only` keeps only certificates
    ever seen as the leaf at an endpoint address or in a file, which leaves
    out the intermediates that servers send after their leaf; a certificate
    kept still lists all its places.
    """
    conditions = []
    column = ObservationCertificateRow.certificate_sha256
    if not_after_before is not None:
        conditions.append(
            column.in_(
                select(CertificateRow.sha256).where(
                    CertificateRow.not_after < not_after_before
                )
            )
        )
    if leaves_only:
        conditions.append(column.in_(_leaves_seen()))
    condition = and_(*conditions) if conditions else None
    current = _load(session, _deployments(condition).having(_current_flag() == 1))
    by_certificate: dict[str, list[Deployment]] = {}
    for deployment in current:
        by_certificate.setdefault(deployment.certificate_sha256, []).append(deployment)

    summaries = certificate_summaries(session, list(by_certificate))
    ordered = sorted(
        summaries,
        key=lambda s: (s.not_after is None, s.not_after or s.first_seen_at, s.sha256),
    )
    return [
        DeployedCertificate(summary, tuple(by_certificate[summary.sha256]))
        for summary in ordered
    ]


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


def _leaves_seen() -> Select[Any]:
    """Select the certificates seen as an endpoint's leaf or in a file, ever."""
    link = aliased(ObservationCertificateRow)
    observation = aliased(ObservationRow)
    return (
        select(link.certificate_sha256)
        .join(observation, observation.id == link.observation_id)
        .where((link.position == 0) | observation.file_source_id.is_not(None))
    )


def _current_flag() -> Any:
    return func.max(case((ObservationRow.latest.is_(True), 1), else_=0))


def _deployments(condition: Any) -> Select[Any]:
    link = ObservationCertificateRow
    observation = ObservationRow
    target = func.coalesce(EndpointRow.target, FileSourceRow.path)
    query = (
        select(
            link.certificate_sha256,
            target,
            observation.endpoint_id,
            observation.address,
            observation.file_source_id,
            observation.path,
            func.min(link.position),
            func.min(observation.observed_at),
            func.max(observation.observed_at),
            _current_flag(),
        )
        .join(observation, observation.id == link.observation_id)
        .outerjoin(EndpointRow, EndpointRow.id == observation.endpoint_id)
        .outerjoin(FileSourceRow, FileSourceRow.id == observation.file_source_id)
        .group_by(
            link.certificate_sha256,
            target,
            observation.endpoint_id,
            observation.address,
            observation.file_source_id,
            observation.path,
        )
    )
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
