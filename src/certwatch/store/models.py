"""The tables of the inventory store, as SQLAlchemy declarative models.

The schema is created and changed only by the Alembic revisions in
`migrations/versions`. A test compares these models with the migrated schema,
so the two cannot drift apart. The repository modules return frozen
dataclasses, never these rows, so callers hold no session state.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from certwatch.store.types import UtcDateTime

# Fixed constraint names, so that later migrations can refer to them on both
# backends.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

DEFAULT_TEAM = "default"
"""The team that owns every endpoint and file source not given another one."""

# SQLite only makes INTEGER PRIMARY KEY an auto-incrementing row id.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class TeamRow(Base):
    """A team that owns endpoints and file sources, and hears their alerts.

    `reminder_schedule` overrides the default expiry reminders (text such
    as `30,14,7` or `20%,10%`), `escalate_after_seconds` the time after
    which an unacknowledged critical alert reaches the escalation contacts,
    `digest_sent_at` records the last weekly digest, and `endpoint_limit`
    overrides the site's limit on the team's endpoints.
    """

    __tablename__ = "teams"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    reminder_schedule: Mapped[str | None] = mapped_column(Text)
    escalate_after_seconds: Mapped[int | None] = mapped_column(Integer)
    digest_sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    endpoint_limit: Mapped[int | None] = mapped_column(Integer)


class _Scheduled:
    """Columns that every scanned source carries: owner, settings, schedule.

    `interval_seconds` is `None` when the source follows the configured
    default interval (`CERTWATCH_DEFAULT_INTERVAL`), which the scheduler
    reads when it sets the next scan time.

    `next_scan_at` is when the source is due. A scanner that claims it sets
    `lease_token` and `lease_expires_at`. The lease counts only until it
    expires, so a killed scanner never leaves a source claimed for good.

    `last_status` copies the worst status of the latest scan, and
    `not_after` the soonest not_after it saw: of the leaf certificates of an
    endpoint, or of every certificate of a file source. A scan without any
    certificate keeps the last known not_after. Listings then sort and
    filter a large inventory by expiry with one indexed query.
    """

    team_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("teams.id", ondelete="RESTRICT")
    )
    interval_seconds: Mapped[int | None] = mapped_column(Integer)
    enabled: Mapped[bool] = mapped_column(Boolean)
    notes: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    next_scan_at: Mapped[datetime] = mapped_column(UtcDateTime)
    lease_token: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_scanned_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    consecutive_failures: Mapped[int] = mapped_column(Integer)
    last_status: Mapped[str | None] = mapped_column(String(20))
    not_after: Mapped[datetime | None] = mapped_column(UtcDateTime)
    reminder_schedule: Mapped[str | None] = mapped_column(Text)


class EndpointRow(_Scheduled, Base):
    """A network endpoint to scan.

    An endpoint is unique per team: two teams that watch the same target
    have a row each. `server_name` and `address` hold "" rather than NULL
    when there is no SNI name (IP literals) or no pinned address, because a
    unique constraint treats NULLs as distinct, so NULL would let the same
    endpoint in twice.
    """

    __tablename__ = "endpoints"
    __table_args__ = (
        UniqueConstraint(
            "protocol", "host", "port", "server_name", "address", "team_id"
        ),
        Index(None, "enabled", "next_scan_at"),
        Index(None, "team_id"),
        Index(None, "not_after"),
        CheckConstraint("port BETWEEN 1 AND 65535", name="port_range"),
        CheckConstraint("interval_seconds > 0", name="interval_positive"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    target: Mapped[str] = mapped_column(Text)
    protocol: Mapped[str] = mapped_column(String(20))
    host: Mapped[str] = mapped_column(String(253))
    port: Mapped[int] = mapped_column(Integer)
    server_name: Mapped[str] = mapped_column(String(253))
    address: Mapped[str] = mapped_column(String(45))


class EndpointTagRow(Base):
    """One tag of one endpoint."""

    __tablename__ = "endpoint_tags"
    __table_args__ = (Index(None, "tag"),)

    endpoint_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("endpoints.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(100), primary_key=True)


class FileSourceRow(_Scheduled, Base):
    """A certificate file or a folder of them, scanned like an endpoint."""

    __tablename__ = "file_sources"
    __table_args__ = (
        Index(None, "enabled", "next_scan_at"),
        Index(None, "team_id"),
        Index(None, "not_after"),
        CheckConstraint("interval_seconds > 0", name="interval_positive"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(Text, unique=True)


class FileSourceTagRow(Base):
    """One tag of one file source."""

    __tablename__ = "file_source_tags"
    __table_args__ = (Index(None, "tag"),)

    file_source_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("file_sources.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(100), primary_key=True)


class CertificateRow(Base):
    """One certificate, stored once under its SHA-256 fingerprint.

    The parsed columns are `None` when that part of the DER could not be read.
    """

    __tablename__ = "certificates"
    __table_args__ = (Index(None, "not_after"), Index(None, "spki_sha256"))

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    der: Mapped[bytes] = mapped_column(LargeBinary)
    subject: Mapped[str | None] = mapped_column(Text)
    issuer: Mapped[str | None] = mapped_column(Text)
    serial: Mapped[str | None] = mapped_column(Text)
    common_name: Mapped[str | None] = mapped_column(Text)
    dns_names: Mapped[list[str]] = mapped_column(JSON)
    ip_addresses: Mapped[list[str]] = mapped_column(JSON)
    not_before: Mapped[datetime | None] = mapped_column(UtcDateTime)
    not_after: Mapped[datetime | None] = mapped_column(UtcDateTime)
    spki_sha256: Mapped[str | None] = mapped_column(String(64))
    key_type: Mapped[str | None] = mapped_column(Text)
    key_size: Mapped[int | None] = mapped_column(Integer)
    signature_algorithm: Mapped[str | None] = mapped_column(Text)
    is_ca: Mapped[bool | None] = mapped_column(Boolean)
    first_seen_at: Mapped[datetime] = mapped_column(UtcDateTime)


class CertificateNameRow(Base):
    """A DNS name or IP address of a certificate, for look-ups by name."""

    __tablename__ = "certificate_names"
    __table_args__ = (Index(None, "name"),)

    certificate_sha256: Mapped[str] = mapped_column(
        String(64),
        ForeignKey("certificates.sha256", ondelete="CASCADE"),
        primary_key=True,
    )
    name: Mapped[str] = mapped_column(String(253), primary_key=True)


class ObservationRow(Base):
    """The outcome of one scan at one address of an endpoint, or in one file.

    Exactly one of `endpoint_id` and `file_source_id` is set. `address` is
    `None` for file observations and after a DNS failure; `path` is set for
    file observations only. `latest` marks the observations of the most
    recent scan of their source.
    """

    __tablename__ = "observations"
    __table_args__ = (
        Index(None, "endpoint_id", "latest"),
        Index(None, "file_source_id", "latest"),
        Index(None, "observed_at"),
        CheckConstraint(
            "(endpoint_id IS NULL) <> (file_source_id IS NULL)", name="one_source"
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    endpoint_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("endpoints.id", ondelete="CASCADE")
    )
    file_source_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("file_sources.id", ondelete="CASCADE")
    )
    address: Mapped[str | None] = mapped_column(String(45))
    path: Mapped[str | None] = mapped_column(Text)
    observed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    status: Mapped[str] = mapped_column(String(20))
    error_reason: Mapped[str | None] = mapped_column(String(40))
    error_message: Mapped[str | None] = mapped_column(Text)
    tls_version: Mapped[str | None] = mapped_column(Text)
    latest: Mapped[bool] = mapped_column(Boolean)


class ObservationCertificateRow(Base):
    """One certificate of an observed chain, at its position (0 is the leaf).

    A certificate sent twice in one chain has two rows.
    """

    __tablename__ = "observation_certificates"
    __table_args__ = (Index(None, "certificate_sha256"),)

    observation_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("observations.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    certificate_sha256: Mapped[str] = mapped_column(
        String(64), ForeignKey("certificates.sha256", ondelete="RESTRICT")
    )


class FindingRow(Base):
    """One finding of one observation, in the order the analysis gave it."""

    __tablename__ = "findings"
    __table_args__ = (Index(None, "code"),)

    observation_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("observations.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(60))
    severity: Mapped[str] = mapped_column(String(20))
    message: Mapped[str] = mapped_column(Text)


class CertificateChangeRow(Base):
    """A change of the leaf certificate at one address of an endpoint, or in a file.

    Exactly one of `endpoint_id` and `file_source_id` is set, with `address`
    or `path` naming the place. The old and new certificates' own facts
    (not_after, issuer, key) are read from `certificates`; the row keeps what
    only the comparison gives. `key_reused` is `None` when either public key
    could not be read.
    """

    __tablename__ = "certificate_changes"
    __table_args__ = (
        Index(None, "endpoint_id", "detected_at"),
        Index(None, "file_source_id", "detected_at"),
        CheckConstraint(
            "(endpoint_id IS NULL) <> (file_source_id IS NULL)", name="one_source"
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    endpoint_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("endpoints.id", ondelete="CASCADE")
    )
    file_source_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("file_sources.id", ondelete="CASCADE")
    )
    address: Mapped[str | None] = mapped_column(String(45))
    path: Mapped[str | None] = mapped_column(Text)
    detected_at: Mapped[datetime] = mapped_column(UtcDateTime)
    old_last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime)
    old_sha256: Mapped[str] = mapped_column(
        String(64), ForeignKey("certificates.sha256", ondelete="RESTRICT")
    )
    new_sha256: Mapped[str] = mapped_column(
        String(64), ForeignKey("certificates.sha256", ondelete="RESTRICT")
    )
    names_added: Mapped[list[str]] = mapped_column(JSON)
    names_removed: Mapped[list[str]] = mapped_column(JSON)
    key_reused: Mapped[bool | None] = mapped_column(Boolean)


class ContactRow(Base):
    """A way to reach a team: an email address or a webhook URL.

    `address` is the full address or URL, secrets included, as
    `certwatch.alerts.contacts.parse_contact` normalised it; it is never
    printed or logged in full. `escalation` contacts get a critical alert
    only when no contact acknowledged it in time. The failure columns track
    contact health: `unhealthy_since` is set once deliveries keep failing.
    """

    __tablename__ = "contacts"
    __table_args__ = (UniqueConstraint("team_id", "kind", "address"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("teams.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(String(20))
    address: Mapped[str] = mapped_column(Text)
    escalation: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    consecutive_failures: Mapped[int] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    unhealthy_since: Mapped[datetime | None] = mapped_column(UtcDateTime)


class AlertRow(Base):
    """One incident a team hears about: a certificate or finding, over its places.

    `identity` names the incident within its team: the certificate's
    expiry (`expiry:SHA256`), a finding on a certificate
    (`finding:CODE:SHA256`), a stale deployment (`stale:SHA256`) or an
    endpoint that keeps failing (`unreachable:ENDPOINT_ID`). The same
    certificate at eight addresses is one row whose `places` lists them.
    """

    __tablename__ = "alerts"
    __table_args__ = (
        UniqueConstraint("team_id", "identity"),
        Index(None, "resolved_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    team_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("teams.id", ondelete="CASCADE")
    )
    identity: Mapped[str] = mapped_column(String(300))
    event: Mapped[str] = mapped_column(String(30))
    code: Mapped[str] = mapped_column(String(60))
    severity: Mapped[str] = mapped_column(String(20))
    certificate_sha256: Mapped[str | None] = mapped_column(String(64))
    endpoint_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("endpoints.id", ondelete="CASCADE")
    )
    message: Mapped[str] = mapped_column(Text)
    places: Mapped[list[dict[str, str | None]]] = mapped_column(JSON)
    opened_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    acknowledged_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    acknowledged_threshold: Mapped[str | None] = mapped_column(String(40))
    acknowledged_by: Mapped[str | None] = mapped_column(Text)
    escalated_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class AlertThresholdRow(Base):
    """A reminder threshold of an alert, recorded once it was crossed and sent.

    Thresholds are `window` (the first reminder), `days:N` and
    `expired:YYYY-MM-DD` (one a day while expired), or `open` for findings.
    The primary key makes each one count once, whatever the cycles missed.
    """

    __tablename__ = "alert_thresholds"

    alert_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("alerts.id", ondelete="CASCADE"), primary_key=True
    )
    threshold: Mapped[str] = mapped_column(String(40), primary_key=True)
    crossed_at: Mapped[datetime] = mapped_column(UtcDateTime)


class OutboxRow(Base):
    """One message to one contact, recorded before it is sent.

    `notice` is the message as JSON, so a restarted process sends exactly
    what was decided. `notice_key` is the idempotency key receivers see.
    A row is pending until `delivered_at` or `failed_at` (a permanent
    failure, or too many attempts) is set.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("contact_id", "notice_key"),
        Index(None, "delivered_at", "failed_at", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    team_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("teams.id", ondelete="CASCADE")
    )
    contact_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("contacts.id", ondelete="CASCADE")
    )
    notice_key: Mapped[str] = mapped_column(String(200))
    event: Mapped[str] = mapped_column(String(30))
    notice: Mapped[dict[str, object]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime)
    attempts: Mapped[int] = mapped_column(Integer)
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    failed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)


