"""Add certificate_changes: the leaf changes seen at each place.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

# SQLite only makes INTEGER PRIMARY KEY an auto-incrementing row id.
_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "certificate_changes",
        sa.Column("id", _BIG_ID, nullable=False),
        sa.Column("endpoint_id", sa.Integer(), nullable=True),
        sa.Column("file_source_id", sa.Integer(), nullable=True),
        sa.Column("address", sa.String(length=45), nullable=True),
        sa.Column("path", sa.Text(), nullable=True),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("old_last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("old_sha256", sa.String(length=64), nullable=False),
        sa.Column("new_sha256", sa.String(length=64), nullable=False),
        sa.Column("names_added", sa.JSON(), nullable=False),
        sa.Column("names_removed", sa.JSON(), nullable=False),
        sa.Column("key_reused", sa.Boolean(), nullable=True),
        sa.CheckConstraint(
            "(endpoint_id IS NULL) <> (file_source_id IS NULL)",
            name=op.f("ck_certificate_changes_one_source"),
        ),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["endpoints.id"],
            name=op.f("fk_certificate_changes_endpoint_id_endpoints"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["file_source_id"],
            ["file_sources.id"],
            name=op.f("fk_certificate_changes_file_source_id_file_sources"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["old_sha256"],
            ["certificates.sha256"],
            name=op.f("fk_certificate_changes_old_sha256_certificates"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["new_sha256"],
            ["certificates.sha256"],
            name=op.f("fk_certificate_changes_new_sha256_certificates"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_certificate_changes")),
    )
    op.create_index(
        op.f("ix_certificate_changes_endpoint_id_detected_at"),
        "certificate_changes",
        ["endpoint_id", "detected_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_certificate_changes_file_source_id_detected_at"),
        "certificate_changes",
        ["file_source_id", "detected_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_certificate_changes_file_source_id_detected_at"),
        table_name="certificate_changes",
    )
    op.drop_index(
        op.f("ix_certificate_changes_endpoint_id_detected_at"),
        table_name="certificate_changes",
    )
    op.drop_table("certificate_changes")
