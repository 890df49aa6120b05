"""Write scan results as observations, with their chains and findings.

`record_observations` writes a whole batch of scans with a handful of
statements in the caller's transaction, so a cycle over thousands of
endpoints costs a few round trips per batch, not one commit per result.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import idna
from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from certwatch.probe.model import ErrorReason
from certwatch.result import Result, Status, worst_status
from certwatch.store.chunks import chunked
from certwatch.store.models import (
    CertificateNameRow,
    CertificateRow,
    EndpointRow,
    FileSourceRow,
    FindingRow,
    ObservationCertificateRow,
    ObservationRow,
)
from certwatch.x509.model import CertificateFacts, Finding, Severity

# The finding of a server that replies to the STARTTLS dialogue without
# offering the upgrade, and the error reasons of a refused or failed upgrade.
_STARTTLS_NOT_OFFERED = "starttls_not_offered"
_STARTTLS_REASONS = frozenset(
    {ErrorReason.STARTTLS_REFUSED, ErrorReason.STARTTLS_FAILED}
)

# Longest DNS name (RFC 1035); longer SAN values stay in the JSON column but
# are not indexed for look-ups by name.
MAX_NAME_LENGTH = 253


@dataclass(frozen=True)
class CompletedScan:
    """Every result of one finished scan of one endpoint or file source.

    Exactly one of `endpoint_id` and `file_source_id` is set. For an endpoint,
    each result becomes one observation (one per address, or one without an
    address after a DNS failure). For a file source, the results of one file
    become one observation whose chain lists the file's certificates in
    order.
    """

    scanned_at: datetime
    results: tuple[Result, ...]
    endpoint_id: int | None = None
    file_source_id: int | None = None

    def __post_init__(self) -> None:
        if (self.endpoint_id is None) == (self.file_source_id is None):
            raise ValueError(
                "Invalid CompletedScan: set exactly one of endpoint_id and "
                f"file_source_id, got {self.endpoint_id!r} and "
                f"{self.file_source_id!r}."
            )

    @property
    def failed(self) -> bool:
        """Whether no certificate was obtained at all, which counts as a failure."""
        return all(result.report is None for result in self.results)


@dataclass
class _Draft:
    row: dict[str, Any]
    chain: list[CertificateFacts] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)


def record_observations(session: Session, scans: Sequence[CompletedScan]) -> int:
    """Store the observations of many scans; return how many were written.

    The observations of each source's newest scan in the batch become its
    latest ones, replacing those of its previous scan. Certificates are
    stored once, keyed by SHA-256; a certificate another writer stored first
    is kept as it is. Nothing is committed.
    """
    newest = _newest_scans(scans)
    drafts: list[_Draft] = []
    for scan in scans:
        is_latest = newest[_source_key(scan)] is scan
        drafts.extend(_drafts_for(scan, latest=is_latest))
    if not drafts:
        return 0

    _store_certificates(session, drafts)
    _clear_latest(session, list(newest.values()))
    ids = session.scalars(
        insert(ObservationRow).returning(
            ObservationRow.id, sort_by_parameter_order=True
        ),
        [draft.row for draft in drafts],
    ).all()
    _insert_children(session, ids, drafts)
    _copy_latest_state(session, list(newest.values()), drafts)
    return len(drafts)


def _copy_latest_state(
    session: Session, newest: Sequence[CompletedScan], drafts: Sequence[_Draft]
) -> None:
    """Copy each source's latest status and soonest not_after onto its row.

    For an endpoint only the leaf counts: the intermediates it sends are
    someone else's to renew. For a file every certificate counts. A scan
    without any certificate leaves the stored not_after as it was, because an
    outage must not hide an expiry, unless a server replied to the STARTTLS
    dialogue without upgrading to TLS (see `_tls_withdrawn`): that endpoint
    serves no certificate any more, so it gets no not_after.
    """
    states: dict[tuple[str, int], tuple[list[Status], list[datetime]]] = {}
    for draft in drafts:
        if not draft.row["latest"]:
            continue
        endpoint_id = draft.row["endpoint_id"]
        key = (
            ("endpoint", endpoint_id)
            if endpoint_id is not None
            else ("file", draft.row["file_source_id"])
        )
        statuses, expiries = states.setdefault(key, ([], []))
        statuses.append(Status(draft.row["status"]))
        counted = draft.chain[:1] if endpoint_id is not None else draft.chain
        expiries.extend(f.not_after for f in counted if f.not_after is not None)

    for kind, row_type in (("endpoint", EndpointRow), ("file", FileSourceRow)):
        table: Any = row_type.__table__
        rows = []
        for scan in newest:
            key = _source_key(scan)
            if key[0] != kind:
                continue
            statuses, expiries = states.get(key, ([], []))
            rows.append(
                {
                    "source_id": key[1],
                    "new_status": str(worst_status(statuses))
                    if statuses
                    else str(Status.UNKNOWN),
                    "new_not_after": min(expiries, default=None),
                    "withdrawn": _tls_withdrawn(scan),
                }
            )
        _update_latest_state(session, table, rows)


def _update_latest_state(
    session: Session, table: Any, rows: Sequence[dict[str, Any]]
) -> None:
    kept = [row for row in rows if not row["withdrawn"]]
    withdrawn = [row for row in rows if row["withdrawn"]]
    new_not_after = bindparam("new_not_after", type_=table.c.not_after.type)
    statement = update(table).where(table.c.id == bindparam("source_id"))
    if kept:
        session.execute(
            statement.values(
                last_status=bindparam("new_status"),
                # A scan that obtained no certificate keeps the last known
                # not_after: an outage must not hide an expiry.
                not_after=func.coalesce(new_not_after, table.c.not_after),
            ),
            kept,
        )
    if withdrawn:
        session.execute(
            statement.values(
                last_status=bindparam("new_status"), not_after=new_not_after
            ),
            withdrawn,
        )


def _tls_withdrawn(scan: CompletedScan) -> bool:
    """Tell whether a scan found a server that replied but does not do TLS.

    That is a scan of an endpoint without any certificate where a server
    did not offer STARTTLS, or refused or broke off the upgrade.
    """
    if scan.endpoint_id is None or not scan.failed:
        return False
    return any(
        (result.error is not None and result.error.reason in _STARTTLS_REASONS)
        or any(finding.code == _STARTTLS_NOT_OFFERED for finding in result.findings)
        for result in scan.results
    )


def _source_key(scan: CompletedScan) -> tuple[str, int]:
    if scan.endpoint_id is not None:
        return ("endpoint", scan.endpoint_id)
    assert scan.file_source_id is not None
    return ("file", scan.file_source_id)


def _newest_scans(
    scans: Iterable[CompletedScan],
) -> dict[tuple[str, int], CompletedScan]:
    newest: dict[tuple[str, int], CompletedScan] = {}
    for scan in scans:
        key = _source_key(scan)
        current = newest.get(key)
        if current is None or scan.scanned_at >= current.scanned_at:
            newest[key] = scan
    return newest


def _drafts_for(scan: CompletedScan, *, latest: bool) -> list[_Draft]:
    base = {
        "endpoint_id": scan.endpoint_id,
        "file_source_id": scan.file_source_id,
        "observed_at": scan.scanned_at,
        "latest": latest,
    }
    if scan.endpoint_id is not None:
        return [_network_draft(base, result) for result in scan.results]
    return _file_drafts(base, scan.results)


def _network_draft(base: dict[str, Any], result: Result) -> _Draft:
    row = {
        **base,
        "address": result.address,
        "path": None,
        "status": str(result.status),
        "error_reason": str(result.error.reason) if result.error else None,
        "error_message": result.error.message if result.error else None,
        "tls_version": result.tls_version,
    }
    chain = list(result.report.chain) if result.report else []
    return _Draft(row, chain, list(result.findings))


def _file_drafts(base: dict[str, Any], results: Sequence[Result]) -> list[_Draft]:
    """Group file results into one draft per path, certificates in file order."""
    by_path: dict[str, list[Result]] = {}
    for result in results:
        by_path.setdefault(result.path or result.target, []).append(result)

    drafts = []
    for path, group in by_path.items():
        group.sort(key=lambda result: result.index or 0)
        error = next((r.error for r in group if r.error is not None), None)
        row = {
            **base,
            "address": None,
            "path": path,
            "status": str(worst_status([r.status for r in group])),
            "error_reason": str(error.reason) if error else None,
            "error_message": error.message if error else None,
            "tls_version": None,
        }
        chain = [r.report.leaf for r in group if r.report and r.report.leaf]
        findings = [finding for r in group for finding in r.findings]
        drafts.append(_Draft(row, chain, findings))
    return drafts


def _store_certificates(session: Session, drafts: Sequence[_Draft]) -> None:
    first_seen: dict[str, tuple[CertificateFacts, datetime]] = {}
    for draft in drafts:
        for facts in draft.chain:
            seen = draft.row["observed_at"]
            known = first_seen.get(facts.sha256)
            if known is None or seen < known[1]:
                first_seen[facts.sha256] = (facts, seen)

    stored: set[str] = set()
    for chunk in chunked(list(first_seen)):
        query = select(CertificateRow.sha256).where(CertificateRow.sha256.in_(chunk))
        stored.update(session.scalars(query))
    missing = [value for sha, value in first_seen.items() if sha not in stored]
    if not missing:
        return

    rows = [certificate_row(facts, seen) for facts, seen in missing]
    names = [
        {"certificate_sha256": facts.sha256, "name": name}
        for facts, _ in missing
        for name in certificate_names(facts)
    ]
    _insert_ignoring_duplicates(session, CertificateRow.__table__, rows)
    _insert_ignoring_duplicates(session, CertificateNameRow.__table__, names)


def certificate_row(facts: CertificateFacts, first_seen_at: datetime) -> dict[str, Any]:
    """Return the `certificates` row for one certificate's facts."""
    return {
        "sha256": facts.sha256,
        "der": facts.der,
        "subject": facts.subject,
        "issuer": facts.issuer,
        "serial": facts.serial,
        "common_name": facts.common_name,
        "dns_names": list(facts.dns_names),
        "ip_addresses": list(facts.ip_addresses),
        "not_before": facts.not_before,
        "not_after": facts.not_after,
        "spki_sha256": facts.spki_sha256,
        "key_type": facts.key_type,
        "key_size": facts.key_size,
        "signature_algorithm": facts.signature_algorithm,
        "is_ca": facts.is_ca,
        "first_seen_at": first_seen_at,
    }


