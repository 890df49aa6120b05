"""The address policy of webhook and chat deliveries, against local receivers.

With private addresses not allowed, nothing may reach a loopback or
private receiver, whatever its name resolves to at delivery time. The
channel resolves names itself and connects to an address it checked,
with the name kept in the Host header and the TLS server name. Names
resolve through resolvers made here, so no DNS server is asked, and the
only sockets are on 127.0.0.1.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from tests.alerts.conftest import HttpReceiver, make_notice
from tests.certs import make_leaf, make_root

from certwatch.alerts import (
    ContactError,
    DeliverySettings,
    WebhookSettings,
    deliver,
    parse_contact,
)
from certwatch.alerts.channels.webhook import post_webhook
from certwatch.alerts.receivers import ReceiverNotAllowed, check_contact
from certwatch.alerts.settings import with_receiver_policy
from certwatch.probe.resolve import ResolutionError, StaticResolver

PUBLIC_ONLY = WebhookSettings(timeout=2, allow_private_addresses=False)
ANY_ADDRESS = WebhookSettings(timeout=2)
HOOK_NAME = "hooks.example.test"


class ListResolver:
    """A resolver that returns the given address lists in order, one per lookup."""

    def __init__(self, *answers: Sequence[str]) -> None:
        self.answers = [list(answer) for answer in answers]
        self.hosts: list[str] = []

    async def resolve(self, host: str, port: int) -> list[str]:
        self.hosts.append(host)
        if not self.answers:
            raise ResolutionError(f"Resolving {host!r} failed: no answer left.")
        return self.answers.pop(0)


async def test_webhook_loopback_literal_blocked(http_receiver: HttpReceiver) -> None:
    contact = parse_contact(f"webhook:{http_receiver.url('/hook/s3cret')}")

    outcome = await post_webhook(contact, make_notice(), PUBLIC_ONLY)

    assert not outcome.delivered
    assert outcome.permanent
    assert "leads to 127.0.0.1 (loopback address)" in outcome.reason
    assert "CERTWATCH_ALLOW_PRIVATE_TARGETS=true" in outcome.reason
    assert "s3cret" not in outcome.reason
    assert http_receiver.requests == []


async def test_webhook_second_dns_answer_blocked(http_receiver: HttpReceiver) -> None:
    contact = parse_contact(f"webhook:http://{HOOK_NAME}:{http_receiver.port}/hook")
    # The first lookup returns a public address, so the contact is accepted.
    # The second, at delivery time, returns the receiver on loopback.
    resolver = ListResolver(["8.8.8.8"], ["127.0.0.1"])

    await check_contact(contact, resolver, timeout=2)
    outcome = await post_webhook(contact, make_notice(), PUBLIC_ONLY, resolver)

    assert resolver.hosts == [HOOK_NAME, HOOK_NAME]
    assert outcome.permanent
    assert "leads to 127.0.0.1" in outcome.reason
    assert http_receiver.requests == []


async def test_webhook_any_private_address_blocked(
    http_receiver: HttpReceiver,
) -> None:
    contact = parse_contact(f"webhook:http://{HOOK_NAME}:{http_receiver.port}/hook")
    resolver = ListResolver(["8.8.8.8", "127.0.0.1"])

    outcome = await post_webhook(contact, make_notice(), PUBLIC_ONLY, resolver)

    assert outcome.permanent
    assert "leads to 127.0.0.1" in outcome.reason
    assert http_receiver.requests == []


async def test_webhook_connects_to_resolved_address(
    http_receiver: HttpReceiver,
) -> None:
    contact = parse_contact(f"webhook:http://{HOOK_NAME}:{http_receiver.port}/hook")
    resolver = StaticResolver({HOOK_NAME: ["127.0.0.1"]})

    outcome = await post_webhook(contact, make_notice(), ANY_ADDRESS, resolver)

    assert outcome.delivered, outcome.reason
    [request] = http_receiver.requests
    assert request.path == "/hook"
    assert request.headers["Host"] == f"{HOOK_NAME}:{http_receiver.port}"


async def test_webhook_tries_next_address(http_receiver: HttpReceiver) -> None:
    contact = parse_contact(f"webhook:http://{HOOK_NAME}:{http_receiver.port}/hook")
    # The receiver listens on 127.0.0.1 only, so 127.0.0.2 refuses.
    resolver = ListResolver(["127.0.0.2", "127.0.0.1"])

    outcome = await post_webhook(contact, make_notice(), ANY_ADDRESS, resolver)

    assert outcome.delivered, outcome.reason
    assert len(http_receiver.requests) == 1


async def test_webhook_name_without_address_retried() -> None:
    contact = parse_contact(f"webhook:https://{HOOK_NAME}/hook")

    outcome = await post_webhook(contact, make_notice(), PUBLIC_ONLY, ListResolver())

    assert not outcome.delivered
    assert not outcome.permanent
    assert "did not resolve" in outcome.reason


async def test_webhook_proxy_still_checks_address(
    http_receiver: HttpReceiver,
) -> None:
    settings = WebhookSettings(
        timeout=2, proxy="http://127.0.0.1:9", allow_private_addresses=False
    )
    contact = parse_contact(f"webhook:{http_receiver.url('/hook')}")

    outcome = await post_webhook(contact, make_notice(), settings)

    assert outcome.permanent
    assert "leads to 127.0.0.1" in outcome.reason


async def test_deliver_obeys_receiver_policy(http_receiver: HttpReceiver) -> None:
    settings = with_receiver_policy(DeliverySettings(), allow_private=False)
    contact = parse_contact(f"slack:{http_receiver.url('/services/T0/B0/x')}")

    outcome = await deliver(contact, make_notice(), settings)

    assert settings.webhook.allow_private_addresses is False
    assert outcome.permanent
    assert http_receiver.requests == []


async def test_apprise_loopback_blocked(http_receiver: HttpReceiver) -> None:
    pytest.importorskip("apprise")
    contact = parse_contact(f"apprise:json://127.0.0.1:{http_receiver.port}/hook")
    settings = DeliverySettings(webhook=PUBLIC_ONLY)

    outcome = await deliver(contact, make_notice(), settings)

    assert outcome.permanent
    assert "leads to 127.0.0.1" in outcome.reason
    assert http_receiver.requests == []


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("webhook:http://127.0.0.1/x", "127.0.0.1"),
        ("webhook:http://[::1]:8080/x", "::1"),
        ("slack:https://169.254.169.254/services/T0/B0/x", "169.254.169.254"),
        ("teams:https://[fe80::1]/x", "fe80::1"),
        (f"webhook:https://{HOOK_NAME}/x", "10.0.0.8"),
        ("apprise:json://192.168.1.9/x", "192.168.1.9"),
        ("webhook:http://169.254.169.254.:80/latest/meta-data/", "169.254.169.254"),
        ("webhook:http://localhost.:9/", "localhost."),
        ("webhook:http://hooks.localhost/", "hooks.localhost"),
    ],
)
async def test_check_contact_rejects(text: str, address: str) -> None:
    resolver = StaticResolver({HOOK_NAME: ["10.0.0.8"]})

    with pytest.raises(ReceiverNotAllowed, match=f"leads to {address} ") as caught:
        await check_contact(parse_contact(text), resolver, timeout=2)

    assert isinstance(caught.value, ContactError)


async def test_check_contact_unresolved_rejected() -> None:
    contact = parse_contact("webhook:https://hooks.nowhere.test/s3cret")

    with pytest.raises(ReceiverNotAllowed, match="which does not resolve") as caught:
        await check_contact(
            contact, StaticResolver({}), timeout=2, reject_unresolved=True
        )

    assert "'hooks.nowhere.test'" in str(caught.value)
    assert "cannot check that its address is public" in str(caught.value)
    assert "s3cret" not in str(caught.value)


async def test_check_contact_unresolved_passes_by_default() -> None:
    contact = parse_contact("webhook:https://hooks.nowhere.test/x")

    await check_contact(contact, StaticResolver({}), timeout=2)


async def test_check_contact_skips_email_and_tokens() -> None:
    resolver = ListResolver()
    contacts = ["email:ops@example.test"]
    if _apprise_installed():
        contacts.append("apprise:tgram://123456789:AAbbCCdd/12345")

    for text in contacts:
        await check_contact(parse_contact(text), resolver, timeout=2)

    assert resolver.hosts == []


def _apprise_installed() -> bool:
    try:
        import apprise  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class TlsReceiver:
    """An HTTPS receiver on 127.0.0.1 with a certificate for `HOOK_NAME`."""

    port: int
    ca_file: Path
    server_names: list[str | None]
    hosts: list[str]


@pytest.fixture
def tls_receiver(tmp_path: Path) -> Iterator[TlsReceiver]:
    # The handshake checks validity against the real clock.
    now = datetime.now(UTC).replace(microsecond=0)
    root = make_root("certwatch webhook test root")
    leaf = make_leaf(
        root,
        dns_names=[HOOK_NAME],
        not_before=now - timedelta(days=1),
        not_after=now + timedelta(days=30),
    )
    (tmp_path / "root.pem").write_bytes(root.pem)
    (tmp_path / "leaf.pem").write_bytes(leaf.pem)
    (tmp_path / "leaf.key").write_bytes(leaf.key_pem())
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "leaf.pem", tmp_path / "leaf.key")
    names: list[str | None] = []
    hosts: list[str] = []

    def record_name(_socket: Any, name: str | None, _context: Any) -> None:
        names.append(name)

    context.sni_callback = record_name

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            hosts.append(self.headers.get("Host", ""))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield TlsReceiver(server.server_address[1], tmp_path / "root.pem", names, hosts)
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


async def test_webhook_https_keeps_server_name(tls_receiver: TlsReceiver) -> None:
    url = f"https://{HOOK_NAME}:{tls_receiver.port}/hook"
    contact = parse_contact(f"webhook:{url}")
    settings = WebhookSettings(timeout=2, ca_file=tls_receiver.ca_file)
    resolver = StaticResolver({HOOK_NAME: ["127.0.0.1"]})

    outcome = await post_webhook(contact, make_notice(), settings, resolver)

    assert outcome.delivered, outcome.reason
    assert tls_receiver.server_names == [HOOK_NAME]
    assert tls_receiver.hosts == [f"{HOOK_NAME}:{tls_receiver.port}"]


async def test_webhook_https_checks_certificate_name(
    tls_receiver: TlsReceiver,
) -> None:
    other = "other.example.test"
    contact = parse_contact(f"webhook:https://{other}:{tls_receiver.port}/hook")
    settings = WebhookSettings(timeout=2, ca_file=tls_receiver.ca_file)
    resolver = StaticResolver({other: ["127.0.0.1"]})

    outcome = await post_webhook(contact, make_notice(), settings, resolver)

    assert not outcome.delivered
    assert "certificate" in outcome.reason.lower()
    assert tls_receiver.hosts == []
