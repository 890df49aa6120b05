"""The dashboard: team scoping, sorting, filters, paging, the chart and escaping.

Each test serves the application with uvicorn on SQLite and PostgreSQL.
Users and their login sessions are made in the store, and each user
browses with an httpx client that carries the session cookie. Scans are
recorded with the store's own write path (`record_observations`), so the
dashboard reads the columns that a monitor cycle would have written.
"""

from __future__ import annotations

import html
import itertools
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from html.parser import HTMLParser

import httpx
import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker
from tests.certs import NOW, Issued, make_intermediate, make_leaf, make_root
from tests.store.builders import failed_result, network_result
from tests.web.conftest import ServeApp

from certwatch.probe.model import ErrorReason
from certwatch.result import Result, Status
from certwatch.store.accounts import add_membership, create_session, create_user
from certwatch.store.inventory import (
    InventoryFilter,
    SourceSettings,
    ensure_team,
    upsert_endpoint,
)
from certwatch.store.models import EndpointTagRow
from certwatch.store.observations import CompletedScan, record_observations
from certwatch.targets import parse_target
from certwatch.web.auth import SESSION_COOKIE
from certwatch.web.dashboard import PAGE_SIZE, STATUS_WORDS
from certwatch.web.passwords import hash_password
from certwatch.web.timeline import (
    STATUS_ORDER,
    ExpiryTimeline,
    expiry_timeline,
    integer_ticks,
    make_buckets,
    render_chart,
)

PASSWORD_HASH = hash_password("correct horse battery")
ADMIN = "admin@example.test"
OTHER = "bob@example.test"


class Users:
    """Make accounts in the store and open a logged-in httpx client for each."""

    def __init__(self, sessions: sessionmaker[Session], base_url: str) -> None:
        self.sessions = sessions
        self.base_url = base_url
        self.clients: list[httpx.Client] = []
        self.ids: dict[str, int] = {}

    def login(
        self, email: str, *, team: str | None = None, role: str = "owner"
    ) -> httpx.Client:
        """Make the account, give it `role` in `team`, and return its browser.

        The first account is the owner of the team `default` already.
        """
        with self.sessions.begin() as session:
            user = create_user(session, email, PASSWORD_HASH, now=NOW)
            self.ids[email] = user.id
            if team is not None:
                team_id = ensure_team(session, team, now=NOW)
                add_membership(session, user.id, team_id, role, now=NOW)
            token = create_session(
                session, user.id, now=NOW, lifetime=timedelta(days=14)
            )
        client = httpx.Client(base_url=self.base_url, cookies={SESSION_COOKIE: token})
        self.clients.append(client)
        return client

    def close(self) -> None:
        for client in self.clients:
            client.close()


@pytest.fixture
def users(serve_app: ServeApp, sessions: sessionmaker[Session]) -> Iterator[Users]:
    """Accounts on a served application; their clients close after the test."""
    accounts = Users(sessions, serve_app())
    yield accounts
    accounts.close()


@pytest.fixture(scope="module")
def intermediate() -> Issued:
    return make_intermediate(make_root())


def store_endpoint(
    sessions: sessionmaker[Session],
    target: str,
    *,
    team: str = "default",
    tags: tuple[str, ...] = (),
) -> int:
    """Store an endpoint for `target` in `team`; return its id."""
    with sessions.begin() as session:
        stored = upsert_endpoint(
            session,
            parse_target(target),
            now=NOW,
            settings=SourceSettings(team=team, tags=tags),
        )
        return stored.record.id


def record_scan(
    sessions: sessionmaker[Session],
    endpoint_id: int,
    result: Result,
    at: datetime = NOW,
) -> None:
    """Record one scan of an endpoint with one result, as a monitor batch does."""
    with sessions.begin() as session:
        record_observations(
            session, [CompletedScan(at, (result,), endpoint_id=endpoint_id)]
        )


def scanned_endpoint(
    sessions: sessionmaker[Session],
    intermediate: Issued,
    target: str,
    not_after: datetime,
    status: Status,
    *,
    team: str = "default",
    tags: tuple[str, ...] = (),
) -> int:
    """Store an endpoint whose latest scan saw a leaf expiring at `not_after`."""
    endpoint_id = store_endpoint(sessions, target, team=team, tags=tags)
    endpoint = parse_target(target)
    leaf = make_leaf(intermediate, dns_names=[endpoint.host], not_after=not_after)
    result = network_result(
        endpoint, "127.0.0.1", [leaf.der, intermediate.der], status=status
    )
    record_scan(sessions, endpoint_id, result)
    return endpoint_id


