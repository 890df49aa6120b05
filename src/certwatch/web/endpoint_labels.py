"""The one-line name of an endpoint on the pages, as `certwatch list` prints it.

Endpoints added with `--resolve` (or an `address` column) share their
target and differ only in the pinned address, so a page that listed the
target alone would show identical rows.
"""

from __future__ import annotations


def endpoint_label(target: str, pinned_address: str | None) -> str:
    """Return the target, followed by "(at ADDRESS)" when the address is pinned."""
    if pinned_address:
        return f"{target} (at {pinned_address})"
    return target
