"""The human report: one Rich table row per address or file certificate."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from certwatch.report.summary import sort_for_display
from certwatch.result import Result, Status
from certwatch.sources.files import FileProblem
from certwatch.x509.model import Severity

STATUS_STYLES = {
    Status.OK: "green",
    Status.WARNING: "yellow",
    Status.CRITICAL: "bold red",
    Status.UNKNOWN: "magenta",
}
# How many names of skipped files the note under the table lists.
_SKIPPED_NAMES_SHOWN = 5

SEVERITY_STYLES = {
    Severity.INFO: "dim",
    Severity.WARNING: "yellow",
    Severity.CRITICAL: "red",
}


def print_table(
    results: Sequence[Result],
    console: Console,
    *,
    skipped: Sequence[FileProblem] = (),
) -> None:
    """Print the table sorted by days left, then the messages behind each row.

    `skipped` files (keys and notes found in folders) are counted at the end.
    """
    ordered = sort_for_display(results)
    table = Table(show_lines=False, header_style="bold")
    table.add_column("Status", no_wrap=True)
    table.add_column("Days", justify="right", no_wrap=True)
    table.add_column("Not after (UTC)", no_wrap=True)
    table.add_column("Target", overflow="fold")
    table.add_column("Address", overflow="fold")
    table.add_column("Subject", overflow="fold")
    table.add_column("Issuer", overflow="fold")
    table.add_column("Findings", overflow="fold")

    for result in ordered:
        table.add_row(*_row(result), style=None)
    console.print(table)

    details = [r for r in ordered if r.status is not Status.OK or r.findings]
    for result in details:
        _print_details(result, console)

    if skipped:
        names = ", ".join(
            Path(item.path).name for item in skipped[:_SKIPPED_NAMES_SHOWN]
        )
        more = len(skipped) - _SKIPPED_NAMES_SHOWN
        if more > 0:
            names += f" and {more} more"
        console.print(
            plain_text(
                f"Skipped {len(skipped)} files without certificates in folders: "
                f"{names}.",
                style="dim",
            )
        )


def _row(result: Result) -> list[Text]:
    leaf = result.leaf
    status = Text(result.status.value.upper(), style=STATUS_STYLES[result.status])
    days = "-" if result.days_left is None else str(result.days_left)
    not_after = "-"
    subject = "-"
    issuer = "-"
    if leaf is not None:
        if leaf.not_after is not None:
            not_after = leaf.not_after.strftime("%Y-%m-%d %H:%M")
        subject = leaf.common_name or short_name(leaf.subject)
        issuer = short_name(leaf.issuer)
    if result.error is not None and result.report is None:
        findings = Text(result.error.reason, style="magenta")
    else:
        findings = Text(", ".join(f.code for f in result.findings) or "-")
    # Names come from certificates and arguments, so they are printed as
    # plain Text: a string cell would be read as Rich markup.
    return [
        status,
        Text(days),
        Text(not_after),
        plain_text(result.target),
        plain_text(_where(result)),
        plain_text(subject),
        plain_text(issuer),
        findings,
    ]


def _print_details(result: Result, console: Console) -> None:
    heading = plain_text(f"{result.target} ({_where(result)})", style="bold")
    console.print(heading)
    if result.error is not None:
        console.print(
            plain_text(
                f"  {result.error.reason}: {result.error.message}", style="magenta"
            )
        )
    for finding in result.findings:
        line = Text(f"  {finding.severity.label} {finding.code}: ")
        line.stylize(SEVERITY_STYLES[finding.severity])
        line.append(plain_text(finding.message))
        console.print(line)


# C0 and C1 control characters and DEL, which a certificate or file name can
# carry to move the cursor, clear the screen or retitle the terminal, and the
# bidirectional controls, which can make a name read backwards.
_CONTROL_CHARACTERS = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)


def plain_text(text: str, style: str = "") -> Text:
    """Return `text` as literal Rich text with control characters escaped."""
    escaped = _CONTROL_CHARACTERS.sub(
        lambda match: match.group().encode("unicode_escape").decode("ascii"), text
    )
    return Text(escaped, style=style)


def _where(result: Result) -> str:
    """Return the address, or for files the file and position in it."""
    if result.path is None:
        return result.place
    where = result.path if result.path != result.target else ""
    if result.index is not None:
        where = f"{where}#{result.index}"
    return where or "-"


def short_name(name: str | None) -> str:
    """Return the CN of an RFC 4514 name, or the whole name without one."""
    if not name:
        return "-"
    for part in re.split(r"(?<!\\),", name):
        key, _, value = part.partition("=")
        if key.strip().upper() == "CN":
            return value
    return name