class Tables(HTMLParser):
    """Collect the text of every table cell, by table, row and cell."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def tables(page: str) -> list[list[list[str]]]:
    """Return the cell texts of the page's tables, header rows included."""
    parser = Tables()
    parser.feed(page)
    return parser.tables


def endpoint_rows(page: str) -> list[list[str]]:
    """Return the data rows of the endpoint table (the one headed Target)."""
    for table in tables(page):
        if table and table[0] and table[0][0] == "Target":
            return table[1:]
    return []


def listed_targets(page: str) -> list[str]:
    return [row[0] for row in endpoint_rows(page)]


def timeline_rows(page: str) -> dict[str, dict[str, str]]:
    """Return the chart's text table: by bucket label, each column's cell."""
    for table in tables(page):
        if table and table[0] and table[0][0] == "Days left":
            header = table[0]
            return {row[0]: dict(zip(header, row, strict=True)) for row in table[1:]}
    return {}


def test_start_page_and_dashboard_redirects(users: Users) -> None:
    anonymous = httpx.Client(base_url=users.base_url)
    users.clients.append(anonymous)
    admin = users.login(ADMIN)

    start = anonymous.get("/")
    dashboard = anonymous.get("/dashboard")
    logged_in_start = admin.get("/")

    assert start.status_code == 200
    assert 'href="/login"' in start.text
    assert 'href="/signup"' not in start.text
    assert "invitation link" in start.text
    assert 'href="/healthz"' in start.text
    assert dashboard.status_code == 303
    assert dashboard.headers["location"] == "/login?next=%2Fdashboard"
    assert logged_in_start.status_code == 303
    assert logged_in_start.headers["location"] == "/dashboard"


def test_dashboard_shows_only_own_teams(
    users: Users, sessions: sessionmaker[Session], intermediate: Issued
) -> None:
    admin = users.login(ADMIN)
    bob = users.login(OTHER, team="payments")
    scanned_endpoint(
        sessions, intermediate, "www.example.test", NOW + timedelta(days=30), Status.OK
    )
    scanned_endpoint(
        sessions,
        intermediate,
        "pay.example.test",
        NOW + timedelta(days=3),
        Status.CRITICAL,
        team="payments",
    )
    store_endpoint(sessions, "secret.example.test", team="payments")
    with sessions() as session:
        payments_id = ensure_team(session, "payments", now=NOW)

    admin_page = admin.get("/dashboard")
    bob_page = bob.get("/dashboard")
    admin_peeks = admin.get(f"/dashboard?team={payments_id}")
    admin_unknown = admin.get("/dashboard?team=999999")

    assert admin_page.status_code == 200
    assert listed_targets(admin_page.text) == ["www.example.test"]
    assert "pay.example.test" not in admin_page.text
    assert bob_page.status_code == 200
    assert listed_targets(bob_page.text) == ["secret.example.test", "pay.example.test"]
    assert "www.example.test" not in bob_page.text
    assert admin_peeks.status_code == 400
    assert "pay.example.test" not in admin_peeks.text
    assert f"No team of yours has the id &#39;{payments_id}&#39;" in admin_peeks.text
    assert admin_unknown.status_code == 400
    assert "No team of yours has the id &#39;999999&#39;" in admin_unknown.text


