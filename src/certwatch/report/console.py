"""The console that tables are printed on."""

from __future__ import annotations

import sys

from rich.console import Console

# Rich assumes 80 columns when stdout is not a terminal, which folds long
# names and paths into unreadable cells in files and pagers.
PIPED_TABLE_WIDTH = 200


class _ReportConsole(Console):
    """A console that lets a closed pipe reach the command's own handler.

    Rich 13 to 15 turn a broken pipe into `SystemExit(1)`, which would replace
    the exit code that carries the verdict.
    """

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError


def stdout_console() -> Console:
    """Return a console for the table; piped output gets a wide fixed width."""
    if sys.stdout.isatty():
        return _ReportConsole()
    return _ReportConsole(width=PIPED_TABLE_WIDTH)
