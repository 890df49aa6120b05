"""The Jinja2 templates of the HTML pages, and the start page at `/`."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from certwatch import __version__
from certwatch.web.auth import OptionalLogin

TEMPLATES = Jinja2Templates(directory=Path(__file__).with_name("templates"))

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
    response = TEMPLATES.TemplateResponse(
        request, "index.html", {"version": __version__, "login": None}
    )
    response.headers["Cache-Control"] = "no-store"
    return response
