"""Stale deployments compare the addresses of one team only.

Team alpha serves the old certificate at 127.0.0.1. Team beta serves the
renewal at 127.0.0.2 for the same names: that must not make alpha's
address stale, nor raise an alert in alpha's team.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from tests.certs import NOW
from tests.monitor.helpers import Clock, Pki, pinned, settings
from tests.servers import LocalServer, ServerOptions

from certwatch.alerts.evaluate import AlertSettings, evaluate_alerts
from certwatch.monitor.cycle import run_cycle
from certwatch.store.inventory import SourceSettings, upsert_endpoint
from certwatch.store.models import AlertRow, FindingRow, ObservationRow, TeamRow
from certwatch.store.stale import STALE_DEPLOYMENT, stale_deployments

StartOnOnePort = Callable[..., list[LocalServer]]
OLD_ADDRESS = "127.0.0.1"
NEW_ADDRESS = "127.0.0.2"


def add(sessions: sessionmaker[Session], team: str, port: int, address: str) -> int:
    with sessions.begin() as session:
        stored = upsert_endpoint(
            session,
            pinned("www.example.test", port, address),
            now=NOW,
            settings=SourceSettings(team=team),
            team_only=True,
        )
        return stored.record.id


def scan(sessions: sessionmaker[Session], pki: Pki) -> None:
    run_cycle(sessions, now_fn=Clock(), settings=settings(), policy=pki.policy)


def finding_codes(session: Session, endpoint_id: int) -> list[str]:
    query = (
        select(FindingRow.code)
        .join(ObservationRow, ObservationRow.id == FindingRow.observation_id)
        .where(ObservationRow.endpoint_id == endpoint_id, ObservationRow.latest)
    )
    return list(session.scalars(query))


def stale_alerts(session: Session) -> dict[str, list[object]]:
    """Return the places of the open stale alerts, by team name."""
    rows = session.execute(
        select(TeamRow.name, AlertRow.places)
        .join(TeamRow, TeamRow.id == AlertRow.team_id)
        .where(AlertRow.identity.like("stale:%"), AlertRow.resolved_at.is_(None))
    )
    return {name: places for name, places in rows}


def test_other_teams_renewal_is_not_stale(
    sessions: sessionmaker[Session],
    local_servers_on_one_port: StartOnOnePort,
    pki: Pki,
) -> None:
    servers = local_servers_on_one_port(
        ServerOptions(chain=pki.chain(pki.leaf), host=OLD_ADDRESS),
        ServerOptions(chain=pki.chain(pki.renewed), host=NEW_ADDRESS),
    )
    port = servers[0].port
    alpha = add(sessions, "alpha", port, OLD_ADDRESS)
    add(sessions, "beta", port, NEW_ADDRESS)

    scan(sessions, pki)

    with sessions.begin() as session:
        evaluate_alerts(session, now=NOW, settings=AlertSettings())
        assert stale_deployments(session, now=NOW) == []
        assert STALE_DEPLOYMENT not in finding_codes(session, alpha)
        assert stale_alerts(session) == {}


def test_stale_within_team_lists_only_its_addresses(
    sessions: sessionmaker[Session],
    local_servers_on_one_port: StartOnOnePort,
    pki: Pki,
) -> None:
    servers = local_servers_on_one_port(
        ServerOptions(chain=pki.chain(pki.leaf), host=OLD_ADDRESS),
        ServerOptions(chain=pki.chain(pki.renewed), host=NEW_ADDRESS),
    )
    port = servers[0].port
    alpha_old = add(sessions, "alpha", port, OLD_ADDRESS)
    alpha_new = add(sessions, "alpha", port, NEW_ADDRESS)
    beta_old = add(sessions, "beta", port, OLD_ADDRESS)

    scan(sessions, pki)

    with sessions.begin() as session:
        evaluate_alerts(session, now=NOW, settings=AlertSettings())
        [stale] = stale_deployments(session, now=NOW)
        alerts = stale_alerts(session)
        alpha_codes = finding_codes(session, alpha_old)
        beta_codes = finding_codes(session, beta_old)
        alpha_team = session.scalar(select(TeamRow.id).where(TeamRow.name == "alpha"))

    assert stale.team_id == alpha_team
    assert [leaf.endpoint_id for leaf in stale.stale] == [alpha_old]
    assert [leaf.endpoint_id for leaf in stale.renewed] == [alpha_new]
    assert stale.finding.message.startswith(
        "1 of 2 addresses still serves the certificate that expires on "
    )
    assert STALE_DEPLOYMENT in alpha_codes
    assert STALE_DEPLOYMENT not in beta_codes
    assert list(alerts) == ["alpha"]
    [place] = alerts["alpha"]
    assert isinstance(place, dict)
    assert place["endpoint_id"] == alpha_old
