"""Copy each source's latest status and soonest not_after onto its row.

Listings sort and filter by expiry; reading it from the latest observations
of 100,000 endpoints took most of a second, while an indexed column answers
at once. The columns are filled from the latest observations already stored.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

_TABLES = (
    ("endpoints", "endpoint_id", True),
    ("file_sources", "file_source_id", False),
)

# Worst status wins: ok < warning < unknown < critical, as in certwatch.result.
_RANK = (
    "CASE o.status WHEN 'critical' THEN 3 WHEN 'unknown' THEN 2 "
    "WHEN 'warning' THEN 1 ELSE 0 END"
)


def upgrade() -> None:
    for table, owner, leaves_only in _TABLES:
        op.add_column(table, sa.Column("last_status", sa.String(20), nullable=True))
        op.add_column(
            table, sa.Column("not_after", sa.DateTime(timezone=True), nullable=True)
        )
        op.create_index(op.f(f"ix_{table}_not_after"), table, ["not_after"])
        leaf = "AND l.position = 0" if leaves_only else ""
        op.execute(
            f"""
            UPDATE {table} SET
              last_status = (
                SELECT CASE MAX({_RANK}) WHEN 3 THEN 'critical' WHEN 2 THEN 'unknown'
                  WHEN 1 THEN 'warning' ELSE 'ok' END
                FROM observations o
                WHERE o.{owner} = {table}.id AND o.latest
              ),
              not_after = (
                SELECT MIN(c.not_after)
                FROM observations o
                JOIN observation_certificates l ON l.observation_id = o.id
                JOIN certificates c ON c.sha256 = l.certificate_sha256
                WHERE o.{owner} = {table}.id AND o.latest {leaf}
              )
            WHERE EXISTS (
              SELECT 1 FROM observations o WHERE o.{owner} = {table}.id AND o.latest
            )
            """
        )


def downgrade() -> None:
    for table, _, _ in _TABLES:
        op.drop_index(op.f(f"ix_{table}_not_after"), table_name=table)
        with op.batch_alter_table(table) as batch:
            batch.drop_column("not_after")
            batch.drop_column("last_status")
