"""Alembic environment: run the store's migrations on a given connection.

`certwatch.store.database.upgrade` passes an open connection in
`config.attributes["connection"]`; the URL form is kept for developers who
generate a new revision with the `alembic` command.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from certwatch.store.database import create_store_engine
from certwatch.store.models import Base


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite cannot alter most constraints in place; batch mode rebuilds
        # the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return

    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError(
            "Missing database URL: call certwatch.store.database.upgrade(url) or "
            "set sqlalchemy.url in the Alembic configuration."
        )
    engine = create_store_engine(url)
    try:
        with engine.begin() as own_connection:
            _run(own_connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("Offline (SQL script) migrations are not supported.")
_run_online()
