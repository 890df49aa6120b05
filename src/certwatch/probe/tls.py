"""Connect to one address, run a TLS handshake and capture the presented chain.

The handshake runs in a pyOpenSSL memory-BIO connection fed by an asyncio
transport. The standard `ssl` module is not used because on Python 3.11 it
exposes only the leaf certificate, and the chain must come back exactly as
the server sent it, in order and with duplicates. Nothing is verified here:
the analysis verifies the chain later. For a STARTTLS protocol, the dialogue
from `starttls.py` runs on the plain connection first, and the handshake
starts where it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os

from OpenSSL import SSL, crypto
from OpenSSL._util import ffi as _openssl_ffi
from OpenSSL._util import lib as _openssl_lib

from certwatch.probe.dialogue import (
    DialogueError,
    DialogueFailed,
    PlainStream,
    StarttlsNotOffered,
    StarttlsRefused,
    excerpt,
)
from certwatch.probe.model import ErrorReason, ProbeError, ProbeResult, ProbeSettings
from certwatch.probe.starttls import DIALOGUES, Dialogue
from certwatch.targets import PROTOCOLS, Endpoint

logger = logging.getLogger(__name__)

# Every cipher suite OpenSSL has except NULL encryption, including RSA key
# exchange and SHA-1, at security level 0 so that old servers with small keys
# and SHA-1 signatures still complete a handshake. Anonymous suites are moved
# last, so that only a server offering nothing else picks one.
CIPHER_LIST = b"ALL:+aNULL:@SECLEVEL=0"

_READ_SIZE = 65536

# Key exchange groups, most preferred first: the first list for OpenSSL 3.5
# and later, which know the hybrid post-quantum group, the second for older.
GROUP_LISTS = (
    b"X25519:P-256:P-384:P-521:X448:X25519MLKEM768:ffdhe2048:ffdhe3072",
    b"X25519:P-256:P-384:P-521:X448:ffdhe2048:ffdhe3072",
)

# The SSL_state_string_long value once a client has read a CertificateRequest,
# in TLS 1.2 and TLS 1.3 alike (checked with OpenSSL 4.0.3 as bundled by
# cryptography 50).
_CERTIFICATE_REQUEST_STATE = b"SSLv3/TLS read server certificate request"


async def probe_address(
    endpoint: Endpoint, address: str, settings: ProbeSettings
) -> ProbeResult:
    """Connect to `address` and return the chain the server presents.

    One deadline, `settings.timeout`, covers the TCP connect and the whole
    handshake, and for a STARTTLS protocol the dialogue before it. A failure
    to connect, to upgrade or to complete the handshake comes back as a
    result with an error, not as an exception.
    """
    dialogue = DIALOGUES.get(endpoint.protocol)
    if dialogue is not None:
        return await _probe_after_dialogue(endpoint, address, settings, dialogue)

    loop = asyncio.get_running_loop()
    protocol = _HandshakeProtocol(_new_connection(endpoint, settings), loop)
    try:
        async with asyncio.timeout(settings.timeout):
            await loop.create_connection(lambda: protocol, address, endpoint.port)
            await protocol.handshake_done
    except TimeoutError:
        step = "The TLS handshake with" if protocol.connected else "Connecting to"
        error = ProbeError(
            ErrorReason.TIMEOUT,
            f"{step} {address} port {endpoint.port} timed out after "
            f"{settings.timeout:g} s.",
        )
        return _failed(endpoint, address, error)
    except OSError as exc:
        return _failed(
            endpoint, address, _connection_error(endpoint, address, protocol, exc)
        )
    except SSL.Error as exc:
        return _handshake_failed(endpoint, address, protocol, exc)
    finally:
        await protocol.close()

    return _completed(endpoint, address, protocol)


async def _probe_after_dialogue(
    endpoint: Endpoint, address: str, settings: ProbeSettings, dialogue: Dialogue
) -> ProbeResult:
    """Connect, run the STARTTLS dialogue, then hand the connection to TLS.

    The connection starts with a `PlainStream` as its protocol, which the
    handshake protocol replaces once the server has agreed to start TLS.
    """
    loop = asyncio.get_running_loop()
    stream = PlainStream(loop)
    protocol = _HandshakeProtocol(_new_connection(endpoint, settings), loop)
    try:
        async with asyncio.timeout(settings.timeout):
            await loop.create_connection(lambda: stream, address, endpoint.port)
            await dialogue.run(stream, endpoint)
            _start_handshake(stream, protocol)
            await protocol.handshake_done
    except TimeoutError:
        step = _timed_out_step(endpoint, address, dialogue, stream, protocol)
        error = ProbeError(
            ErrorReason.TIMEOUT, f"{step} timed out after {settings.timeout:g} s."
        )
        return _failed(endpoint, address, error)
    except OSError as exc:
        return _failed(
            endpoint, address, _connection_error(endpoint, address, protocol, exc)
        )
    except SSL.Error as exc:
        return _handshake_failed(endpoint, address, protocol, exc)
    except DialogueError as exc:
        return _dialogue_ended(endpoint, address, dialogue, exc)
    finally:
        if protocol.connected:
            await protocol.close()
        else:
            await stream.close()

    return _completed(endpoint, address, protocol)


def _start_handshake(stream: PlainStream, protocol: _HandshakeProtocol) -> None:
    """Make `protocol` the connection's protocol, which sends the ClientHello.

    Raises:
        DialogueFailed: The server sent more after agreeing to start TLS, or
            closed the connection. Bytes sent before the ClientHello cannot
            belong to the handshake, and a client that kept them would mix
            plain text into the TLS session.
    """
    if stream.pending:
        raise DialogueFailed(
            f"the server sent {excerpt(stream.pending[:80])} after agreeing to "
            "start TLS and before the handshake"
        )
    if stream.ended is not None:
        raise DialogueFailed(f"{stream.ended} after agreeing to start TLS")
    transport = stream.transport
    assert transport is not None
    transport.set_protocol(protocol)
    protocol.connection_made(transport)


def _timed_out_step(
    endpoint: Endpoint,
    address: str,
    dialogue: Dialogue,
    stream: PlainStream,
    protocol: _HandshakeProtocol,
) -> str:
    """Name the step of a STARTTLS probe that was under way at the deadline."""
    where = f"{address} port {endpoint.port}"
    if stream.transport is None:
        return f"Connecting to {where}"
    if protocol.connected:
        return f"The TLS handshake with {where}"
    return f"The {dialogue.title} dialogue with {where}, waiting for {stream.step},"


def _dialogue_ended(
    endpoint: Endpoint, address: str, dialogue: Dialogue, exc: DialogueError
) -> ProbeResult:
    """Turn a dialogue that ended without an upgrade into a result."""
    where = f"{address} port {endpoint.port}"
    if isinstance(exc, StarttlsNotOffered):
        message = (
            f"The {dialogue.title} server at {where} does not offer "
            f"{dialogue.upgrade}, so it presents no certificate. It replied: {exc}."
        )
        logger.debug("Probe of %s at %s: %s", endpoint.target, address, message)
        return ProbeResult(
            endpoint=endpoint, address=address, starttls_not_offered=message
        )

    if isinstance(exc, StarttlsRefused):
        reason = ErrorReason.STARTTLS_REFUSED
        message = (
            f"The {dialogue.title} server at {where} refused the upgrade to TLS: {exc}."
        )
    else:
        reason = ErrorReason.STARTTLS_FAILED
        message = f"The {dialogue.title} dialogue with {where} failed: {exc}."
    return _failed(endpoint, address, ProbeError(reason, message))


@functools.lru_cache(maxsize=8)
def client_context(settings: ProbeSettings) -> SSL.Context:
    """Build the client context shared by every probe with these settings.

    It offers TLS 1.0 to 1.3 and every cipher suite, allows servers without
    secure renegotiation (RFC 5746), and verifies nothing.
    """
    context = SSL.Context(SSL.TLS_CLIENT_METHOD)
    context.set_min_proto_version(SSL.TLS1_VERSION)
    context.set_max_proto_version(SSL.TLS1_3_VERSION)
    context.set_cipher_list(CIPHER_LIST)
    context.set_options(SSL.OP_LEGACY_SERVER_CONNECT | SSL.OP_NO_TICKET)
    context.set_verify(SSL.VERIFY_NONE)
    _set_groups(context)
    _watch_certificate_requests(context)
    return context


def _set_groups(context: SSL.Context) -> None:
    """Offer a classical key share first, and the post-quantum group later.

    The OpenSSL 4.0 bundled with cryptography 50 sends an X25519MLKEM768 key
    share by default, which doubles the cost of the ClientHello (130 against
    about 65 microseconds, see docs/benchmarks.md) for a probe that sends no
    secret. Only the first group gets a key share. A server that requires
    another group requests it with a HelloRetryRequest. pyOpenSSL 26 has no
    wrapper for this, so it goes through its cffi bindings. An OpenSSL that
    does not know a group name gets the list without it, and without the
    binding the defaults stay.
    """
    raw_context = getattr(context, "_context", None)
    set_groups = getattr(_openssl_lib, "SSL_CTX_set1_curves_list", None)
    if raw_context is None or set_groups is None:
        return
    for groups in GROUP_LISTS:
        if set_groups(raw_context, groups) == 1:
            return


class _HandshakeProtocol(asyncio.Protocol):
    """The asyncio protocol that moves bytes between a socket and a memory BIO."""

    def __init__(
        self, connection: SSL.Connection, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.connection = connection
        self.connected = False
        self.completed = False
        self.client_certificate_requested = False
        self.handshake_done: asyncio.Future[None] = loop.create_future()
        self._closed: asyncio.Future[None] = loop.create_future()
        self._transport: asyncio.Transport | None = None
        connection.set_app_data(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self.connected = True
        self._advance()

    def data_received(self, data: bytes) -> None:
        if not self.handshake_done.done():
            self.connection.bio_write(data)
            self._advance()

    def eof_received(self) -> bool:
        if not self.handshake_done.done():
            self.connection.bio_shutdown()
            self._advance()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.handshake_done.done():
            self.handshake_done.set_exception(
                exc or ConnectionResetError("the server closed the connection")
            )
        self._closed.set_result(None)

    async def close(self) -> None:
        """Close the transport and wait until its socket is closed.

        After a completed handshake a close_notify alert is written first.
        The transport is aborted rather than closed either way, so a server
        that stops reading cannot keep the probe waiting for a flush.
        """
        if self._transport is None:
            return
        if self.completed:
            with contextlib.suppress(SSL.Error):
                self.connection.shutdown()
            self._flush()
        self._transport.abort()
        # The transport closes its socket in a callback on the next loop
        # iteration, so waiting for it leaves no open socket behind.
        await asyncio.shield(self._closed)

    def _advance(self) -> None:
        try:
            self.connection.do_handshake()
        except SSL.WantReadError:
            self._flush()
        except SSL.Error as exc:
            # The alert that OpenSSL queued for the server goes out first.
            self._flush()
            self.handshake_done.set_exception(exc)
        else:
            self._flush()
            self.completed = True
            self.handshake_done.set_result(None)

    def _flush(self) -> None:
        assert self._transport is not None
        while True:
            try:
                data = self.connection.bio_read(_READ_SIZE)
            except SSL.WantReadError:
                return
            self._transport.write(data)


def _new_connection(endpoint: Endpoint, settings: ProbeSettings) -> SSL.Connection:
    connection = SSL.Connection(client_context(settings), None)
    connection.set_connect_state()
    if endpoint.server_name is not None:
        connection.set_tlsext_host_name(endpoint.server_name.encode("ascii"))
    return connection


def _watch_certificate_requests(context: SSL.Context) -> None:
    """Make every connection of `context` record a CertificateRequest.

    OpenSSL calls a certificate callback (SSL_CTX_set_cert_cb) on a client
    only when the server requests a client certificate, so watching costs
    nothing on other handshakes. pyOpenSSL 26 has no wrapper for it, so this
    reaches into its cffi bindings, and falls back to an info callback, which
    runs on every state change of every handshake, when they change.
    """
    raw_context = getattr(context, "_context", None)
    set_cert_cb = getattr(_openssl_lib, "SSL_CTX_set_cert_cb", None)
    if raw_context is None or set_cert_cb is None or _CERT_CALLBACK is None:
        context.set_info_callback(_note_certificate_request)
        return
    set_cert_cb(raw_context, _CERT_CALLBACK, _openssl_ffi.NULL)


def _on_certificate_request(ssl: object, _argument: object) -> int:
    connections = getattr(SSL.Connection, "_reverse_mapping", {})
    connection = connections.get(ssl)
    if connection is not None:
        protocol = connection.get_app_data()
        if isinstance(protocol, _HandshakeProtocol):
            protocol.client_certificate_requested = True
    # 1 lets the handshake go on without a client certificate.
    return 1


def _make_cert_callback() -> object | None:
    try:
        callback: object = _openssl_ffi.callback(
            "int(SSL *, void *)", _on_certificate_request, error=1
        )
    except (AttributeError, TypeError):
        return None
    return callback


_CERT_CALLBACK = _make_cert_callback()


def _note_certificate_request(connection: SSL.Connection, where: int, _: int) -> None:
    """Record a CertificateRequest, which TLS 1.3 sends without failing."""
    if where & SSL.SSL_CB_CONNECT_LOOP and (
        connection.get_state_string() == _CERTIFICATE_REQUEST_STATE
    ):
        protocol = connection.get_app_data()
        assert isinstance(protocol, _HandshakeProtocol)
        protocol.client_certificate_requested = True


def _completed(
    endpoint: Endpoint, address: str, protocol: _HandshakeProtocol
) -> ProbeResult:
    connection = protocol.connection
    chain = _peer_chain(connection)
    error = None
    if not chain:
        error = ProbeError(
            ErrorReason.NO_CERTIFICATE,
            f"The server at {address} port {endpoint.port} completed the "
            "handshake without sending a certificate.",
        )
    result = ProbeResult(
        endpoint=endpoint,
        address=address,
        chain=chain,
        tls_version=connection.get_protocol_version_name(),
        cipher=connection.get_cipher_name(),
        error=error,
        client_certificate_requested=protocol.client_certificate_requested,
    )
    logger.debug(
        "Probed %s at %s: %s, %s, %d certificates",
        endpoint.target,
        address,
        result.tls_version,
        result.cipher,
        len(chain),
    )
    return result


def _handshake_failed(
    endpoint: Endpoint,
    address: str,
    protocol: _HandshakeProtocol,
    exc: SSL.Error,
) -> ProbeResult:
    """Turn a failed handshake into a result, keeping a chain sent before it."""
    connection = protocol.connection
    chain = _peer_chain(connection)
    if protocol.client_certificate_requested and chain:
        # A TLS 1.2 server that requires a client certificate sends its own
        # chain before it aborts, and that chain is what the probe is after.
        logger.debug(
            "Probed %s at %s: client certificate required, server chain kept",
            endpoint.target,
            address,
        )
        return ProbeResult(
            endpoint=endpoint,
            address=address,
            chain=chain,
            tls_version=connection.get_protocol_version_name(),
            cipher=connection.get_cipher_name(),
            client_certificate_requested=True,
        )

    reason = _openssl_error_text(exc)
    if "excessive message size" in reason:
        # OpenSSL refuses a certificate list over 100 KiB by default (the
        # max_cert_list setting, which pyOpenSSL 26 does not expose).
        reason += " (the server's certificate chain is larger than 100 KiB)"
    if "wrong version number" in reason and not _upgraded(endpoint):
        # OpenSSL's words for a first reply that is not a TLS record, such
        # as the plain-text greeting of a mail server.
        reason += (
            "; the server did not answer in TLS: if it upgrades with STARTTLS, "
            "name its protocol, as in smtp://HOST:PORT or --protocol smtp"
        )
    if protocol.client_certificate_requested:
        # NOTE: no local test server reaches this branch, because OpenSSL
        # servers send their chain before the CertificateRequest in TLS 1.2,
        # and in TLS 1.3 the client's side of the handshake completes.
        message = (
            f"The server at {address} port {endpoint.port} requires a client "
            "certificate, and the server's own certificate could not be "
            f"obtained: {reason}."
        )
    else:
        message = (
            f"The TLS handshake with {address} port {endpoint.port} failed: {reason}."
        )
    error = ProbeError(ErrorReason.TLS_HANDSHAKE_FAILED, message)
    return _failed(endpoint, address, error, protocol.client_certificate_requested)


def _upgraded(endpoint: Endpoint) -> bool:
    """Tell whether the endpoint's protocol reaches TLS through STARTTLS."""
    return any(p.starttls for p in PROTOCOLS if p.name == endpoint.protocol)