class TeamCalendarRow(Base):
    """The secret calendar feed of a team, stored as the SHA-256 of its token.

    The token itself is shown once, when it is made, and never stored, so
    a copy of the database does not reveal the feed URLs.
    """

    __tablename__ = "team_calendars"

    team_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True
    )
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class MonitorHeartbeatRow(Base):
    """When a monitor last completed a cycle, `None` before the first one.

    The migration creates the row `monitor`, which `certwatch serve`
    updates after each cycle, also when no source was due.
    """

    __tablename__ = "monitor_heartbeats"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    last_cycle_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


ROLES = ("owner", "member", "viewer")
"""The roles of a team member, from the most to the least allowed."""

_ROLE_CHECK = "role IN ('owner', 'member', 'viewer')"


class UserRow(Base):
    """An account of the web service, identified by its email address.

    `email` is lower case. `password_hash` is an argon2 hash in its
    encoded form, parameters included. `failed_logins` counts the failed
    logins since `first_failed_at`; when they reach the limit,
    `locked_until` blocks logins until that time.
    """

    __tablename__ = "users"
    __table_args__ = (CheckConstraint("email = lower(email)", name="email_lower"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(Text)
    is_admin: Mapped[bool] = mapped_column(Boolean)
    email_verified_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    failed_logins: Mapped[int] = mapped_column(Integer)
    first_failed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime)


class SessionRow(Base):
    """A login session, stored as the SHA-256 of the token in its cookie.

    `csrf_secret` is random and keyed into the CSRF tokens of the forms
    that the session's pages carry.
    """

    __tablename__ = "sessions"
    __table_args__ = (Index(None, "user_id"), Index(None, "expires_at"))

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("users.id", ondelete="CASCADE")
    )
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    csrf_secret: Mapped[str] = mapped_column(String(64))


