"""Local servers that speak the STARTTLS dialogues, then serve TLS.

Each server follows the dialogue of its RFC (the server side of what
`certwatch.probe.starttls` does as a client) on a loopback address and, once
it has agreed to start TLS, completes a handshake with the `Chain` given. It
runs an asyncio event loop in its own thread, so both async tests and the
click command (which runs its own loop) can connect to it::

    with DialogueServer(DialogueOptions("smtp", chain)) as server:
        ...  # connect to server.host, server.port
    assert server.server_names == ["mail.example.test"]

`Behaviour` makes a server misbehave in the ways real servers do: long
greetings and capability lists, no STARTTLS, a refused upgrade, silence,
and endless data. The servers record what clients send, so tests can check
the client's side of the dialogue too.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import socket
import ssl
import struct
import tempfile
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from xml.etree.ElementTree import Element, XMLPullParser

from tests.servers import Chain

STREAMS = "http://etherx.jabber.org/streams"
XMPP_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
START_TLS_OID = b"1.3.6.1.4.1.1466.20037"
POSTGRES_SSL_CODE = 80877103
MYSQL_CLIENT_SSL = 0x0800
MYSQL_CLIENT_PROTOCOL_41 = 0x0200

# How much one write of endless data sends.
_FLOOD_CHUNK = 16384


class Behaviour(enum.Enum):
    """How a server runs its dialogue."""

    OFFER = "offer"
    """The shortest correct dialogue that offers and accepts the upgrade."""
    VERBOSE = "verbose"
    """Like OFFER, with multi-line greetings, extra capabilities and other
    responses that the protocol allows."""
    NOT_OFFERED = "not_offered"
    """Reply to the dialogue without offering the upgrade."""
    REFUSED = "refused"
    """Offer the upgrade, then reject it with an error reply."""
    SILENT = "silent"
    """Accept the connection and never send anything."""
    GARBAGE = "garbage"
    """Send one endless line without a line end, or for binary protocols an
    endless announced length."""
    FLOOD = "flood"
    """Send endless well-formed lines that never end the reply."""
    INJECT = "inject"
    """Accept the upgrade and send plain text right after the acceptance."""


@dataclass(frozen=True)
class DialogueOptions:
    """What a `DialogueServer` speaks and how.

    `protocol` is a STARTTLS protocol name of certwatch (`smtp`, `imap`,
    ...). `greeting_delay` is how long the server waits before its first
    message, in seconds.
    """

    protocol: str
    chain: Chain
    behaviour: Behaviour = Behaviour.OFFER
    greeting_delay: float = 0.0
    host: str = "127.0.0.1"


class DialogueServer:
    """A dialogue server on a loopback address, for one test.

    Start it with `start()` or `with`. `close()` cancels every connection and
    stops the thread.
    """

    def __init__(self, options: DialogueOptions) -> None:
        if options.protocol not in _SCRIPTS:
            raise ValueError(
                f"No dialogue server for {options.protocol!r}: use one of "
                f"{sorted(_SCRIPTS)}."
            )
        self.options = options
        self.host = options.host
        self.port = 0
        self.received: list[bytes] = []
        """What clients sent before TLS: text lines without line ends, or
        whole binary messages."""
        self.server_names: list[str | None] = []
        """The SNI name of each TLS handshake, `None` when the client sent none."""
        self.stream_headers: list[dict[str, str]] = []
        """The attributes of each XMPP stream header a client sent, with
        `xmlns` added as the default namespace."""
        self._context = _server_context(options.chain, self.server_names)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def __enter__(self) -> DialogueServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> DialogueServer:
        """Listen on a free port and start serving in a thread.

        A host name such as `localhost` is served on every address it
        resolves to, all on one port, as a client that resolves it expects.
        """
        loop = asyncio.new_event_loop()
        # The loop runs in its own thread from the start, because a test's
        # own event loop may be running in this one.
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        listening = asyncio.run_coroutine_threadsafe(
            self._listen(_addresses(self.host)), loop
        )
        try:
            self._servers = listening.result(timeout=10)
        except OSError:
            self.close()
            raise
        self.port = self._servers[0].sockets[0].getsockname()[1]
        return self

    def close(self) -> None:
        """Stop serving, end every connection and join the thread."""
        loop = self._loop
        if loop is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join()
        loop.close()
        self._loop = None

    async def _listen(
        self, addresses: list[str], attempts: int = 5
    ) -> list[asyncio.Server]:
        """Start one server per address on a port free on all of them."""
        for _ in range(attempts):
            servers = [await asyncio.start_server(self._handle, addresses[0], 0)]
            port = servers[0].sockets[0].getsockname()[1]
            try:
                for address in addresses[1:]:
                    servers.append(
                        await asyncio.start_server(self._handle, address, port)
                    )
            except OSError:
                for server in servers:
                    server.close()
                continue
            return servers
        raise OSError(f"No port was free on all of {addresses}.")

    async def _shutdown(self) -> None:
        for server in self._servers:
            server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()

    async def _handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        session = Session(reader, writer, self)
        try:
            if await _SCRIPTS[self.options.protocol](session):
                await _serve_handshake(reader, writer, self._context)
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # Python 3.11 logs an error for a cancelled connection task of
            # `asyncio.start_server`, so the task ends normally instead.
            pass
        finally:
            writer.transport.abort()
            self._tasks.discard(task)


class Session:
    """One client connection, with the helpers every script uses."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        server: DialogueServer,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.server = server
        self.behaviour = server.options.behaviour

    async def pause(self) -> None:
        """Wait for the greeting delay."""
        await asyncio.sleep(self.server.options.greeting_delay)

    async def send(self, *lines: str) -> None:
        """Send text lines, each ended with CRLF."""
        self.writer.write("".join(f"{line}\r\n" for line in lines).encode())
        await self.writer.drain()

    async def send_bytes(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def line(self) -> bytes:
        """Read one line from the client and record it."""
        line = (await self.reader.readline()).rstrip(b"\r\n")
        if not line and self.reader.at_eof():
            raise asyncio.IncompleteReadError(b"", None)
        self.server.received.append(line)
        return line

    async def read_exactly(self, size: int) -> bytes:
        data = await self.reader.readexactly(size)
        self.server.received.append(data)
        return data

    async def flood(self, unit: bytes) -> bool:
        """Send `unit` over and over until the client gives up."""
        chunk = unit * max(1, _FLOOD_CHUNK // len(unit))
        while True:
            await self.send_bytes(chunk)

    async def hold(self) -> bool:
        """Send nothing and wait until the client closes the connection."""
        await self.reader.read()
        return False

    async def misbehave(self, flood_unit: bytes) -> bool | None:
        """Run the behaviours that are the same in every line protocol.

        Returns `None` when the script goes on with its dialogue.
        """
        if self.behaviour is Behaviour.SILENT:
            return await self.hold()
        if self.behaviour is Behaviour.GARBAGE:
            return await self.flood(b"x")
        if self.behaviour is Behaviour.FLOOD:
            return await self.flood(flood_unit)
        return None


Script = Callable[[Session], Awaitable[bool]]


async def _serve_handshake(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, context: ssl.SSLContext
) -> None:
    """Run the server's side of a TLS handshake over the dialogue's streams.

    The handshake goes through memory BIOs rather than `start_tls`, because
    a client may send its ClientHello right behind its last plain-text
    message (MySQL clients do), and the stream reader may already hold it.
    """
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_side=True)
    while True:
        try:
            tls.do_handshake()
        except ssl.SSLWantReadError:
            writer.write(outgoing.read())
            await writer.drain()
            data = await reader.read(65536)
            if not data:
                raise asyncio.IncompleteReadError(b"", None) from None
            incoming.write(data)
        else:
            writer.write(outgoing.read())
            await writer.drain()
            return


def _addresses(host: str) -> list[str]:
    """Return the addresses to listen on for `host`, an address or a name."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        return list(dict.fromkeys(str(info[4][0]) for info in infos))
    return [host]


def _server_context(chain: Chain, server_names: list[str | None]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as directory:
        chain_path = Path(directory, "chain.pem")
        key_path = Path(directory, "key.pem")
        chain_path.write_bytes(chain.certificates_pem)
        key_path.write_bytes(chain.private_key_pem)
        context.load_cert_chain(chain_path, key_path)

    def record_name(
        tls_object: ssl.SSLObject | ssl.SSLSocket,
        server_name: str | None,
        context: ssl.SSLContext,
    ) -> None:
        server_names.append(server_name)

    context.sni_callback = record_name
    return context


# SMTP (RFC 5321, RFC 3207)


async def smtp_script(session: Session) -> bool:
    await session.pause()
    behaviour = session.behaviour
    if (result := await session.misbehave(b"220-still greeting\r\n")) is not None:
        return result
    if behaviour is Behaviour.VERBOSE:
        await session.send(
            "220-mail.example.test ESMTP ready",
            "220-Unsolicited bulk e-mail is not welcome here.",
            "220 Talk to me",
        )
    else:
        await session.send("220 mail.example.test ESMTP")

    ehlo = await session.line()
    if not ehlo.upper().startswith(b"EHLO "):
        await session.send("503 5.5.1 Send EHLO first")
        return False
    extensions = ["PIPELINING", "SIZE 35882577", "8BITMIME"]
    if behaviour is Behaviour.VERBOSE:
        extensions = [
            "PIPELINING",
            "SIZE 35882577",
            "ETRN",
            "STARTTLS",
            "AUTH PLAIN LOGIN",
            "AUTH=PLAIN LOGIN",
            "ENHANCEDSTATUSCODES",
            "8BITMIME",
            "DSN",
            "SMTPUTF8",
            "CHUNKING",
        ]
    elif behaviour is not Behaviour.NOT_OFFERED:
        extensions.insert(1, "STARTTLS")
    lines = ["mail.example.test Hello", *extensions]
    await session.send(*(f"250-{line}" for line in lines[:-1]), f"250 {lines[-1]}")

    if (await session.line()).upper() != b"STARTTLS":
        await session.send("500 5.5.2 Unexpected command")
        return False
    if behaviour is Behaviour.REFUSED:
        await session.send("454 4.7.0 TLS not available due to temporary reason")
        return False
    if behaviour is Behaviour.INJECT:
        await session.send("220 2.0.0 Ready to start TLS", "250 injected")
        return False
    await session.send("220 2.0.0 Ready to start TLS")
    return True


# IMAP (RFC 3501, RFC 9051)


async def imap_script(session: Session) -> bool:
    await session.pause()
    behaviour = session.behaviour
    if (result := await session.misbehave(b"* OK still greeting\r\n")) is not None:
        return result
    capabilities = "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LOGINDISABLED"
    if behaviour is not Behaviour.NOT_OFFERED:
        capabilities += " STARTTLS"
    if behaviour is Behaviour.OFFER:
        await session.send(f"* OK [CAPABILITY {capabilities}] Server ready.")
    else:
        await session.send("* OK Server ready.")
        tag, command = (await session.line()).split(b" ", 1)
        if command.upper() != b"CAPABILITY":
            await session.send(f"{tag.decode()} BAD Expected CAPABILITY")
            return False
        if behaviour is Behaviour.VERBOSE:
            # An untagged response with a literal, before the capabilities.
            session.writer.write(b'* ID ("name" {15}\r\nDovecot\r\n(test))\r\n')
        await session.send(
            f"* CAPABILITY {capabilities}",
            "* OK [ALERT] System shutdown in 10 minutes",
            f"{tag.decode()} OK Capability completed.",
        )

    tag, command = (await session.line()).split(b" ", 1)
    if command.upper() != b"STARTTLS":
        await session.send(f"{tag.decode()} BAD Expected STARTTLS")
        return False
    if behaviour is Behaviour.REFUSED:
        await session.send(f"{tag.decode()} NO [UNAVAILABLE] TLS is unavailable.")
        return False
    await session.send(f"{tag.decode()} OK Begin TLS negotiation now.")
    return True


# POP3 (RFC 1939, RFC 2449, RFC 2595)


async def pop3_script(session: Session) -> bool:
    await session.pause()
    behaviour = session.behaviour
    if behaviour is Behaviour.FLOOD:
        await session.send("+OK POP3 ready")
        await session.line()
        await session.send("+OK Capability list follows")
        return await session.flood(b"X-CAPABILITY\r\n")
    if (result := await session.misbehave(b"+OK\r\n")) is not None:
        return result
    await session.send("+OK POP3 server ready <1896.697170952@mail.example.test>")

    if (await session.line()).upper() != b"CAPA":
        await session.send("-ERR Expected CAPA")
        return False
    capabilities = ["TOP", "USER", "UIDL"]
    if behaviour is Behaviour.VERBOSE:
        capabilities += ["SASL PLAIN LOGIN", "RESP-CODES", "PIPELINING"]
        # A line starting with "." is sent with the dot doubled.
        capabilities += ["..dotted capability", "IMPLEMENTATION test-pop3"]
    if behaviour is not Behaviour.NOT_OFFERED:
        capabilities.insert(1, "STLS")
    await session.send("+OK Capability list follows", *capabilities, ".")

    if (await session.line()).upper() != b"STLS":
        await session.send("-ERR Expected STLS")
        return False
    if behaviour is Behaviour.REFUSED:
        await session.send("-ERR [SYS/TEMP] TLS is unavailable")
        return False
    await session.send("+OK Begin TLS negotiation")
    return True


# FTP (RFC 959, RFC 4217)


async def ftp_script(session: Session) -> bool:
    await session.pause()
    behaviour = session.behaviour
    if (result := await session.misbehave(b"220-still greeting\r\n")) is not None:
        return result
    if behaviour is Behaviour.VERBOSE:
        await session.send(
            "120 Service ready in 1 minute.",
            "220-Welcome to the test FTP service.",
            "  This line holds any text, even 220 inside it.",
            "220-Another continuation line.",
            "220 Service ready.",
        )
    else:
        await session.send("220 Service ready.")

    if (await session.line()).upper() != b"AUTH TLS":
        await session.send("503 Expected AUTH TLS.")
        return False
    if behaviour is Behaviour.NOT_OFFERED:
        await session.send("502 Command not implemented.")
        return False
    if behaviour is Behaviour.REFUSED:
        await session.send("534 Request denied for policy reasons.")
        return False
    await session.send("234 Proceed with negotiation.")
    return True


# ManageSieve (RFC 5804)


async def sieve_script(session: Session) -> bool:
    await session.pause()
    behaviour = session.behaviour
    if (result := await session.misbehave(b'"SIEVE" "fileinto"\r\n')) is not None:
        return result
    lines = ['"IMPLEMENTATION" "test sieve"', '"SIEVE" "fileinto vacation"']
    if behaviour is Behaviour.VERBOSE:
        lines += ['"SASL" "PLAIN"', '"NOTIFY" "mailto"', '"VERSION" "1.0"']
    await session.send(*lines)
    if behaviour is Behaviour.VERBOSE:
        # A capability name sent as a literal.
        session.writer.write(b"{8}\r\nSTARTTLS\r\n")
    elif behaviour is not Behaviour.NOT_OFFERED:
        await session.send('"STARTTLS"')
    await session.send('OK "Sieve ready."')

    if (await session.line()).upper() != b"STARTTLS":
        await session.send('NO "Expected STARTTLS"')
        return False
    if behaviour is Behaviour.REFUSED:
        await session.send('NO (TRYLATER) "TLS is unavailable"')
        return False
    await session.send('OK "Begin TLS negotiation now"')
    return True


# NNTP (RFC 3977, RFC 4642)


async def nntp_script(session: Session) -> bool:
    await session.pause()
    behaviour = session.behaviour
    if behaviour is Behaviour.FLOOD:
        await session.send("200 news.example.test ready")
        await session.line()
        await session.send("101 Capability list:")
        return await session.flood(b"X-CAPABILITY\r\n")
    if (result := await session.misbehave(b"200\r\n")) is not None:
        return result
    await session.send("201 news.example.test ready, no posting")

    if (await session.line()).upper() != b"CAPABILITIES":
        await session.send("500 Unknown command")
        return False
    capabilities = ["VERSION 2", "READER"]
    if behaviour is Behaviour.VERBOSE:
        capabilities += ["IHAVE", "LIST ACTIVE NEWSGROUPS", "OVER", "HDR"]
        capabilities += ["IMPLEMENTATION test-nntp 1.0"]
    if behaviour is not Behaviour.NOT_OFFERED:
        capabilities.append("STARTTLS")
    await session.send("101 Capability list:", *capabilities, ".")

    if (await session.line()).upper() != b"STARTTLS":
        await session.send("500 Unknown command")
        return False
    if behaviour is Behaviour.REFUSED:
        await session.send("580 Can not initiate TLS negotiation")
        return False
    await session.send("382 Continue with TLS negotiation")
    return True


# LDAP (RFC 4511, RFC 4513)


def ber(tag: int, contents: bytes, long_form: bool = False) -> bytes:
    """Encode a BER element. With `long_form`, short lengths use the long form too."""
    if len(contents) < 0x80 and not long_form:
        return bytes([tag, len(contents)]) + contents
    return bytes([tag, 0x82]) + len(contents).to_bytes(2, "big") + contents


def ldap_extended_response(
    message_id: int, result_code: int, diagnostic: bytes = b"", verbose: bool = False
) -> bytes:
    fields = ber(0x0A, bytes([result_code])) + ber(0x04, b"") + ber(0x04, diagnostic)
    if verbose:
        fields += ber(0x8A, START_TLS_OID)
    message = ber(0x02, bytes([message_id])) + ber(0x78, fields, long_form=verbose)
    return ber(0x30, message, long_form=verbose)


async def ldap_script(session: Session) -> bool:
    behaviour = session.behaviour
    request = await _read_ber(session)
    await session.pause()
    if behaviour is Behaviour.SILENT:
        return await session.hold()
    if behaviour in (Behaviour.GARBAGE, Behaviour.FLOOD):
        # A message that announces almost 4 GiB of contents.
        await session.send_bytes(b"\x30\x84\xff\xff\xff\xf0")
        return await session.flood(b"\x00")
    if START_TLS_OID not in request:
        await session.send_bytes(ldap_extended_response(1, 2, b"unexpected request"))
        return False
    message_id = request[4]
    if behaviour is Behaviour.NOT_OFFERED:
        response = ldap_extended_response(message_id, 2, b"unsupported extended op")
        await session.send_bytes(response)
        return False
    if behaviour is Behaviour.REFUSED:
        response = ldap_extended_response(message_id, 52, b"TLS not configured")
        await session.send_bytes(response)
        return False
    verbose = behaviour is Behaviour.VERBOSE
    await session.send_bytes(
        ldap_extended_response(message_id, 0, b"Start TLS now", verbose)
    )
    return True


async def _read_ber(session: Session) -> bytes:
    header = await session.reader.readexactly(2)
    length = header[1]
    if length & 0x80:
        length = int.from_bytes(await session.reader.readexactly(length & 0x7F), "big")
    message = header + await session.reader.readexactly(length)
    session.server.received.append(message)
    return message


# XMPP (RFC 6120)


async def xmpp_script(session: Session) -> bool:
    behaviour = session.behaviour
    parser: XMLPullParser[Element] = XMLPullParser(events=("start-ns", "start", "end"))
    header = await _xmpp_header(session, parser)
    await session.pause()
    if behaviour is Behaviour.SILENT:
        return await session.hold()
    namespace = header.get("xmlns", "")
    reply = (
        f"<?xml version='1.0'?><stream:stream xmlns='{namespace}' "
        f"xmlns:stream='{STREAMS}' id='c2s-1' from='{header.get('to', '')}' "
        "version='1.0'>"
    )
    if behaviour in (Behaviour.GARBAGE, Behaviour.FLOOD):
        # Endless text, or endless elements, inside the stream features.
        await session.send_bytes(reply.encode() + b"<stream:features>")
        return await session.flood(b"x" if behaviour is Behaviour.GARBAGE else b"<a/>")
    starttls = f"<starttls xmlns='{XMPP_TLS}'><required/></starttls>"
    if behaviour is Behaviour.VERBOSE:
        # A namespace prefix instead of a default namespace, whitespace
        # keepalives, and the features split over several writes.
        starttls = f"<tls:starttls xmlns:tls='{XMPP_TLS}'/>"
        await session.send_bytes(reply.encode() + b"\n  ")
        await session.send_bytes(b"<stream:features>")
        await asyncio.sleep(0.01)
        features = (
            "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
            "<mechanism>PLAIN</mechanism></mechanisms>"
            f"{starttls}<ver xmlns='urn:xmpp:features:rosterver'/>"
            "</stream:features>"
        )
        await session.send_bytes(features.encode())
    else:
        if behaviour is Behaviour.NOT_OFFERED:
            starttls = ""
        features = (
            f"<stream:features>{starttls}<mechanisms "
            "xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism>"
            "</mechanisms></stream:features>"
        )
        await session.send_bytes(reply.encode() + features.encode())

    command = await _xmpp_element(session, parser)
    if command.tag != f"{{{XMPP_TLS}}}starttls":
        await session.send_bytes(b"</stream:stream>")
        return False
    if behaviour is Behaviour.REFUSED:
        await session.send_bytes(
            f"<failure xmlns='{XMPP_TLS}'/></stream:stream>".encode()
        )
        return False
    await session.send_bytes(f"<proceed xmlns='{XMPP_TLS}'/>".encode())
    return True


async def _xmpp_header(
    session: Session, parser: XMLPullParser[Element]
) -> dict[str, str]:
    """Read the client's stream header and record its attributes."""
    namespaces: dict[str, str] = {}
    while True:
        data = await session.reader.read(4096)
        if not data:
            raise asyncio.IncompleteReadError(b"", None)
        session.server.received.append(data)
        parser.feed(data)
        for event, item in parser.read_events():
            if event == "start-ns":
                assert isinstance(item, tuple)
                prefix, uri = item
                namespaces[prefix] = uri
            elif event == "start":
                assert isinstance(item, Element)
                attributes = dict(item.attrib)
                attributes["xmlns"] = namespaces.get("", "")
                attributes["tag"] = item.tag
                session.server.stream_headers.append(attributes)
                return attributes


async def _xmpp_element(session: Session, parser: XMLPullParser[Element]) -> Element:
    """Read the client's next top-level element after the stream header."""
    depth = 1
    while True:
        for event, item in parser.read_events():
            if event == "start":
                depth += 1
            elif event == "end":
                depth -= 1
                if depth == 1:
                    assert isinstance(item, Element)
                    return item
        data = await session.reader.read(4096)
        if not data:
            raise asyncio.IncompleteReadError(b"", None)
        session.server.received.append(data)
        parser.feed(data)


# PostgreSQL (frontend/backend protocol 3)


async def postgres_script(session: Session) -> bool:
    behaviour = session.behaviour
    request = await session.read_exactly(8)
    length, code = struct.unpack("!II", request)
    await session.pause()
    if behaviour is Behaviour.SILENT:
        return await session.hold()
    if behaviour in (Behaviour.GARBAGE, Behaviour.FLOOD):
        return await session.flood(b"X")
    if (length, code) != (8, POSTGRES_SSL_CODE):
        await session.send_bytes(b"N")
        return False
    if behaviour is Behaviour.NOT_OFFERED:
        await session.send_bytes(b"N")
        return False
    if behaviour is Behaviour.REFUSED:
        fields = b"SFATAL\0C53300\0Msorry, too many clients already\0\0"
        await session.send_bytes(b"E" + struct.pack("!I", len(fields) + 4) + fields)
        return False
    if behaviour is Behaviour.INJECT:
        await session.send_bytes(b"SE")
        return False
    await session.send_bytes(b"S")
    return True


# MySQL (client/server protocol 4.1)


def mysql_handshake(capabilities: int, version: bytes) -> bytes:
    """Build an initial handshake packet (protocol version 10)."""
    payload = (
        b"\x0a"
        + version
        + b"\0"
        + struct.pack("<I", 42)
        + b"abcdefgh"
        + b"\0"
        + struct.pack("<H", capabilities & 0xFFFF)
        + b"\x21"
        + struct.pack("<H", 2)
        + struct.pack("<H", capabilities >> 16)
        + b"\x15"
        + b"\0" * 10
        + b"ijklmnopqrst\0"
        + b"mysql_native_password\0"
    )
    return len(payload).to_bytes(3, "little") + b"\0" + payload


async def mysql_script(session: Session) -> bool:
    behaviour = session.behaviour
    await session.pause()
    if behaviour is Behaviour.SILENT:
        return await session.hold()
    if behaviour in (Behaviour.GARBAGE, Behaviour.FLOOD):
        # A packet header that announces 16 MiB, then endless bytes.
        await session.send_bytes(b"\xff\xff\xff\x00")
        return await session.flood(b"x")
    if behaviour is Behaviour.REFUSED:
        message = b"Host '127.0.0.1' is not allowed to connect to this server"
        payload = b"\xff" + struct.pack("<H", 1130) + message
        await session.send_bytes(len(payload).to_bytes(3, "little") + b"\0" + payload)
        return False
    capabilities = 0xFFFF | (0x81BF << 16)
    if behaviour is Behaviour.NOT_OFFERED:
        capabilities &= ~MYSQL_CLIENT_SSL
    version = (
        b"5.5.5-10.11.6-MariaDB-log" if behaviour is Behaviour.VERBOSE else b"8.0.36"
    )
    await session.send_bytes(mysql_handshake(capabilities, version))
    if behaviour is Behaviour.NOT_OFFERED:
        return await session.hold()

    header = await session.reader.readexactly(4)
    request = await session.read_exactly(int.from_bytes(header[:3], "little"))
    flags = struct.unpack("<I", request[:4])[0]
    return header[3] == 1 and len(request) == 32 and bool(flags & MYSQL_CLIENT_SSL)


_SCRIPTS: dict[str, Script] = {
    "smtp": smtp_script,
    "submission": smtp_script,
    "imap": imap_script,
    "pop3": pop3_script,
    "ftp": ftp_script,
    "sieve": sieve_script,
    "nntp": nntp_script,
    "ldap": ldap_script,
    "xmpp": xmpp_script,
    "xmpp-server": xmpp_script,
    "postgres": postgres_script,
    "mysql": mysql_script,
}

DIALOGUE_PROTOCOLS = tuple(_SCRIPTS)
