"""Build inventories, clocks and settings for the monitor tests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker
from tests.certs import NOW, Issued, make_intermediate, make_key, make_leaf, make_root
from tests.servers import Chain

from certwatch.monitor.settings import MonitorSettings
from certwatch.probe.model import ProbeSettings
from certwatch.store.inventory import SourceSettings, upsert_endpoint
from certwatch.store.schedule import SchedulePolicy
from certwatch.targets import Endpoint
from certwatch.x509.model import AnalysisPolicy

INTERVAL = timedelta(hours=6)
LEASE = timedelta(minutes=5)
NO_JITTER = SchedulePolicy(jitter=0)


@dataclass(frozen=True)
class Pki:
    """A root and intermediate, and leaves for www.example.test.

    `leaf` and `renewed` share their key; `renewed` expires later and adds
    api.example.test. `other` has its own key.
    """

    root: Issued
    intermediate: Issued
    leaf: Issued
    renewed: Issued
    other: Issued

    @property
    def policy(self) -> AnalysisPolicy:
        """An analysis policy that trusts only this root."""
        return AnalysisPolicy(roots=(self.root.der,), public_roots=False)

    def chain(self, leaf: Issued) -> Chain:
        """The chain a server sends for `leaf`: the leaf and the intermediate."""
        return Chain.from_pems(leaf.key_pem(), leaf.pem, self.intermediate.pem)


def make_pki() -> Pki:
    root = make_root()
    intermediate = make_intermediate(root)
    key = make_key()
    return Pki(
        root=root,
        intermediate=intermediate,
        leaf=make_leaf(intermediate, dns_names=["www.example.test"], key=key),
        renewed=make_leaf(
            intermediate,
            dns_names=["www.example.test", "api.example.test"],
            key=key,
            not_after=NOW + timedelta(days=150),
        ),
        other=make_leaf(intermediate, dns_names=["www.example.test"]),
    )


class Clock:
    """A clock that tests set and advance by hand; the monitor reads it."""

    def __init__(self, start: datetime = NOW) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def settings(**changes: object) -> MonitorSettings:
    """Monitor settings for tests: short timeouts, no jitter, no worker processes."""
    values: dict[str, object] = {
        "probe": ProbeSettings(timeout=2.0, concurrency=50),
        "batch_size": 10,
        "lease": LEASE,
        "schedule": NO_JITTER,
        "workers": 0,
    }
    values.update(changes)
    return MonitorSettings(**values)  # type: ignore[arg-type]


def pinned(name: str, port: int, address: str = "127.0.0.1") -> Endpoint:
    """An endpoint for `name` whose address is pinned, so DNS is never asked."""
    return Endpoint(
        target=f"{name}:{port}",
        host=name,
        port=port,
        server_name=name,
        address=address,
    )


def add_endpoints(
    sessions: sessionmaker[Session],
    endpoints: list[Endpoint],
    *,
    now: datetime = NOW,
    interval: timedelta = INTERVAL,
) -> list[int]:
    """Store endpoints due at `now` and return their ids, in order."""
    with sessions() as session:
        ids = [
            upsert_endpoint(
                session, endpoint, now=now, settings=SourceSettings(interval=interval)
            ).record.id
            for endpoint in endpoints
        ]
        session.commit()
    return ids