def certificate_names(facts: CertificateFacts) -> set[str]:
    """Return the lower-case DNS names and IP addresses to index for look-ups.

    A certificate without DNS or IP SAN entries is indexed under its
    subject CN when the CN is a host name or an IP address, so that
    `certwatch where` finds legacy certificates that name a host only there.
    """
    return indexed_names(facts.common_name, facts.dns_names, facts.ip_addresses)


def indexed_names(
    common_name: str | None, dns_names: Iterable[str], ip_addresses: Iterable[str]
) -> set[str]:
    """Return the names to index for a certificate with these stored columns."""
    names = {name.lower() for name in (*dns_names, *ip_addresses)}
    if not names and common_name is not None:
        host = host_name_of_common_name(common_name)
        names = {host} if host is not None else set()
    return {name for name in names if 0 < len(name) <= MAX_NAME_LENGTH}


# One DNS label as certificates use them: letters, digits, hyphens, and
# underscores, which some internal names carry.
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")


def host_name_of_common_name(common_name: str) -> str | None:
    """Return a subject CN as an index name, `None` when it names no host.

    A host name comes back in lower case as A-labels without a trailing
    dot, with an optional `*` as its whole left-most label. An IP address
    comes back in its normal text form. Anything else, such as
    `Example Root CA`, is `None`.
    """
    text = common_name.strip().rstrip(".")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    if not text.isascii():
        try:
            text = idna.encode(text, uts46=True).decode("ascii")
        except idna.IDNAError:
            return None
    labels = text.lower().split(".")
    if labels[0] == "*" and len(labels) > 1:
        labels = labels[1:]
    if not all(_LABEL.fullmatch(label) for label in labels):
        return None
    return text.lower()


