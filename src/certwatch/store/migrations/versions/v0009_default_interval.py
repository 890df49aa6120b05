"""Let a source follow the configured default scan interval.

`interval_seconds` becomes nullable on endpoints and file sources. NULL
means "the configured default" (`CERTWATCH_DEFAULT_INTERVAL`, else 6
hours), which the scheduler reads each time it sets a next scan. Before,
every source stored the default of the day it was added, so a later
change of the default never reached it.

Existing rows keep the interval they store: nothing tells whether an
operator chose 6 hours on purpose or got it as the default.

On SQLite the NOT NULL constraint is removed by rewriting the table's
definition in `sqlite_schema`, the procedure that SQLite documents for
removing NOT NULL constraints (https://www.sqlite.org/lang_altertable.html,
"Making Other Kinds Of Table Schema Changes"). Rebuilding the table, as
Alembic's batch mode does, would drop the old table while foreign keys
are enforced, and that deletes every row that references it with
ON DELETE CASCADE: observations, tags and change events.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-20
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None

_TABLES = ("endpoints", "file_sources")
_COLUMN = re.compile(r"(\binterval_seconds\s+INTEGER)(\s+NOT\s+NULL)?", re.IGNORECASE)

# The default interval before this revision, given to sources that follow
# the default when the schema goes back to a NOT NULL column.
_OLD_DEFAULT_SECONDS = 6 * 3600


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _set_sqlite_not_null(nullable=True)
        return
    for table in _TABLES:
        op.alter_column(
            table, "interval_seconds", existing_type=sa.Integer(), nullable=True
        )


def downgrade() -> None:
    for table in _TABLES:
        op.execute(
            sa.text(
                f"UPDATE {table} SET interval_seconds = {_OLD_DEFAULT_SECONDS} "
                "WHERE interval_seconds IS NULL"
            )
        )
    if op.get_bind().dialect.name == "sqlite":
        _set_sqlite_not_null(nullable=False)
        return
    for table in _TABLES:
        op.alter_column(
            table, "interval_seconds", existing_type=sa.Integer(), nullable=False
        )


def _set_sqlite_not_null(*, nullable: bool) -> None:
    """Add or remove NOT NULL on `interval_seconds` in the stored definitions.

    Only the constraint changes, which leaves the stored rows valid, and
    the downgrade fills every NULL first. Raising the schema version makes
    every open connection read the new definitions.
    """
    connection = op.get_bind()
    version = connection.exec_driver_sql("PRAGMA schema_version").scalar_one()
    connection.exec_driver_sql("PRAGMA writable_schema=ON")
    try:
        for table in _TABLES:
            _rewrite_definition(connection, table, nullable=nullable)
        connection.exec_driver_sql(f"PRAGMA schema_version={int(version) + 1}")
    finally:
        connection.exec_driver_sql("PRAGMA writable_schema=OFF")


def _rewrite_definition(
    connection: sa.Connection, table: str, *, nullable: bool
) -> None:
    definition = connection.execute(
        sa.text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :name"),
        {"name": table},
    ).scalar_one()
    replacement = r"\1" if nullable else r"\1 NOT NULL"
    changed, count = _COLUMN.subn(replacement, definition)
    if count != 1:
        raise RuntimeError(
            f"Unexpected definition of table {table!r}: expected one "
            f"interval_seconds INTEGER column, found {count}. The table was "
            "changed outside certwatch's migrations; compare it with "
            "docs/store.md before upgrading again."
        )
    connection.execute(
        sa.text(
            "UPDATE sqlite_master SET sql = :sql WHERE type = 'table' AND name = :name"
        ),
        {"sql": changed, "name": table},
    )
