"""Concurrent owner changes never leave a team without an owner.

Two owners who demote each other at the same moment must not both
succeed. Each test runs on SQLite and on PostgreSQL, with real concurrent
transactions: threads with their own sessions, and concurrent HTTP
requests to the app served by uvicorn.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from tests.monitor.helpers import Clock
from tests.web.conftest import ServeApp
from tests.web.page_helpers import Visitors, make_team, visitors  # noqa: F401

from certwatch.store.accounts import add_membership, create_user
from certwatch.store.models import MembershipRow
from certwatch.store.users import owner_count

# How long the main thread lets the second transaction run before the
# first one writes. Without the lock the second one finishes in this time.
HEAD_START_SECONDS = 1.0
HTTP_ROUNDS = 5


def owners(sessions: sessionmaker[Session], team_id: int) -> int:
    with sessions() as session:
        found = session.scalar(
            select(func.count())
            .select_from(MembershipRow)
            .where(MembershipRow.team_id == team_id, MembershipRow.role == "owner")
        )
    return found or 0


def demote_unless_last(
    sessions: sessionmaker[Session], team_id: int, user_id: int, clock: Clock
) -> bool:
    """Demote the user to viewer unless the team would have no owner left."""
    with sessions.begin() as session:
        if owner_count(session, team_id) == 1:
            return False
        add_membership(session, user_id, team_id, "viewer", now=clock())
        return True


def test_owner_count_waits_for_concurrent_demotion(
    sessions: sessionmaker[Session], clock: Clock
) -> None:
    team_id = make_team(sessions, "default", clock)
    with sessions.begin() as session:
        alice = create_user(session, "alice@example.test", "unused", now=clock())
        bob = create_user(session, "bob@example.test", "unused", now=clock())
        for user in (alice, bob):
            add_membership(session, user.id, team_id, "owner", now=clock())
    results: list[bool] = []

    with sessions.begin() as first:
        assert owner_count(first, team_id) == 2
        # Bob demotes Alice in his own transaction while Alice's is open.
        second = threading.Thread(
            target=lambda: results.append(
                demote_unless_last(sessions, team_id, alice.id, clock)
            )
        )
        second.start()
        second.join(HEAD_START_SECONDS)
        add_membership(first, bob.id, team_id, "viewer", now=clock())
    second.join()

    assert results == [False]
    assert owners(sessions, team_id) == 1


def test_change_member_concurrent_demotions(
    serve_app: ServeApp,
    sessions: sessionmaker[Session],
    clock: Clock,
    visitors: Visitors,  # noqa: F811
) -> None:
    base_url = serve_app()
    team_id = make_team(sessions, "default", clock)
    alice = visitors.make(base_url, "alice@example.test", {team_id: "owner"})
    bob = visitors.make(base_url, "bob@example.test", {team_id: "owner"})
    form = {"action": "role", "role": "viewer"}

    for _ in range(HTTP_ROUNDS):
        with sessions.begin() as session:
            for visitor in (alice, bob):
                add_membership(session, visitor.user_id, team_id, "owner", now=clock())
        with ThreadPoolExecutor(max_workers=2) as pool:
            by_alice = pool.submit(
                alice.post, f"/teams/{team_id}/members/{bob.user_id}", form
            )
            by_bob = pool.submit(
                bob.post, f"/teams/{team_id}/members/{alice.user_id}", form
            )
            responses: list[httpx.Response] = [by_alice.result(), by_bob.result()]

        # The later request finds its sender demoted already, so it gets 403;
        # 400 (the last owner keeps the role) would be as safe.
        statuses = sorted(response.status_code for response in responses)
        assert statuses[0] == 200
        assert statuses[1] in (400, 403)
        assert owners(sessions, team_id) == 1
