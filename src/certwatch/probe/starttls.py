"""The plain-text dialogues that upgrade a connection to TLS (STARTTLS).

Each dialogue runs over a connected `PlainStream` and returns once the
server has agreed to start TLS, so the next bytes on the connection are the
client's ClientHello. It raises `StarttlsNotOffered` when the server's
capabilities lack the upgrade, `StarttlsRefused` when the server rejects the
session or the upgrade with an error reply, and `DialogueFailed` when the
server breaks the protocol. Replies are read by each protocol's framing, not
matched against one server's text.

This module contains the line-based protocols: SMTP, IMAP, POP3, FTP,
ManageSieve and NNTP. LDAP, XMPP, PostgreSQL and MySQL have modules of
their own. `DIALOGUES` maps each STARTTLS protocol of
`certwatch.targets.PROTOCOLS` to its dialogue.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from certwatch.probe.database import mysql_dialogue, postgres_dialogue
from certwatch.probe.dialogue import (
    DialogueFailed,
    PlainStream,
    StarttlsNotOffered,
    StarttlsRefused,
    excerpt,
)
from certwatch.probe.ldap import ldap_dialogue
from certwatch.probe.xmpp import xmpp_client_dialogue, xmpp_server_dialogue
from certwatch.targets import Endpoint

DialogueFunction = Callable[[PlainStream, Endpoint], Awaitable[None]]


@dataclass(frozen=True)
class Dialogue:
    """A STARTTLS dialogue, with the names that messages show.

    `title` is the protocol's name and `upgrade` the command or request that
    starts TLS in it, such as `STLS` in POP3.
    """

    title: str
    upgrade: str
    run: DialogueFunction


# A reply line of SMTP (RFC 5321) and FTP (RFC 959):
# three digits, then `-` on every line but the last, and a space or nothing
# on the last.
_REPLY_LINE = re.compile(rb"([1-5][0-9]{2})(?:([- ])(.*))?", re.DOTALL)

# An IMAP or ManageSieve literal at the end of a line: `{12}`, or `{12+}`
# for a non-synchronizing literal. The 12 octets follow the line end.
_LITERAL = re.compile(rb"\{([0-9]{1,9})\+?\}$")

_IMAP_CAPABILITY_CODE = re.compile(rb"\[CAPABILITY ([^\]]*)\]", re.IGNORECASE)

_QUOTED = re.compile(rb'"((?:[^"\\]|\\.)*)"')


# SMTP and submission (RFC 5321 for replies and EHLO, RFC 3207 for STARTTLS)


async def smtp_dialogue(stream: PlainStream, endpoint: Endpoint) -> None:
    """Read the greeting, send EHLO, check for STARTTLS in its reply, send it."""
    stream.step = "the SMTP greeting"
    code, lines = await _read_smtp_reply(stream)
    if code != 220:
        raise StarttlsRefused(f"the server greeted with {excerpt(*lines)}")

    stream.write(b"EHLO " + _ehlo_identity(stream) + b"\r\n")
    stream.step = "the reply to EHLO"
    code, lines = await _read_smtp_reply(stream)
    if code in (500, 502):
        # A server that does not implement EHLO has no extensions, so no STARTTLS.
        raise StarttlsNotOffered(excerpt(*lines))
    if code != 250:
        raise StarttlsRefused(f"the server replied {excerpt(*lines)} to EHLO")
    # The first line contains the server's name, the others one keyword each.
    keywords = {_first_word(line[4:]) for line in lines[1:]}
    if b"STARTTLS" not in keywords:
        raise StarttlsNotOffered(excerpt(*lines))

    stream.write(b"STARTTLS\r\n")
    stream.step = "the reply to STARTTLS"
    code, lines = await _read_smtp_reply(stream)
    if code != 220:
        raise StarttlsRefused(f"the server replied {excerpt(*lines)} to STARTTLS")


async def _read_smtp_reply(stream: PlainStream) -> tuple[int, list[bytes]]:
    """Read one SMTP reply, all lines of a multi-line one, with its code."""
    lines: list[bytes] = []
    code: bytes | None = None
    while True:
        line = await stream.read_line()
        lines.append(line)
        match = _REPLY_LINE.fullmatch(line)
        if match is None or match[1] != (code or match[1]):
            raise DialogueFailed(
                f"the server sent {excerpt(line)}, which is not a line of an SMTP "
                f"reply, while the probe waited for {stream.step}"
            )
        code = match[1]
        if match[2] != b"-":
            return int(code), lines


def _ehlo_identity(stream: PlainStream) -> bytes:
    """Return this end's address as an RFC 5321 address literal.

    The probe has no domain name of its own to send, and RFC 5321 lets a
    client without a meaningful domain name send an address literal instead.
    """
    address = stream.local_address or "127.0.0.1"
    if ":" in address:
        return f"[IPv6:{address}]".encode("ascii")
    return f"[{address}]".encode("ascii")


# IMAP (RFC 3501 and RFC 9051)


async def imap_dialogue(stream: PlainStream, endpoint: Endpoint) -> None:
    """Read the greeting, get the capabilities, and send a tagged STARTTLS."""
    stream.step = "the IMAP greeting"
    greeting = await _read_imap_response(stream)
    status = _first_word(greeting[2:]) if greeting.startswith(b"* ") else b""
    if status == b"BYE":
        raise StarttlsRefused(f"the server greeted with {excerpt(greeting)}")
    if status == b"PREAUTH":
        # STARTTLS is valid only before authentication, and a PREAUTH
        # session starts authenticated.
        raise StarttlsNotOffered(excerpt(greeting))
    if status != b"OK":
        raise DialogueFailed(
            f"the server sent {excerpt(greeting)}, which is not an IMAP greeting"
        )

    capabilities = _imap_capability_code(greeting)
    replies = [greeting]
    if capabilities is None:
        stream.write(b"C1 CAPABILITY\r\n")
        stream.step = "the reply to CAPABILITY"
        replies = await _read_imap_tagged(stream, b"C1", "CAPABILITY")
        capabilities = _imap_capabilities(replies)
    if b"STARTTLS" not in capabilities:
        raise StarttlsNotOffered(excerpt(*replies))

    stream.write(b"C2 STARTTLS\r\n")
    stream.step = "the reply to STARTTLS"
    await _read_imap_tagged(stream, b"C2", "STARTTLS")


async def _read_imap_tagged(
    stream: PlainStream, tag: bytes, command: str
) -> list[bytes]:
    """Read the responses to a command up to its tagged OK, and return them.

    Raises:
        StarttlsRefused: The tagged response is NO or BAD, or the server sent
            BYE.
    """
    responses: list[bytes] = []
    while True:
        response = await _read_imap_response(stream)
        responses.append(response)
        if response.startswith(b"* "):
            if _first_word(response[2:]) == b"BYE":
                raise StarttlsRefused(
                    f"the server replied {excerpt(response)} to {command}"
                )
            continue
        if not response.startswith(tag + b" "):
            raise DialogueFailed(
                f"the server sent {excerpt(response)}, which is not a response "
                f"to the IMAP command {command}"
            )
        if _first_word(response[len(tag) + 1 :]) != b"OK":
            raise StarttlsRefused(
                f"the server replied {excerpt(response)} to {command}"
            )
        return responses


async def _read_imap_response(stream: PlainStream) -> bytes:
    """Read one response line, with the literals it contains joined in."""
    return b"".join(await _read_line_with_literals(stream))


async def _read_line_with_literals(stream: PlainStream) -> list[bytes]:
    """Read a line of IMAP or ManageSieve, following the literals it contains.

    A line that ends with `{N}` continues after N octets of literal data and
    the next line end. The parts come back in order: the text up to each
    literal, the literal's octets, and the text after the last literal.
    """
    parts = [await stream.read_line()]
    while (literal := _LITERAL.search(parts[-1])) is not None:
        parts.append(await stream.read_exactly(int(literal[1])))
        parts.append(await stream.read_line())
    return parts


def _imap_capability_code(response: bytes) -> set[bytes] | None:
    match = _IMAP_CAPABILITY_CODE.search(response)
    if match is None:
        return None
    return {word.upper() for word in match[1].split()}


def _imap_capabilities(responses: list[bytes]) -> set[bytes]:
    """Collect the capabilities of untagged CAPABILITY responses and codes."""
    capabilities: set[bytes] = set()
    for response in responses:
        words = response.split()
        if len(words) > 1 and words[0] == b"*" and words[1].upper() == b"CAPABILITY":
            capabilities.update(word.upper() for word in words[2:])
        capabilities.update(_imap_capability_code(response) or ())
    return capabilities


# POP3 (RFC 1939, CAPA from RFC 2449, STLS from RFC 2595)


async def pop3_dialogue(stream: PlainStream, endpoint: Endpoint) -> None:
    """Read the greeting, send CAPA, check for STLS in its list, send STLS."""
    stream.step = "the POP3 greeting"
    greeting = await stream.read_line()
    _check_pop3_status(greeting, "the greeting")

    stream.write(b"CAPA\r\n")
    stream.step = "the reply to CAPA"
    status = await stream.read_line()
    if status.startswith(b"-ERR"):
        # A server without CAPA cannot announce STLS.
        raise StarttlsNotOffered(excerpt(status))
    _check_pop3_status(status, "CAPA")
    capabilities = await _read_dot_terminated(stream)
    if b"STLS" not in {_first_word(line) for line in capabilities}:
        raise StarttlsNotOffered(excerpt(status, *capabilities))

    stream.write(b"STLS\r\n")
    stream.step = "the reply to STLS"
    _check_pop3_status(await stream.read_line(), "STLS")


def _check_pop3_status(line: bytes, command: str) -> None:
    if line.startswith(b"-ERR"):
        raise StarttlsRefused(f"the server replied {excerpt(line)} to {command}")
    if not line.startswith(b"+OK"):
        raise DialogueFailed(
            f"the server sent {excerpt(line)}, which is not a POP3 status line, "
            f"in reply to {command}"
        )


async def _read_dot_terminated(stream: PlainStream) -> list[bytes]:
    """Read a multi-line block of POP3 or NNTP up to the line with a lone `.`.

    A line that starts with `.` arrives with a second `.`, which is removed.
    """
    lines = []
    while (line := await stream.read_line()) != b".":
        lines.append(line[1:] if line.startswith(b".") else line)
    return lines


# FTP (RFC 959 for replies, AUTH TLS from RFC 4217)


async def ftp_dialogue(stream: PlainStream, endpoint: Endpoint) -> None:
    """Read the greeting and send AUTH TLS."""
    stream.step = "the FTP greeting"
    code, lines = await _read_ftp_reply(stream)
    while 100 <= code < 200:
        # 120 announces that the service will be ready in a while, and the
        # real greeting follows.
        code, lines = await _read_ftp_reply(stream)
    if code != 220:
        raise StarttlsRefused(f"the server greeted with {excerpt(*lines)}")

    stream.write(b"AUTH TLS\r\n")
    stream.step = "the reply to AUTH TLS"
    code, lines = await _read_ftp_reply(stream)
    if code in (500, 502, 504, 530):
        # RFC 4217: the server does not implement AUTH, or not with TLS.
        # vsftpd without TLS replies 530 (log in first), which means the same.
        raise StarttlsNotOffered(excerpt(*lines))
    if code != 234:
        raise StarttlsRefused(f"the server replied {excerpt(*lines)} to AUTH TLS")


async def _read_ftp_reply(stream: PlainStream) -> tuple[int, list[bytes]]:
    """Read one FTP reply with its code.

    A multi-line reply starts with `NNN-` and ends with the first line that
    starts with the same `NNN` and a space. The lines between may contain
    any text.
    """
    first = await stream.read_line()
    match = _REPLY_LINE.fullmatch(first)
    if match is None:
        raise DialogueFailed(
            f"the server sent {excerpt(first)}, which is not an FTP reply, while "
            f"the probe waited for {stream.step}"
        )
    lines = [first]
    if match[2] == b"-":
        last = match[1] + b" "
        while not (line := await stream.read_line()).startswith(last) and (
            line != match[1]
        ):
            lines.append(line)
        lines.append(line)
    return int(match[1]), lines


# ManageSieve (RFC 5804)


async def sieve_dialogue(stream: PlainStream, endpoint: Endpoint) -> None:
    """Read the capabilities the server sends on connect, then send STARTTLS."""
    stream.step = "the ManageSieve capabilities"
    names: list[bytes] = []
    lines: list[bytes] = []
    while True:
        parts = await _read_line_with_literals(stream)
        lines.append(b"".join(parts))
        name = _sieve_string(parts)
        if name is None:
            break
        names.append(name.upper())
    _check_sieve_response(parts, "the greeting")
    if b"STARTTLS" not in names:
        raise StarttlsNotOffered(excerpt(*lines))

    stream.write(b"STARTTLS\r\n")
    stream.step = "the reply to STARTTLS"
    _check_sieve_response(await _read_line_with_literals(stream), "STARTTLS")


def _sieve_string(parts: list[bytes]) -> bytes | None:
    """Return the string a capability line starts with, `None` for a response.

    A capability name is a quoted string, or a literal, which makes the
    first part of the line end in `{N}` and the second contain the name.
    """
    if parts[0].startswith(b"{") and len(parts) > 1:
        return parts[1]
    quoted = _QUOTED.match(parts[0])
    if quoted is None:
        return None
    return re.sub(rb"\\(.)", rb"\1", quoted[1])


def _check_sieve_response(parts: list[bytes], command: str) -> None:
    line = b"".join(parts)
    status = _first_word(line)
    if status in (b"NO", b"BYE"):
        raise StarttlsRefused(f"the server replied {excerpt(line)} to {command}")
    if status != b"OK":
        raise DialogueFailed(
            f"the server sent {excerpt(line)}, which is neither a ManageSieve "
            f"capability nor a response, in reply to {command}"
        )


# NNTP (RFC 3977, STARTTLS from RFC 4642)


async def nntp_dialogue(stream: PlainStream, endpoint: Endpoint) -> None:
    """Read the greeting, send CAPABILITIES, check for STARTTLS, send it."""
    stream.step = "the NNTP greeting"
    code, greeting = await _read_nntp_response(stream)
    if code not in (200, 201):
        raise StarttlsRefused(f"the server greeted with {excerpt(greeting)}")

    stream.write(b"CAPABILITIES\r\n")
    stream.step = "the reply to CAPABILITIES"
    code, status = await _read_nntp_response(stream)
    if code in (500, 501):
        # A server from before RFC 3977 does not implement CAPABILITIES.
        raise StarttlsNotOffered(excerpt(status))
    if code != 101:
        raise StarttlsRefused(f"the server replied {excerpt(status)} to CAPABILITIES")
    capabilities = await _read_dot_terminated(stream)
    if b"STARTTLS" not in {_first_word(line) for line in capabilities}:
        raise StarttlsNotOffered(excerpt(status, *capabilities))

    stream.write(b"STARTTLS\r\n")
    stream.step = "the reply to STARTTLS"
    code, status = await _read_nntp_response(stream)
    if code != 382:
        raise StarttlsRefused(f"the server replied {excerpt(status)} to STARTTLS")


async def _read_nntp_response(stream: PlainStream) -> tuple[int, bytes]:
    line = await stream.read_line()
    match = _REPLY_LINE.fullmatch(line)
    if match is None or match[2] == b"-":
        raise DialogueFailed(
            f"the server sent {excerpt(line)}, which is not an NNTP response, "
            f"while the probe waited for {stream.step}"
        )
    return int(match[1]), line


def _first_word(text: bytes) -> bytes:
    words = text.split(None, 1)
    return words[0].upper() if words else b""


DIALOGUES = {
    "smtp": Dialogue("SMTP", "STARTTLS", smtp_dialogue),
    "submission": Dialogue("SMTP", "STARTTLS", smtp_dialogue),
    "imap": Dialogue("IMAP", "STARTTLS", imap_dialogue),
    "pop3": Dialogue("POP3", "STLS", pop3_dialogue),
    "ftp": Dialogue("FTP", "AUTH TLS", ftp_dialogue),
    "ldap": Dialogue("LDAP", "the StartTLS operation", ldap_dialogue),
    "xmpp": Dialogue("XMPP", "STARTTLS", xmpp_client_dialogue),
    "xmpp-server": Dialogue("XMPP", "STARTTLS", xmpp_server_dialogue),
    "postgres": Dialogue("PostgreSQL", "SSL", postgres_dialogue),
    "mysql": Dialogue("MySQL", "SSL", mysql_dialogue),
    "sieve": Dialogue("ManageSieve", "STARTTLS", sieve_dialogue),
    "nntp": Dialogue("NNTP", "STARTTLS", nntp_dialogue),
}
