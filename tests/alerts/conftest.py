"""Local receivers for the delivery tests: SMTP servers and an HTTP server.

The SMTP servers are real aiosmtpd servers on 127.0.0.1, started in the
test's own event loop: plain, STARTTLS or implicit TLS, with or without
AUTH. Their certificate is issued for localhost and 127.0.0.1 by a root
made in `smtp_pki`. The HTTP receiver is a `ThreadingHTTPServer` on
127.0.0.1 in its own thread that records each request and plays a script
of responses.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from tests.certs import make_leaf, make_root

from certwatch.alerts.message import EventKind, Notice, NoticeItem, Place
from certwatch.alerts.settings import SmtpSecurity, SmtpSettings
from certwatch.x509.model import Severity

SMTP_USERNAME = "certwatch"
SMTP_PASSWORD = "s3cret-smtp-pass"
REFUSED_RECIPIENT = "nobody@example.test"
BUSY_RECIPIENT = "busy@example.test"

GENERATED_AT = datetime(2027, 1, 3, 12, 0, 0, tzinfo=UTC)


def make_notice(key: str = "notice-0001", **changes: Any) -> Notice:
    """Build a notice about one certificate that expires in 7 days at 3 places."""
    item = NoticeItem(
        event=EventKind.EXPIRING,
        severity=Severity.CRITICAL,
        message="The certificate expires in 7 days.",
        names=("www.example.test", "example.test"),
        fingerprint="3fa2910c" * 8,
        not_after=datetime(2027, 1, 10, 12, 0, 0, tzinfo=UTC),
        days_left=7,
        places=(
            Place.endpoint("www.example.test:443", "192.0.2.10"),
            Place.endpoint("www.example.test:443", "192.0.2.11"),
            Place.file("/etc/ssl/site.pem"),
        ),
        finding_code="expiring_soon",
    )
    fields: dict[str, Any] = {
        "key": key,
        "team": "web",
        "event": EventKind.EXPIRING,
        "generated_at": GENERATED_AT,
        "items": (item,),
    }
    fields.update(changes)
    return Notice(**fields)


# --- SMTP -----------------------------------------------------------------


@dataclass(frozen=True)
class SmtpPki:
    """The root that the client trusts and the server's TLS context."""

    ca_file: Path
    server_context: ssl.SSLContext


@pytest.fixture(scope="session")
def smtp_pki(tmp_path_factory: pytest.TempPathFactory) -> SmtpPki:
    """A root and a leaf for localhost and 127.0.0.1, written to files."""
    folder = tmp_path_factory.mktemp("smtp-pki")
    # The TLS handshake checks validity against the real clock.
    now = datetime.now(UTC).replace(microsecond=0)
    root = make_root("certwatch smtp test root")
    leaf = make_leaf(
        root,
        dns_names=["localhost"],
        ip_addresses=["127.0.0.1"],
        not_before=now - timedelta(days=1),
        not_after=now + timedelta(days=30),
    )
    (folder / "root.pem").write_bytes(root.pem)
    (folder / "leaf.pem").write_bytes(leaf.pem)
    (folder / "leaf.key").write_bytes(leaf.key_pem())
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(folder / "leaf.pem", folder / "leaf.key")
    return SmtpPki(ca_file=folder / "root.pem", server_context=context)


@dataclass
class Received:
    """One message that the SMTP server accepted."""

    sender: str
    recipients: list[str]
    data: bytes
    login: str | None
    tls: bool

    @property
    def message(self) -> EmailMessage:
        parsed = BytesParser(policy=default_policy).parsebytes(self.data)
        # The default policy parses into EmailMessage.
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class SmtpHandler:
    """An aiosmtpd handler that keeps what it receives.

    `REFUSED_RECIPIENT` gets a permanent 550 and `BUSY_RECIPIENT` a
    temporary 450.
    """

    received: list[Received] = field(default_factory=list)

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address == REFUSED_RECIPIENT:
            return "550 5.1.1 No such user here"
        if address == BUSY_RECIPIENT:
            return "450 4.2.1 Mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        login = None
        if session.authenticated and isinstance(session.auth_data, LoginPassword):
            login = session.auth_data.login.decode()
        # session.ssl is set after STARTTLS; implicit TLS shows on the transport.
        transport = server.transport
        implicit_tls = (
            transport is not None and transport.get_extra_info("ssl_object") is not None
        )
        self.received.append(
            Received(
                sender=str(envelope.mail_from),
                recipients=list(envelope.rcpt_tos),
                data=bytes(envelope.original_content or b""),
                login=login,
                tls=session.ssl is not None or implicit_tls,
            )
        )
        return "250 Message accepted for delivery"


