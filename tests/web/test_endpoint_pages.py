"""The endpoint page and the add page, over real scans of local TLS servers.

The endpoint page tests scan servers on 127.0.0.1 with the monitor's cycle,
so the page reads observations, history and changes written by the real
write path. The add page tests post the form as a browser does, and the
instant probe connects to a local server too.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from tests.certs import NOW
from tests.monitor.helpers import INTERVAL, Clock, Pki
from tests.servers import Chain, LocalServer, ServerOptions, closed_port
from tests.web.conftest import ServeApp
from tests.web.helpers import add_endpoint, scan_due
from tests.web.test_dashboard import (
    ADMIN,
    OTHER,
    Users,
    endpoint_rows,
    store_endpoint,
    tables,
)

from certwatch.probe.model import ErrorReason
from certwatch.store.inventory import ensure_team, get_endpoint
from certwatch.store.models import EndpointRow, EndpointTagRow
from certwatch.web.advice import ERROR_ADVICE, FINDING_ADVICE, INCOMPLETE_CHAIN_ADVICE
from certwatch.web.endpoint_new import MAX_UPLOAD_BYTES

StartServer = Callable[..., LocalServer]
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
SOURCE = Path(__file__).parents[2] / "src" / "certwatch"
MISSING_ISSUER_ADVICE = INCOMPLETE_CHAIN_ADVICE[
    "was not sent and is not in the trust store"
]


@pytest.fixture
def users(serve_app: ServeApp, sessions: sessionmaker[Session]) -> Iterator[Users]:
    """Accounts on a served application; their clients close after the test."""
    accounts = Users(sessions, serve_app())
    yield accounts
    accounts.close()


def visible_text(page: str) -> str:
    """Return the page's text without tags, entities decoded, spaces collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def csrf(client: httpx.Client, path: str = "/endpoints/new") -> str:
    page = client.get(path)
    found = _CSRF.search(page.text)
    assert found is not None, page.text
    return found.group(1)


def team_id(sessions: sessionmaker[Session], name: str) -> int:
    with sessions.begin() as session:
        return ensure_team(session, name, now=NOW)


def endpoint_count(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(EndpointRow)) or 0


def test_endpoint_page_after_real_scans(
    users: Users, sessions: sessionmaker[Session], pki: Pki, clock: Clock
) -> None:
    admin = users.login(ADMIN)
    with LocalServer(ServerOptions(chain=pki.chain(pki.leaf))) as before:
        port = before.port
        endpoint_id = add_endpoint(sessions, "www.example.test", port, clock=clock)
        first = scan_due(sessions, clock, pki)
    clock.advance(INTERVAL)
    with LocalServer(ServerOptions(chain=pki.chain(pki.renewed), port=port)):
        second = scan_due(sessions, clock, pki)

    page = admin.get(f"/endpoints/{endpoint_id}")

    assert first.endpoints == 1
    assert second.changes == 1
    assert page.status_code == 200
    text = html.unescape(page.text)
    assert "Address <code>127.0.0.1</code>" in text
    chain, history = tables(page.text)[:2]
    assert chain[0][:6] == [
        "Position",
        "Subject",
        "Issuer",
        "Not before",
        "Not after",
        "Days left",
    ]
    leaf_row, intermediate_row = chain[1], chain[2]
    assert leaf_row[0] == "leaf"
    assert "www.example.test" in leaf_row[1]
    assert "certwatch test intermediate" in leaf_row[2]
    renewed_after = pki.renewed.cert.not_valid_after_utc
    assert leaf_row[4] == renewed_after.strftime("%Y-%m-%d %H:%M UTC")
    assert leaf_row[5] == str((renewed_after - clock()).days)
    assert leaf_row[6] == pki.renewed.sha256
    assert intermediate_row[0] == "1"
    assert intermediate_row[6] == pki.intermediate.sha256
    assert f'href="/certificates/{pki.renewed.sha256}"' in page.text
    assert f'href="/certificates/{pki.intermediate.sha256}"' in page.text
    assert [row[5] for row in history[1:]] == [pki.leaf.sha256, pki.renewed.sha256]
    assert "(served now)" in history[2][4]
    assert "(served now)" not in history[1][4]
    assert "names added: api.example.test" in text
    assert "No findings" in text


