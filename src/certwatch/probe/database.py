"""The TLS requests of PostgreSQL and MySQL, sent before any login.

PostgreSQL (frontend/backend protocol 3, "SSL Session Encryption"): the
client sends an 8-byte SSLRequest and the server replies with one byte, `S`
to start TLS or `N` to decline.

MySQL and MariaDB (client/server protocol 4.1): the server speaks first with
its initial handshake packet. When its capability flags include CLIENT_SSL,
the client sends an SSL request packet, a handshake response cut short
after the character set, and starts TLS without waiting for a reply.
"""

from __future__ import annotations

import struct

from certwatch.probe.dialogue import (
    MAX_DIALOGUE_BYTES,
    DialogueFailed,
    PlainStream,
    StarttlsNotOffered,
    StarttlsRefused,
    excerpt,
)
from certwatch.targets import Endpoint

# The SSLRequest code: 1234 in the high 16 bits and 5679 in the low 16 bits.
POSTGRES_SSL_REQUEST = struct.pack("!II", 8, (1234 << 16) | 5679)

MYSQL_PROTOCOL_VERSION = 10
CLIENT_LONG_PASSWORD = 0x0000_0001
CLIENT_PROTOCOL_41 = 0x0000_0200
CLIENT_SSL = 0x0000_0800
CLIENT_SECURE_CONNECTION = 0x0000_8000
MYSQL_SSL_FLAGS = (
    CLIENT_LONG_PASSWORD | CLIENT_PROTOCOL_41 | CLIENT_SSL | CLIENT_SECURE_CONNECTION
)
# The maximum packet size the client announces, 16 MiB, and character set 33
# (utf8_general_ci), which MySQL and MariaDB servers support.
MYSQL_MAX_PACKET = 16 * 1024 * 1024
MYSQL_CHARACTER_SET = 33


async def postgres_dialogue(stream: PlainStream, endpoint: Endpoint) -> None:
    """Send SSLRequest and read the server's one-byte reply."""
    stream.write(POSTGRES_SSL_REQUEST)
    stream.step = "the reply to SSLRequest"
    reply = await stream.read_exactly(1)
    if reply == b"S":
        return
    if reply == b"N":
        raise StarttlsNotOffered(excerpt("N (the server does not accept SSL)"))
    if reply == b"E":
        raise StarttlsRefused(
            f"the server replied to SSLRequest with the error "
            f"{excerpt(await _read_postgres_error(stream))}"
        )
    raise DialogueFailed(
        f"the server replied {reply!r} to SSLRequest, neither 'S' nor 'N'"
    )


async def _read_postgres_error(stream: PlainStream) -> str:
    """Read an ErrorResponse after its type byte and return its message."""
    length = int.from_bytes(await stream.read_exactly(4), "big")
    if not 4 < length <= MAX_DIALOGUE_BYTES:
        raise DialogueFailed(f"the server sent an ErrorResponse of length {length}")
    fields = (await stream.read_exactly(length - 4)).split(b"\0")
    # Each field is a type byte followed by its text: S severity, M message.
    values = {field[:1]: field[1:].decode("utf-8", "replace") for field in fields}
    return f"{values.get(b'S', 'ERROR')}: {values.get(b'M', '')}"


async def mysql_dialogue(stream: PlainStream, endpoint: Endpoint) -> None:
    """Read the initial handshake, check CLIENT_SSL, send the SSL request."""
    stream.step = "the MySQL initial handshake packet"
    sequence, payload = await _read_mysql_packet(stream)
    if payload[:1] == b"\xff":
        raise StarttlsRefused(f"the server sent the error {_mysql_error(payload)}")
    if payload[:1] != bytes([MYSQL_PROTOCOL_VERSION]):
        raise DialogueFailed(
            f"the server sent a handshake of protocol version {payload[:1]!r}, "
            f"not {MYSQL_PROTOCOL_VERSION}"
        )

    version, capabilities = _parse_handshake(payload)
    if not capabilities & CLIENT_SSL:
        raise StarttlsNotOffered(
            excerpt(
                f"server version {version}, capability flags "
                f"0x{capabilities:08x} without CLIENT_SSL"
            )
        )
    if not capabilities & CLIENT_PROTOCOL_41:
        raise DialogueFailed(
            f"the server (version {excerpt(version)}) lacks CLIENT_PROTOCOL_41, "
            "so it predates MySQL 4.1 and its SSL request format"
        )
    stream.write(ssl_request_packet((sequence + 1) % 256))


def ssl_request_packet(sequence: int) -> bytes:
    """Encode the SSL request: capability flags, max packet, character set."""
    payload = struct.pack(
        "<IIB23x", MYSQL_SSL_FLAGS, MYSQL_MAX_PACKET, MYSQL_CHARACTER_SET
    )
    return len(payload).to_bytes(3, "little") + bytes([sequence]) + payload


async def _read_mysql_packet(stream: PlainStream) -> tuple[int, bytes]:
    """Read one packet: a 3-byte length, a sequence number, the payload."""
    header = await stream.read_exactly(4)
    length = int.from_bytes(header[:3], "little")
    if length == 0:
        raise DialogueFailed("the server sent an empty MySQL packet")
    return header[3], await stream.read_exactly(length)


def _parse_handshake(payload: bytes) -> tuple[str, int]:
    """Return the server version and capability flags of a handshake packet.

    The version is a NUL-terminated string after the protocol version. After
    it come the connection ID (4 bytes), the first 8 bytes of the
    authentication data, a filler byte and the lower 2 bytes of the flags.
    The upper 2 bytes follow the character set and the status flags.
    """
    end = payload.find(b"\0", 1)
    lower = end + 1 + 4 + 8 + 1
    if end < 0 or len(payload) < lower + 2:
        raise DialogueFailed("the server sent a truncated MySQL handshake packet")
    version = payload[1:end].decode("latin-1")
    capabilities = int.from_bytes(payload[lower : lower + 2], "little")
    upper = lower + 2 + 1 + 2
    if len(payload) >= upper + 2:
        capabilities |= int.from_bytes(payload[upper : upper + 2], "little") << 16
    return version, capabilities


def _mysql_error(payload: bytes) -> str:
    """Describe an error packet: 0xff, a 2-byte code, maybe `#` and SQLSTATE."""
    code = int.from_bytes(payload[1:3], "little")
    message = payload[9:] if payload[3:4] == b"#" else payload[3:]
    return f"{code} {excerpt(message)}"
