"""Register the inventory commands on the `certwatch` command group."""

from __future__ import annotations

import click

from certwatch.commands.alerting import ALERTING_COMMANDS, team_group
from certwatch.commands.certificates import certificates_command, where_command
from certwatch.commands.history import history_command
from certwatch.commands.inventory import add_command, remove_command
from certwatch.commands.listing import list_command
from certwatch.commands.transfer import export_command, import_command
from certwatch.commands.users import USER_COMMANDS
from certwatch.commands.web import team_calendar_command

INVENTORY_COMMANDS = (
    add_command,
    remove_command,
    list_command,
    import_command,
    export_command,
    certificates_command,
    where_command,
    history_command,
    *ALERTING_COMMANDS,
    *USER_COMMANDS,
)


def register_inventory_commands(group: click.Group) -> None:
    """Add `add`, `remove`, `list`, `import`, `export`, `certificates`,
    `where` and `history` to `group`, and the alerting commands, with
    `calendar` in the `team` group."""
    team_group.add_command(team_calendar_command)
    for command in INVENTORY_COMMANDS:
        group.add_command(command)
