"""The plain-text connection that a STARTTLS dialogue reads and writes.

`PlainStream` is the asyncio protocol of a connection until the upgrade to
TLS. It buffers what the server sends and bounds it: a line may be at most
`MAX_LINE_BYTES` long and the whole dialogue at most `MAX_DIALOGUE_BYTES`,
so a server that sends endless data cannot make the probe's memory grow.
The dialogues raise the exceptions below, which the probe turns into a
result.
"""

from __future__ import annotations

import asyncio
import re

MAX_LINE_BYTES = 8192
MAX_DIALOGUE_BYTES = 65536

# The maximum length of a server reply that a finding or an error message quotes.
MAX_EXCERPT_CHARACTERS = 300

_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")


class DialogueError(Exception):
    """The STARTTLS dialogue ended without an upgrade to TLS."""


class StarttlsNotOffered(DialogueError):
    """The server replied to the dialogue but does not offer the upgrade.

    The message is a sanitised excerpt of the server's reply.
    """


class StarttlsRefused(DialogueError):
    """The server rejected the session or the upgrade with an error reply."""


class DialogueFailed(DialogueError):
    """The server violated the protocol, closed the connection or sent too much."""


def excerpt(*lines: bytes | str) -> str:
    """Quote what a server sent, on one line of printable ASCII.

    Other characters become `?`, lines are joined with ` / `, and the text is
    shortened to `MAX_EXCERPT_CHARACTERS`, because it goes into findings,
    tables and Nagios lines.
    """
    texts = [
        line.decode("latin-1") if isinstance(line, bytes) else line for line in lines
    ]
    text = _UNPRINTABLE.sub("?", " / ".join(t.rstrip("\r\n") for t in texts))
    if len(text) > MAX_EXCERPT_CHARACTERS:
        text = text[: MAX_EXCERPT_CHARACTERS - 3] + "..."
    return repr(text)


class PlainStream(asyncio.Protocol):
    """A connection before TLS, with bounded reads for the dialogues.

    `step` names what the dialogue waits for, such as "the greeting", so that
    a timeout message names the step at which the server stopped.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.step = "the greeting"
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = loop.create_future()
        self._loop = loop
        self._buffer = bytearray()
        self._received = 0
        self._ended: str | None = None
        self._waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._received += len(data)
        self._buffer += data
        if self._received > MAX_DIALOGUE_BYTES and self.transport is not None:
            # Nothing more is read, so the buffer stays bounded, and the next
            # read that needs more data fails.
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self._ended = "the server closed the connection"
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._ended is None:
            self._ended = (
                f"the connection was lost ({exc})"
                if exc
                else "the server closed the connection"
            )
        self._wake()
        if not self.closed.done():
            self.closed.set_result(None)

    @property
    def local_address(self) -> str | None:
        """The address of this end of the connection, as the socket gives it."""
        assert self.transport is not None
        sockname = self.transport.get_extra_info("sockname")
        return str(sockname[0]) if sockname else None

    @property
    def ended(self) -> str | None:
        """How the connection ended, such as "the server closed the
        connection", or `None` while it is open."""
        return self._ended

    @property
    def pending(self) -> bytes:
        """What the server sent that no dialogue has read yet."""
        return bytes(self._buffer)

    def write(self, data: bytes) -> None:
        """Send `data` to the server."""
        assert self.transport is not None
        self.transport.write(data)

    async def read_line(self) -> bytes:
        """Return the next line without its line end (CRLF, or a bare LF).

        Raises:
            DialogueFailed: The line is longer than `MAX_LINE_BYTES`, the
                dialogue went over `MAX_DIALOGUE_BYTES`, or the connection
                ended before the line did.
        """
        while True:
            end = self._buffer.find(b"\n", 0, MAX_LINE_BYTES)
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                return line.removesuffix(b"\r")
            if len(self._buffer) >= MAX_LINE_BYTES:
                raise DialogueFailed(
                    f"the server sent a line longer than {MAX_LINE_BYTES} bytes "
                    f"while the probe waited for {self.step}, starting "
                    f"{excerpt(bytes(self._buffer[:80]))}"
                )
            await self._more()

    async def read_exactly(self, size: int) -> bytes:
        """Return the next `size` bytes.

        Raises:
            DialogueFailed: `size` is over the dialogue's byte limit, or the
                connection ended first.
        """
        if size > MAX_DIALOGUE_BYTES:
            raise DialogueFailed(
                f"the server announced {size} bytes while the probe waited for "
                f"{self.step}, more than the {MAX_DIALOGUE_BYTES} bytes allowed "
                "before TLS"
            )
        while len(self._buffer) < size:
            await self._more()
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    async def read_some(self) -> bytes:
        """Return everything received and not read yet, at least one byte."""
        if not self._buffer:
            await self._more()
        data = bytes(self._buffer)
        self._buffer.clear()
        return data

    async def close(self) -> None:
        """Abort the connection and wait until its socket is closed."""
        if self.transport is None:
            return
        self.transport.abort()
        await asyncio.shield(self.closed)

    async def _more(self) -> None:
        """Wait until more data arrives.

        Raises:
            DialogueFailed: The connection ended, or the dialogue already
                received more than `MAX_DIALOGUE_BYTES`.
        """
        if self._received > MAX_DIALOGUE_BYTES:
            raise DialogueFailed(
                f"the server sent more than {MAX_DIALOGUE_BYTES} bytes before "
                f"TLS while the probe waited for {self.step}"
            )
        if self._ended is not None:
            raise DialogueFailed(
                f"{self._ended} while the probe waited for {self.step}"
            )
        self._waiter = self._loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
