"""Read why the latest scan of each source came out as it did.

`certwatch list` and the dashboard show these codes next to the status, so
an operator sees at once why an endpoint is CRITICAL or has no expiry date,
such as `starttls_not_offered` or `timeout`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from certwatch.store.chunks import chunked
from certwatch.store.models import FindingRow, ObservationRow

SourceKey = tuple[str, int]
"""A source as ("endpoint", id) or ("file", id)."""


def latest_reasons(
    session: Session,
    *,
    endpoint_ids: Sequence[int] = (),
    file_source_ids: Sequence[int] = (),
) -> dict[SourceKey, tuple[str, ...]]:
    """Return the error reasons and finding codes of each source's latest scan.

    Each source maps to its codes in observation order (addresses, then the
    findings in analysis order), each code once. A source whose latest scan
    found nothing wrong, or that was never scanned, is left out.
    """
    reasons: dict[SourceKey, dict[str, None]] = {}
    for kind, column, ids in (
        ("endpoint", ObservationRow.endpoint_id, endpoint_ids),
        ("file", ObservationRow.file_source_id, file_source_ids),
    ):
        for chunk in chunked(list(ids)):
            for row in session.execute(_latest_codes(column, chunk)):
                codes = reasons.setdefault((kind, row.source_id), {})
                if row.error_reason is not None:
                    codes[row.error_reason] = None
                if row.code is not None:
                    codes[row.code] = None
    return {key: tuple(codes) for key, codes in reasons.items() if codes}


def _latest_codes(column: Any, ids: Sequence[int]) -> Any:
    return (
        select(
            column.label("source_id"),
            ObservationRow.error_reason,
            FindingRow.code,
        )
        .outerjoin(FindingRow, FindingRow.observation_id == ObservationRow.id)
        .where(column.in_(ids), ObservationRow.latest.is_(True))
        .order_by(ObservationRow.id, FindingRow.position)
    )
