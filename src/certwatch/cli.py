"""The `certwatch` command line.

Each subcommand lives in a module under `certwatch.commands` and is imported
only when it runs, or when its own help is shown. Importing all of them
takes over a second (the web server, FastAPI, password hashing and the alert
channels), which `certwatch --version` or `certwatch list` must not pay.
`certwatch --help` lists every command from the `LAZY_COMMANDS` table below,
without importing any of them.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import click

from certwatch import __version__

logger = logging.getLogger(__name__)

# A usage error must not look like CRITICAL (2) to a Nagios-style caller, so
# it exits with UNKNOWN. This is `Status.UNKNOWN.exit_code`, written out so
# that the command line does not import the result model before it needs it.
USAGE_ERROR_EXIT = 3


@dataclass(frozen=True)
class LazyCommand:
    """A subcommand that is imported on first use.

    Attributes:
        target: the location of the click command, as `module:attribute`.
        short_help: the first sentence of the command's help, which
            `certwatch --help` shows (shortened to fit the terminal) without
            importing the module.
        subcommands: the commands, each as `module:attribute`, that are
            defined in other modules and join this group when it loads.
    """

    target: str
    short_help: str
    subcommands: tuple[str, ...] = ()


# Every subcommand of `certwatch`. Each short help must equal the first
# sentence of the command's docstring, and tests/test_cli.py checks the
# table against the loaded commands.
LAZY_COMMANDS: Mapping[str, LazyCommand] = {
    "add": LazyCommand(
        "certwatch.commands.inventory:add_command",
        "Add endpoints and certificate files to the inventory and check them now.",
    ),
    "alerts": LazyCommand(
        "certwatch.commands.alerting:alerts_group",
        "List the open alerts, or with --failed the failed deliveries.",
    ),
    "certificates": LazyCommand(
        "certwatch.commands.certificates:certificates_command",
        "List each certificate deployed now with every place it is deployed.",
    ),
    "check": LazyCommand(
        "certwatch.commands.check:check_command",
        "Check endpoints and certificate files now and print a report.",
    ),
    "contact": LazyCommand(
        "certwatch.commands.alerting:contact_group",
        "Add and remove the contacts that receive a team's alerts.",
    ),
    "export": LazyCommand(
        "certwatch.commands.transfer:export_command",
        "Print the whole inventory, which 'certwatch import' reads back.",
    ),
    "history": LazyCommand(
        "certwatch.commands.history:history_command",
        "Show the certificates an endpoint served over time, per address.",
    ),
    "import": LazyCommand(
        "certwatch.commands.transfer:import_command",
        "Add or update the endpoints and files listed in a CSV file.",
    ),
    "list": LazyCommand(
        "certwatch.commands.listing:list_command",
        "List the inventory with the latest status of each endpoint and file.",
    ),
    "notify": LazyCommand(
        "certwatch.commands.alerting:notify_group",
        "Send messages to contacts on request.",
    ),
    "prune": LazyCommand(
        "certwatch.commands.prune:prune_command",
        "Remove old observations that repeat their neighbours' outcome.",
    ),
    "remove": LazyCommand(
        "certwatch.commands.inventory:remove_command",
        "Remove endpoints and certificate files from the inventory.",
    ),
    "run": LazyCommand(
        "certwatch.commands.monitor:run_command",
        "Run one monitoring cycle: scan what is due and record it, then exit.",
    ),
    "scan": LazyCommand(
        "certwatch.commands.monitor:scan_command",
        "Scan inventory sources now, store the results and print them.",
    ),
    "serve": LazyCommand(
        "certwatch.commands.monitor:serve_command",
        "Keep scanning the inventory, each source when it is due, until stopped.",
    ),
    "team": LazyCommand(
        "certwatch.commands.alerting:team_group",
        "Add, list and show teams, which own endpoints and hear their alerts.",
        subcommands=("certwatch.commands.web:team_calendar_command",),
    ),
    "user": LazyCommand(
        "certwatch.commands.users:user_group",
        "List the web site's accounts, set passwords and change team members.",
    ),
    "where": LazyCommand(
        "certwatch.commands.certificates:where_command",
        "Show every endpoint address and file where a certificate is deployed now.",
    ),
}


def load_command(target: str) -> click.Command:
    """Import the click command named `module:attribute`.

    Raises:
        TypeError: the attribute is not a click command.
    """
    module_name, _, attribute = target.partition(":")
    command = getattr(importlib.import_module(module_name), attribute)
    if not isinstance(command, click.Command):
        raise TypeError(
            f"{target!r} is a {type(command).__name__}, not a click command: "
            "fix its entry in certwatch.cli.LAZY_COMMANDS."
        )
    return command


class LazyGroup(click.Group):
    """A click group that imports each subcommand when it is first used."""

    def __init__(
        self,
        *args: Any,
        lazy_commands: Mapping[str, LazyCommand],
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = lazy_commands

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        lazy = self.lazy_commands.get(cmd_name)
        if lazy is not None and cmd_name not in self.commands:
            command = load_command(lazy.target)
            if isinstance(command, click.Group):
                for target in lazy.subcommands:
                    command.add_command(load_command(target))
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(
        self, ctx: click.Context, formatter: click.HelpFormatter
    ) -> None:
        """Write the command list, taking the help of unloaded commands from the table.

        A stand-in command carries the table's sentence, so click shortens it
        to the terminal width exactly as it shortens the loaded command's help.
        """
        rows: list[tuple[str, click.Command]] = []
        for name in self.list_commands(ctx):
            command = self.commands.get(name)
            if command is None:
                command = click.Command(name, help=self.lazy_commands[name].short_help)
            if not command.hidden:
                rows.append((name, command))
        if not rows:
            return

        limit = formatter.width - 6 - max(len(name) for name, _ in rows)
        with formatter.section("Commands"):
            formatter.write_dl(
                [(name, command.get_short_help_str(limit)) for name, command in rows]
            )


@click.group(
    cls=LazyGroup,
    lazy_commands=LAZY_COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, prog_name="certwatch")
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="Log more on stderr: -v for INFO, -vv for DEBUG.",
)
def cli(verbose: int) -> None:
    """Watch TLS certificates so that none expires unnoticed."""
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def main() -> None:
    """Run the command line; usage errors exit with UNKNOWN (3), not 2."""
    try:
        code = cli.main(standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        sys.exit(USAGE_ERROR_EXIT)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