def test_endpoint_page_findings_and_errors_in_words(
    users: Users,
    sessions: sessionmaker[Session],
    pki: Pki,
    clock: Clock,
    local_server: StartServer,
) -> None:
    admin = users.login(ADMIN)
    leaf_only = Chain.from_pems(pki.leaf.key_pem(), pki.leaf.pem)
    server = local_server(chain=leaf_only)
    broken = add_endpoint(sessions, "www.example.test", server.port, clock=clock)
    with closed_port() as refused:
        down = add_endpoint(sessions, "down.example.test", refused, clock=clock)
        scan_due(sessions, clock, pki)

    broken_page = visible_text(admin.get(f"/endpoints/{broken}").text)
    down_page = visible_text(admin.get(f"/endpoints/{down}").text)

    assert "The chain is incomplete" in broken_page
    assert MISSING_ISSUER_ADVICE.action in broken_page
    assert "Critical" in broken_page
    refused_advice = ERROR_ADVICE[ErrorReason.CONNECTION_REFUSED]
    assert f"The scan failed: {refused_advice.meaning}" in down_page
    assert refused_advice.action in down_page
    assert "No certificate seen yet." in down_page


def test_endpoint_page_hidden_from_other_teams(
    users: Users, sessions: sessionmaker[Session]
) -> None:
    admin = users.login(ADMIN)
    bob = users.login(OTHER, team="payments")
    own = store_endpoint(sessions, "www.example.test")
    theirs = store_endpoint(sessions, "pay.example.test", team="payments")

    bob_own = bob.get(f"/endpoints/{theirs}")
    bob_peeks = bob.get(f"/endpoints/{own}")
    missing = bob.get("/endpoints/999999")
    huge = bob.get("/endpoints/99999999999999999999")
    not_a_number = bob.get("/endpoints/www")
    admin_peeks = admin.get(f"/endpoints/{theirs}")
    bob_dashboard = bob.get("/dashboard")

    assert bob_own.status_code == 200
    assert "pay.example.test" in bob_own.text
    assert bob_peeks.status_code == 404
    assert "www.example.test" not in bob_peeks.text
    assert missing.status_code == 404
    assert bob_peeks.text == missing.text
    assert huge.status_code == 404
    assert not_a_number.status_code == 404
    assert admin_peeks.status_code == 404
    assert [row[0] for row in endpoint_rows(bob_dashboard.text)] == ["pay.example.test"]


def test_endpoint_page_escapes_hostile_target(
    users: Users, sessions: sessionmaker[Session]
) -> None:
    admin = users.login(ADMIN)
    hostile = 'https://www.example.test/"><script>alert(1)</script>'
    endpoint_id = store_endpoint(sessions, hostile)
    with sessions.begin() as session:
        # The store rejects such a tag now; one stored before that still
        # reaches the page.
        session.add(EndpointTagRow(endpoint_id=endpoint_id, tag="<i>tag</i>"))

    page = admin.get(f"/endpoints/{endpoint_id}")

    assert page.status_code == 200
    assert "<script>alert(1)" not in page.text
    assert "<i>tag</i>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert hostile in visible_text(page.text)
    assert "Not scanned yet." in page.text


def test_advice_covers_every_code() -> None:
    pattern = re.compile(r'Finding\(\s*(?:code=)?"([a-z_]+)"')
    constants = re.compile(r'^[A-Z_]+ = "([a-z_]+)"$', re.MULTILINE)
    codes: set[str] = set()
    for path in SOURCE.rglob("*.py"):
        text = path.read_text()
        codes.update(pattern.findall(text))
    stale = (SOURCE / "store" / "stale.py").read_text()
    codes.update(
        code for code in constants.findall(stale) if code == "stale_deployment"
    )

    assert "expired" in codes
    assert "starttls_not_offered" in codes
    assert codes - set(FINDING_ADVICE) == set()
    assert set(ErrorReason) - set(ERROR_ADVICE) == set()