def test_dashboard_sorts_undated_first_then_days_left(
    users: Users, sessions: sessionmaker[Session], intermediate: Issued
) -> None:
    admin = users.login(ADMIN)
    scanned_endpoint(
        sessions,
        intermediate,
        "later.example.test",
        NOW + timedelta(days=40),
        Status.OK,
    )
    scanned_endpoint(
        sessions,
        intermediate,
        "soon.example.test",
        NOW + timedelta(days=5, hours=1),
        Status.WARNING,
    )
    scanned_endpoint(
        sessions,
        intermediate,
        "gone.example.test",
        NOW - timedelta(days=2),
        Status.CRITICAL,
    )
    down = store_endpoint(sessions, "down.example.test")
    record_scan(
        sessions,
        down,
        failed_result(
            parse_target("down.example.test"),
            "127.0.0.1",
            ErrorReason.CONNECTION_REFUSED,
            "Connection refused",
        ),
    )
    store_endpoint(sessions, "new.example.test")

    rows = endpoint_rows(admin.get("/dashboard").text)

    assert [row[0] for row in rows] == [
        "down.example.test",
        "new.example.test",
        "gone.example.test",
        "soon.example.test",
        "later.example.test",
    ]
    assert [row[1] for row in rows] == [
        "Unknown",
        "Not scanned yet",
        "Critical",
        "Warning",
        "OK",
    ]
    assert [row[2] for row in rows] == ["—", "—", "expired 2 days ago", "5", "40"]


def test_dashboard_filters_by_team_tag_and_status(
    users: Users, sessions: sessionmaker[Session], intermediate: Issued
) -> None:
    admin = users.login(ADMIN)
    with sessions.begin() as session:
        ops_id = ensure_team(session, "ops", now=NOW)
        add_membership(session, users.ids[ADMIN], ops_id, "viewer", now=NOW)
    scanned_endpoint(
        sessions,
        intermediate,
        "web.example.test",
        NOW + timedelta(days=10),
        Status.WARNING,
        tags=("web", "prod"),
    )
    scanned_endpoint(
        sessions,
        intermediate,
        "api.example.test",
        NOW + timedelta(days=50),
        Status.OK,
        tags=("prod",),
    )
    scanned_endpoint(
        sessions,
        intermediate,
        "ops.example.test",
        NOW + timedelta(days=20),
        Status.WARNING,
        team="ops",
        tags=("web",),
    )

    everything = admin.get("/dashboard")
    web = admin.get("/dashboard?tag=web")
    warning = admin.get("/dashboard?status=warning")
    ops = admin.get(f"/dashboard?team={ops_id}")
    combined = admin.get("/dashboard?tag=prod&status=ok")
    bad_status = admin.get("/dashboard?status=broken")
    bad_page = admin.get("/dashboard?page=zero")

    assert listed_targets(everything.text) == [
        "web.example.test",
        "ops.example.test",
        "api.example.test",
    ]
    assert listed_targets(web.text) == ["web.example.test", "ops.example.test"]
    assert listed_targets(warning.text) == ["web.example.test", "ops.example.test"]
    assert listed_targets(ops.text) == ["ops.example.test"]
    assert listed_targets(combined.text) == ["api.example.test"]
    assert f'<option value="{ops_id}" selected>ops</option>' in ops.text
    assert bad_status.status_code == 400
    assert "Unknown status &#39;broken&#39;: choose one of" in bad_status.text
    assert bad_page.status_code == 400
    assert "Invalid page &#39;zero&#39;: give a page number from 1." in bad_page.text


def test_dashboard_pages_through_endpoints(
    users: Users, sessions: sessionmaker[Session]
) -> None:
    admin = users.login(ADMIN)
    count = PAGE_SIZE * 2 + 7
    with sessions.begin() as session:
        for number in range(count):
            upsert_endpoint(
                session, parse_target(f"host{number:03d}.example.test"), now=NOW
            )

    first = admin.get("/dashboard")
    third = admin.get("/dashboard?page=3")
    beyond = admin.get("/dashboard?page=4")

    first_targets = listed_targets(first.text)
    third_targets = listed_targets(third.text)
    assert len(first_targets) == PAGE_SIZE
    assert first_targets[0] == "host000.example.test"
    assert f"Endpoints 1 to {PAGE_SIZE} of {count}" in first.text
    assert 'href="/dashboard?page=2" rel="next"' in first.text
    assert 'rel="prev"' not in first.text
    assert third_targets == [
        f"host{number:03d}.example.test" for number in range(PAGE_SIZE * 2, count)
    ]
    assert 'href="/dashboard?page=2" rel="prev"' in third.text
    assert 'rel="next"' not in third.text
    assert beyond.status_code == 200
    assert listed_targets(beyond.text) == []
    assert "There is no page 4" in beyond.text
    assert 'href="/dashboard?page=3">Go to the last page' in beyond.text


