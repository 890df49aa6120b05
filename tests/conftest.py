"""Fixtures shared by all tests: local TLS servers and the certificates they serve."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trustme
from tests.servers import Chain, LocalServer, ServerOptions, start_on_one_port


@pytest.fixture
def local_server() -> Iterator[Callable[..., LocalServer]]:
    """Start `LocalServer`s from `ServerOptions` keywords; all stop after the test.

    Example: `server = local_server(chain=chain, host="::1")`.
    """
    servers: list[LocalServer] = []

    def start(**options: Any) -> LocalServer:
        server = LocalServer(ServerOptions(**options)).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def local_servers_on_one_port() -> Iterator[Callable[..., list[LocalServer]]]:
    """Start servers that share one port, from one `ServerOptions` each.

    Example: `local_servers_on_one_port(ServerOptions(...), ServerOptions(...))`.
    """
    servers: list[LocalServer] = []

    def start(*options: ServerOptions) -> list[LocalServer]:
        started = start_on_one_port(*options)
        servers.extend(started)
        return started

    yield start
    for server in servers:
        server.close()


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    """A root CA with ECDSA keys that issues the servers' certificates."""
    return trustme.CA()


@pytest.fixture(scope="session")
def server_chain(tls_ca: trustme.CA) -> Chain:
    """An ECDSA leaf for `www.example.test` and `localhost`, sent without the root."""
    leaf = tls_ca.issue_cert("www.example.test", "localhost")
    return Chain.from_pems(
        leaf.private_key_pem.bytes(), leaf.cert_chain_pems[0].bytes()
    )


@pytest.fixture(scope="session")
def rsa_server_chain(tls_ca: trustme.CA) -> Chain:
    """An RSA leaf for `www.example.test`, for RSA key exchange and TLS 1.0."""
    leaf = tls_ca.issue_cert("www.example.test", key_type=trustme.KeyType.RSA)
    return Chain.from_pems(
        leaf.private_key_pem.bytes(), leaf.cert_chain_pems[0].bytes()
    )
