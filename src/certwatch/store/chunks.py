"""Split long id lists so that no statement exceeds a bound-parameter limit."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

ItemT = TypeVar("ItemT")

# Items per IN list or multi-row statement, well below the bound-parameter
# limits of SQLite 3.32 and later (32,766) and PostgreSQL (65,535).
CHUNK_SIZE = 1000


def chunked(
    items: Sequence[ItemT], size: int = CHUNK_SIZE
) -> Iterator[Sequence[ItemT]]:
    """Yield consecutive slices of `items` of at most `size` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