def test_dashboard_page_links_keep_filters(
    users: Users, sessions: sessionmaker[Session]
) -> None:
    admin = users.login(ADMIN)
    with sessions.begin() as session:
        for number in range(PAGE_SIZE + 1):
            upsert_endpoint(
                session,
                parse_target(f"host{number:03d}.example.test"),
                now=NOW,
                settings=SourceSettings(tags=("a b&c",)),
            )

    page = admin.get("/dashboard", params={"tag": "a b&c", "status": "unknown"})

    assert len(listed_targets(page.text)) == PAGE_SIZE
    assert 'href="/dashboard?tag=a+b%26c&amp;status=unknown&amp;page=2"' in page.text


def test_dashboard_chart_counts_match_listing(
    users: Users, sessions: sessionmaker[Session], intermediate: Issued
) -> None:
    admin = users.login(ADMIN)
    expiries = [
        ("expired.example.test", -1, Status.CRITICAL),
        ("zero.example.test", 0, Status.CRITICAL),
        ("six.example.test", 6, Status.WARNING),
        ("seven.example.test", 7, Status.WARNING),
        ("eight.example.test", 8, Status.OK),
        ("ninety.example.test", 90, Status.OK),
        ("far.example.test", 91, Status.OK),
    ]
    for target, days, status in expiries:
        not_after = NOW + timedelta(days=days, hours=1)
        scanned_endpoint(sessions, intermediate, target, not_after, status)
    store_endpoint(sessions, "pending.example.test")

    page = admin.get("/dashboard").text
    counts = timeline_rows(page)

    assert counts["Expired already"]["Critical"] == "1"
    assert counts["0-6"]["Critical"] == "1"
    assert counts["0-6"]["Warning"] == "1"
    assert counts["0-6"]["Total"] == "2"
    assert counts["7-13"]["Warning"] == "1"
    assert counts["7-13"]["OK"] == "1"
    assert counts["84-90"]["OK"] == "1"
    assert sum(int(row["Total"]) for row in counts.values()) == 6
    assert "6 certificates of the listed sources" in page
    listed_days = {row[0]: row[2] for row in endpoint_rows(page)}
    assert listed_days["zero.example.test"] == "0"
    assert listed_days["six.example.test"] == "6"
    assert listed_days["seven.example.test"] == "7"
    assert listed_days["ninety.example.test"] == "90"
    assert listed_days["far.example.test"] == "91"
    svg = page.split('<div class="chart"', 1)[1].split("</svg>", 1)[0]
    assert "<script" not in svg
    bar_values = re.findall(r'<desc class="value">(\d+)</desc>', svg)
    assert sorted(int(value) for value in bar_values if value != "0") == [
        1,
        1,
        1,
        1,
        1,
        1,
    ]


def chart_for(counts: dict[int, int]) -> str:
    """Render the chart of `counts` critical sources per week at `NOW`."""
    by_status = {(week, Status.CRITICAL): count for week, count in counts.items()}
    return render_chart(ExpiryTimeline(now=NOW, buckets=make_buckets(NOW, by_status)))


def test_chart_whole_number_ticks() -> None:
    svg = chart_for({2: 1, 5: 3})
    y_axis = svg.split('<g class="axis y', 1)[1].split('<g class="axis x', 1)[0]

    assert re.findall(r"<text [^>]*>([^<]*)</text>", y_axis) == ["0", "1", "2", "3"]
    assert integer_ticks(0) == [0, 1]
    assert integer_ticks(5) == [0, 1, 2, 3, 4, 5]
    assert integer_ticks(6) == [0, 2, 4, 6]
    assert integer_ticks(47) == [0, 10, 20, 30, 40, 50]
    assert integer_ticks(10_000) == [0, 2000, 4000, 6000, 8000, 10_000]


def test_chart_names_and_labels() -> None:
    svg = chart_for({0: 2})
    x_axis = svg.split('<g class="axis x', 1)[1]
    x_labels = re.findall(r"<text [^>]*>([^<]*)</text>", x_axis.split("</g></g>", 1)[0])
    legends = svg.split('class="legends"', 1)[1]
    legend = re.findall(
        r'class="legend [^"]*"><rect [^>]*/><text [^>]*>([^<]*)<', legends
    )

    assert "Pygal" not in svg
    assert svg.startswith("<svg ")
    assert 'aria-hidden="true"' in svg.split(">", 1)[0]
    assert "<title>Certificates expiring in the next 90 days" in svg
    assert ">Days left (week starting at)<" in svg
    assert "UTC" not in svg
    assert x_labels == ["&lt;0", *(str(7 * week) for week in range(13))]
    assert legend == [STATUS_WORDS[status.value] for status in STATUS_ORDER]


