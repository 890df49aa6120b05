"""Make endpoints unique per team instead of across the whole store.

Two teams may now watch the same endpoint, each with its own row,
settings, observations and alerts. Before, the first team to add a
target kept every other team from adding it, and the rejection told them
that another team watched it.

File sources keep their store-wide unique path: only an operator adds
them, on the command line, and a file on the monitor's own disk has one
owner.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None

_IDENTITY = ["protocol", "host", "port", "server_name", "address"]
_OLD_NAME = "uq_endpoints_protocol_host_port_server_name_address"
_NEW_NAME = "uq_endpoints_protocol_host_port_server_name_address_team_id"


def upgrade() -> None:
    # The team comes last, so look-ups by identity alone, which the
    # command line makes, still use the constraint's index.
    with op.batch_alter_table("endpoints") as batch:
        batch.drop_constraint(_OLD_NAME, type_="unique")
        batch.create_unique_constraint(_NEW_NAME, [*_IDENTITY, "team_id"])


def downgrade() -> None:
    # Fails while two teams watch the same endpoint: remove one of them first.
    with op.batch_alter_table("endpoints") as batch:
        batch.drop_constraint(_NEW_NAME, type_="unique")
        batch.create_unique_constraint(_OLD_NAME, _IDENTITY)
