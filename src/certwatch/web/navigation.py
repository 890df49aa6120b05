"""The links of the site navigation in `base.html` for the request's user.

The templates call these functions, registered as Jinja globals in
`pages.py`, because every page shows the navigation while only some
handlers read the user's teams or the sign-up state. Error pages show the
navigation too, also when the database fails. A failed query therefore
returns a fixed result instead of raising: no Sign up link, and the Add
endpoints link.
"""

from __future__ import annotations

from fastapi import Request
from sqlalchemy.exc import SQLAlchemyError

from certwatch.store.accounts import LoginSession, count_users, user_teams
from certwatch.web.dependencies import web_context

WRITER_ROLES = ("owner", "member")
"""The team roles that may add and change endpoints."""


def signup_open(request: Request) -> bool:
    """Tell whether a visitor without an invitation may sign up.

    Sign-up is open on a site in open sign-up mode, and on any site until
    its first account, which becomes the administrator, exists.
    """
    context = web_context(request)
    if context.settings.signup == "open":
        return True
    try:
        with context.sessions() as session:
            return count_users(session) == 0
    except SQLAlchemyError:
        return False


def may_add_endpoints(request: Request, login: LoginSession | None) -> bool:
    """Tell whether the user is an owner or member of at least one team.

    A viewer in every team would get 403 from the add page, so the
    navigation leaves its link out.
    """
    if login is None:
        return False
    try:
        with web_context(request).sessions() as session:
            memberships = user_teams(session, login.user_id)
    except SQLAlchemyError:
        return True
    return any(membership.role in WRITER_ROLES for membership in memberships)
