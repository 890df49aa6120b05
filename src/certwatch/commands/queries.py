"""Read-only queries that the inventory commands need beyond the store API.

Each query reads many sources or certificates in a few statements, so a
listing of a large inventory does not cost one round trip per row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from certwatch.store.inventory import EndpointRecord, get_endpoint
from certwatch.store.models import (
    CertificateRow,
    EndpointRow,
    ObservationCertificateRow,
    ObservationRow,
    TeamRow,
)
from certwatch.targets import Endpoint


def find_endpoints(
    session: Session, endpoint: Endpoint, *, team: str | None = None
) -> list[EndpointRecord]:
    """Return the stored endpoints with the identity of `endpoint`, any pinned address.

    Several teams may watch the same endpoint; `team` keeps that team's
    endpoints only, and `None` keeps every team's.

    The target text does not take part: `www.example.test` and
    `https://www.example.test/` find the same endpoint. An endpoint stored
    with a server name other than its host (an IP address with an SNI name,
    as a CSV import can give) cannot be named with its server name on the
    command line, so `host:port` finds it when no endpoint with exactly that
    server name exists. Likewise `host:port` without a scheme finds an
    endpoint of another protocol (`list` shows an imported `pop3` endpoint
    as `host:port` when its target was written so) when no `https` one
    matches.
    """
    query = select(EndpointRow.id, EndpointRow.server_name, EndpointRow.protocol).where(
        EndpointRow.host == endpoint.host, EndpointRow.port == endpoint.port
    )
    if "://" in endpoint.target:
        query = query.where(EndpointRow.protocol == endpoint.protocol)
    if team is not None:
        query = query.join(TeamRow, TeamRow.id == EndpointRow.team_id).where(
            TeamRow.name == team.strip()
        )
    rows = session.execute(
        query.order_by(EndpointRow.server_name, EndpointRow.address, EndpointRow.id)
    ).all()
    same_protocol = [row for row in rows if row.protocol == endpoint.protocol]
    rows = same_protocol or rows
    wanted = endpoint.server_name or ""
    exact = [row.id for row in rows if row.server_name == wanted]
    ids = exact or [row.id for row in rows]
    records = [get_endpoint(session, endpoint_id) for endpoint_id in ids]
    return [record for record in records if record is not None]


def not_found_hint(session: Session, endpoint: Endpoint) -> str:
    """Return a hint naming the stored endpoints of the same host on other ports.

    A target written without a port means port 443 (or its protocol's
    port), which is easy to miss for an endpoint added as `host:8443`.
    The hint is empty when the host has no other endpoint.
    """
    stored = session.execute(
        select(EndpointRow.target, EndpointRow.port)
        .where(EndpointRow.host == endpoint.host, EndpointRow.port != endpoint.port)
        .order_by(EndpointRow.port, EndpointRow.target)
        .limit(5)
    ).all()
    if not stored:
        return ""
    names = ", ".join(dict.fromkeys(repr(row.target) for row in stored))
    return (
        f" The inventory has {names} on another port: a target without a port "
        f"means port {endpoint.port}, so give the port."
    )


def fingerprints_with_prefix(
    session: Session, prefix: str, *, limit: int = 10
) -> list[str]:
    """Return up to `limit` stored SHA-256 fingerprints starting with `prefix`.

    `prefix` must be lower-case hex digits only, because it goes into a LIKE
    pattern in which `%` and `_` would be wildcards.
    """
    if not prefix or any(char not in "0123456789abcdef" for char in prefix):
        raise ValueError(f"Invalid fingerprint prefix {prefix!r}: give hex digits.")
    query = (
        select(CertificateRow.sha256)
        .where(CertificateRow.sha256.like(f"{prefix}%"))
        .order_by(CertificateRow.sha256)
        .limit(limit)
    )
    return list(session.scalars(query))


@dataclass(frozen=True)
class ServedCertificate:
    """A leaf certificate seen at one place of a source over some scans.

    `place` is the address of an endpoint or the file of a file source. For
    a file the leaf is its first certificate.
    """

    place: str
    certificate_sha256: str
    first_seen_at: datetime
    last_seen_at: datetime
    current: bool


def served_certificates(
    session: Session,
    *,
    endpoint_id: int | None = None,
    file_source_id: int | None = None,
) -> list[ServedCertificate]:
    """Return every leaf a source showed, per place, oldest first.

    Give exactly one of `endpoint_id` and `file_source_id`.
    """
    if (endpoint_id is None) == (file_source_id is None):
        raise ValueError("Give exactly one of endpoint_id and file_source_id.")
    link = ObservationCertificateRow
    if endpoint_id is not None:
        place: Any = ObservationRow.address
        source = ObservationRow.endpoint_id == endpoint_id
    else:
        place = ObservationRow.path
        source = ObservationRow.file_source_id == file_source_id
    current = func.max(case((ObservationRow.latest.is_(True), 1), else_=0))
    query = (
        select(
            place,
            link.certificate_sha256,
            func.min(ObservationRow.observed_at),
            func.max(ObservationRow.observed_at),
            current,
        )
        .join(link, link.observation_id == ObservationRow.id)
        .where(source, link.position == 0, place.is_not(None))
        .group_by(place, link.certificate_sha256)
    )
    served = [
        ServedCertificate(
            place=row[0],
            certificate_sha256=row[1],
            first_seen_at=row[2],
            last_seen_at=row[3],
            current=bool(row[4]),
        )
        for row in session.execute(query)
    ]
    served.sort(key=lambda item: (item.place, item.first_seen_at))
    return served
