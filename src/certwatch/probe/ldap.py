"""The LDAP StartTLS extended operation (RFC 4511 and RFC 4513).

The client sends one ExtendedRequest with the StartTLS OID and reads one
ExtendedResponse; resultCode success means the next bytes are TLS. The
messages are BER-encoded by hand: the request is a fixed structure, and of
the response only the message ID and the first fields of the LDAPResult
are needed.
"""

from __future__ import annotations

from certwatch.probe.dialogue import (
    DialogueFailed,
    PlainStream,
    StarttlsNotOffered,
    StarttlsRefused,
    excerpt,
)
from certwatch.targets import Endpoint

START_TLS_OID = b"1.3.6.1.4.1.1466.20037"

MESSAGE_ID = 1

# BER tags (X.690): universal types, and the LDAP application and context tags.
_SEQUENCE = 0x30
_INTEGER = 0x02
_OCTET_STRING = 0x04
_ENUMERATED = 0x0A
_EXTENDED_REQUEST = 0x77  # [APPLICATION 23], constructed
_EXTENDED_RESPONSE = 0x78  # [APPLICATION 24], constructed
_REQUEST_NAME = 0x80  # [0], primitive

_SUCCESS = 0
_PROTOCOL_ERROR = 2

# Names of the resultCodes that a StartTLS response most likely contains, from
# the list in RFC 4511.
_RESULT_NAMES = {
    0: "success",
    1: "operationsError",
    2: "protocolError",
    3: "timeLimitExceeded",
    8: "strongerAuthRequired",
    13: "confidentialityRequired",
    51: "busy",
    52: "unavailable",
    53: "unwillingToPerform",
    80: "other",
}


def start_tls_request(message_id: int = MESSAGE_ID) -> bytes:
    """Encode the LDAPMessage that carries the StartTLS ExtendedRequest."""
    request_name = _element(_REQUEST_NAME, START_TLS_OID)
    operation = _element(_EXTENDED_REQUEST, request_name)
    return _element(_SEQUENCE, _element(_INTEGER, _integer(message_id)) + operation)


async def ldap_dialogue(stream: PlainStream, endpoint: Endpoint) -> None:
    """Send the StartTLS request and check the resultCode of the response."""
    stream.write(start_tls_request())
    stream.step = "the response to the StartTLS extended request"
    message = await _read_message(stream)
    message_id, result_code, diagnostic = _parse_extended_response(message)

    result = f"resultCode {result_code} ({_result_name(result_code)})"
    if diagnostic:
        result += f", diagnosticMessage {excerpt(diagnostic)}"
    if message_id == 0:
        # Message ID 0 is an unsolicited notification, such as the Notice of
        # Disconnection (RFC 4511) of a server that closes the session.
        raise StarttlsRefused(f"the server ended the session: {result}")
    if message_id != MESSAGE_ID:
        raise DialogueFailed(
            f"the server responded to message {message_id}, not to the "
            f"StartTLS request, message {MESSAGE_ID}"
        )
    if result_code == _PROTOCOL_ERROR:
        # RFC 4511: the server does not support the requested extended operation.
        raise StarttlsNotOffered(result)
    if result_code != _SUCCESS:
        raise StarttlsRefused(f"the server responded to StartTLS with {result}")


def _parse_extended_response(message: bytes) -> tuple[int, int, bytes]:
    """Return the message ID, resultCode and diagnosticMessage of a response.

    Raises:
        DialogueFailed: The message is not an ExtendedResponse.
    """
    elements = _elements(message)
    if len(elements) < 2 or elements[0][0] != _INTEGER:
        raise DialogueFailed("the server sent an LDAPMessage without a message ID")
    message_id = _integer_value(elements[0][1], "message ID")
    tag, operation = elements[1]
    if tag != _EXTENDED_RESPONSE:
        raise DialogueFailed(
            f"the server responded with protocol operation tag 0x{tag:02x}, "
            "not with an ExtendedResponse"
        )
    fields = _elements(operation)
    expected = (_ENUMERATED, _OCTET_STRING, _OCTET_STRING)
    if tuple(tag for tag, _ in fields[:3]) != expected:
        raise DialogueFailed(
            "the server sent an ExtendedResponse without resultCode, matchedDN "
            "and diagnosticMessage"
        )
    result_code = _integer_value(fields[0][1], "resultCode")
    return message_id, result_code, fields[2][1]


def _integer_value(contents: bytes, name: str) -> int:
    """Decode the contents of a BER INTEGER or ENUMERATED.

    Raises:
        DialogueFailed: The contents are empty. X.690 requires at least one
            octet, and reading none as 0 would turn a broken reply into
            message ID 0 or resultCode success.
    """
    if not contents:
        raise DialogueFailed(
            f"the server sent an LDAPMessage whose {name} has no content octets"
        )
    return int.from_bytes(contents, "big", signed=True)


def _result_name(code: int) -> str:
    return _RESULT_NAMES.get(code, "unknown code")


async def _read_message(stream: PlainStream) -> bytes:
    """Read one LDAPMessage from the connection and return its contents.

    Raises:
        DialogueFailed: The first byte is not the SEQUENCE tag of an
            LDAPMessage. This is checked before any length is read, because a
            server of another protocol (an HTTP 400 reply, say) would
            otherwise make the probe wait for as many bytes as its second
            byte happens to announce.
    """
    first = await stream.read_exactly(1)
    tag = first[0]
    if tag != _SEQUENCE:
        raise DialogueFailed(
            f"the server sent {excerpt(first + stream.pending)}, which is not an "
            f"LDAPMessage (BER tag 0x{tag:02x}, not 0x{_SEQUENCE:02x})"
        )
    length = (await stream.read_exactly(1))[0]
    if length & 0x80:
        length = await _read_long_length(stream, length)
    return await stream.read_exactly(length)


async def _read_long_length(stream: PlainStream, first: int) -> int:
    """Read the octets of a long-form BER length (X.690)."""
    count = first & 0x7F
    if not 1 <= count <= 4:
        # 0 is the indefinite form, which LDAP forbids (RFC 4511).
        raise DialogueFailed(
            f"the server sent a BER length with {count} length octets, which "
            "LDAP does not allow"
        )
    return int.from_bytes(await stream.read_exactly(count), "big")


def _elements(data: bytes) -> list[tuple[int, bytes]]:
    """Split the contents of a constructed element into (tag, contents) pairs.

    Raises:
        DialogueFailed: An element runs past the end of `data`.
    """
    elements = []
    position = 0
    while position < len(data):
        if position + 2 > len(data):
            raise DialogueFailed("the server sent a truncated BER element")
        tag, length = data[position], data[position + 1]
        position += 2
        if length & 0x80:
            count = length & 0x7F
            if not 1 <= count <= 4 or position + count > len(data):
                raise DialogueFailed("the server sent an invalid BER length")
            length = int.from_bytes(data[position : position + count], "big")
            position += count
        if position + length > len(data):
            raise DialogueFailed("the server sent a truncated BER element")
        elements.append((tag, data[position : position + length]))
        position += length
    return elements


def _element(tag: int, contents: bytes) -> bytes:
    """Encode one BER element with a definite length."""
    size = len(contents)
    if size < 0x80:
        return bytes([tag, size]) + contents
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(octets)]) + octets + contents


def _integer(value: int) -> bytes:
    """Encode a non-negative INTEGER's contents in the fewest octets."""
    return value.to_bytes(value.bit_length() // 8 + 1, "big")
