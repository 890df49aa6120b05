"""Local TLS servers for tests, on loopback only, each in its own threads.

A server is built from `ServerOptions` and used as a context manager::

    chain = Chain(certificates_pem=leaf_pem + intermediate_pem, private_key_pem=key)
    with LocalServer(ServerOptions(chain=chain)) as server:
        ...  # connect to server.host, server.port
    assert server.server_names == ["www.example.test"]

TLS is served by the standard `ssl` module with blocking sockets: one thread
accepts, and each connection gets a thread that runs the handshake and then
closes. The certificates go out exactly as given, in order and with
duplicates, because OpenSSL sends the extra certificates of a loaded chain file
as they appear in it. Besides TLS, a server can misbehave on purpose (see
`Mode`). `closed_port` gives a port on which connections are rejected.
"""

from __future__ import annotations

import contextlib
import enum
import selectors
import socket
import ssl
import tempfile
import threading
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType

# A TLS record header announcing a 16 KiB handshake record, then the first byte
# of a ServerHello, then zeros: a client reading it keeps waiting for the rest.
_TRICKLE_PREFIX = b"\x16\x03\x03\x40\x00\x02"

_PLAINTEXT_RESPONSE = (
    b"HTTP/1.1 400 Bad Request\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Length: 12\r\n"
    b"Connection: close\r\n"
    b"\r\n"
    b"Bad Request\n"
)


class Mode(enum.Enum):
    """What a server does with each connection it accepts."""

    TLS = "tls"
    """Complete a TLS handshake, then close the connection."""
    STALL = "stall"
    """Read what the client sends and never send anything."""
    TRICKLE = "trickle"
    """Send the start of a TLS record one byte every `trickle_interval`."""
    CLOSE = "close"
    """Close the connection at once without reading."""
    PLAINTEXT = "plaintext"
    """Read the first bytes and respond with a plain-text HTTP 400 response."""


@dataclass(frozen=True)
class Chain:
    """Certificates a server presents and the private key of the first one.

    `certificates_pem` is the leaf certificate followed by any extra
    certificates, in the order and with the duplicates the server should send.
    """

    certificates_pem: bytes
    private_key_pem: bytes

    @classmethod
    def from_pems(cls, private_key_pem: bytes, *certificate_pems: bytes) -> Chain:
        """Build a chain from the leaf's key and PEM certificates, leaf first."""
        return cls(b"".join(certificate_pems), private_key_pem)


@dataclass(frozen=True)
class ServerOptions:
    """How a `LocalServer` behaves.

    `chain` is required in `Mode.TLS`. `chains_by_name` picks another chain
    when the client sends that SNI name. `minimum_version`, `maximum_version`
    and `ciphers` restrict the handshake. OpenSSL security level 0 is always
    set, so TLS 1.0, SHA-1 and small keys work. With
    `client_certificate_required`, a client that sends no certificate, or one
    not issued by `client_ca_pem`, fails the handshake. `port` 0 picks a free
    port.
    """

    chain: Chain | None = None
    chains_by_name: Mapping[str, Chain] = field(default_factory=dict)
    host: str = "127.0.0.1"
    port: int = 0
    mode: Mode = Mode.TLS
    minimum_version: ssl.TLSVersion | None = None
    maximum_version: ssl.TLSVersion | None = None
    ciphers: str | None = None
    client_certificate_required: bool = False
    client_ca_pem: bytes | None = None
    trickle_interval: float = 1.0
    handshake_timeout: float = 10.0
    ecdh_curve: str | None = None
    """The only key exchange group the server accepts, such as `secp384r1`."""


