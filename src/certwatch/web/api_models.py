"""The request and response bodies of the JSON API, as pydantic models.

FastAPI builds `/openapi.json` from them, so every field here is part of
the documented interface. Times are ISO 8601 in UTC.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from certwatch.result import Result
from certwatch.web.ids import MAX_ID


class ErrorOut(BaseModel):
    """An error: what went wrong, the value, and what to do."""

    detail: str


class FindingOut(BaseModel):
    """A problem found with a certificate or a place."""

    code: str
    severity: str
    message: str


class EndpointOut(BaseModel):
    """A watched endpoint with its settings and the outcome of its latest scan.

    `last_status` and `not_after` are `null` before the first scan;
    `not_after` is the soonest not_after of the leaves the latest scan saw.
    `interval_seconds` is the interval in effect, and `interval_default`
    tells whether it is the configured default, which the endpoint follows
    when that default changes.
    """

    id: int
    team_id: int
    team: str
    target: str
    protocol: str
    host: str
    port: int
    server_name: str | None
    address: str | None
    tags: list[str]
    interval_seconds: int
    interval_default: bool
    enabled: bool
    last_status: str | None
    last_scanned_at: datetime | None
    next_scan_at: datetime
    not_after: datetime | None


class EndpointPage(BaseModel):
    """One page of endpoints; `total` counts every match, not only this page."""

    items: list[EndpointOut]
    total: int
    offset: int
    limit: int


class EndpointCreate(BaseModel):
    """Targets to add to a team, typed as on the add page."""

    # A bound that no row id exceeds keeps a larger number out of the
    # queries, which the database drivers reject with an error of their own.
    team_id: int = Field(
        ge=1, le=MAX_ID, description="id of the team, at most 2**31 - 1"
    )
    targets: list[str] = Field(min_length=1)
    tags: list[str] = Field(default_factory=list)
    protocol: str | None = Field(
        default=None,
        description="protocol of targets without a scheme, which also sets their "
        "default port: a name such as smtp, imap or ldap, or auto to pick it from "
        "the port (an unknown port means https); default https",
    )


class EndpointUpdate(BaseModel):
    """Settings to change; a field left out keeps its value."""

    tags: list[str] | None = None
    interval: str | None = Field(
        default=None, description="time between scans, such as 30m, 6h or 1d"
    )
    enabled: bool | None = None


class ResultOut(BaseModel):
    """The instant outcome at one address: status, days left, findings, error.

    `address` is `null` after a DNS failure, `days_left` and `not_after`
    when no certificate was obtained, and `error_reason` and `error`
    when one was.
    """

    address: str | None
    status: str
    days_left: int | None
    not_after: datetime | None
    subject: str | None
    issuer: str | None
    tls_version: str | None
    error_reason: str | None
    error: str | None
    findings: list[FindingOut]

    @classmethod
    def of(cls, result: Result) -> ResultOut:
        """Describe one check result."""
        leaf = result.leaf
        return cls(
            address=result.address,
            status=str(result.status),
            days_left=result.days_left,
            not_after=leaf.not_after if leaf else None,
            subject=leaf.subject if leaf else None,
            issuer=leaf.issuer if leaf else None,
            tls_version=result.tls_version,
            error_reason=str(result.error.reason) if result.error else None,
            error=result.error.message if result.error else None,
            findings=[
                FindingOut(code=f.code, severity=f.severity.label, message=f.message)
                for f in result.findings
            ],
        )


class AddedOut(BaseModel):
    """An endpoint the request stored, with its instant report."""

    endpoint_id: int
    target: str
    created: bool
    results: list[ResultOut]


class RejectedOut(BaseModel):
    """A target the request did not add, and why."""

    text: str
    reason: str


class AddReportOut(BaseModel):
    """The result of a create request: the added endpoints and rejected targets."""

    added: list[AddedOut]
    rejected: list[RejectedOut]


class ScanOut(BaseModel):
    """The outcome of a scan run on request."""

    endpoint_id: int
    results: list[ResultOut]


class ObservationOut(BaseModel):
    """The outcome of one scan at one address of an endpoint.

    `chain` lists SHA-256 fingerprints as presented, leaf first. `latest`
    is true for the observations of the endpoint's latest scan.
    """

    id: int
    address: str | None
    observed_at: datetime
    status: str
    latest: bool
    error_reason: str | None
    error: str | None
    tls_version: str | None
    chain: list[str]


class ObservationPage(BaseModel):
    """Observations of one endpoint, newest first."""

    items: list[ObservationOut]
    total: int
    offset: int
    limit: int


class PlaceOut(BaseModel):
    """A place of one of the caller's teams where a certificate was seen.

    `current` is true when the place's latest scan showed the certificate.
    """

    team_id: int
    target: str
    endpoint_id: int | None
    address: str | None
    file_source_id: int | None
    path: str | None
    position: int
    first_seen_at: datetime
    last_seen_at: datetime
    current: bool


class CertificateOut(BaseModel):
    """A certificate with its places in the caller's teams."""

    sha256: str
    subject: str | None
    issuer: str | None
    common_name: str | None
    dns_names: list[str]
    not_before: datetime | None
    not_after: datetime | None
    deployments: list[PlaceOut]


class CertificatePageOut(BaseModel):
    """One page of the certificates the caller's teams serve now."""

    items: list[CertificateOut]
    total: int
    offset: int
    limit: int


class AlertOut(BaseModel):
    """An alert of one of the caller's teams.

    `resolved_at` is `null` while the alert is open; `acknowledged_until`
    and `acknowledged_threshold` are `null` unless someone acknowledged it.
    """

    id: int
    team_id: int
    event: str
    code: str
    severity: str
    message: str
    certificate_sha256: str | None
    endpoint_id: int | None
    opened_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    acknowledged_until: datetime | None
    acknowledged_threshold: str | None
    acknowledged_by: str | None


class AlertPage(BaseModel):
    """One page of alerts, newest first."""

    items: list[AlertOut]
    total: int
    offset: int
    limit: int


class AcknowledgeIn(BaseModel):
    """An acknowledgement until a time, or without `until` until the next threshold."""

    until: datetime | None = None
