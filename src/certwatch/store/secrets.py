"""Random keys that the service makes once and keeps in `site_secrets`.

The first process that needs a key makes it. When two processes make one
at the same moment, the insert of the second does nothing (`ON CONFLICT DO
NOTHING` on PostgreSQL and SQLite). The second insert waits until the
first transaction ends, so both read back the key that was stored first.
On SQLite the insert comes before any read: a transaction that read first
could not write after another one committed (SQLITE_BUSY_SNAPSHOT in WAL
mode), while a transaction that starts with the write waits for the lock.
The caller commits.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from certwatch.store.errors import StoreError
from certwatch.store.models import SiteSecretRow

SECRET_BYTES = 32
"""The size of a key made by `site_secret`: 256 bits, as hex."""

MAX_NAME_LENGTH = 50
MAX_VALUE_LENGTH = 128


def new_secret() -> str:
    """Return a new random key as 64 hex digits."""
    return secrets.token_hex(SECRET_BYTES)


def site_secret(
    session: Session,
    name: str,
    *,
    now: datetime,
    make: Callable[[], str] = new_secret,
) -> str:
    """Return the key called `name`, made with `make` and stored on first use.

    On SQLite, `make` is called on every call and its value is dropped when
    the key exists, so it must be cheap and free of side effects.

    Raises:
        ValueError: `name` or the made value is empty or too long for the
            table.
        StoreError: no key could be read back after the insert.
    """
    if not 0 < len(name) <= MAX_NAME_LENGTH:
        raise ValueError(
            f"Invalid secret name {name!r}: give 1 to {MAX_NAME_LENGTH} characters."
        )
    postgresql = session.get_bind().dialect.name == "postgresql"
    if postgresql:
        stored = _read(session, name)
        if stored is not None:
            return stored

    value = make()
    if not 0 < len(value) <= MAX_VALUE_LENGTH:
        raise ValueError(
            f"Invalid value for the secret {name!r}: it has {len(value)} "
            f"characters; make 1 to {MAX_VALUE_LENGTH}."
        )
    row = {"name": name, "value": value, "created_at": now}
    if postgresql:
        session.execute(
            postgresql_insert(SiteSecretRow)
            .values(row)
            .on_conflict_do_nothing(index_elements=[SiteSecretRow.name])
        )
    else:
        session.execute(
            sqlite_insert(SiteSecretRow)
            .values(row)
            .on_conflict_do_nothing(index_elements=[SiteSecretRow.name])
        )
    stored = _read(session, name)
    if stored is None:
        raise StoreError(
            f"The site secret {name!r} was neither stored nor found; check that "
            "the database is writable and try again."
        )
    return stored


def _read(session: Session, name: str) -> str | None:
    return session.scalar(select(SiteSecretRow.value).where(SiteSecretRow.name == name))


def find_site_secret(session: Session, name: str) -> str | None:
    """Return the key called `name` without making it, `None` when there is none."""
    return _read(session, name)
