"""Decide when the leaf certificate at a place has changed.

A place (an address of an endpoint, or a file) changes certificate when a
scan finds a leaf there other than the last leaf seen there. One exception
keeps places that alternate between certificates quiet: a leaf that the
place already showed within the last `window` is a return, not a change.
A CDN part-way through a roll-out, or a server that sends its RSA or its
ECDSA certificate depending on the client, thus gives one change when the
second certificate first appears and none while the two alternate. A leaf
seen there only longer ago than `window` counts as a change again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from certwatch.result import Result
from certwatch.store.changes import NewChange, Place, leaf_sightings
from certwatch.store.deployments import CertificateSummary, certificate_summaries
from certwatch.store.observations import CompletedScan
from certwatch.x509.model import CertificateFacts

DEFAULT_CHANGE_WINDOW = timedelta(days=7)
"""How long a place remembers a leaf it showed, for the alternation rule."""


@dataclass(frozen=True)
class ObservedLeaf:
    """The leaf one scan found at one place."""

    place: Place
    facts: CertificateFacts
    observed_at: datetime


def detect_changes(
    session: Session,
    scans: Sequence[CompletedScan],
    *,
    window: timedelta = DEFAULT_CHANGE_WINDOW,
) -> list[NewChange]:
    """Return the leaf changes that `scans` show against the stored history.

    Call it before the scans are recorded: the history must not yet hold
    them, or every new leaf would count as already seen.
    """
    leaves = observed_leaves(scans)
    sightings = leaf_sightings(
        session,
        endpoint_ids=sorted({s.endpoint_id for s in scans if s.endpoint_id}),
        file_source_ids=sorted({s.file_source_id for s in scans if s.file_source_id}),
    )
    decided: list[tuple[ObservedLeaf, str, datetime]] = []
    for leaf in leaves:
        previous = previous_leaf(
            sightings.get(leaf.place, {}),
            leaf.facts.sha256,
            observed_at=leaf.observed_at,
            window=window,
        )
        if previous is not None:
            decided.append((leaf, *previous))
    if not decided:
        return []

    olds = {
        s.sha256: s for s in certificate_summaries(session, [d[1] for d in decided])
    }
    return [
        describe_change(leaf, olds[old_sha256], old_last_seen_at)
        for leaf, old_sha256, old_last_seen_at in decided
    ]


def previous_leaf(
    history: Mapping[str, datetime],
    new_sha256: str,
    *,
    observed_at: datetime,
    window: timedelta,
) -> tuple[str, datetime] | None:
    """Return the leaf that `new_sha256` replaces at a place, or `None`.

    `history` maps each leaf the place showed before to when it was last
    seen there. There is no change at a new place, when the leaf is the
    last one seen, or when the place showed it within `window` before
    `observed_at` (alternation). Returns the old leaf and its last sighting.
    """
    if not history:
        return None
    old_sha256, old_seen = max(history.items(), key=lambda item: (item[1], item[0]))
    if old_sha256 == new_sha256:
        return None
    seen_before = history.get(new_sha256)
    if seen_before is not None and seen_before >= observed_at - window:
        return None
    return old_sha256, old_seen


def describe_change(
    leaf: ObservedLeaf, old: CertificateSummary, old_last_seen_at: datetime
) -> NewChange:
    """Compare the old and the new leaf of a place into a change record."""
    new_names = _names(leaf.facts.dns_names, leaf.facts.ip_addresses)
    old_names = _names(old.dns_names, old.ip_addresses)
    key_reused = None
    if leaf.facts.spki_sha256 is not None and old.spki_sha256 is not None:
        key_reused = leaf.facts.spki_sha256 == old.spki_sha256
    return NewChange(
        place=leaf.place,
        detected_at=leaf.observed_at,
        old_sha256=old.sha256,
        old_last_seen_at=old_last_seen_at,
        new_sha256=leaf.facts.sha256,
        names_added=tuple(sorted(new_names - old_names)),
        names_removed=tuple(sorted(old_names - new_names)),
        key_reused=key_reused,
    )


def observed_leaves(scans: Iterable[CompletedScan]) -> list[ObservedLeaf]:
    """Return the leaf each scan found at each of its places.

    For a file the leaf is the first readable certificate in file order,
    which is what `record_observations` stores at chain position 0.
    """
    leaves: list[ObservedLeaf] = []
    for scan in scans:
        if scan.endpoint_id is not None:
            for result in scan.results:
                if result.leaf is not None and result.address is not None:
                    place = Place(endpoint_id=scan.endpoint_id, address=result.address)
                    leaves.append(ObservedLeaf(place, result.leaf, scan.scanned_at))
            continue
        for path, facts in _file_leaves(scan.results).items():
            place = Place(file_source_id=scan.file_source_id, path=path)
            leaves.append(ObservedLeaf(place, facts, scan.scanned_at))
    return leaves


def _file_leaves(results: Iterable[Result]) -> dict[str, CertificateFacts]:
    by_path: dict[str, list[Result]] = {}
    for result in results:
        by_path.setdefault(result.path or result.target, []).append(result)
    leaves = {}
    for path, group in by_path.items():
        group.sort(key=lambda result: result.index or 0)
        first = next((r.leaf for r in group if r.leaf is not None), None)
        if first is not None:
            leaves[path] = first
    return leaves


def _names(dns_names: Iterable[str], ip_addresses: Iterable[str]) -> set[str]:
    return {name.lower() for name in dns_names} | set(ip_addresses)
