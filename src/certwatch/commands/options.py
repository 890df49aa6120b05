"""Options that several inventory and monitoring commands share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from certwatch.targets import (
    AUTO_PROTOCOL,
    DEFAULT_PROTOCOL,
    SCHEME_PORTS,
    protocol_names,
)

CommandT = TypeVar("CommandT", bound=Callable[..., Any])


def threshold_options(command: CommandT) -> CommandT:
    """Add `--warning` and `--critical`, read as by `certwatch check`."""
    command = click.option(
        "--critical",
        metavar="DAYS|PERCENT",
        help="Critical when fewer days (7) or less of the lifetime (10%) remain. "
        "Default: a tenth of the lifetime or 7 days, whichever is shorter.",
    )(command)
    return click.option(
        "--warning",
        metavar="DAYS|PERCENT",
        help="Warn when fewer days (21) or less of the lifetime (25%) remain. "
        "Default: a third of the lifetime or 30 days, whichever is shorter.",
    )(command)


def protocol_option(command: CommandT) -> CommandT:
    """Add `--protocol NAME|auto`, the protocol of targets without a scheme."""
    return click.option(
        "--protocol",
        type=click.Choice(sorted([AUTO_PROTOCOL, *SCHEME_PORTS]), case_sensitive=False),
        default=DEFAULT_PROTOCOL,
        show_default=True,
        metavar="NAME",
        help="Protocol of the targets given without a scheme, which also sets "
        f"their default port: {protocol_names()}. 'auto' picks it from the port.",
    )(command)
