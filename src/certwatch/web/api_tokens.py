"""The API token pages of a team: make, list and revoke; owners only.

A new token is shown once, in the response to the form that made it. The
store keeps only its SHA-256, and its first characters for the list.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from certwatch.store.accounts import LoginSession, team_name
from certwatch.store.api_tokens import (
    TOKEN_ROLES,
    ApiTokenError,
    create_api_token,
    list_api_tokens,
    revoke_api_token,
)
from certwatch.web.accounts import render
from certwatch.web.auth import CurrentUser, FormBody, check_csrf, require_role
from certwatch.web.dependencies import Context, WebContext
from certwatch.web.ids import require_row_ids

router = APIRouter(include_in_schema=False)


@router.get("/teams/{team_id}/tokens", response_class=HTMLResponse)
def tokens_page(
    request: Request, context: Context, login: CurrentUser, team_id: int
) -> HTMLResponse:
    """Show the team's API tokens and the form that makes one."""
    return _tokens_page(request, context, login, team_id, {})


@router.post("/teams/{team_id}/tokens", response_class=HTMLResponse)
def make_token(
    request: Request,
    context: Context,
    login: CurrentUser,
    form: FormBody,
    team_id: int,
) -> HTMLResponse:
    """Make a token and show it in full, this once."""
    check_csrf(request, form, login)
    require_row_ids(team_id)
    name = form.get("name")
    try:
        with context.sessions() as session, session.begin():
            require_role(session, login, team_id, "owner")
            _, secret = create_api_token(
                session,
                team_id,
                name=name,
                role=form.get("role"),
                created_by=login.user_id,
                now=context.now_fn(),
            )
    except ApiTokenError as exc:
        values = {"error": str(exc)}
        return _tokens_page(request, context, login, team_id, values, status_code=400)
    values = {"new_token": secret, "new_token_name": name.strip()}
    return _tokens_page(request, context, login, team_id, values)


@router.post("/teams/{team_id}/tokens/{token_id}/revoke", response_model=None)
def revoke_token(
    request: Request,
    context: Context,
    login: CurrentUser,
    form: FormBody,
    team_id: int,
    token_id: int,
) -> RedirectResponse:
    """Revoke a token of the team; it stops working at once."""
    check_csrf(request, form, login)
    require_row_ids(team_id, token_id)
    with context.sessions() as session, session.begin():
        require_role(session, login, team_id, "owner")
        if not revoke_api_token(session, team_id, token_id, now=context.now_fn()):
            raise HTTPException(404, "Not Found")
    return RedirectResponse(f"/teams/{team_id}/tokens", status_code=303)


def _tokens_page(
    request: Request,
    context: WebContext,
    login: LoginSession,
    team_id: int,
    extra: dict[str, Any],
    *,
    status_code: int = 200,
) -> HTMLResponse:
    require_row_ids(team_id)
    with context.sessions() as session:
        require_role(session, login, team_id, "owner")
        name = team_name(session, team_id)
        tokens = list_api_tokens(session, team_id)
    if name is None:
        raise HTTPException(404, "Not Found")
    values = {
        "team_id": team_id,
        "team": name,
        "tokens": tokens,
        "roles": TOKEN_ROLES,
        "error": None,
        "new_token": None,
        **extra,
    }
    return render(
        request,
        context,
        "api_tokens.html",
        values,
        login=login,
        status_code=status_code,
    )
