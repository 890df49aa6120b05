"""The Severity column of `/certificates`: expiry and the findings of current places.

Local TLS servers serve a self-signed certificate, a certificate for
another host name and a sound one, all far from expiry, so only their
findings can make them anything but OK. The monitor scans them for real,
on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker
from tests.certs import NOW, Issued, make_leaf, make_self_signed
from tests.monitor.helpers import INTERVAL, Clock, Pki, pinned
from tests.servers import Chain, LocalServer
from tests.web.conftest import ServeApp
from tests.web.helpers import scan_due
from tests.web.page_helpers import Visitors, make_team, visitors  # noqa: F401
from tests.web.test_dashboard import tables

from certwatch.store.inventory import SourceSettings, upsert_endpoint
from certwatch.store.team_certificates import team_current_findings
from certwatch.web.certificate_pages import Expiry, grade
from certwatch.x509.model import Severity

FAR = NOW + timedelta(days=300)


@dataclass(frozen=True)
class Graded:
    """The teams and the certificates their endpoints serve."""

    web: int
    ops: int
    self_signed: Issued
    wrong_name: Issued
    sound: Issued


def add(
    sessions: sessionmaker[Session], clock: Clock, name: str, port: int, team: str
) -> None:
    with sessions.begin() as session:
        upsert_endpoint(
            session,
            pinned(name, port),
            now=clock(),
            settings=SourceSettings(team=team, interval=INTERVAL),
        )


@pytest.fixture
def graded(
    sessions: sessionmaker[Session],
    clock: Clock,
    pki: Pki,
    local_server: Callable[..., LocalServer],
) -> Graded:
    """Team web serves all three; team ops serves the sound one for a wrong name."""
    self_signed = make_self_signed(["self.example.test"], not_after=FAR)
    wrong_name = make_leaf(
        pki.intermediate, dns_names=["other.example.test"], not_after=FAR
    )
    sound = make_leaf(pki.intermediate, dns_names=["www.example.test"], not_after=FAR)
    web = make_team(sessions, "web", clock)
    ops = make_team(sessions, "ops", clock)
    for name, leaf, team in (
        ("self.example.test", self_signed, "web"),
        ("api.example.test", wrong_name, "web"),
        ("www.example.test", sound, "web"),
        ("ops.example.test", sound, "ops"),
    ):
        chain = [leaf.pem] if leaf is self_signed else [leaf.pem, pki.intermediate.pem]
        server = local_server(chain=Chain.from_pems(leaf.key_pem(), *chain))
        add(sessions, clock, name, server.port, team)
    scan_due(sessions, clock, pki)
    return Graded(web, ops, self_signed, wrong_name, sound)


def severity_cells(page: str) -> dict[str, str]:
    """Return the Severity cell of each certificate row, by its title."""
    for table in tables(page):
        if table and table[0] and table[0][0] == "Certificate":
            column = table[0].index("Severity")
            return {row[0]: row[column] for row in table[1:]}
    return {}


def test_certificates_severity_from_findings(
    serve_app: ServeApp,
    visitors: Visitors,  # noqa: F811
    graded: Graded,
) -> None:
    user = visitors.make(serve_app(), "web@example.test", {graded.web: "viewer"})

    page = user.client.get("/certificates")

    assert page.status_code == 200
    cells = severity_cells(page.text)
    assert cells["self.example.test"] == "Critical self_signed"
    assert cells["other.example.test"] == "Critical hostname_mismatch"
    assert cells["www.example.test"] == "OK"


def test_certificates_severity_only_own_places(
    serve_app: ServeApp,
    visitors: Visitors,  # noqa: F811
    graded: Graded,
) -> None:
    base_url = serve_app()
    ops_user = visitors.make(base_url, "ops@example.test", {graded.ops: "viewer"})
    both = visitors.make(
        base_url, "both@example.test", {graded.web: "viewer", graded.ops: "viewer"}
    )

    ops_cells = severity_cells(ops_user.client.get("/certificates").text)
    web_cells = severity_cells(both.client.get(f"/certificates?team={graded.web}").text)

    assert ops_cells == {"www.example.test": "Critical hostname_mismatch"}
    assert web_cells["www.example.test"] == "OK"


def test_team_current_findings_one_query(
    sessions: sessionmaker[Session], graded: Graded
) -> None:
    sha256s = [graded.self_signed.sha256, graded.wrong_name.sha256, graded.sound.sha256]
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    with sessions() as session:
        engine = session.get_bind()
        event.listen(engine, "before_cursor_execute", count)
        try:
            found = team_current_findings(session, sha256s, [graded.web])
        finally:
            event.remove(engine, "before_cursor_execute", count)

    # SQLite's engine also sends its own BEGIN, which reads nothing.
    assert len([text for text in statements if text != "BEGIN"]) == 1
    assert found[graded.self_signed.sha256]["self_signed"] is Severity.CRITICAL
    assert found[graded.wrong_name.sha256]["hostname_mismatch"] is Severity.CRITICAL
    assert graded.sound.sha256 not in found


def test_grade_worse_of_expiry_and_findings() -> None:
    ok = Expiry("2026-09-01 00:00", 90, "OK", "ok")
    expired = Expiry("2026-05-01 00:00", -31, "Expired", "critical")

    assert grade(ok, {}).word == "OK"
    assert grade(ok, {"weak_key": Severity.INFO}).codes == ()
    assert grade(ok, {"weak_key": Severity.WARNING}).level == "warning"
    assert grade(ok, {"weak_key": Severity.WARNING}).codes == ("weak_key",)
    assert grade(expired, {"weak_key": Severity.WARNING}).word == "Expired"
    assert grade(expired, {"weak_key": Severity.WARNING}).codes == ()
    assert grade(expired, {"self_signed": Severity.CRITICAL}).word == "Expired"
    assert grade(expired, {"self_signed": Severity.CRITICAL}).codes == ("self_signed",)
