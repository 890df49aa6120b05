"""STARTTLS probes against local servers that speak each protocol's dialogue.

Every protocol runs the same cases: a plain and a verbose server that offer
the upgrade, a slow greeting, a silent server, one that does not offer
STARTTLS, one that refuses it, and endless data. The servers come from
`tests.dialogue_servers` and serve a leaf with its intermediate.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from tests.dialogue_servers import (
    DIALOGUE_PROTOCOLS,
    Behaviour,
    DialogueOptions,
    DialogueServer,
)
from tests.servers import (
    Chain,
    LocalServer,
    Mode,
    closed_port,
    ipv6_loopback_available,
)

from certwatch.probe.dialogue import MAX_DIALOGUE_BYTES, MAX_LINE_BYTES, excerpt
from certwatch.probe.ldap import start_tls_request
from certwatch.probe.model import ErrorReason, ProbeResult, ProbeSettings
from certwatch.probe.starttls import DIALOGUES
from certwatch.probe.tls import probe_address
from certwatch.targets import STARTTLS_PROTOCOLS, apply_overrides, parse_target

StartDialogueServer = Callable[..., DialogueServer]

SETTINGS = ProbeSettings(timeout=5.0)
# For servers that never reply: long enough for a loopback connect.
SHORT_SETTINGS = ProbeSettings(timeout=0.3)

SERVER_NAME = "mail.example.test"

# The protocols whose dialogue is made of text lines.
LINE_PROTOCOLS = ("smtp", "submission", "imap", "pop3", "ftp", "sieve", "nntp")

requires_ipv6 = pytest.mark.skipif(
    not ipv6_loopback_available(), reason="this machine has no IPv6 loopback ::1"
)


@pytest.fixture(scope="module")
def issued_chain() -> tuple[Chain, tuple[bytes, ...]]:
    """A leaf for mail.example.test with its intermediate, and their DER."""
    intermediate = trustme.CA().create_child_ca()
    leaf = intermediate.issue_cert(SERVER_NAME, "chat.example.test")
    pems = [blob.bytes() for blob in leaf.cert_chain_pems]
    chain = Chain.from_pems(leaf.private_key_pem.bytes(), *pems)
    return chain, tuple(der(pem) for pem in pems)


@pytest.fixture
def dialogue_server(
    issued_chain: tuple[Chain, tuple[bytes, ...]],
) -> Iterator[StartDialogueServer]:
    """Start `DialogueServer`s for a protocol. All of them stop after the test."""
    servers: list[DialogueServer] = []

    def start(protocol: str, **options: Any) -> DialogueServer:
        server = DialogueServer(DialogueOptions(protocol, issued_chain[0], **options))
        servers.append(server.start())
        return server

    yield start
    for server in servers:
        server.close()


def der(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)


async def probe(
    server: DialogueServer | LocalServer,
    protocol: str,
    settings: ProbeSettings = SETTINGS,
) -> ProbeResult:
    endpoint = parse_target(f"{protocol}://{SERVER_NAME}:{server.port}")
    return await probe_address(endpoint, server.host, settings)


def test_dialogues_cover_every_starttls_protocol() -> None:
    assert set(DIALOGUES) == STARTTLS_PROTOCOLS
    assert set(DIALOGUE_PROTOCOLS) == STARTTLS_PROTOCOLS


# The upgrade succeeds


@pytest.mark.parametrize("protocol", DIALOGUE_PROTOCOLS)
async def test_starttls_offered_chain_captured(
    dialogue_server: StartDialogueServer,
    issued_chain: tuple[Chain, tuple[bytes, ...]],
    protocol: str,
) -> None:
    server = dialogue_server(protocol)

    result = await probe(server, protocol)

    assert result.error is None
    assert result.starttls_not_offered is None
    assert result.chain == issued_chain[1]
    assert result.tls_version == "TLSv1.3"
    assert server.server_names == [SERVER_NAME]


@pytest.mark.parametrize("protocol", DIALOGUE_PROTOCOLS)
async def test_starttls_verbose_server(
    dialogue_server: StartDialogueServer,
    issued_chain: tuple[Chain, tuple[bytes, ...]],
    protocol: str,
) -> None:
    server = dialogue_server(protocol, behaviour=Behaviour.VERBOSE)

    result = await probe(server, protocol)

    assert result.error is None
    assert result.chain == issued_chain[1]


@pytest.mark.parametrize("protocol", DIALOGUE_PROTOCOLS)
async def test_starttls_slow_greeting_within_deadline(
    dialogue_server: StartDialogueServer,
    issued_chain: tuple[Chain, tuple[bytes, ...]],
    protocol: str,
) -> None:
    server = dialogue_server(protocol, greeting_delay=0.2)

    result = await probe(server, protocol)

    assert result.error is None
    assert result.chain == issued_chain[1]


async def test_starttls_smtp_ehlo_sends_address_literal(
    dialogue_server: StartDialogueServer,
) -> None:
    server = dialogue_server("smtp")

    await probe(server, "smtp")

    assert server.received == [b"EHLO [127.0.0.1]", b"STARTTLS"]


@requires_ipv6
async def test_starttls_smtp_ipv6_address_literal(
    dialogue_server: StartDialogueServer,
    issued_chain: tuple[Chain, tuple[bytes, ...]],
) -> None:
    server = dialogue_server("smtp", host="::1")

    result = await probe(server, "smtp")

    assert result.chain == issued_chain[1]
    assert server.received[0] == b"EHLO [IPv6:::1]"


async def test_starttls_imap_tags_and_pop3_commands(
    dialogue_server: StartDialogueServer,
) -> None:
    imap = dialogue_server("imap", behaviour=Behaviour.VERBOSE)
    pop3 = dialogue_server("pop3")

    await probe(imap, "imap")
    await probe(pop3, "pop3")

    assert imap.received == [b"C1 CAPABILITY", b"C2 STARTTLS"]
    assert pop3.received == [b"CAPA", b"STLS"]


async def test_starttls_ldap_request_encoding(
    dialogue_server: StartDialogueServer,
) -> None:
    server = dialogue_server("ldap")

    await probe(server, "ldap")

    # LDAPMessage { messageID 1, ExtendedRequest { requestName [0] OID } }.
    expected = bytes.fromhex("301d020101771880") + b"\x16" + b"1.3.6.1.4.1.1466.20037"
    assert start_tls_request() == expected
    assert server.received == [expected]


@pytest.mark.parametrize(
    ("protocol", "namespace"),
    [("xmpp", "jabber:client"), ("xmpp-server", "jabber:server")],
)
async def test_starttls_xmpp_stream_to_checked_domain(
    dialogue_server: StartDialogueServer, protocol: str, namespace: str
) -> None:
    server = dialogue_server(protocol)
    target = parse_target(f"{protocol}://chat.example.test:{server.port}")
    endpoint = apply_overrides(
        target, {("chat.example.test", server.port): "127.0.0.1"}
    )

    result = await probe_address(endpoint, "127.0.0.1", SETTINGS)

    assert result.error is None
    [header] = server.stream_headers
    assert header["to"] == "chat.example.test"
    assert header["xmlns"] == namespace
    assert header["version"] == "1.0"
    assert server.server_names == ["chat.example.test"]


async def test_starttls_xmpp_ip_target_streams_to_address(
    dialogue_server: StartDialogueServer,
) -> None:
    server = dialogue_server("xmpp")
    endpoint = parse_target(f"xmpp://127.0.0.1:{server.port}")

    await probe_address(endpoint, "127.0.0.1", SETTINGS)

    assert server.stream_headers[0]["to"] == "127.0.0.1"
    assert server.server_names == [None]


@requires_ipv6
async def test_starttls_xmpp_ipv6_target_brackets_address(
    dialogue_server: StartDialogueServer,
) -> None:
    server = dialogue_server("xmpp", host="::1")
    endpoint = parse_target(f"xmpp://[::1]:{server.port}")

    result = await probe_address(endpoint, "::1", SETTINGS)

    assert result.error is None
    assert server.stream_headers[0]["to"] == "[::1]"
    assert server.server_names == [None]


# The server does not upgrade


@pytest.mark.parametrize("protocol", DIALOGUE_PROTOCOLS)
async def test_starttls_not_offered_is_reported(
    dialogue_server: StartDialogueServer, protocol: str
) -> None:
    server = dialogue_server(protocol, behaviour=Behaviour.NOT_OFFERED)

    result = await probe(server, protocol)

    assert result.error is None
    assert result.chain == ()
    assert result.starttls_not_offered is not None
    assert f"port {server.port} does not offer" in result.starttls_not_offered
    assert "It replied: " in result.starttls_not_offered
    assert server.server_names == []


@pytest.mark.parametrize(
    ("protocol", "reply"),
    [
        ("smtp", "250-PIPELINING / 250-SIZE 35882577 / 250 8BITMIME"),
        ("imap", "* CAPABILITY IMAP4rev1 SASL-IR"),
        ("pop3", "+OK Capability list follows / TOP / USER / UIDL"),
        ("ftp", "502 Command not implemented."),
        ("sieve", '"SIEVE" "fileinto vacation" / OK "Sieve ready."'),
        ("nntp", "101 Capability list: / VERSION 2 / READER"),
        ("ldap", "resultCode 2 (protocolError)"),
        ("xmpp", "stream features: mechanisms"),
        ("postgres", "N (the server does not accept SSL)"),
        ("mysql", "server version 8.0.36"),
    ],
)
async def test_starttls_not_offered_quotes_reply(
    dialogue_server: StartDialogueServer, protocol: str, reply: str
) -> None:
    server = dialogue_server(protocol, behaviour=Behaviour.NOT_OFFERED)

    result = await probe(server, protocol)

    assert result.starttls_not_offered is not None
    assert reply in result.starttls_not_offered


@pytest.mark.parametrize(
    ("protocol", "reply"),
    [
        ("smtp", "'454 4.7.0 TLS not available due to temporary reason' to STARTTLS"),
        ("submission", "'454 4.7.0 TLS not available"),
        ("imap", "'C2 NO [UNAVAILABLE] TLS is unavailable.' to STARTTLS"),
        ("pop3", "'-ERR [SYS/TEMP] TLS is unavailable' to STLS"),
        ("ftp", "'534 Request denied for policy reasons.' to AUTH TLS"),
        ("sieve", "'NO (TRYLATER) \"TLS is unavailable\"' to STARTTLS"),
        ("nntp", "'580 Can not initiate TLS negotiation' to STARTTLS"),
        ("ldap", "resultCode 52 (unavailable), diagnosticMessage 'TLS not configured'"),
        ("xmpp", "<failure/>"),
        ("xmpp-server", "<failure/>"),
        ("postgres", "'FATAL: sorry, too many clients already'"),
        ("mysql", "1130 \"Host '127.0.0.1' is not allowed"),
    ],
)
async def test_starttls_refused_upgrade(
    dialogue_server: StartDialogueServer, protocol: str, reply: str
) -> None:
    server = dialogue_server(protocol, behaviour=Behaviour.REFUSED)

    result = await probe(server, protocol)

    assert result.error is not None
    assert result.error.reason is ErrorReason.STARTTLS_REFUSED
    assert f"port {server.port} refused the upgrade to TLS" in result.error.message
    assert reply in result.error.message
    assert result.chain == ()
    assert result.starttls_not_offered is None


@pytest.mark.parametrize("protocol", DIALOGUE_PROTOCOLS)
async def test_starttls_silent_server_times_out(
    dialogue_server: StartDialogueServer, protocol: str
) -> None:
    server = dialogue_server(protocol, behaviour=Behaviour.SILENT)

    result = await probe(server, protocol, SHORT_SETTINGS)

    assert result.error is not None
    assert result.error.reason is ErrorReason.TIMEOUT
    title = DIALOGUES[protocol].title
    assert result.error.message.startswith(
        f"The {title} dialogue with 127.0.0.1 port {server.port}, waiting for "
    )
    assert result.error.message.endswith("timed out after 0.3 s.")


async def test_starttls_silent_server_names_step(
    dialogue_server: StartDialogueServer,
) -> None:
    smtp = dialogue_server("smtp", behaviour=Behaviour.SILENT)
    postgres = dialogue_server("postgres", behaviour=Behaviour.SILENT)

    smtp_result = await probe(smtp, "smtp", SHORT_SETTINGS)
    postgres_result = await probe(postgres, "postgres", SHORT_SETTINGS)

    assert smtp_result.error is not None
    assert "waiting for the SMTP greeting," in smtp_result.error.message
    assert postgres_result.error is not None
    assert "waiting for the reply to SSLRequest," in postgres_result.error.message


@pytest.mark.parametrize("protocol", DIALOGUE_PROTOCOLS)
async def test_starttls_endless_garbage_bounded(
    dialogue_server: StartDialogueServer, protocol: str
) -> None:
    server = dialogue_server(protocol, behaviour=Behaviour.GARBAGE)

    result = await probe(server, protocol)

    assert result.error is not None
    assert result.error.reason is ErrorReason.STARTTLS_FAILED
    title = DIALOGUES[protocol].title
    assert result.error.message.startswith(
        f"The {title} dialogue with 127.0.0.1 port {server.port} failed: "
    )


@pytest.mark.parametrize("protocol", LINE_PROTOCOLS)
async def test_starttls_endless_line_hits_line_limit(
    dialogue_server: StartDialogueServer, protocol: str
) -> None:
    server = dialogue_server(protocol, behaviour=Behaviour.GARBAGE)

    result = await probe(server, protocol)

    assert result.error is not None
    assert f"a line longer than {MAX_LINE_BYTES} bytes" in result.error.message
    assert "'xxxxxxxx" in result.error.message


@pytest.mark.parametrize("protocol", (*LINE_PROTOCOLS, "xmpp", "xmpp-server"))
async def test_starttls_endless_lines_hit_dialogue_limit(
    dialogue_server: StartDialogueServer, protocol: str
) -> None:
    server = dialogue_server(protocol, behaviour=Behaviour.FLOOD)

    result = await probe(server, protocol)

    assert result.error is not None
    assert result.error.reason is ErrorReason.STARTTLS_FAILED
    assert f"more than {MAX_DIALOGUE_BYTES} bytes before TLS" in result.error.message


@pytest.mark.parametrize("protocol", ["ldap", "mysql"])
async def test_starttls_huge_announced_length_rejected(
    dialogue_server: StartDialogueServer, protocol: str
) -> None:
    server = dialogue_server(protocol, behaviour=Behaviour.FLOOD)

    result = await probe(server, protocol)

    assert result.error is not None
    assert result.error.reason is ErrorReason.STARTTLS_FAILED
    assert f"more than the {MAX_DIALOGUE_BYTES} bytes allowed" in result.error.message


@pytest.mark.parametrize(
    ("protocol", "sent"), [("smtp", "'250 injected'"), ("postgres", "'E'")]
)
async def test_starttls_plain_text_after_acceptance_rejected(
    dialogue_server: StartDialogueServer, protocol: str, sent: str
) -> None:
    server = dialogue_server(protocol, behaviour=Behaviour.INJECT)

    result = await probe(server, protocol)

    assert result.error is not None
    assert result.error.reason is ErrorReason.STARTTLS_FAILED
    assert f"sent {sent} after agreeing to start TLS" in result.error.message
    assert server.server_names == []


async def test_starttls_server_closes_during_dialogue(
    local_server: Callable[..., LocalServer],
) -> None:
    server = local_server(mode=Mode.CLOSE)

    result = await probe(server, "imap")

    assert result.error is not None
    assert result.error.reason is ErrorReason.STARTTLS_FAILED
    expected = "the server closed the connection while the probe waited for the IMAP"
    assert f"failed: {expected} greeting." in result.error.message


async def test_starttls_connection_refused() -> None:
    with closed_port() as port:
        endpoint = parse_target(f"smtp://{SERVER_NAME}:{port}")
        result = await probe_address(endpoint, "127.0.0.1", SETTINGS)

    assert result.error is not None
    assert result.error.reason is ErrorReason.CONNECTION_REFUSED
    assert result.error.message.startswith(f"Connecting to 127.0.0.1 port {port}")


async def test_starttls_tls_server_without_dialogue_times_out(
    local_server: Callable[..., LocalServer], server_chain: Chain
) -> None:
    # A server that expects TLS at once waits for the ClientHello, and the
    # SMTP client waits for the greeting, so the deadline ends the probe.
    server = local_server(chain=server_chain)

    result = await probe(server, "smtp", SHORT_SETTINGS)

    assert result.error is not None
    assert result.error.reason is ErrorReason.TIMEOUT
    assert "waiting for the SMTP greeting" in result.error.message


# Excerpts of server replies


def test_excerpt_replaces_control_characters() -> None:
    assert excerpt(b"250-\x1b[31mred\r", "caf\u00e9") == "'250-?[31mred / caf?'"


def test_excerpt_shortens_long_replies() -> None:
    text = excerpt(b"A" * 1000)

    assert len(text) == 302
    assert text.endswith("...'")


# A DOCTYPE hidden from a byte search: UTF-16, or split over several writes.
_HOSTILE_HEADER = (
    "<?xml version='1.0'?><!DOCTYPE s [<!ENTITY a 'aaaaaaaaaa'>"
    "<!ENTITY b '&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;'>]>"
    "<stream:stream xmlns='jabber:client' "
    "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
    "<stream:features>&b;</stream:features>"
)


@pytest.mark.parametrize(
    "chunks",
    [
        pytest.param([_HOSTILE_HEADER.encode("utf-16")], id="utf-16"),
        pytest.param(
            [b"<?xml version='1.0'?>", b"<!D", b"OC", _HOSTILE_HEADER[26:].encode()],
            id="split-in-three",
        ),
    ],
)
async def test_starttls_xmpp_rejects_document_type(chunks: list[bytes]) -> None:
    finished = asyncio.Event()

    async def handle(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            await reader.read(4096)
            for chunk in chunks:
                writer.write(chunk)
                await writer.drain()
                await asyncio.sleep(0.01)
            await reader.read(4096)
        except ConnectionError:
            pass  # the probe hung up, as it should
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            finished.set()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        endpoint = parse_target(f"xmpp://127.0.0.1:{port}")
        result = await probe_address(endpoint, "127.0.0.1", SETTINGS)
        await asyncio.wait_for(finished.wait(), timeout=5)
    finally:
        server.close()
        await server.wait_closed()

    assert result.error is not None
    assert result.error.reason is ErrorReason.STARTTLS_FAILED
    assert result.chain == ()
    assert (
        "document type declaration" in result.error.message
        or "not well-formed" in result.error.message
    )
