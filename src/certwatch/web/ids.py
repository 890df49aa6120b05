"""Bounds of the ids and offsets that URLs and API requests carry.

Teams, endpoints, users and API tokens have 32-bit ids in the store, and
alerts have 64-bit ids on PostgreSQL. A larger number cannot name a row,
and the database rejects it as a query parameter: SQLite's driver raises
OverflowError past 64 bits, PostgreSQL "integer out of range" past the
column's type. So a handler checks an id against these bounds before any
query and returns 404 for one outside them, as for an id that does not
exist.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import HTTPException, Query

MAX_ID = 2**31 - 1
"""The largest id of a team, endpoint, user or API token (SQL INTEGER)."""

MAX_BIG_ID = 2**63 - 1
"""The largest id of an alert (SQL BIGINT on PostgreSQL)."""

MAX_OFFSET = 2**63 - 1
"""The largest OFFSET that both SQLite and PostgreSQL accept."""

Offset = Annotated[
    int, Query(ge=0, le=MAX_OFFSET, description="items to skip, at most 2**63 - 1")
]


def is_row_id(value: int, maximum: int = MAX_ID) -> bool:
    """Tell whether `value` can be a stored id, from 1 to `maximum`."""
    return 1 <= value <= maximum


def require_row_ids(*ids: int) -> None:
    """Raise 404 for an id that no row can have, before any query uses it."""
    if not all(is_row_id(value) for value in ids):
        raise HTTPException(404, "Not Found")
