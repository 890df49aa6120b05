"""`certwatch team calendar`: make a team's secret calendar feed URL.

The command joins the `team` group of `certwatch.commands.alerting`. The
URL is printed once, when its token is made, because the store keeps only
the token's hash.
"""

from __future__ import annotations

from datetime import UTC, datetime

import click

from certwatch.commands.store import open_store
from certwatch.store.alerts import find_team
from certwatch.web.calendar_tokens import (
    calendar_url,
    has_calendar,
    issue_calendar_token,
)
from certwatch.web.settings import (
    PUBLIC_URL_VARIABLE,
    WebSettingsError,
    load_web_settings,
)


@click.command("calendar")
@click.argument("name")
@click.option(
    "--rotate",
    is_flag=True,
    help="Replace the team's calendar URL with a new one; the old URL stops working.",
)
def team_calendar_command(name: str, rotate: bool) -> None:
    """Make the team's secret calendar URL and print it.

    The URL serves an iCalendar feed of the team's certificate expiries. The
    feed has one event per certificate the team serves, at its
    not_after, with a reminder 7 days before. Anyone with the URL can read
    it, so share it like a password. It is shown only when it is made: run
    again with --rotate to get a new one. The URL starts with
    CERTWATCH_WEB_PUBLIC_URL, or the listening address when that is unset.
    """
    try:
        settings = load_web_settings()
    except WebSettingsError as exc:
        raise click.ClickException(str(exc)) from exc

    with open_store() as sessions, sessions.begin() as session:
        team_id = find_team(session, name)
        if team_id is None:
            raise click.ClickException(
                f"Team {name!r} not found: run 'certwatch team list' to see the "
                f"teams, or add it with 'certwatch team add {name}'."
            )
        if has_calendar(session, team_id) and not rotate:
            raise click.ClickException(
                f"Team {name!r} already has a calendar URL, which was shown when "
                "it was made: give --rotate to make a new one (the old URL then "
                "stops working)."
            )
        token = issue_calendar_token(session, team_id, now=datetime.now(UTC))

    verb = "New calendar URL" if rotate else "Calendar URL"
    click.echo(
        f"{verb} of team {name} (anyone with it can read the team's "
        "certificate expiries; it is not shown again):"
    )
    click.echo(calendar_url(settings.base_url(), token))
    if settings.public_url is None:
        click.echo(
            f"This URL uses the listening address; set {PUBLIC_URL_VARIABLE} "
            "(such as https://certwatch.example.test) when users reach the "
            "service at another address.",
            err=True,
        )