def test_add_page_adds_and_reports(
    users: Users,
    sessions: sessionmaker[Session],
    local_server: StartServer,
    server_chain: Chain,
) -> None:
    admin = users.login(ADMIN)
    server = local_server(chain=server_chain)
    form = admin.get("/endpoints/new")

    response = admin.post(
        "/endpoints/new",
        data={
            "csrf_token": csrf(admin),
            "team": str(team_id(sessions, "default")),
            "targets": f"localhost:{server.port}\n# a comment\n\nbad target!\n",
            "tags": "web, prod",
        },
    )

    assert form.status_code == 200
    assert 'enctype="multipart/form-data"' in form.text
    assert response.status_code == 200, response.text
    text = html.unescape(response.text)
    assert "Instant report" in text
    with sessions() as session:
        stored = session.scalars(select(EndpointRow)).one()
        record = get_endpoint(session, stored.id)
    assert record is not None
    assert record.tags == ("prod", "web")
    assert f'href="/endpoints/{stored.id}">localhost:{server.port}</a>' in text
    report = visible_text(response.text)
    assert "127.0.0.1 Critical 355594 3000-01-01 00:00 UTC The chain is incomplete" in (
        report
    )
    assert MISSING_ISSUER_ADVICE.action in report
    assert "bad target!" in text
    assert "Not added" in text
    assert f"localhost:{server.port}\n" not in text.split("<textarea", 1)[1]


def test_add_page_protocol_choices(
    users: Users, sessions: sessionmaker[Session]
) -> None:
    admin = users.login(ADMIN)
    form = {
        "csrf_token": csrf(admin),
        "team": str(team_id(sessions, "default")),
        "targets": "localhost:587",
    }

    unknown = admin.post("/endpoints/new", data={**form, "protocol": "gopher"})
    # `auto` picks the dialogue from the port, as `--protocol auto` does;
    # nothing listens there, so the endpoint is stored and reported down.
    auto = admin.post("/endpoints/new", data={**form, "protocol": "auto"})

    assert unknown.status_code == 400
    assert "Unknown protocol 'gopher'" in html.unescape(unknown.text)
    assert auto.status_code == 200, auto.text
    with sessions() as session:
        stored = session.scalars(select(EndpointRow)).one()
    assert stored.protocol == "submission"
    assert stored.port == 587


def test_add_page_roles_and_csrf(users: Users, sessions: sessionmaker[Session]) -> None:
    users.login(ADMIN)
    viewer = users.login(OTHER, team="ops", role="viewer")
    member = users.login("carol@example.test", team="payments", role="member")
    ops = team_id(sessions, "ops")
    payments = team_id(sessions, "payments")

    viewer_form = viewer.get("/endpoints/new")
    viewer_post = viewer.post(
        "/endpoints/new",
        data={
            "csrf_token": csrf(viewer, "/dashboard"),
            "team": str(ops),
            "targets": "www.example.test",
        },
    )
    member_other_team = member.post(
        "/endpoints/new",
        data={
            "csrf_token": csrf(member),
            "team": str(ops),
            "targets": "www.example.test",
        },
    )
    no_token = member.post(
        "/endpoints/new", data={"team": str(payments), "targets": "www.example.test"}
    )
    no_targets = member.post(
        "/endpoints/new",
        data={"csrf_token": csrf(member), "team": str(payments), "targets": "\n"},
    )

    assert viewer_form.status_code == 403
    assert "viewers cannot add any" in viewer_form.text
    assert viewer_post.status_code == 403
    assert member_other_team.status_code == 404
    assert no_token.status_code == 403
    assert no_targets.status_code == 400
    assert "Give at least one target, or choose a CSV file." in no_targets.text
    assert endpoint_count(sessions) == 0


