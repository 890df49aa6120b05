"""Add team calendar feeds and the monitor heartbeat for the web service.

`team_calendars` keeps the SHA-256 of each team's secret calendar token,
never the token itself. `monitor_heartbeats` keeps the time the monitor
last completed a cycle, so `/healthz` and `/metrics` can tell that it
stopped even when no source was due. Its one row, `monitor`, is created
here, so recording a cycle is a plain UPDATE on every backend.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "team_calendars",
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["team_id"],
            ["teams.id"],
            name=op.f("fk_team_calendars_team_id_teams"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("team_id", name=op.f("pk_team_calendars")),
        sa.UniqueConstraint(
            "token_sha256", name=op.f("uq_team_calendars_token_sha256")
        ),
    )
    heartbeats = op.create_table(
        "monitor_heartbeats",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("last_cycle_at", _TIME, nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_monitor_heartbeats")),
    )
    op.bulk_insert(heartbeats, [{"name": "monitor", "last_cycle_at": None}])


def downgrade() -> None:
    op.drop_table("monitor_heartbeats")
    op.drop_table("team_calendars")
