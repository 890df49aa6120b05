"""Expiry counts for the next 90 days, per week and status, and their chart.

`expiry_timeline` counts the distinct certificates of the endpoints and
file sources that match a dashboard filter in one aggregate query, by the
week their not_after falls in and by the worst status of the latest scans
that showed them. `render_chart`
draws those counts as a stacked bar chart with pygal, as inline SVG
without JavaScript, sized so that its text stays readable on a phone. The
dashboard shows the same numbers in a table for readers who cannot see the
picture.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

import pygal
from pygal.style import Style
from sqlalchemy import (
    ColumnElement,
    Select,
    case,
    func,
    literal,
    select,
    true,
    union_all,
)
from sqlalchemy.orm import Session

from certwatch.result import Status
from certwatch.store.inventory import (
    InventoryFilter,
    filter_endpoints,
    filter_file_sources,
)
from certwatch.store.models import (
    CertificateRow,
    EndpointRow,
    FileSourceRow,
    ObservationCertificateRow,
    ObservationRow,
)

WEEKS = 13
"""The chart covers 13 weeks, days left 0 to 90, after the expired bucket."""

STATUS_ORDER = (Status.CRITICAL, Status.WARNING, Status.UNKNOWN, Status.OK)
"""The order of the stacked series, the most urgent at the bottom."""

# Dark enough for 4.5:1 contrast against white, the text-contrast level of
# WCAG 2.1, so the legend swatches and the bars stand out for most readers.
STATUS_COLOURS = {
    Status.CRITICAL: "#b00020",
    Status.WARNING: "#8a4b00",
    Status.UNKNOWN: "#4d4d4d",
    Status.OK: "#1b6e2a",
}

STATUS_NAMES = {
    Status.CRITICAL: "Critical",
    Status.WARNING: "Warning",
    Status.UNKNOWN: "Unknown",
    Status.OK: "OK",
}
"""The legend's names, the words of the dashboard's status badges."""

_EXPIRED = -1

CHART_WIDTH = 440
CHART_HEIGHT = 320
"""The chart's viewBox. The page scales it to the column width, 358 CSS
pixels on a 390-pixel phone, so the 16-unit text stays 13 CSS pixels."""

CHART_TITLE = "Certificates expiring in the next 90 days, by week of days left"
X_TITLE = "Days left (week starting at)"
EXPIRED_LABEL = "<0"
"""The chart's label of the expired bucket: fewer than 0 days left."""
LEGEND_COLUMNS = 2
"""Legend entries per row: four in a row leave "Unknown" touching the next swatch."""
LEGEND_MARGIN = 24
"""Room below the legend for the descenders of its 16-unit text ("g" of Warning)."""
MAX_Y_TICKS = 6
# Drawings kept by `render_chart`: one per distinct set of counts, such as
# the dashboard of each team and filter in use.
CHART_CACHE_SIZE = 256


