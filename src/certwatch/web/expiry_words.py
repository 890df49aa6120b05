"""Page wording of the time left before, or since, a certificate's not_after.

Days left are whole days rounded down, as `certwatch check` reports them,
so a certificate one second past not_after has -1 days left. Worded that
way, a certificate that expired 25 hours ago would read "expired 2 days
ago". The pages therefore count the whole days elapsed since not_after
instead, and hours during the first day.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from jinja2 import pass_context
from jinja2.runtime import Context

from certwatch.web.dependencies import WebContext


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """Return "1 day", "2 days": the count with the noun in the right number."""
    word = singular if count == 1 else (plural_form or f"{singular}s")
    return f"{count} {word}"


def expired_words(not_after: datetime, now: datetime) -> str:
    """Word how long ago a certificate expired, in whole days or hours since not_after.

    A `not_after` later than `now` has not expired and gets "expires later".
    """
    elapsed = now - not_after
    if elapsed < timedelta(0):
        return "expires later"
    if elapsed < timedelta(hours=1):
        return "expired less than an hour ago"
    if elapsed < timedelta(days=1):
        return f"expired {plural(elapsed // timedelta(hours=1), 'hour')} ago"
    return f"expired {plural(elapsed // timedelta(days=1), 'day')} ago"


@pass_context
def page_expired_words(context: Context, not_after: datetime) -> str:
    """Word `expired_words` for a template, at the application's current time.

    The time comes from the request's `WebContext`, the clock every
    handler reads, so tests that move that clock see the same wording.
    """
    request = context["request"]
    web = request.app.state.certwatch
    assert isinstance(web, WebContext)
    return expired_words(not_after, web.now_fn())
