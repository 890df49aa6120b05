"""Webhook and chat contacts under the address policy of an open site.

With `CERTWATCH_ALLOW_PRIVATE_TARGETS=false`, an owner must not be able to
make the site send to loopback or private receivers, neither when adding
a contact nor with the test button. An invite-only site keeps sending to
them. The receiver is a real HTTP server on 127.0.0.1, and names resolve
through a static resolver, so no DNS server is asked.
"""

from __future__ import annotations

import contextlib
import html
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest
from sqlalchemy.orm import Session, sessionmaker
from tests.alerts.conftest import HttpReceiver, http_receiver  # noqa: F401
from tests.monitor.helpers import Clock
from tests.web.page_helpers import Visitor, Visitors, make_team, visitors  # noqa: F401

from certwatch.monitor.instant import ScanSetup
from certwatch.probe.resolve import StaticResolver
from certwatch.store.alerts import add_contact, list_contacts
from certwatch.web.app import create_app
from certwatch.web.server import WebServer
from certwatch.web.settings import WebSettings

SECRET = "hook-s3cret-part"
OPEN_SITE = WebSettings(port=0, signup="open", allow_private_targets=False)
INVITE_SITE = WebSettings(port=0)
RESOLVER = StaticResolver(
    {
        "loop.example.test": ["127.0.0.1"],
        "intranet.example.test": ["10.1.2.3"],
        "mixed.example.test": ["8.8.8.8", "10.1.2.3"],
        "public.example.test": ["8.8.8.8"],
    }
)

Owner = Callable[[WebSettings], tuple[Visitor, int]]


