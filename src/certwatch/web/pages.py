"""HTML pages, rendered from the Jinja2 templates in `templates/`."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from certwatch import __version__

TEMPLATES = Jinja2Templates(directory=Path(__file__).with_name("templates"))

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def index(request: Request) -> HTMLResponse:
    """The start page: the version and links to the other endpoints."""
    return TEMPLATES.TemplateResponse(request, "index.html", {"version": __version__})
