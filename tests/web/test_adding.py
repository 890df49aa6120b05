"""Adding endpoints from the web: parsing, address policy, limits, instant report."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker
from tests.monitor.helpers import Clock, Pki, pinned, settings
from tests.servers import LocalServer, ServerOptions

from certwatch.monitor.instant import ScanSetup
from certwatch.probe.model import ErrorReason
from certwatch.probe.resolve import Resolver, StaticResolver
from certwatch.store.inventory import (
    SourceSettings,
    ensure_team,
    get_endpoint,
    upsert_endpoint,
)
from certwatch.store.models import EndpointRow, TeamRow
from certwatch.store.observations import latest_observations
from certwatch.web.adding import (
    MAX_TARGETS_PER_REQUEST,
    AddingError,
    add_endpoints,
)
from certwatch.web.dependencies import WebContext
from certwatch.web.server import run_web_and_monitor
from certwatch.web.settings import WebSettings

NAME = "www.example.test"
# A globally routable address that these tests only classify: the resolver
# returns it to the check before storing, and nothing ever connects to it.
PUBLIC_ADDRESS = "93.184.215.14"


class RebindingResolver:
    """Return a public address for the first lookup of a name, loopback later."""

    def __init__(self) -> None:
        self.lookups = 0

    async def resolve(self, host: str, port: int) -> list[str]:
        self.lookups += 1
        return [PUBLIC_ADDRESS] if self.lookups == 1 else ["127.0.0.1"]


@pytest.fixture
def server(pki: Pki) -> Iterator[LocalServer]:
    """A TLS server on 127.0.0.1 presenting the leaf for www.example.test."""
    with LocalServer(ServerOptions(chain=pki.chain(pki.leaf))) as running:
        yield running


@pytest.fixture
def teams(sessions: sessionmaker[Session], clock: Clock) -> tuple[int, int]:
    """The ids of two teams, `alpha` and `beta`."""
    with sessions.begin() as session:
        return (
            ensure_team(session, "alpha", now=clock()),
            ensure_team(session, "beta", now=clock()),
        )


MakeContext = Callable[..., WebContext]


@pytest.fixture
def make_context(
    sessions: sessionmaker[Session], clock: Clock, pki: Pki
) -> MakeContext:
    """Make contexts over the test's store, clock and PKI.

    The factory takes the web settings (the defaults when `None`) and a
    resolver (one that maps `NAME` to 127.0.0.1 when `None`).
    """

    def make(
        *, web: WebSettings | None = None, resolver: Resolver | None = None
    ) -> WebContext:
        return WebContext(
            sessions=sessions,
            settings=web or WebSettings(),
            now_fn=clock,
            scans=ScanSetup(
                monitor=settings(),
                policy=pki.policy,
                resolver=resolver or StaticResolver({NAME: ["127.0.0.1"]}),
            ),
        )

    return make


@pytest.fixture
def context(make_context: MakeContext) -> WebContext:
    """A context with the default web settings and a resolver for `NAME`."""
    return make_context()


def open_site() -> WebSettings:
    return WebSettings(signup="open", allow_private_targets=False)


def endpoint_count(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(EndpointRow)) or 0


def test_add_endpoints_reports_days_left(
    context: WebContext,
    sessions: sessionmaker[Session],
    clock: Clock,
    server: LocalServer,
    teams: tuple[int, int],
) -> None:
    target = f"{NAME}:{server.port}"

    report = add_endpoints(context, teams[0], [target], tags=["web"])

    assert report.rejected == []
    [added] = report.added
    assert added.target == target
    assert added.created
    [result] = added.results
    assert result.address == "127.0.0.1"
    assert result.days_left == 60
    with sessions() as session:
        record = get_endpoint(session, added.endpoint_id)
    assert record is not None
    assert record.team == "alpha"
    assert record.tags == ("web",)
    assert record.schedule.last_scanned_at == clock()
    assert record.schedule.next_scan_at > clock()


def test_add_endpoints_again_updates(
    context: WebContext,
    sessions: sessionmaker[Session],
    server: LocalServer,
    teams: tuple[int, int],
) -> None:
    target = f"{NAME}:{server.port}"
    first = add_endpoints(context, teams[0], [target])

    again = add_endpoints(context, teams[0], [f"https://{target}/", target])

    assert [item.target for item in again.added] == [f"https://{target}/", target]
    assert {item.endpoint_id for item in again.added} == {first.added[0].endpoint_id}
    assert not any(item.created for item in again.added)
    assert again.rejected == []
    assert endpoint_count(sessions) == 1


def test_add_endpoints_rejects_paths_and_invalid(
    context: WebContext, sessions: sessionmaker[Session], teams: tuple[int, int]
) -> None:
    report = add_endpoints(
        context, teams[0], ["/etc/ssl/cert.pem", "site.pem", "bad host", "  ", "~x"]
    )

    assert report.added == []
    reasons = {item.text: item.reason for item in report.rejected}
    assert list(reasons) == ["/etc/ssl/cert.pem", "site.pem", "bad host", "~x"]
    assert "certificate file path" in reasons["/etc/ssl/cert.pem"]
    assert "'certwatch add'" in reasons["site.pem"]
    assert "Invalid host name 'bad host'" in reasons["bad host"]
    assert endpoint_count(sessions) == 0


@pytest.mark.parametrize(
    ("text", "address", "kind"),
    [
        ("127.0.0.1:{port}", "127.0.0.1", "loopback"),
        (f"{NAME}:{{port}}", "127.0.0.1", "loopback"),
        ("10.1.2.3", "10.1.2.3", "private"),
        ("169.254.169.254", "169.254.169.254", "link-local"),
        (
            "[::ffff:127.0.0.1]:{port}",
            "::ffff:7f00:1",
            "IPv4-mapped form of the loopback IPv4 address 127.0.0.1",
        ),
        ("0.0.0.0", "0.0.0.0", "unspecified"),
        ("[::]", "::", "unspecified"),
        ("100.64.0.1", "100.64.0.1", "shared (carrier-grade NAT)"),
        ("[fd00::1]", "fd00::1", "unique-local"),
        (
            "[64:ff9b::a00:1]",
            "64:ff9b::a00:1",
            "NAT64 form of the private IPv4 address 10.0.0.1",
        ),
        ("224.0.0.1", "224.0.0.1", "multicast"),
    ],
)
def test_add_endpoints_rejects_private_address_open(
    make_context: MakeContext,
    sessions: sessionmaker[Session],
    server: LocalServer,
    teams: tuple[int, int],
    text: str,
    address: str,
    kind: str,
) -> None:
    context = make_context(web=open_site())
    target = text.format(port=server.port)

    report = add_endpoints(context, teams[0], [target])

    assert report.added == []
    [rejected] = report.rejected
    assert rejected.text == target
    assert f"Target {target!r} resolves to {address} ({kind} address)," in (
        rejected.reason
    )
    assert "CERTWATCH_ALLOW_PRIVATE_TARGETS=true" in rejected.reason
    assert server.accepted == 0
    assert endpoint_count(sessions) == 0


def test_add_endpoints_accepts_private_address_invite(
    make_context: MakeContext,
    server: LocalServer,
    teams: tuple[int, int],
) -> None:
    context = make_context(web=WebSettings(signup="invite"))

    report = add_endpoints(context, teams[0], [f"127.0.0.1:{server.port}"])

    assert report.rejected == []
    [result] = report.added[0].results
    assert result.error is None
    assert result.days_left == 60
    assert server.accepted == 1


def test_add_endpoints_rebinding_never_connects(
    make_context: MakeContext,
    server: LocalServer,
    teams: tuple[int, int],
) -> None:
    resolver = RebindingResolver()
    context = make_context(web=open_site(), resolver=resolver)

    report = add_endpoints(context, teams[0], [f"{NAME}:{server.port}"])

    assert resolver.lookups == 2
    [added] = report.added
    [result] = added.results
    assert result.address == "127.0.0.1"
    assert result.error is not None
    assert result.error.reason is ErrorReason.ADDRESS_NOT_ALLOWED
    assert "CERTWATCH_ALLOW_PRIVATE_TARGETS" in result.error.message
    assert server.accepted == 0


def test_add_endpoints_team_limit(
    make_context: MakeContext,
    sessions: sessionmaker[Session],
    server: LocalServer,
    teams: tuple[int, int],
) -> None:
    with sessions.begin() as session:
        session.execute(
            update(TeamRow).where(TeamRow.id == teams[0]).values(endpoint_limit=1)
        )
    # The team's own limit takes precedence over the site's.
    web = WebSettings(team_endpoint_limit=5)
    context = make_context(web=web)
    add_endpoints(context, teams[0], [f"127.0.0.1:{server.port}"])

    with pytest.raises(AddingError, match=r"'alpha' may watch at most 1 endpoints"):
        add_endpoints(context, teams[0], [f"127.0.0.2:{server.port}"])

    assert endpoint_count(sessions) == 1
    assert server.accepted == 1


def test_add_endpoints_site_limit(
    make_context: MakeContext,
    sessions: sessionmaker[Session],
    teams: tuple[int, int],
) -> None:
    context = make_context(web=WebSettings(team_endpoint_limit=2))

    with pytest.raises(AddingError, match="CERTWATCH_TEAM_ENDPOINT_LIMIT") as caught:
        add_endpoints(context, teams[1], ["a.test", "b.test", "c.test"])

    assert "this request would make 3" in caught.value.message
    assert endpoint_count(sessions) == 0


def test_add_endpoints_same_target_two_teams(
    context: WebContext,
    sessions: sessionmaker[Session],
    server: LocalServer,
    teams: tuple[int, int],
) -> None:
    target = f"127.0.0.1:{server.port}"
    first = add_endpoints(context, teams[0], [target], tags=["alpha-tag"])

    report = add_endpoints(context, teams[1], [target], tags=["beta-tag"])

    assert report.rejected == []
    [added] = report.added
    assert added.created
    assert added.endpoint_id != first.added[0].endpoint_id
    assert added.results[0].days_left == 60
    with sessions() as session:
        alpha = get_endpoint(session, first.added[0].endpoint_id)
        beta = get_endpoint(session, added.endpoint_id)
    assert alpha is not None
    assert beta is not None
    assert (alpha.team, alpha.tags) == ("alpha", ("alpha-tag",))
    assert (beta.team, beta.tags) == ("beta", ("beta-tag",))
    assert endpoint_count(sessions) == 2


def test_add_endpoints_spellings_of_one_endpoint(
    context: WebContext,
    sessions: sessionmaker[Session],
    server: LocalServer,
    teams: tuple[int, int],
) -> None:
    texts = [
        f"{NAME}:{server.port}",
        f"{NAME.upper()}.:{server.port}",
        f"https://{NAME}:{server.port}/health",
    ]

    report = add_endpoints(context, teams[0], texts)

    assert report.rejected == []
    assert [item.target for item in report.added] == texts
    assert len({item.endpoint_id for item in report.added}) == 1
    assert [item.created for item in report.added] == [True, False, False]
    for item in report.added:
        assert [result.days_left for result in item.results] == [60]
    assert endpoint_count(sessions) == 1


def test_add_endpoints_spellings_of_rejected_endpoint(
    make_context: MakeContext,
    sessions: sessionmaker[Session],
    teams: tuple[int, int],
) -> None:
    context = make_context(web=open_site())
    texts = ["127.0.0.1:8443", "https://127.0.0.1:8443/path"]

    report = add_endpoints(context, teams[0], texts)

    assert report.added == []
    assert [item.text for item in report.rejected] == texts
    first, alias = report.rejected
    assert "loopback" in first.reason
    assert alias.reason.startswith(
        "'https://127.0.0.1:8443/path' is the same endpoint as '127.0.0.1:8443': "
    )
    assert "loopback" in alias.reason
    assert endpoint_count(sessions) == 0


def test_add_endpoints_request_errors(
    context: WebContext,
    sessions: sessionmaker[Session],
    teams: tuple[int, int],
) -> None:
    many = [f"host{i}.example.test" for i in range(MAX_TARGETS_PER_REQUEST + 1)]

    with pytest.raises(AddingError, match="101 targets in one request"):
        add_endpoints(context, teams[0], many)
    with pytest.raises(AddingError, match="Unknown protocol 'gopher'"):
        add_endpoints(context, teams[0], ["a.test"], protocol="gopher")
    with pytest.raises(AddingError, match="Invalid tag"):
        add_endpoints(context, teams[0], ["a.test"], tags=[" "])
    with pytest.raises(AddingError, match=r"Invalid tag 'a\\x1b\[31m'"):
        add_endpoints(context, teams[0], ["a.test"], tags=["a\x1b[31m"])
    with pytest.raises(AddingError, match="give at most 20 tags"):
        add_endpoints(context, teams[0], ["a.test"], tags=[f"t{i}" for i in range(21)])
    with pytest.raises(AddingError, match="Team 999999 not found"):
        add_endpoints(context, 999_999, ["a.test"])
    assert endpoint_count(sessions) == 0


@pytest.mark.parametrize("allow", [False, True])
def test_serve_monitor_obeys_address_policy(
    sessions: sessionmaker[Session],
    clock: Clock,
    pki: Pki,
    server: LocalServer,
    teams: tuple[int, int],
    allow: bool,
) -> None:
    with sessions.begin() as session:
        stored = upsert_endpoint(
            session,
            pinned(NAME, server.port),
            now=clock(),
            settings=SourceSettings(team="alpha"),
        )
    stop = threading.Event()
    web = WebSettings(disabled=True, allow_private_targets=allow)

    run_web_and_monitor(
        sessions,
        web=web,
        now_fn=clock,
        settings=settings(),
        policy=pki.policy,
        stop=stop,
        after_cycle=lambda _: stop.set(),
    )

    with sessions() as session:
        [observation] = latest_observations(session, endpoint_id=stored.record.id)
    if allow:
        assert observation.error_reason is None
        assert server.accepted == 1
    else:
        assert observation.error_reason is ErrorReason.ADDRESS_NOT_ALLOWED
        assert server.accepted == 0
