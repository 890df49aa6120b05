"""One Nagios/Icinga plugin status line with performance data.

The format follows the Nagios plugin guidelines: `SERVICE STATUS - text |
'label'=value;warn;crit;min;max ...`. The value is the leaf's days left; warn
and crit are that certificate's own thresholds in days, because the windows
follow each certificate's lifetime. They are written as ranges `N:`, which in
the guidelines' range syntax alert when the value falls below N.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from certwatch.report.summary import sort_for_display
from certwatch.result import Result, Status, worst_status

# Maps a result to its (warning, critical) thresholds in whole days.
ThresholdDays = Callable[[Result], tuple[int, int] | None]

_MAX_PROBLEMS_IN_TEXT = 5

_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def render_status_line(results: Sequence[Result], thresholds: ThresholdDays) -> str:
    """Build the plugin output line for a whole run."""
    status = worst_status([r.status for r in results])
    counts = ", ".join(
        f"{sum(1 for r in results if r.status is s)} {s.value}" for s in Status
    )
    problems = [r for r in sort_for_display(results) if r.status is not Status.OK]
    text = f"{len(results)} checked: {counts}"
    if problems:
        shown = "; ".join(_problem(r) for r in problems[:_MAX_PROBLEMS_IN_TEXT])
        more = len(problems) - _MAX_PROBLEMS_IN_TEXT
        text += f"; {shown}" + (f"; and {more} more" if more > 0 else "")
    elif results:
        soonest = min(
            (r.days_left for r in results if r.days_left is not None), default=None
        )
        if soonest is not None:
            text += f"; first expiry in {soonest} days"

    perfdata = " ".join(
        _perfdata(r, thresholds) for r in results if r.days_left is not None
    )
    line = f"CERTWATCH {status.value.upper()} - {_plain(text)}"
    return f"{line} | {perfdata}" if perfdata else line


def _plain(text: str) -> str:
    """Remove what would break the plugin line: `|` starts perfdata, and
    control characters (line ends among them) end or garble the line."""
    return _CONTROL_CHARACTERS.sub(" ", text.replace("|", "/"))


def _problem(result: Result) -> str:
    place = f"{result.target} ({result.place})"
    if result.error is not None and result.report is None:
        return f"{place} {result.error.reason}"
    codes = ",".join(f.code for f in result.findings if f.severity > 0)
    return f"{place} {codes or result.status.value}"


def _perfdata(result: Result, thresholds: ThresholdDays) -> str:
    label = _plain(f"{result.target}@{result.place}")
    label = label.replace("'", "_").replace("=", "_")
    limits = thresholds(result)
    warn, crit = ("", "") if limits is None else (f"{limits[0]}:", f"{limits[1]}:")
    return f"'{label}'={result.days_left};{warn};{crit};;"