class LocalServer:
    """A server on a loopback address, for one test.

    Start it with `start()` or `with`. `close()` stops accepting, shuts down
    every open connection and joins every thread, so nothing outlives the test.
    """

    def __init__(self, options: ServerOptions) -> None:
        if options.mode is Mode.TLS and options.chain is None:
            raise ValueError("A TLS server needs a chain: pass ServerOptions(chain=).")
        self.options = options
        self.host = options.host
        self.port = 0
        self.server_names: list[str | None] = []
        """The SNI name of each TLS connection in arrival order, `None` when
        the client sent none. It is recorded while the server reads the
        ClientHello, so it is complete as soon as the client's handshake ends.
        """
        self.handshake_errors: list[str] = []
        """The message of each failed server-side handshake."""
        self.accepted = 0
        """How many connections were accepted so far."""

        self._context: ssl.SSLContext | None = None
        self._listener: socket.socket | None = None
        self._wakeup: tuple[socket.socket, socket.socket] | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._accept_thread: threading.Thread | None = None

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> LocalServer:
        """Listen on `host` and `port` (a free one for 0), and start accepting."""
        if self.options.mode is Mode.TLS:
            self._context = self._build_contexts()

        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((self.host, self.options.port))
        except OSError:
            listener.close()
            raise
        listener.listen(512)
        listener.setblocking(False)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._wakeup = socket.socketpair()

        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"tls-server-{self.port}", daemon=True
        )
        self._accept_thread.start()
        return self

    def close(self) -> None:
        """Stop the server and wait for its threads. Calling it twice is fine."""
        self._stopping.set()
        if self._accept_thread is not None:
            assert self._wakeup is not None
            self._wakeup[1].send(b"x")
            self._accept_thread.join()
            self._accept_thread = None

        with self._lock:
            open_connections = list(self._connections)
            threads = list(self._threads)
        for connection in open_connections:
            # Shut down below TLS: a plain socket shutdown wakes a thread that
            # blocks in recv or in a handshake.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(connection, socket.SHUT_RDWR)
        for thread in threads:
            thread.join()

        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._wakeup is not None:
            for end in self._wakeup:
                end.close()
            self._wakeup = None

    def _build_contexts(self) -> ssl.SSLContext:
        """Build the default context and one per SNI name, sharing one callback."""
        assert self.options.chain is not None
        default = self._build_context(self.options.chain)
        by_name = {
            name: self._build_context(chain)
            for name, chain in self.options.chains_by_name.items()
        }

        def select_chain(
            tls_socket: ssl.SSLSocket | ssl.SSLObject,
            server_name: str | None,
            context: ssl.SSLContext,
        ) -> None:
            self.server_names.append(server_name)
            if server_name in by_name:
                tls_socket.context = by_name[server_name]

        default.sni_callback = select_chain
        return default

    def _build_context(self, chain: Chain) -> ssl.SSLContext:
        options = self.options
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        # Python 3.11 deprecates TLSVersion.TLSv1 and TLSv1_1 with a warning
        # that pytest would turn into an error, but old servers are the point.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = options.minimum_version or ssl.TLSVersion.TLSv1
            if options.maximum_version is not None:
                context.maximum_version = options.maximum_version
        context.set_ciphers(f"{options.ciphers or 'ALL'}:@SECLEVEL=0")
        if options.ecdh_curve is not None:
            context.set_ecdh_curve(options.ecdh_curve)

        with tempfile.TemporaryDirectory() as directory:
            chain_path = Path(directory, "chain.pem")
            key_path = Path(directory, "key.pem")
            chain_path.write_bytes(chain.certificates_pem)
            key_path.write_bytes(chain.private_key_pem)
            context.load_cert_chain(chain_path, key_path)

        if options.client_certificate_required:
            context.verify_mode = ssl.CERT_REQUIRED
            if options.client_ca_pem is not None:
                context.load_verify_locations(cadata=options.client_ca_pem.decode())
        return context

    def _accept_loop(self) -> None:
        assert self._listener is not None
        assert self._wakeup is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            selector.register(self._wakeup[0], selectors.EVENT_READ)
            while not self._stopping.is_set():
                for _ in selector.select():
                    self._accept_pending()

    def _accept_pending(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                connection, _ = self._listener.accept()
            except BlockingIOError:
                return
            connection.setblocking(True)
            thread = threading.Thread(
                target=self._serve, args=(connection,), daemon=True
            )
            with self._lock:
                self.accepted += 1
                self._connections.add(connection)
                self._threads.add(thread)
            thread.start()

    def _serve(self, connection: socket.socket) -> None:
        try:
            self._serve_mode(connection)
        except OSError:
            pass
        finally:
            connection.close()
            with self._lock:
                self._connections.discard(connection)
                self._threads.discard(threading.current_thread())

    def _serve_mode(self, connection: socket.socket) -> None:
        mode = self.options.mode
        if mode is Mode.TLS:
            self._serve_tls(connection)
        elif mode is Mode.STALL:
            while connection.recv(4096):
                pass
        elif mode is Mode.TRICKLE:
            self._serve_trickle(connection)
        elif mode is Mode.PLAINTEXT:
            connection.recv(4096)
            connection.sendall(_PLAINTEXT_RESPONSE)
        # Mode.CLOSE: closing is all there is to do, and `_serve` does it.

    def _serve_tls(self, connection: socket.socket) -> None:
        assert self._context is not None
        connection.settimeout(self.options.handshake_timeout)
        tls_socket = self._context.wrap_socket(
            connection, server_side=True, do_handshake_on_connect=False
        )
        # The wrapped socket took over the file descriptor, so `close()` must
        # find it to interrupt a handshake in progress.
        with self._lock:
            self._connections.discard(connection)
            self._connections.add(tls_socket)
        try:
            if self._stopping.is_set():
                return
            tls_socket.do_handshake()
        except OSError as exc:
            with self._lock:
                self.handshake_errors.append(str(exc))
        finally:
            tls_socket.close()
            with self._lock:
                self._connections.discard(tls_socket)

    def _serve_trickle(self, connection: socket.socket) -> None:
        data = _TRICKLE_PREFIX
        index = 0
        while not self._stopping.wait(self.options.trickle_interval if index else 0):
            byte = data[index : index + 1] or b"\x00"
            connection.sendall(byte)
            index += 1


def start_on_one_port(*options: ServerOptions, attempts: int = 5) -> list[LocalServer]:
    """Start one server per options on a shared port, each on its own host.

    An endpoint has one port, so servers that stand for several addresses of
    one name must share it. The first server picks a free port. If that port
    is taken on another host, all of them start again on a new one.

    Raises:
        OSError: No shared free port was found in `attempts` tries.
    """
    hosts = [option.host for option in options]
    last_error: OSError | None = None
    for _ in range(attempts):
        servers = [LocalServer(replace(options[0], port=0)).start()]
        try:
            for other in options[1:]:
                shared = replace(other, port=servers[0].port)
                servers.append(LocalServer(shared).start())
        except OSError as exc:
            for server in servers:
                server.close()
            last_error = exc
            continue
        return servers
    raise OSError(
        f"No port was free on all of {hosts} in {attempts} attempts."
    ) from last_error


def ipv6_loopback_available() -> bool:
    """Return whether a server can listen on ::1 here."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as candidate:
            candidate.bind(("::1", 0))
    except OSError:
        return False
    return True


@contextlib.contextmanager
def closed_port(host: str = "127.0.0.1") -> Iterator[int]:
    """Yield a port on `host` where connections are rejected (TCP reset).

    The port is bound but not listening for the duration, so no other process
    can start listening on it in the meantime.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as placeholder:
        placeholder.bind((host, 0))
        yield placeholder.getsockname()[1]
