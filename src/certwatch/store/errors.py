"""The exception raised by the inventory store."""

from __future__ import annotations

from certwatch.errors import CertwatchError


class StoreError(CertwatchError):
    """A database URL, inventory file or store request that cannot be served."""