def index_common_names(session: Session) -> int:
    """Index the CNs of stored certificates that have no indexed name yet.

    Certificates stored before CNs were indexed have no name rows, so this
    adds them. Return how many names were added. Later calls cost one
    anti-join over the certificates and find only those without a
    host-name CN, such as CA certificates. Nothing is committed.
    """
    unnamed = (
        select(CertificateNameRow.certificate_sha256)
        .where(CertificateNameRow.certificate_sha256 == CertificateRow.sha256)
        .exists()
    )
    sha256s = list(session.scalars(select(CertificateRow.sha256).where(~unnamed)))
    names: list[dict[str, str]] = []
    for chunk in chunked(sha256s):
        rows = session.execute(
            select(
                CertificateRow.sha256,
                CertificateRow.common_name,
                CertificateRow.dns_names,
                CertificateRow.ip_addresses,
            ).where(CertificateRow.sha256.in_(chunk))
        )
        for sha256, common_name, dns_names, ip_addresses in rows:
            names.extend(
                {"certificate_sha256": sha256, "name": name}
                for name in indexed_names(common_name, dns_names, ip_addresses)
            )
    _insert_ignoring_duplicates(session, CertificateNameRow.__table__, names)
    return len(names)


def _insert_ignoring_duplicates(
    session: Session, table: Any, rows: Sequence[dict[str, Any]]
) -> None:
    """Insert rows, skipping any whose primary key another writer stored first."""
    if not rows:
        return
    assert isinstance(table, Table)
    if session.get_bind().dialect.name == "postgresql":
        statement: Any = postgresql.insert(table).on_conflict_do_nothing()
    else:
        statement = sqlite.insert(table).on_conflict_do_nothing()
    for chunk in chunked(rows):
        session.execute(statement, list(chunk))


