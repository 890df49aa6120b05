"""Per-endpoint summaries: the worst address of an endpoint wins."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from certwatch.result import Result, Status, worst_status


@dataclass(frozen=True)
class EndpointSummary:
    """The verdict for one target over all its addresses or certificates.

    `days_left` is the smallest of its results, `None` when none has a leaf.
    """

    target: str
    status: Status
    days_left: int | None
    result_count: int


def summarise_endpoints(results: Sequence[Result]) -> list[EndpointSummary]:
    """Group results by target, in the order targets first appear."""
    groups: dict[str, list[Result]] = {}
    for result in results:
        groups.setdefault(result.target, []).append(result)

    summaries = []
    for target, group in groups.items():
        days = [r.days_left for r in group if r.days_left is not None]
        summaries.append(
            EndpointSummary(
                target=target,
                status=worst_status([r.status for r in group]),
                days_left=min(days, default=None),
                result_count=len(group),
            )
        )
    return summaries


def sort_for_display(results: Sequence[Result]) -> list[Result]:
    """Order results for people: no certificate first, then fewest days left."""
    return sorted(
        results,
        key=lambda r: (
            r.days_left is not None,
            r.days_left if r.days_left is not None else 0,
            -r.status.rank,
            r.target,
            r.place,
        ),
    )
