"""The dashboard row of an endpoint whose STARTTLS went away, or that is down.

Scans are recorded with `record_observations`, as in `test_dashboard`, and
the page is served with uvicorn on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker
from tests.certs import NOW, Issued, make_intermediate, make_root
from tests.store.builders import failed_result
from tests.web.conftest import ServeApp
from tests.web.test_dashboard import (
    ADMIN,
    Users,
    endpoint_rows,
    record_scan,
    scanned_endpoint,
)

from certwatch.probe.model import ErrorReason
from certwatch.result import Result, Status
from certwatch.targets import parse_target
from certwatch.x509.model import Finding, Severity

TARGET = "smtp://mail.example.test"


@pytest.fixture
def accounts(serve_app: ServeApp, sessions: sessionmaker[Session]) -> Iterator[Users]:
    users = Users(sessions, serve_app())
    yield users
    users.close()


@pytest.fixture(scope="module")
def issuer() -> Issued:
    return make_intermediate(make_root())


def not_offered_result() -> Result:
    endpoint = parse_target(TARGET)
    finding = Finding(
        "starttls_not_offered",
        Severity.CRITICAL,
        "The SMTP server at 127.0.0.1 port 25 does not offer STARTTLS.",
    )
    return Result(
        target=endpoint.target,
        status=Status.CRITICAL,
        findings=(finding,),
        host=endpoint.host,
        port=endpoint.port,
        address="127.0.0.1",
        protocol=endpoint.protocol,
    )


def refused_result() -> Result:
    return failed_result(
        parse_target(TARGET),
        "127.0.0.1",
        ErrorReason.STARTTLS_REFUSED,
        "The SMTP server refused STARTTLS with '454 TLS not available'.",
    )


@pytest.mark.parametrize(
    ("latest", "reason", "word"),
    [
        (not_offered_result, "starttls_not_offered", "Critical"),
        (refused_result, "starttls_refused", "Unknown"),
    ],
)
def test_dashboard_starttls_gone_shows_reason(
    accounts: Users,
    sessions: sessionmaker[Session],
    issuer: Issued,
    latest: Callable[[], Result],
    reason: str,
    word: str,
) -> None:
    endpoint_id = scanned_endpoint(
        sessions, issuer, TARGET, NOW + timedelta(days=40), Status.OK
    )
    record_scan(sessions, endpoint_id, latest(), at=NOW + timedelta(hours=1))

    page = accounts.login(ADMIN).get("/dashboard")

    assert page.status_code == 200
    [row] = endpoint_rows(page.text)
    assert row[0] == TARGET
    assert row[1] == word
    assert row[2] == "—"
    assert row[3] == "—"
    assert row[7] == reason


def test_dashboard_outage_keeps_expiry(
    accounts: Users, sessions: sessionmaker[Session], issuer: Issued
) -> None:
    endpoint_id = scanned_endpoint(
        sessions, issuer, TARGET, NOW + timedelta(days=40), Status.OK
    )
    timed_out = failed_result(
        parse_target(TARGET), "127.0.0.1", ErrorReason.TIMEOUT, "Timed out."
    )
    record_scan(sessions, endpoint_id, timed_out, at=NOW + timedelta(hours=1))

    page = accounts.login(ADMIN).get("/dashboard")

    [row] = endpoint_rows(page.text)
    assert row[2] == "40"
    assert row[3] != "—"
    assert row[7] == "timeout"
