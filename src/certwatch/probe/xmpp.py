"""The XMPP STARTTLS negotiation (RFC 6120).

The client opens a stream to the domain being checked, which the server
uses to choose its certificate and features, and waits for the stream
features. When they contain `<starttls/>` in the TLS namespace, it sends
`<starttls/>` and expects `<proceed/>`. Client-to-server streams use the
`jabber:client` namespace and server-to-server streams `jabber:server`.
"""

from __future__ import annotations

import ipaddress
from collections import deque
from xml.etree.ElementTree import Element
from xml.parsers import expat
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


def _address_domain(host: str) -> str:
    """Write a host as the domainpart of a JID.

    RFC 7622 (section 3.2) takes the domainpart from RFC 3986's `IPv4address`
    and `IP-literal` rules, so an IPv6 address goes in square brackets, as in
    a URL, and an IPv4 address and a name stay as they are.
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if address.version == 6:
        return f"[{address.compressed}]"
    return host


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
    domain = endpoint.server_name or _address_domain(endpoint.host)
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
    """Parse the server's stream as it arrives, one top-level element at a time.

    The parser reads UTF-8 whatever the stream declares, as RFC 6120
    requires, and stops at any document type declaration, which XMPP
    forbids: entity definitions never reach it, however the declaration is
    encoded or split across reads.
    """

    def __init__(self, stream: PlainStream) -> None:
        self._stream = stream
        self._parser = expat.ParserCreate("UTF-8", "}")
        self._parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        self._parser.StartElementHandler = self._start
        self._parser.EndElementHandler = self._end
        self._parser.StartDoctypeDeclHandler = self._doctype
        self._parser.EntityDeclHandler = self._entity
        self._events: deque[tuple[str, Element]] = deque()
        self._open: list[Element] = []
        self._depth = 0

    async def read_stream_header(self) -> None:
        """Read the server's `<stream:stream>` start tag."""
        event, element = await self._next_event()
        if event != "start" or element.tag != _STREAM:
            raise DialogueFailed(
                f"the server sent <{_name(element)}> instead of an XMPP stream header"
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
        while not self._events:
            data = await self._stream.read_some()
            try:
                self._parser.Parse(data, False)
            except expat.ExpatError as exc:
                raise DialogueFailed(
                    f"the server sent XML that is not well-formed "
                    f"({expat.ErrorString(exc.code)}) while the probe waited for "
                    f"{self._stream.step}"
                ) from None
        event, element = self._events.popleft()
        self._depth += 1 if event == "start" else -1
        return event, element

    def _start(self, name: str, attributes: dict[str, str]) -> None:
        element = Element(_tag(name), attributes)
        if self._open:
            self._open[-1].append(element)
        self._open.append(element)
        self._events.append(("start", element))

    def _end(self, name: str) -> None:
        self._events.append(("end", self._open.pop()))

    def _doctype(self, *_: object) -> None:
        raise DialogueFailed(
            "the server sent a document type declaration, which XMPP forbids"
        )

    def _entity(self, *_: object) -> None:
        raise DialogueFailed("the server declared an XML entity, which XMPP forbids")


def _tag(name: str) -> str:
    """Write expat's `namespace}local` name as ElementTree's `{namespace}local`."""
    return "{" + name if "}" in name else name


def _name(element: Element) -> str:
    """Return an element's local name, quoted and shortened for messages."""
    return excerpt(_local_name(element.tag)).strip("'\"")


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
    return DialogueFailed(f"the server sent <{_name(element)}> instead of {expected}")


def _local_name(tag: str) -> str:
    return tag.rpartition("}")[2]