class MembershipRow(Base):
    """The role of one user in one team: `owner`, `member` or `viewer`."""

    __tablename__ = "memberships"
    __table_args__ = (
        Index(None, "team_id"),
        CheckConstraint(_ROLE_CHECK, name="role_known"),
    )

    user_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    team_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class InvitationRow(Base):
    """An invitation to join a team with a role, by a link with a secret token.

    Only the token's SHA-256 is stored. `accepted_at` is set once an
    account used it, and `invited_by` is `None` once that user is deleted.
    """

    __tablename__ = "invitations"
    __table_args__ = (
        Index(None, "team_id"),
        CheckConstraint(_ROLE_CHECK, name="role_known"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("teams.id", ondelete="CASCADE")
    )
    email: Mapped[str] = mapped_column(String(254))
    role: Mapped[str] = mapped_column(String(20))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    invited_by: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    accepted_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class AccountTokenRow(Base):
    """A link sent by email: `verify` confirms an address, `reset` a new password.

    Only the token's SHA-256 is stored. `email` is the address the link was
    sent to, so a link stops working once the account's address changes.
    `used_at` is set when the link is used; each link works once.
    """

    __tablename__ = "account_tokens"
    __table_args__ = (
        Index(None, "user_id"),
        CheckConstraint("purpose IN ('verify', 'reset')", name="purpose_known"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("users.id", ondelete="CASCADE")
    )
    purpose: Mapped[str] = mapped_column(String(20))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str] = mapped_column(String(254))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class ApiTokenRow(Base):
    """A bearer token of the JSON API, scoped to one team with a role.

    Only the token's SHA-256 is stored; `prefix` is its first characters,
    shown in lists so that an owner can tell tokens apart. A revoked token
    keeps its row, with `revoked_at` set, for the record.
    """

    __tablename__ = "api_tokens"
    __table_args__ = (
        Index(None, "team_id"),
        CheckConstraint(_ROLE_CHECK, name="role_known"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("teams.id", ondelete="CASCADE")
    )
    created_by: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("users.id", ondelete="SET NULL")
    )
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(20))
    prefix: Mapped[str] = mapped_column(String(16))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class SiteSecretRow(Base):
    """A random key that the service made once and keeps, by name."""

    __tablename__ = "site_secrets"

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    value: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