def _connection_error(
    endpoint: Endpoint, address: str, protocol: _HandshakeProtocol, exc: OSError
) -> ProbeError:
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    if protocol.connected:
        # The TCP connection was open, so the server dropped it mid-handshake.
        return ProbeError(
            ErrorReason.TLS_HANDSHAKE_FAILED,
            f"The TLS handshake with {address} port {endpoint.port} failed: {reason}.",
        )
    reason_code = (
        ErrorReason.CONNECTION_REFUSED
        if isinstance(exc, ConnectionRefusedError)
        else ErrorReason.CONNECTION_FAILED
    )
    return ProbeError(
        reason_code,
        f"Connecting to {address} port {endpoint.port} failed: {reason}.",
    )


def _failed(
    endpoint: Endpoint,
    address: str,
    error: ProbeError,
    client_certificate_requested: bool = False,
) -> ProbeResult:
    logger.debug(
        "Probe of %s at %s failed: %s", endpoint.target, address, error.message
    )
    return ProbeResult(
        endpoint=endpoint,
        address=address,
        error=error,
        client_certificate_requested=client_certificate_requested,
    )


def _peer_chain(connection: SSL.Connection) -> tuple[bytes, ...]:
    certificates = connection.get_peer_cert_chain() or []
    return tuple(
        crypto.dump_certificate(crypto.FILETYPE_ASN1, certificate)
        for certificate in certificates
    )


def _openssl_error_text(exc: SSL.Error) -> str:
    """Return the reasons in an OpenSSL error queue, such as a received alert."""
    if isinstance(exc, SSL.SysCallError):
        # pyOpenSSL 26 raises SysCallError(-1, "Unexpected EOF") when the
        # server closes the connection before the handshake is complete.
        return "the server closed the connection"
    queue = exc.args[0] if exc.args else None
    if not isinstance(queue, list):
        return str(exc)
    reasons = [
        entry[2]
        for entry in queue
        if isinstance(entry, tuple) and len(entry) == 3 and entry[2]
    ]
    return "; ".join(reasons) or str(exc)