def test_timeline_buckets_do_not_overlap() -> None:
    buckets = make_buckets(NOW, {})

    assert buckets[0].ends_at == NOW
    for earlier, later in itertools.pairwise(buckets):
        assert later.ends_at - earlier.ends_at == timedelta(days=7)
    assert buckets[1].ends_at == NOW + timedelta(days=7)
    assert buckets[-1].ends_at == NOW + timedelta(days=91)


def test_dashboard_chart_filtered_like_listing(
    users: Users, sessions: sessionmaker[Session], intermediate: Issued
) -> None:
    admin = users.login(ADMIN)
    scanned_endpoint(
        sessions,
        intermediate,
        "web.example.test",
        NOW + timedelta(days=3),
        Status.CRITICAL,
        tags=("web",),
    )
    scanned_endpoint(
        sessions, intermediate, "db.example.test", NOW + timedelta(days=4), Status.OK
    )

    counts = timeline_rows(admin.get("/dashboard?tag=web").text)

    assert counts["0-6"]["Total"] == "1"
    assert "OK" not in counts["0-6"]


def test_dashboard_without_expiries_has_no_chart(
    users: Users, sessions: sessionmaker[Session]
) -> None:
    admin = users.login(ADMIN)
    store_endpoint(sessions, "pending.example.test")

    page = admin.get("/dashboard").text

    assert "<svg" not in page
    assert "No certificate of the listed sources expired already" in page


def test_dashboard_user_without_team(users: Users) -> None:
    users.login(ADMIN)
    loner = users.login(OTHER)

    page = loner.get("/dashboard")

    assert page.status_code == 200
    assert "You belong to no team yet" in page.text


def test_dashboard_escapes_hostile_text(
    users: Users, sessions: sessionmaker[Session]
) -> None:
    admin = users.login(ADMIN)
    hostile = "<script>alert(1)</script>"
    team = "<b>ops</b>"
    with sessions.begin() as session:
        team_id = ensure_team(session, team, now=NOW)
        add_membership(session, users.ids[ADMIN], team_id, "owner", now=NOW)
    endpoint_id = store_endpoint(
        sessions,
        f'https://www.example.test/"><img src=x onerror=alert(2)>{hostile}',
        team=team,
    )
    with sessions.begin() as session:
        # The store rejects such a tag now; one stored before that still
        # reaches the page.
        session.add(EndpointTagRow(endpoint_id=endpoint_id, tag=hostile))

    page = admin.get("/dashboard")
    filtered = admin.get("/dashboard", params={"tag": hostile})

    assert page.status_code == 200
    assert hostile not in page.text
    assert "<img src=x" not in page.text
    assert "<b>ops</b>" not in page.text
    assert html.escape(hostile) in page.text
    assert "&lt;b&gt;ops&lt;/b&gt;" in page.text
    assert filtered.status_code == 400
    assert "Invalid tag" in filtered.text
    assert hostile not in filtered.text


def test_expiry_timeline_is_one_query(
    sessions: sessionmaker[Session], intermediate: Issued
) -> None:
    for days in (1, 10, 30):
        scanned_endpoint(
            sessions,
            intermediate,
            f"d{days}.example.test",
            NOW + timedelta(days=days, hours=1),
            Status.OK,
        )
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    with sessions() as session:
        engine = session.get_bind()
        event.listen(engine, "before_cursor_execute", count)
        try:
            timeline = expiry_timeline(session, InventoryFilter(), now=NOW)
        finally:
            event.remove(engine, "before_cursor_execute", count)

    # SQLite's engine also sends its own BEGIN, which reads nothing.
    queries = [text for text in statements if text != "BEGIN"]
    assert len(queries) == 1
    assert queries[0].startswith("SELECT")
    assert timeline.total == 3
    assert [bucket.total for bucket in timeline.buckets[:6]] == [0, 1, 1, 0, 0, 1]
