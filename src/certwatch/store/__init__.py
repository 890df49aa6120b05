"""The inventory store: endpoints, file sources, observations, certificates.

SQLAlchemy models live in `models` and migrations in `migrations`. The
functions that read and write them have one module per concept:
`inventory` (teams, endpoints, file sources), `schedule` (claims and
rescheduling), `observations` (scan results), `deployments` (where each
certificate is and was) and `export` (inventory documents). `database`
opens the database and runs the migrations. docs/store.md describes the
schema.
"""

from certwatch.store.database import (
    DATABASE_URL_VARIABLE,
    create_store_engine,
    database_url,
    default_database_path,
    session_factory,
    upgrade,
)
from certwatch.store.errors import StoreError

__all__ = [
    "DATABASE_URL_VARIABLE",
    "StoreError",
    "create_store_engine",
    "database_url",
    "default_database_path",
    "session_factory",
    "upgrade",
]
