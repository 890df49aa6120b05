"""The Jinja2 templates of the HTML pages, and the start page at `/`."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from certwatch import __version__
from certwatch.store.accounts import count_users
from certwatch.web.auth import OptionalLogin
from certwatch.web.dependencies import web_context
from certwatch.web.expiry_words import page_expired_words, plural
from certwatch.web.navigation import may_add_endpoints, signup_open

TEMPLATES = Jinja2Templates(directory=Path(__file__).with_name("templates"))
TEMPLATES.env.globals["expired_words"] = page_expired_words
TEMPLATES.env.filters["plural"] = plural
TEMPLATES.env.globals["signup_open"] = signup_open
TEMPLATES.env.globals["may_add_endpoints"] = may_add_endpoints

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse, response_model=None)
def index(request: Request, login: OptionalLogin) -> HTMLResponse | RedirectResponse:
    """Send a logged-in user to the dashboard; show others the start page.

    The start page links to login, sign-up and the endpoints for programs.
    The dashboard has one address, `/dashboard`, so that its filter links
    and bookmarks are the same wherever the user came from.
    """
    if login is not None:
        return RedirectResponse("/dashboard", status_code=303)
    context = web_context(request)
    with context.sessions() as session:
        first = count_users(session) == 0
    values = {
        "version": __version__,
        "login": None,
        "first": first,
        "open_signup": context.settings.signup == "open",
    }
    response = TEMPLATES.TemplateResponse(request, "index.html", values)
    response.headers["Cache-Control"] = "no-store"
    return response
