"""The LDAP StartTLS dialogue against servers that send broken replies.

Each server reads the StartTLS request, sends one fixed reply and keeps the
connection open, so a probe that waits for more bytes than the reply contains
runs into its deadline instead of failing at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from certwatch.probe.model import ErrorReason, ProbeResult, ProbeSettings
from certwatch.probe.tls import probe_address
from certwatch.targets import parse_target

SETTINGS = ProbeSettings(timeout=5.0)


@contextlib.asynccontextmanager
async def replying_server(reply: bytes) -> AsyncIterator[int]:
    """Serve `reply` to every client on 127.0.0.1; yield the port."""
    done = asyncio.Event()

    async def handle(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            await reader.read(4096)
            writer.write(reply)
            await writer.drain()
            await done.wait()
        except ConnectionError:
            pass  # the probe hung up
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        done.set()
        server.close()
        await server.wait_closed()


async def probe_reply(reply: bytes) -> ProbeResult:
    async with replying_server(reply) as port:
        endpoint = parse_target(f"ldap://ldap.example.test:{port}")
        return await probe_address(endpoint, "127.0.0.1", SETTINGS)


def extended_response(message_id: bytes, result_code: bytes) -> bytes:
    """Encode an LDAPMessage with an ExtendedResponse from raw contents."""
    fields = bytes([0x0A, len(result_code)]) + result_code + b"\x04\x00" + b"\x04\x00"
    operation = bytes([0x78, len(fields)]) + fields
    body = bytes([0x02, len(message_id)]) + message_id + operation
    return bytes([0x30, len(body)]) + body


async def test_ldap_http_reply_fails_at_once() -> None:
    result = await probe_reply(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    assert result.error is not None
    assert result.error.reason is ErrorReason.STARTTLS_FAILED
    assert "'HTTP/1.1 400 Bad Request" in result.error.message
    assert "not an LDAPMessage (BER tag 0x48, not 0x30)" in result.error.message


@pytest.mark.parametrize(
    ("reply", "field"),
    [
        pytest.param(extended_response(b"", b"\x00"), "message ID", id="message-id"),
        pytest.param(extended_response(b"\x01", b""), "resultCode", id="result-code"),
    ],
)
async def test_ldap_empty_integer_is_broken_reply(reply: bytes, field: str) -> None:
    result = await probe_reply(reply)

    assert result.error is not None
    assert result.error.reason is ErrorReason.STARTTLS_FAILED
    assert f"{field} has no content octets" in result.error.message
    assert "success" not in result.error.message
    assert result.chain == ()


async def test_ldap_valid_refusal_still_refused() -> None:
    result = await probe_reply(extended_response(b"\x01", b"\x34"))

    assert result.error is not None
    assert result.error.reason is ErrorReason.STARTTLS_REFUSED
    assert "resultCode 52 (unavailable)" in result.error.message
