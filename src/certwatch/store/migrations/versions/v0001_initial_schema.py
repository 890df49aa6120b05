"""Create the initial schema and the default team.

Revision ID: 0001
Revises:
Create Date: 2026-12-04
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

# SQLite only makes INTEGER PRIMARY KEY an auto-incrementing row id.
_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "certificates",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("der", sa.LargeBinary(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("issuer", sa.Text(), nullable=True),
        sa.Column("serial", sa.Text(), nullable=True),
        sa.Column("common_name", sa.Text(), nullable=True),
        sa.Column("dns_names", sa.JSON(), nullable=False),
        sa.Column("ip_addresses", sa.JSON(), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=True),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=True),
        sa.Column("spki_sha256", sa.String(length=64), nullable=True),
        sa.Column("key_type", sa.Text(), nullable=True),
        sa.Column("key_size", sa.Integer(), nullable=True),
        sa.Column("signature_algorithm", sa.Text(), nullable=True),
        sa.Column("is_ca", sa.Boolean(), nullable=True),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_certificates")),
    )
    op.create_index(
        op.f("ix_certificates_not_after"), "certificates", ["not_after"], unique=False
    )
    op.create_index(
        op.f("ix_certificates_spki_sha256"),
        "certificates",
        ["spki_sha256"],
        unique=False,
    )
    op.create_table(
        "teams",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_teams")),
        sa.UniqueConstraint("name", name=op.f("uq_teams_name")),
    )
    op.create_table(
        "certificate_names",
        sa.Column("certificate_sha256", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=253), nullable=False),
        sa.ForeignKeyConstraint(
            ["certificate_sha256"],
            ["certificates.sha256"],
            name=op.f("fk_certificate_names_certificate_sha256_certificates"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "certificate_sha256", "name", name=op.f("pk_certificate_names")
        ),
    )
    op.create_index(
        op.f("ix_certificate_names_name"), "certificate_names", ["name"], unique=False
    )
    op.create_table(
        "endpoints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("protocol", sa.String(length=20), nullable=False),
        sa.Column("host", sa.String(length=253), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("server_name", sa.String(length=253), nullable=False),
        sa.Column("address", sa.String(length=45), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.Column("interval_seconds", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_scan_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_token", sa.String(length=64), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_scanned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "interval_seconds > 0", name=op.f("ck_endpoints_interval_positive")
        ),
        sa.CheckConstraint(
            "port BETWEEN 1 AND 65535", name=op.f("ck_endpoints_port_range")
        ),
        sa.ForeignKeyConstraint(
            ["team_id"],
            ["teams.id"],
            name=op.f("fk_endpoints_team_id_teams"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_endpoints")),
        sa.UniqueConstraint(
            "protocol",
            "host",
            "port",
            "server_name",
            "address",
            name=op.f("uq_endpoints_protocol_host_port_server_name_address"),
        ),
    )
    op.create_index(
        op.f("ix_endpoints_enabled_next_scan_at"),
        "endpoints",
        ["enabled", "next_scan_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_endpoints_team_id"), "endpoints", ["team_id"], unique=False
    )
    op.create_table(
        "file_sources",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.Column("interval_seconds", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_scan_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_token", sa.String(length=64), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_scanned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "interval_seconds > 0", name=op.f("ck_file_sources_interval_positive")
        ),
        sa.ForeignKeyConstraint(
            ["team_id"],
            ["teams.id"],
            name=op.f("fk_file_sources_team_id_teams"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_file_sources")),
        sa.UniqueConstraint("path", name=op.f("uq_file_sources_path")),
    )
    op.create_index(
        op.f("ix_file_sources_enabled_next_scan_at"),
        "file_sources",
        ["enabled", "next_scan_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_file_sources_team_id"), "file_sources", ["team_id"], unique=False
    )
    op.create_table(
        "endpoint_tags",
        sa.Column("endpoint_id", sa.Integer(), nullable=False),
        sa.Column("tag", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["endpoints.id"],
            name=op.f("fk_endpoint_tags_endpoint_id_endpoints"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("endpoint_id", "tag", name=op.f("pk_endpoint_tags")),
    )
    op.create_index(
        op.f("ix_endpoint_tags_tag"), "endpoint_tags", ["tag"], unique=False
    )
    op.create_table(
        "file_source_tags",
        sa.Column("file_source_id", sa.Integer(), nullable=False),
        sa.Column("tag", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(
            ["file_source_id"],
            ["file_sources.id"],
            name=op.f("fk_file_source_tags_file_source_id_file_sources"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "file_source_id", "tag", name=op.f("pk_file_source_tags")
        ),
    )
    op.create_index(
        op.f("ix_file_source_tags_tag"), "file_source_tags", ["tag"], unique=False
    )
    op.create_table(
        "observations",
        sa.Column("id", _BIG_ID, nullable=False),
        sa.Column("endpoint_id", sa.Integer(), nullable=True),
        sa.Column("file_source_id", sa.Integer(), nullable=True),
        sa.Column("address", sa.String(length=45), nullable=True),
        sa.Column("path", sa.Text(), nullable=True),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("error_reason", sa.String(length=40), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("tls_version", sa.Text(), nullable=True),
        sa.Column("latest", sa.Boolean(), nullable=False),
        sa.CheckConstraint(
            "(endpoint_id IS NULL) <> (file_source_id IS NULL)",
            name=op.f("ck_observations_one_source"),
        ),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["endpoints.id"],
            name=op.f("fk_observations_endpoint_id_endpoints"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["file_source_id"],
            ["file_sources.id"],
            name=op.f("fk_observations_file_source_id_file_sources"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_observations")),
    )
    op.create_index(
        op.f("ix_observations_endpoint_id_latest"),
        "observations",
        ["endpoint_id", "latest"],
        unique=False,
    )
    op.create_index(
        op.f("ix_observations_file_source_id_latest"),
        "observations",
        ["file_source_id", "latest"],
        unique=False,
    )
    op.create_index(
        op.f("ix_observations_observed_at"),
        "observations",
        ["observed_at"],
        unique=False,
    )
    op.create_table(
        "findings",
        sa.Column("observation_id", _BIG_ID, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=60), nullable=False),
        sa.Column("severity", sa.String(length=20), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["observation_id"],
            ["observations.id"],
            name=op.f("fk_findings_observation_id_observations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("observation_id", "position", name=op.f("pk_findings")),
    )
    op.create_index(op.f("ix_findings_code"), "findings", ["code"], unique=False)
    op.create_table(
        "observation_certificates",
        sa.Column("observation_id", _BIG_ID, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("certificate_sha256", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["certificate_sha256"],
            ["certificates.sha256"],
            name=op.f("fk_observation_certificates_certificate_sha256_certificates"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["observation_id"],
            ["observations.id"],
            name=op.f("fk_observation_certificates_observation_id_observations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "observation_id", "position", name=op.f("pk_observation_certificates")
        ),
    )
    op.create_index(
        op.f("ix_observation_certificates_certificate_sha256"),
        "observation_certificates",
        ["certificate_sha256"],
        unique=False,
    )

    teams = sa.table(
        "teams",
        sa.column("name", sa.String()),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    created_at = datetime.now(UTC)
    if op.get_bind().dialect.name == "sqlite":
        # The store keeps SQLite instants as naive UTC, see UtcDateTime.
        created_at = created_at.replace(tzinfo=None)
    op.bulk_insert(teams, [{"name": "default", "created_at": created_at}])


def downgrade() -> None:
    op.drop_index(
        op.f("ix_observation_certificates_certificate_sha256"),
        table_name="observation_certificates",
    )
    op.drop_table("observation_certificates")
    op.drop_index(op.f("ix_findings_code"), table_name="findings")
    op.drop_table("findings")
    op.drop_index(op.f("ix_observations_observed_at"), table_name="observations")
    op.drop_index(
        op.f("ix_observations_file_source_id_latest"), table_name="observations"
    )
    op.drop_index(op.f("ix_observations_endpoint_id_latest"), table_name="observations")
    op.drop_table("observations")
    op.drop_index(op.f("ix_file_source_tags_tag"), table_name="file_source_tags")
    op.drop_table("file_source_tags")
    op.drop_index(op.f("ix_endpoint_tags_tag"), table_name="endpoint_tags")
    op.drop_table("endpoint_tags")
    op.drop_index(op.f("ix_file_sources_team_id"), table_name="file_sources")
    op.drop_index(
        op.f("ix_file_sources_enabled_next_scan_at"), table_name="file_sources"
    )
    op.drop_table("file_sources")
    op.drop_index(op.f("ix_endpoints_team_id"), table_name="endpoints")
    op.drop_index(op.f("ix_endpoints_enabled_next_scan_at"), table_name="endpoints")
    op.drop_table("endpoints")
    op.drop_index(op.f("ix_certificate_names_name"), table_name="certificate_names")
    op.drop_table("certificate_names")
    op.drop_table("teams")
    op.drop_index(op.f("ix_certificates_spki_sha256"), table_name="certificates")
    op.drop_index(op.f("ix_certificates_not_after"), table_name="certificates")
    op.drop_table("certificates")