@pytest.fixture(autouse=True)
def no_config_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the delivery settings of the environment out of the test button."""
    for name in ("CERTWATCH_CONFIG", "CERTWATCH_SMTP_HOST", "CERTWATCH_WEBHOOK_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def owner(
    sessions: sessionmaker[Session],
    clock: Clock,
    visitors: Visitors,  # noqa: F811
) -> Iterator[Owner]:
    """Serve the app with the given settings; return an owner and the team id."""
    with contextlib.ExitStack() as stack:

        def start(web: WebSettings) -> tuple[Visitor, int]:
            app = create_app(sessions, web, now_fn=clock)
            scans = ScanSetup(resolver=RESOLVER)
            app.state.certwatch = replace(app.state.certwatch, scans=scans)
            server = WebServer(app, web)
            stack.enter_context(server.running(threading.Event()))
            base_url = f"http://{server.host}:{server.port}"
            team_id = make_team(sessions, "hooks", clock)
            visitor = visitors.make(base_url, "owner@example.test", {team_id: "owner"})
            return visitor, team_id

        yield start


def contacts_of(sessions: sessionmaker[Session], team_id: int) -> list[str]:
    with sessions() as session:
        return [f"{c.kind}:{c.address}" for c in list_contacts(session, team_id)]


def test_open_site_rejects_loopback_webhook(
    owner: Owner,
    http_receiver: HttpReceiver,  # noqa: F811
    sessions: sessionmaker[Session],
) -> None:
    visitor, team_id = owner(OPEN_SITE)
    url = http_receiver.url(f"/internal/{SECRET}")

    added = visitor.post(
        f"/teams/{team_id}/contacts", {"kind": "webhook", "address": url}
    )
    tested = visitor.post(f"/teams/{team_id}/notify-test", {})

    text = html.unescape(added.text)
    assert added.status_code == 400
    assert f"webhook:http://127.0.0.1:{http_receiver.port}/internal/…" in text
    assert "loopback address" in text
    assert "CERTWATCH_ALLOW_PRIVATE_TARGETS=true" in text
    assert SECRET not in added.text
    assert contacts_of(sessions, team_id) == []
    assert tested.status_code == 409
    assert http_receiver.requests == []


@pytest.mark.parametrize(
    ("kind", "url", "address"),
    [
        ("webhook", "http://loop.example.test:9/hook", "127.0.0.1"),
        ("webhook", "https://intranet.example.test/hook", "10.1.2.3"),
        ("webhook", "https://mixed.example.test/hook", "10.1.2.3"),
        ("slack", "https://169.254.169.254/services/T0/B0/x", "169.254.169.254"),
        ("teams", "https://[::1]/workflows/x", "::1"),
        ("teams", "https://[::ffff:10.0.0.1]/workflows/x", "::ffff:a00:1"),
        ("apprise", "json://127.0.0.1:9/hook", "127.0.0.1"),
        ("webhook", "http://169.254.169.254.:80/latest/meta-data/", "169.254.169.254"),
        ("webhook", "http://localhost.:9/", "localhost."),
        ("webhook", "http://LocalHost/", "localhost"),
    ],
)
def test_open_site_rejects_private_receivers(
    owner: Owner,
    sessions: sessionmaker[Session],
    kind: str,
    url: str,
    address: str,
) -> None:
    visitor, team_id = owner(OPEN_SITE)

    added = visitor.post(f"/teams/{team_id}/contacts", {"kind": kind, "address": url})

    text = html.unescape(added.text)
    assert added.status_code == 400
    assert f"leads to {address} (" in text
    assert "CERTWATCH_ALLOW_PRIVATE_TARGETS=true" in text
    assert contacts_of(sessions, team_id) == []


def test_open_site_accepts_public_and_email(
    owner: Owner, sessions: sessionmaker[Session]
) -> None:
    visitor, team_id = owner(OPEN_SITE)

    email = visitor.post(
        f"/teams/{team_id}/contacts", {"kind": "email", "address": "ops@example.test"}
    )
    public = visitor.post(
        f"/teams/{team_id}/contacts",
        {"kind": "webhook", "address": "https://public.example.test/x"},
    )

    assert email.status_code == 303
    assert public.status_code == 303
    assert contacts_of(sessions, team_id) == [
        "email:ops@example.test",
        "webhook:https://public.example.test/x",
    ]


@pytest.mark.parametrize(
    "url", ["https://hooks.nowhere.test/x", "http://169.254.169.254.invalid/"]
)
def test_open_site_rejects_unresolved_receiver(
    owner: Owner, sessions: sessionmaker[Session], url: str
) -> None:
    """A name without an address cannot be checked, so it is not added."""
    visitor, team_id = owner(OPEN_SITE)

    added = visitor.post(
        f"/teams/{team_id}/contacts", {"kind": "webhook", "address": url}
    )

    text = html.unescape(added.text)
    host = url.split("/")[2]
    assert added.status_code == 400
    assert f"names the host {host!r}, which does not resolve" in text
    assert "cannot check that its address is public" in text
    assert contacts_of(sessions, team_id) == []


def test_invite_site_accepts_unresolved_receiver(
    owner: Owner, sessions: sessionmaker[Session]
) -> None:
    visitor, team_id = owner(INVITE_SITE)

    added = visitor.post(
        f"/teams/{team_id}/contacts",
        {"kind": "webhook", "address": "https://hooks.nowhere.test/x"},
    )

    assert added.status_code == 303
    assert contacts_of(sessions, team_id) == ["webhook:https://hooks.nowhere.test/x"]


def test_open_site_test_button_skips_stored_loopback(
    owner: Owner,
    http_receiver: HttpReceiver,  # noqa: F811
    sessions: sessionmaker[Session],
    clock: Clock,
) -> None:
    visitor, team_id = owner(OPEN_SITE)
    # Stored before the site was opened, or by the operator's CLI.
    with sessions.begin() as session:
        add_contact(
            session,
            team_id,
            kind="webhook",
            address=http_receiver.url(f"/internal/{SECRET}"),
            escalation=False,
            now=clock(),
        )

    tested = visitor.post(f"/teams/{team_id}/notify-test", {})

    text = html.unescape(tested.text)
    assert tested.status_code == 200
    assert "0 of 1 contacts received it" in text
    assert "leads to 127.0.0.1 (loopback address)" in text
    assert f"HTTP {204}" not in text
    assert SECRET not in tested.text
    assert http_receiver.requests == []


def test_invite_site_sends_to_loopback_webhook(
    owner: Owner,
    http_receiver: HttpReceiver,  # noqa: F811
    sessions: sessionmaker[Session],
) -> None:
    visitor, team_id = owner(INVITE_SITE)
    url = http_receiver.url(f"/internal/{SECRET}")

    added = visitor.post(
        f"/teams/{team_id}/contacts", {"kind": "webhook", "address": url}
    )
    tested = visitor.post(f"/teams/{team_id}/notify-test", {})

    assert added.status_code == 303
    assert contacts_of(sessions, team_id) == [f"webhook:{url}"]
    assert "1 of 1 contacts received it" in html.unescape(tested.text)
    assert [request.path for request in http_receiver.requests] == [
        f"/internal/{SECRET}"
    ]