def _clear_latest(session: Session, scans: Sequence[CompletedScan]) -> None:
    for column, ids in (
        (ObservationRow.endpoint_id, [s.endpoint_id for s in scans]),
        (ObservationRow.file_source_id, [s.file_source_id for s in scans]),
    ):
        present = [source_id for source_id in ids if source_id is not None]
        for chunk in chunked(present):
            session.execute(
                update(ObservationRow)
                .where(column.in_(chunk), ObservationRow.latest.is_(True))
                .values(latest=False)
                .execution_options(synchronize_session=False)
            )


def _insert_children(
    session: Session, ids: Sequence[int], drafts: Sequence[_Draft]
) -> None:
    links = []
    findings = []
    for observation_id, draft in zip(ids, drafts, strict=True):
        for position, facts in enumerate(draft.chain):
            links.append(
                {
                    "observation_id": observation_id,
                    "position": position,
                    "certificate_sha256": facts.sha256,
                }
            )
        for position, finding in enumerate(draft.findings):
            findings.append(
                {
                    "observation_id": observation_id,
                    "position": position,
                    "code": finding.code,
                    "severity": finding.severity.label,
                    "message": finding.message,
                }
            )
    if links:
        session.execute(insert(ObservationCertificateRow), links)
    if findings:
        session.execute(insert(FindingRow), findings)


@dataclass(frozen=True)
class StoredObservation:
    """One stored observation with its chain and findings.

    `chain` lists SHA-256 fingerprints in the order presented, duplicates
    included. `error_reason` and `error_message` are `None` when the scan
    obtained a certificate without error.
    """

    id: int
    endpoint_id: int | None
    file_source_id: int | None
    address: str | None
    path: str | None
    observed_at: datetime
    status: Status
    error_reason: ErrorReason | None
    error_message: str | None
    tls_version: str | None
    chain: tuple[str, ...]
    findings: tuple[Finding, ...]


def latest_observations(
    session: Session,
    *,
    endpoint_id: int | None = None,
    file_source_id: int | None = None,
) -> list[StoredObservation]:
    """Return the observations of one source's latest scan, by address or path."""
    if (endpoint_id is None) == (file_source_id is None):
        raise ValueError("Give exactly one of endpoint_id and file_source_id.")
    source = (
        ObservationRow.endpoint_id == endpoint_id
        if endpoint_id is not None
        else ObservationRow.file_source_id == file_source_id
    )
    rows = list(
        session.scalars(
            select(ObservationRow)
            .where(source, ObservationRow.latest.is_(True))
            .order_by(ObservationRow.address, ObservationRow.path, ObservationRow.id)
        )
    )
    return _stored_observations(session, rows)


def _stored_observations(
    session: Session, rows: Sequence[ObservationRow]
) -> list[StoredObservation]:
    ids = [row.id for row in rows]
    chains: dict[int, list[str]] = {observation_id: [] for observation_id in ids}
    findings: dict[int, list[Finding]] = {observation_id: [] for observation_id in ids}
    for chunk in chunked(ids):
        links = session.execute(
            select(
                ObservationCertificateRow.observation_id,
                ObservationCertificateRow.certificate_sha256,
            )
            .where(ObservationCertificateRow.observation_id.in_(chunk))
            .order_by(
                ObservationCertificateRow.observation_id,
                ObservationCertificateRow.position,
            )
        )
        for observation_id, sha256 in links:
            chains[observation_id].append(sha256)
        stored = session.scalars(
            select(FindingRow)
            .where(FindingRow.observation_id.in_(chunk))
            .order_by(FindingRow.observation_id, FindingRow.position)
        )
        for finding in stored:
            findings[finding.observation_id].append(
                Finding(
                    finding.code, Severity[finding.severity.upper()], finding.message
                )
            )
    return [
        StoredObservation(
            id=row.id,
            endpoint_id=row.endpoint_id,
            file_source_id=row.file_source_id,
            address=row.address,
            path=row.path,
            observed_at=row.observed_at,
            status=Status(row.status),
            error_reason=ErrorReason(row.error_reason) if row.error_reason else None,
            error_message=row.error_message,
            tls_version=row.tls_version,
            chain=tuple(chains[row.id]),
            findings=tuple(findings[row.id]),
        )
        for row in rows
    ]