@dataclass(frozen=True)
class TimelineBucket:
    """The certificates whose not_after falls in one bucket, counted per status.

    `first_day` and `last_day` are the days left that the bucket covers,
    both `None` for the bucket of certificates that have expired already.
    `ends_at` is the end of the bucket's range of not_after, not included:
    the start of the next bucket, and `now` for the expired bucket. Days
    left are counted from `now` to the second, so a range of whole dates
    would share its first and last date with its neighbours.
    """

    label: str
    first_day: int | None
    last_day: int | None
    ends_at: datetime
    counts: dict[Status, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class ExpiryTimeline:
    """The expired bucket followed by one bucket per week, at `now`."""

    now: datetime
    buckets: tuple[TimelineBucket, ...]

    @property
    def total(self) -> int:
        return sum(bucket.total for bucket in self.buckets)

    def status_total(self, status: Status) -> int:
        """Count the certificates of one status over every bucket."""
        return sum(bucket.counts.get(status, 0) for bucket in self.buckets)


def expiry_timeline(
    session: Session, filters: InventoryFilter, *, now: datetime
) -> ExpiryTimeline:
    """Count the certificates of the sources that match `filters` by week of expiry.

    A certificate counts once, by SHA-256, however many addresses and files
    serve it, at the worst status of the latest scans that showed it. Week
    k contains the certificates with k*7 to k*7+6 days left, so the buckets
    agree with the days left that the dashboard lists. The certificates are
    the leaves of each endpoint's latest scan and every certificate of each
    file's latest scan. A source whose latest scan obtained no certificate
    counts the certificate of its last known not_after, with the status of
    that failed scan, because an outage must not hide an expiry.
    """
    edges = [now + timedelta(days=7 * week) for week in range(WEEKS + 1)]
    counts: dict[tuple[int, Status], int] = {}
    for bucket, rank, count in session.execute(_count_query(filters, edges)):
        key = (int(bucket), _STATUS_BY_RANK.get(rank, Status.UNKNOWN))
        counts[key] = counts.get(key, 0) + int(count)
    return ExpiryTimeline(now=now, buckets=make_buckets(now, counts))


_STATUS_BY_RANK = {status.rank: status for status in Status}


def _count_query(filters: InventoryFilter, edges: list[datetime]) -> Any:
    """Build the one aggregate query: certificates by bucket and worst status."""
    served = union_all(*_served_parts(filters, edges[-1])).subquery()
    per_certificate = (
        select(
            _bucket(served.c.not_after, edges).label("bucket"),
            func.max(served.c.rank).label("rank"),
        )
        .group_by(served.c.sha256, served.c.not_after)
        .subquery()
    )
    return select(
        per_certificate.c.bucket, per_certificate.c.rank, func.count()
    ).group_by(per_certificate.c.bucket, per_certificate.c.rank)


def _served_parts(filters: InventoryFilter, horizon: datetime) -> list[Select[Any]]:
    """Select (sha256, not_after, status rank) of each place's certificate.

    A source's not_after is the soonest of its latest certificates, so the
    indexed `not_after < horizon` of the source leaves out every source
    without a certificate in the chart's range before any join.
    """
    link = ObservationCertificateRow
    parts = []
    for row, add_filters in (
        (EndpointRow, filter_endpoints),
        (FileSourceRow, filter_file_sources),
    ):
        observation_source = (
            ObservationRow.endpoint_id
            if row is EndpointRow
            else ObservationRow.file_source_id
        )
        # An endpoint's intermediates are someone else's to renew, so only
        # its leaves count. Every certificate of a file counts.
        chain = link.position == 0 if row is EndpointRow else true()
        latest = _served(row, observation_source, chain, ObservationRow.status).where(
            ObservationRow.latest.is_(True), CertificateRow.not_after < horizon
        )
        last_known = _served(row, observation_source, chain, row.last_status).where(
            row.consecutive_failures > 0,
            CertificateRow.not_after == row.not_after,
        )
        for part in (latest, last_known):
            parts.append(add_filters(part.where(row.not_after < horizon), filters))
    return parts


def _served(
    row: type[EndpointRow] | type[FileSourceRow],
    observation_source: Any,
    chain: ColumnElement[bool],
    status: Any,
) -> Select[Any]:
    link = ObservationCertificateRow
    # filter_endpoints is typed for one-column queries, but its conditions
    # apply whatever the columns.
    return cast(
        Select[Any],
        select(
            link.certificate_sha256.label("sha256"),
            CertificateRow.not_after.label("not_after"),
            _rank(status).label("rank"),
        )
        .select_from(row)
        .join(ObservationRow, observation_source == row.id)
        .join(link, (link.observation_id == ObservationRow.id) & chain)
        .join(CertificateRow, CertificateRow.sha256 == link.certificate_sha256),
    )


def _rank(status: Any) -> ColumnElement[int]:
    """Rank a stored status as `Status.rank` does; unknown for none."""
    whens = [(status == str(value), value.rank) for value in Status]
    return case(*whens, else_=literal(Status.UNKNOWN.rank))


def _bucket(not_after: Any, edges: list[datetime]) -> ColumnElement[int]:
    whens: list[tuple[ColumnElement[bool], int]] = [(not_after < edges[0], _EXPIRED)]
    for week, edge in enumerate(edges[1:]):
        whens.append((not_after < edge, week))
    return case(*whens, else_=literal(WEEKS))


def make_buckets(
    now: datetime, counts: dict[tuple[int, Status], int]
) -> tuple[TimelineBucket, ...]:
    """Make the expired bucket and the 13 weekly ones from counts by week and status.

    Week -1 is the expired bucket. Weeks without a count get empty counts.
    """

    def counted(bucket: int) -> dict[Status, int]:
        return {
            status: counts.get((bucket, status), 0)
            for status in STATUS_ORDER
            if counts.get((bucket, status), 0)
        }

    buckets = [TimelineBucket("Expired", None, None, now, counted(_EXPIRED))]
    for week in range(WEEKS):
        first_day, last_day = week * 7, week * 7 + 6
        buckets.append(
            TimelineBucket(
                label=f"{first_day}-{last_day}",
                first_day=first_day,
                last_day=last_day,
                ends_at=now + timedelta(days=last_day + 1),
                counts=counted(week),
            )
        )
    return tuple(buckets)


def render_chart(timeline: ExpiryTimeline) -> str:
    """Draw the timeline as a stacked bar chart; return the `<svg>` element.

    The drawing depends only on the counts, which change only when scans
    do, so recent drawings are kept: pygal takes about 11 ms per chart,
    a fifth of a dashboard request for 10,000 endpoints.
    """
    counts = tuple(
        tuple(bucket.counts.get(status, 0) for status in STATUS_ORDER)
        for bucket in timeline.buckets
    )
    labels = tuple(chart_label(bucket) for bucket in timeline.buckets)
    return _drawn_chart(labels, counts)


def chart_label(bucket: TimelineBucket) -> str:
    """Return a bar's short label: the first day left of its week, "<0" if expired.

    Ranges such as "84-90", and the word "Expired", are too wide to label all
    14 bars of a phone-sized chart, so the axis title says that each number
    starts a week. The table below the chart names the buckets in full.
    """
    if bucket.first_day is None:
        return EXPIRED_LABEL
    return str(bucket.first_day)


@functools.lru_cache(maxsize=CHART_CACHE_SIZE)
def _drawn_chart(labels: tuple[str, ...], counts: tuple[tuple[int, ...], ...]) -> str:
    """Draw one bar per label, stacked by status in `STATUS_ORDER`.

    pygal's JavaScript (tooltips) is left out, and so is the inline
    `<script>` with its configuration, so the page runs no script and loads
    nothing from elsewhere. The SVG scales to the width of its container.
    Every bar is labelled, and the y axis has whole-number ticks only. The
    labels are made here from numbers and status names, never from stored
    text.
    """
    ticks = integer_ticks(max(sum(row) for row in counts))
    chart = pygal.StackedBar(
        js=[],
        disable_xml_declaration=True,
        explicit_size=False,
        width=CHART_WIDTH,
        height=CHART_HEIGHT,
        margin=8,
        margin_bottom=LEGEND_MARGIN,
        legend_at_bottom=True,
        legend_at_bottom_columns=LEGEND_COLUMNS,
        x_title=X_TITLE,
        y_title="Certificates",
        print_values=False,
        truncate_label=-1,
        truncate_legend=-1,
        y_labels=ticks,
        range=(0, ticks[-1]),
        style=_style(),
    )
    chart.add_xml_filter(_without_scripts)
    chart.add_xml_filter(_named_for_sighted_readers_only)
    chart.x_labels = list(labels)
    for column, status in enumerate(STATUS_ORDER):
        chart.add(STATUS_NAMES[status], [row[column] for row in counts])
    svg = chart.render(is_unicode=True)
    assert isinstance(svg, str)
    return svg


def integer_ticks(highest: int) -> list[int]:
    """Return whole-number y ticks from 0 to at least `highest`.

    The step is 1, 2 or 5 times a power of ten, the smallest that needs at
    most `MAX_Y_TICKS` ticks, so counts never get fractional ticks.
    """
    highest = max(highest, 1)
    magnitude = 1
    while True:
        for step in (magnitude, 2 * magnitude, 5 * magnitude):
            intervals = -(-highest // step)  # ceiling division
            if intervals < MAX_Y_TICKS:
                return list(range(0, intervals * step + 1, step))
        magnitude *= 10


def _without_scripts(root: Any) -> Any:
    """Remove every `<script>` element from the chart's element tree.

    pygal 3.1 writes its configuration for the JavaScript into a script
    element even when `js` is empty.
    """
    for parent in list(root.iter()):
        for child in list(parent):
            if isinstance(child.tag, str) and child.tag.rpartition("}")[2] == "script":
                parent.remove(child)
    return root


def _named_for_sighted_readers_only(root: Any) -> Any:
    """Give the SVG a meaningful `<title>` and hide it from assistive technology.

    pygal 3.1 titles an untitled chart "Pygal". The page's wrapper element
    already names the picture and points to the table of the same numbers,
    so screen readers skip the SVG instead of reading a second name.
    """
    root.set("aria-hidden", "true")
    root.set("focusable", "false")
    for element in root:
        if isinstance(element.tag, str) and element.tag.rpartition("}")[2] == "title":
            element.text = CHART_TITLE
    return root


def _style() -> Style:
    return Style(
        background="#ffffff",
        plot_background="#ffffff",
        foreground="#111111",
        foreground_strong="#111111",
        foreground_subtle="#555555",
        font_family="system-ui, sans-serif",
        label_font_size=16,
        major_label_font_size=16,
        legend_font_size=16,
        title_font_size=16,
        colors=tuple(STATUS_COLOURS[status] for status in STATUS_ORDER),
        opacity="1",
        opacity_hover="0.85",
    )