def test_add_page_csv_with_bad_rows_adds_nothing(
    users: Users, sessions: sessionmaker[Session]
) -> None:
    admin = users.login(ADMIN)
    rows = [
        "target,port,team,address,tags",
        "good.example.test,,,,web",
        "bad.example.test:99999,,,,",
        "/etc/ssl/site.pem,,,,",
        "other.example.test,,payments,,",
        "pinned.example.test,,,192.0.2.1,",
    ]
    data = ("\n".join(rows) + "\n").encode()

    response = admin.post(
        "/endpoints/new",
        data={"csrf_token": csrf(admin), "team": str(team_id(sessions, "default"))},
        files={"csv": ("inventory.csv", data, "text/csv")},
    )

    text = html.unescape(response.text)
    assert response.status_code == 400
    assert "'inventory.csv' has 2 invalid rows, so nothing was added" in text
    problems = re.findall(r"<li>Line (\d+): ", response.text)
    assert problems == ["3", "5"]
    assert "Line 3: Invalid port" in text
    assert "Line 5: The row names the team 'payments'" in text
    assert endpoint_count(sessions) == 0


def test_add_page_csv_adds_rows_with_their_tags(
    users: Users,
    sessions: sessionmaker[Session],
    local_server: StartServer,
    server_chain: Chain,
) -> None:
    admin = users.login(ADMIN)
    server = local_server(chain=server_chain)
    data = (
        "host,port,protocol,tags,notes\n"
        f"localhost,{server.port},https,csv;web,first\n"
        f"127.0.0.1,{server.port},,,\n"
    ).encode()

    response = admin.post(
        "/endpoints/new",
        data={
            "csrf_token": csrf(admin),
            "team": str(team_id(sessions, "default")),
            "tags": "form",
        },
        files={"csv": ("inventory.csv", data, "text/csv")},
    )

    assert response.status_code == 200, response.text
    with sessions() as session:
        rows = session.scalars(select(EndpointRow).order_by(EndpointRow.host)).all()
        tags = {row.host: get_endpoint(session, row.id).tags for row in rows}  # type: ignore[union-attr]
    assert tags == {"127.0.0.1": ("form",), "localhost": ("csv", "web")}
    assert "The column notes was not applied" in html.unescape(response.text)


@pytest.mark.parametrize("size", [MAX_UPLOAD_BYTES + 1, 2 * MAX_UPLOAD_BYTES])
def test_add_page_rejects_large_upload(
    users: Users, sessions: sessionmaker[Session], size: int
) -> None:
    admin = users.login(ADMIN)
    line = b"www.example.test\n"
    data = (b"target\n" + line * (size // len(line) + 1))[:size]
    assert len(data) == size

    response = admin.post(
        "/endpoints/new",
        data={"csrf_token": csrf(admin), "team": str(team_id(sessions, "default"))},
        files={"csv": ("big.csv", data, "text/csv")},
    )

    assert response.status_code == 413
    assert "The form is larger than 1 MiB" in response.text
    assert endpoint_count(sessions) == 0


@pytest.mark.parametrize("content", [b"\xff\xfe not utf-8", b""])
def test_add_page_unreadable_csv(
    users: Users, sessions: sessionmaker[Session], content: bytes
) -> None:
    admin = users.login(ADMIN)

    response = admin.post(
        "/endpoints/new",
        data={"csrf_token": csrf(admin), "team": str(team_id(sessions, "default"))},
        files={"csv": ("odd.csv", content, "text/csv")},
    )

    assert response.status_code == 400
    assert '<p class="error" role="alert">' in response.text
    assert endpoint_count(sessions) == 0


def test_add_page_upload_at_limit_is_read(
    users: Users, sessions: sessionmaker[Session]
) -> None:
    admin = users.login(ADMIN)
    line = b"www.example.test\n"
    data = (b"target\n" + line * (MAX_UPLOAD_BYTES // len(line) + 1))[:MAX_UPLOAD_BYTES]

    response = admin.post(
        "/endpoints/new",
        data={"csrf_token": csrf(admin), "team": str(team_id(sessions, "default"))},
        files={"csv": ("big.csv", data, "text/csv")},
    )

    assert len(data) == MAX_UPLOAD_BYTES
    assert response.status_code == 400
    rows = len(data.splitlines()) - 1
    assert f"has {rows} rows, over the limit of 100 per form" in html.unescape(
        response.text
    )
    assert endpoint_count(sessions) == 0
