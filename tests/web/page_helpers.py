"""Users, teams and an inventory for the tests of the logged-in HTML pages.

Users are made in the store with a login session, and each gets an httpx
client that carries the session cookie, so the tests do not depend on the
sign-up flow. `Visitor.csrf` is the token that the user's forms carry.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from tests.monitor.helpers import Clock, Pki
from tests.servers import LocalServer
from tests.web.helpers import add_endpoint, add_file_source, scan_due

from certwatch.store.accounts import (
    add_membership,
    create_session,
    create_user,
    find_session,
)
from certwatch.store.inventory import ensure_team
from certwatch.store.models import TeamRow
from certwatch.web.auth import SESSION_COOKIE, session_csrf_token

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Visitor:
    """A logged-in user with an HTTP client that keeps the session cookie."""

    user_id: int
    email: str
    client: httpx.Client
    csrf: str

    def post(self, path: str, data: dict[str, str]) -> httpx.Response:
        """Send a form with the user's CSRF token."""
        return self.client.post(path, data={"csrf_token": self.csrf, **data})


class Visitors:
    """Makes logged-in users on one application; closes their clients at the end."""

    def __init__(self, sessions: sessionmaker[Session], clock: Clock) -> None:
        self.sessions = sessions
        self.clock = clock
        self.clients: list[httpx.Client] = []

    def make(self, base_url: str, email: str, roles: dict[int, str]) -> Visitor:
        """Make a user with a role in each team of `roles`, logged in."""
        now = self.clock()
        with self.sessions.begin() as session:
            user = create_user(session, email, "not-an-argon2-hash", now=now)
            for team_id, role in roles.items():
                add_membership(session, user.id, team_id, role, now=now)
            token = create_session(
                session, user.id, now=now, lifetime=timedelta(days=1)
            )
            login = find_session(session, token, now=now)
        assert login is not None
        client = httpx.Client(base_url=base_url, cookies={SESSION_COOKIE: token})
        self.clients.append(client)
        return Visitor(user.id, user.email, client, session_csrf_token(login))

    def close(self) -> None:
        for client in self.clients:
            client.close()


@pytest.fixture
def visitors(sessions: sessionmaker[Session], clock: Clock) -> Iterator[Visitors]:
    """A `Visitors` for the test's store and clock."""
    made = Visitors(sessions, clock)
    yield made
    made.close()


def make_team(sessions: sessionmaker[Session], name: str, clock: Clock) -> int:
    """Return the id of the team `name`, made if needed."""
    with sessions.begin() as session:
        return ensure_team(session, name, now=clock())


def team_id_of(sessions: sessionmaker[Session], name: str) -> int:
    with sessions() as session:
        found = session.scalar(select(TeamRow.id).where(TeamRow.name == name))
    assert found is not None
    return found


@dataclass(frozen=True)
class Inventory:
    """Two teams and what their endpoints serve after one scan.

    Team `web` serves `pki.leaf` at www and api (one port), and `pki.other`
    in a file. Team `ops` serves `pki.renewed`, which supersedes
    `pki.leaf`; the leaf is not stale at web's addresses, because only the
    addresses of one team are compared.
    """

    web: int
    ops: int
    www: int
    api: int
    ops_endpoint: int
    file_source: int
    pem: Path


def build_inventory(
    sessions: sessionmaker[Session],
    clock: Clock,
    pki: Pki,
    local_server: Callable[..., LocalServer],
    folder: Path,
    *,
    web_name: str = "web",
) -> Inventory:
    """Store and scan the inventory that `Inventory` describes."""
    leaf_server = local_server(chain=pki.chain(pki.leaf))
    renewed_server = local_server(chain=pki.chain(pki.renewed))
    pem = folder / "site.pem"
    pem.write_bytes(pki.other.pem)
    web = make_team(sessions, web_name, clock)
    ops = make_team(sessions, "ops", clock)
    www = add_endpoint(
        sessions, "www.example.test", leaf_server.port, clock=clock, team=web_name
    )
    api = add_endpoint(
        sessions, "api.example.test", leaf_server.port, clock=clock, team=web_name
    )
    file_source = add_file_source(sessions, pem, clock=clock, team=web_name)
    ops_endpoint = add_endpoint(
        sessions, "ops.example.test", renewed_server.port, clock=clock, team="ops"
    )
    scan_due(sessions, clock, pki)
    return Inventory(web, ops, www, api, ops_endpoint, file_source, pem)


def csrf_of(page: httpx.Response) -> str:
    """Return the CSRF token in the first form of a page."""
    found = _CSRF.search(page.text)
    assert found is not None, page.text
    return found.group(1)