def _authenticate(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
) -> AuthResult:
    valid = (
        isinstance(data, LoginPassword)
        and data.login == SMTP_USERNAME.encode()
        and data.password == SMTP_PASSWORD.encode()
    )
    return AuthResult(success=valid, handled=False, auth_data=data if valid else None)


def _smtp_protocol(
    security: SmtpSecurity, auth: bool, handler: SmtpHandler, pki: SmtpPki
) -> SMTP:
    return SMTP(
        handler,
        hostname="localhost",
        tls_context=(pki.server_context if security is SmtpSecurity.STARTTLS else None),
        require_starttls=security is SmtpSecurity.STARTTLS,
        auth_required=auth,
        auth_require_tls=security is not SmtpSecurity.PLAIN,
        authenticator=_authenticate if auth else None,
        timeout=5,
    )


@dataclass(frozen=True)
class SmtpServer:
    """A running SMTP server and the client settings that reach it."""

    port: int
    handler: SmtpHandler

    def settings(self, security: SmtpSecurity, **changes: Any) -> SmtpSettings:
        fields: dict[str, Any] = {
            "host": "127.0.0.1",
            "sender": "certwatch <certwatch@example.test>",
            "port": self.port,
            "security": security,
            "timeout": 5.0,
        }
        fields.update(changes)
        return SmtpSettings(**fields)


StartSmtp = Callable[..., Awaitable[SmtpServer]]


@pytest.fixture
async def smtp_server(smtp_pki: SmtpPki) -> AsyncIterator[StartSmtp]:
    """Start SMTP servers on 127.0.0.1; all close after the test.

    Example: `server = await smtp_server(SmtpSecurity.STARTTLS, auth=True)`.
    """
    servers: list[asyncio.Server] = []

    async def start(security: SmtpSecurity, *, auth: bool = False) -> SmtpServer:
        handler = SmtpHandler()

        def protocol() -> SMTP:
            with warnings.catch_warnings():
                # aiosmtpd 1.4 warns when AUTH is allowed without TLS, which
                # the plain-on-loopback case does on purpose.
                warnings.filterwarnings(
                    "ignore", "Requiring AUTH while not requiring TLS"
                )
                return _smtp_protocol(security, auth, handler, smtp_pki)

        server = await asyncio.get_running_loop().create_server(
            protocol,
            "127.0.0.1",
            0,
            ssl=smtp_pki.server_context if security is SmtpSecurity.TLS else None,
        )
        servers.append(server)
        return SmtpServer(server.sockets[0].getsockname()[1], handler)

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


# --- HTTP -----------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """One scripted response: a status, headers and a body, or a hang."""

    status: int = 200
    body: bytes = b"ok"
    headers: tuple[tuple[str, str], ...] = ()
    hang: bool = False


@dataclass(frozen=True)
class Request:
    """One request that the HTTP receiver recorded."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class HttpReceiver:
    """A local HTTP server that records requests and plays scripted replies.

    Replies are used in order; once the script runs out, every request
    gets 200 "ok".
    """

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.script: list[Reply] = []
        self.release = threading.Event()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> HttpReceiver:
        self._thread.start()
        return self

    def close(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _next_reply(self, request: Request) -> Reply:
        with self._lock:
            self.requests.append(request)
            return self.script.pop(0) if self.script else Reply()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                request = Request("POST", self.path, dict(self.headers.items()), body)
                reply = receiver._next_reply(request)
                if reply.hang:
                    receiver.release.wait(timeout=10)
                    return
                self.send_response(reply.status)
                for name, value in reply.headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def http_receiver() -> Iterator[HttpReceiver]:
    """A running `HttpReceiver` on 127.0.0.1, closed after the test."""
    receiver = HttpReceiver().start()
    yield receiver
    receiver.close()
