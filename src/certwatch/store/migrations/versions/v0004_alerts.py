"""Add contacts, alerts, their thresholds and the outbox; reminder settings.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

# SQLite only makes INTEGER PRIMARY KEY an auto-incrementing row id.
_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("teams", sa.Column("reminder_schedule", sa.Text(), nullable=True))
    op.add_column(
        "teams", sa.Column("escalate_after_seconds", sa.Integer(), nullable=True)
    )
    op.add_column("teams", sa.Column("digest_sent_at", _TIME, nullable=True))
    for table in ("endpoints", "file_sources"):
        op.add_column(table, sa.Column("reminder_schedule", sa.Text(), nullable=True))

    op.create_table(
        "contacts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("escalation", sa.Boolean(), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("unhealthy_since", _TIME, nullable=True),
        sa.ForeignKeyConstraint(
            ["team_id"],
            ["teams.id"],
            name=op.f("fk_contacts_team_id_teams"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contacts")),
        sa.UniqueConstraint(
            "team_id", "kind", "address", name=op.f("uq_contacts_team_id_kind_address")
        ),
    )
    op.create_table(
        "alerts",
        sa.Column("id", _BIG_ID, nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.Column("identity", sa.String(length=300), nullable=False),
        sa.Column("event", sa.String(length=30), nullable=False),
        sa.Column("code", sa.String(length=60), nullable=False),
        sa.Column("severity", sa.String(length=20), nullable=False),
        sa.Column("certificate_sha256", sa.String(length=64), nullable=True),
        sa.Column("endpoint_id", sa.Integer(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("places", sa.JSON(), nullable=False),
        sa.Column("opened_at", _TIME, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
        sa.Column("resolved_at", _TIME, nullable=True),
        sa.Column("acknowledged_until", _TIME, nullable=True),
        sa.Column("acknowledged_threshold", sa.String(length=40), nullable=True),
        sa.Column("acknowledged_by", sa.Text(), nullable=True),
        sa.Column("escalated_at", _TIME, nullable=True),
        sa.ForeignKeyConstraint(
            ["team_id"],
            ["teams.id"],
            name=op.f("fk_alerts_team_id_teams"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["endpoints.id"],
            name=op.f("fk_alerts_endpoint_id_endpoints"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
        sa.UniqueConstraint(
            "team_id", "identity", name=op.f("uq_alerts_team_id_identity")
        ),
    )
    op.create_index(op.f("ix_alerts_resolved_at"), "alerts", ["resolved_at"])
    op.create_table(
        "alert_thresholds",
        sa.Column("alert_id", _BIG_ID, nullable=False),
        sa.Column("threshold", sa.String(length=40), nullable=False),
        sa.Column("crossed_at", _TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["alert_id"],
            ["alerts.id"],
            name=op.f("fk_alert_thresholds_alert_id_alerts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "alert_id", "threshold", name=op.f("pk_alert_thresholds")
        ),
    )
    op.create_table(
        "outbox",
        sa.Column("id", _BIG_ID, nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("notice_key", sa.String(length=200), nullable=False),
        sa.Column("event", sa.String(length=30), nullable=False),
        sa.Column("notice", sa.JSON(), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("next_attempt_at", _TIME, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("delivered_at", _TIME, nullable=True),
        sa.Column("failed_at", _TIME, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["team_id"],
            ["teams.id"],
            name=op.f("fk_outbox_team_id_teams"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_outbox_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.UniqueConstraint(
            "contact_id", "notice_key", name=op.f("uq_outbox_contact_id_notice_key")
        ),
    )
    op.create_index(
        op.f("ix_outbox_delivered_at_failed_at_next_attempt_at"),
        "outbox",
        ["delivered_at", "failed_at", "next_attempt_at"],
    )


def downgrade() -> None:
    op.drop_table("outbox")
    op.drop_table("alert_thresholds")
    op.drop_index(op.f("ix_alerts_resolved_at"), table_name="alerts")
    op.drop_table("alerts")
    op.drop_table("contacts")
    for table in ("endpoints", "file_sources"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("reminder_schedule")
    with op.batch_alter_table("teams") as batch:
        batch.drop_column("digest_sent_at")
        batch.drop_column("escalate_after_seconds")
        batch.drop_column("reminder_schedule")
