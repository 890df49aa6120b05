"""The XMPP STARTTLS negotiation (RFC 6120).

The client opens a stream to the domain being checked, which the server
uses to choose its certificate and features, and waits for the stream
features. When they contain `<starttls/>` in the TLS namespace, it sends
`<starttls/>` and expects `<proceed/>`. Client-to-server streams use the
`jabber:client` namespace and server-to-server streams `jabber:server`.
"""

from __future__ import annotations

from xml.etree.ElementTree import Element, ParseError, XMLPullParser
from xml.sax.saxutils import quoteattr

from certwatch.probe.dialogue import (
    DialogueError,
    DialogueFailed,
    PlainStream,
    StarttlsNotOffered,
    StarttlsRefused,
    excerpt,
)
from certwatch.targets import Endpoint

STREAMS_NAMESPACE = "http://etherx.jabber.org/streams"
TLS_NAMESPACE = "urn:ietf:params:xml:ns:xmpp-tls"
STREAM_ERRORS_NAMESPACE = "urn:ietf:params:xml:ns:xmpp-streams"

_STREAM = f"{{{STREAMS_NAMESPACE}}}stream"
_FEATURES = f"{{{STREAMS_NAMESPACE}}}features"
_STREAM_ERROR = f"{{{STREAMS_NAMESPACE}}}error"
_STARTTLS = f"{{{TLS_NAMESPACE}}}starttls"
_PROCEED = f"{{{TLS_NAMESPACE}}}proceed"
_FAILURE = f"{{{TLS_NAMESPACE}}}failure"

STARTTLS_COMMAND = f"<starttls xmlns='{TLS_NAMESPACE}'/>".encode("ascii")


async def xmpp_client_dialogue(stream: PlainStream, endpoint: Endpoint) -> None:
    """Negotiate STARTTLS on a client-to-server stream (`jabber:client`)."""
    await _negotiate(stream, endpoint, "jabber:client")


async def xmpp_server_dialogue(stream: PlainStream, endpoint: Endpoint) -> None:
    """Negotiate STARTTLS on a server-to-server stream (`jabber:server`)."""
    await _negotiate(stream, endpoint, "jabber:server")


def stream_header(domain: str, namespace: str) -> bytes:
    """Build the initial stream header that opens a stream to `domain`."""
    # Servers that still offer dialback (XEP-0220) expect its namespace
    # declared on server-to-server streams.
    dialback = (
        " xmlns:db='jabber:server:dialback'" if namespace == "jabber:server" else ""
    )
    header = (
        f"<?xml version='1.0'?><stream:stream to={quoteattr(domain)} "
        f"version='1.0' xmlns='{namespace}'{dialback} "
        f"xmlns:stream='{STREAMS_NAMESPACE}'>"
    )
    return header.encode("utf-8")


async def _negotiate(stream: PlainStream, endpoint: Endpoint, namespace: str) -> None:
    # The stream goes to the domain being checked, which is the server name,
    # also when --resolve pins the address connected to.
    domain = endpoint.server_name or endpoint.host
    stream.write(stream_header(domain, namespace))
    reader = _StreamReader(stream)

    stream.step = "the XMPP stream header"
    await reader.read_stream_header()

    stream.step = "the stream features"
    features = await reader.read_element()
    if features.tag != _FEATURES:
        raise _unexpected(features, "the stream features")
    if features.find(_STARTTLS) is None:
        names = ", ".join(_local_name(child.tag) for child in features) or "none"
        raise StarttlsNotOffered(excerpt(f"stream features: {names}"))

    stream.write(STARTTLS_COMMAND)
    stream.step = "the reply to starttls"
    reply = await reader.read_element()
    if reply.tag == _FAILURE:
        raise StarttlsRefused("the server replied <failure/> to <starttls/>")
    if reply.tag != _PROCEED:
        raise _unexpected(reply, "<proceed/>")


class _StreamReader:
    """Parse the server's stream as it arrives, one top-level element at a time."""

    def __init__(self, stream: PlainStream) -> None:
        self._stream = stream
        self._parser: XMLPullParser[Element] = XMLPullParser(events=("start", "end"))
        self._depth = 0
        self._tail = b""

    async def read_stream_header(self) -> None:
        """Read the server's `<stream:stream>` start tag."""
        event, element = await self._next_event()
        if event != "start" or element.tag != _STREAM:
            raise DialogueFailed(
                f"the server sent <{_local_name(element.tag)}> instead of an XMPP "
                "stream header"
            )

    async def read_element(self) -> Element:
        """Return the next complete child element of the stream.

        Raises:
            StarttlsRefused: The server closed the stream.
        """
        while True:
            event, element = await self._next_event()
            if event == "end" and self._depth == 1:
                return element
            if self._depth == 0:
                raise StarttlsRefused(
                    f"the server closed the XMPP stream while the probe waited "
                    f"for {self._stream.step}"
                )

    async def _next_event(self) -> tuple[str, Element]:
        while True:
            try:
                for item in self._parser.read_events():
                    # Only start and end events were requested, and both
                    # carry an element.
                    event, element = item[0], item[-1]
                    assert isinstance(element, Element)
                    self._depth += 1 if event == "start" else -1
                    return event, element
            except ParseError as exc:
                raise DialogueFailed(
                    f"the server sent XML that is not well-formed ({exc}) while "
                    f"the probe waited for {self._stream.step}"
                ) from None
            self._feed(await self._stream.read_some())

    def _feed(self, data: bytes) -> None:
        # XMPP forbids document type declarations (RFC 6120),
        # and refusing them keeps entity definitions out of the parser.
        if b"<!DOCTYPE" in self._tail + data:
            raise DialogueFailed(
                "the server sent a document type declaration, which XMPP forbids"
            )
        self._tail = data[-8:]
        self._parser.feed(data)


def _unexpected(element: Element, expected: str) -> DialogueError:
    if element.tag == _STREAM_ERROR:
        conditions = [
            _local_name(child.tag)
            for child in element
            if child.tag.startswith(f"{{{STREAM_ERRORS_NAMESPACE}}}")
            and _local_name(child.tag) != "text"
        ]
        condition = conditions[0] if conditions else "without a condition"
        return StarttlsRefused(
            f"the server ended the XMPP stream with the error {excerpt(condition)}"
        )
    return DialogueFailed(
        f"the server sent <{_local_name(element.tag)}> instead of {expected}"
    )


def _local_name(tag: str) -> str:
    return tag.rpartition("}")[2]
