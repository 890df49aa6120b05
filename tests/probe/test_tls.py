"""Handshakes of `probe_address` against local servers that behave and misbehave."""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections.abc import Callable

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from tests.servers import Chain, LocalServer, Mode, closed_port, ipv6_loopback_available

from certwatch.probe.model import ErrorReason, ProbeSettings
from certwatch.probe.tls import client_context, probe_address
from certwatch.targets import parse_target

StartServer = Callable[..., LocalServer]

SETTINGS = ProbeSettings(timeout=5.0)

requires_ipv6 = pytest.mark.skipif(
    not ipv6_loopback_available(), reason="this machine has no IPv6 loopback ::1"
)


def der(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)


def leaf_der(chain: Chain) -> bytes:
    return der(chain.certificates_pem)


async def test_probe_address_chain_as_presented(
    local_server: StartServer, tls_ca: trustme.CA
) -> None:
    intermediate = tls_ca.create_child_ca()
    leaf = intermediate.issue_cert("www.example.test")
    leaf_pem, intermediate_pem = (blob.bytes() for blob in leaf.cert_chain_pems)
    unrelated_pem = trustme.CA().cert_pem.bytes()
    served = [leaf_pem, unrelated_pem, intermediate_pem, intermediate_pem]
    chain = Chain.from_pems(leaf.private_key_pem.bytes(), *served)
    server = local_server(chain=chain)

    endpoint = parse_target(f"www.example.test:{server.port}")
    result = await probe_address(endpoint, server.host, SETTINGS)

    assert result.error is None
    assert result.chain == tuple(der(pem) for pem in served)
    assert result.address == "127.0.0.1"
    assert result.endpoint == endpoint


async def test_probe_address_tls13_by_default(
    local_server: StartServer, server_chain: Chain
) -> None:
    server = local_server(chain=server_chain)

    endpoint = parse_target(f"www.example.test:{server.port}")
    result = await probe_address(endpoint, server.host, SETTINGS)

    assert result.error is None
    assert result.tls_version == "TLSv1.3"
    assert result.cipher is not None
    assert result.cipher.startswith("TLS_")
    assert result.client_certificate_requested is False


async def test_probe_address_sends_sni_for_names(
    local_server: StartServer, tls_ca: trustme.CA, server_chain: Chain
) -> None:
    other = tls_ca.issue_cert("other.example.test")
    other_chain = Chain.from_pems(
        other.private_key_pem.bytes(), other.cert_chain_pems[0].bytes()
    )
    server = local_server(
        chain=server_chain, chains_by_name={"other.example.test": other_chain}
    )

    endpoint = parse_target(f"other.example.test:{server.port}")
    result = await probe_address(endpoint, server.host, SETTINGS)

    assert server.server_names == ["other.example.test"]
    assert result.chain == (leaf_der(other_chain),)


async def test_probe_address_no_sni_for_ip_literal(
    local_server: StartServer, tls_ca: trustme.CA, server_chain: Chain
) -> None:
    other = tls_ca.issue_cert("127.0.0.1")
    other_chain = Chain.from_pems(
        other.private_key_pem.bytes(), other.cert_chain_pems[0].bytes()
    )
    server = local_server(chain=server_chain, chains_by_name={"127.0.0.1": other_chain})

    endpoint = parse_target(f"127.0.0.1:{server.port}")
    result = await probe_address(endpoint, "127.0.0.1", SETTINGS)

    assert server.server_names == [None]
    assert result.chain == (leaf_der(server_chain),)


@requires_ipv6
async def test_probe_address_ipv6_loopback(
    local_server: StartServer, server_chain: Chain
) -> None:
    server = local_server(chain=server_chain, host="::1")

    endpoint = parse_target(f"[::1]:{server.port}")
    result = await probe_address(endpoint, "::1", SETTINGS)

    assert result.error is None
    assert result.address == "::1"
    assert result.chain == (leaf_der(server_chain),)
    assert server.server_names == [None]


async def test_probe_address_tls10_only_server(
    local_server: StartServer, rsa_server_chain: Chain
) -> None:
    server = local_server(
        chain=rsa_server_chain,
        minimum_version=ssl.TLSVersion.TLSv1,
        maximum_version=ssl.TLSVersion.TLSv1,
    )

    endpoint = parse_target(f"www.example.test:{server.port}")
    result = await probe_address(endpoint, server.host, SETTINGS)

    assert result.error is None
    assert result.tls_version == "TLSv1"
    assert result.chain == (leaf_der(rsa_server_chain),)


async def test_probe_address_rsa_key_exchange_only(
    local_server: StartServer, rsa_server_chain: Chain
) -> None:
    server = local_server(
        chain=rsa_server_chain,
        maximum_version=ssl.TLSVersion.TLSv1_2,
        ciphers="AES128-SHA",
    )

    endpoint = parse_target(f"www.example.test:{server.port}")
    result = await probe_address(endpoint, server.host, SETTINGS)

    assert result.error is None
    assert result.tls_version == "TLSv1.2"
    assert result.cipher == "AES128-SHA"
    assert result.chain == (leaf_der(rsa_server_chain),)


@pytest.mark.parametrize(
    ("version", "version_name"),
    [(ssl.TLSVersion.TLSv1_3, "TLSv1.3"), (ssl.TLSVersion.TLSv1_2, "TLSv1.2")],
)
async def test_probe_address_client_certificate_required(
    local_server: StartServer,
    tls_ca: trustme.CA,
    server_chain: Chain,
    version: ssl.TLSVersion,
    version_name: str,
) -> None:
    server = local_server(
        chain=server_chain,
        minimum_version=version,
        maximum_version=version,
        client_certificate_required=True,
        client_ca_pem=tls_ca.cert_pem.bytes(),
    )

    endpoint = parse_target(f"www.example.test:{server.port}")
    result = await probe_address(endpoint, server.host, SETTINGS)

    assert result.error is None
    assert result.client_certificate_requested is True
    assert result.tls_version == version_name
    assert result.chain[0] == leaf_der(server_chain)


async def test_probe_address_anonymous_cipher_no_certificate(
    local_server: StartServer, server_chain: Chain
) -> None:
    server = local_server(
        chain=server_chain, maximum_version=ssl.TLSVersion.TLSv1_2, ciphers="aNULL"
    )

    endpoint = parse_target(f"www.example.test:{server.port}")
    result = await probe_address(endpoint, server.host, SETTINGS)

    assert result.error is not None
    assert result.error.reason is ErrorReason.NO_CERTIFICATE
    assert result.chain == ()
    assert result.cipher is not None
    assert "ECDH-" in result.cipher


async def test_probe_address_handshake_alert(
    local_server: StartServer, server_chain: Chain
) -> None:
    # The server offers only NULL-encryption suites, which the probe never
    # offers, so the server responds to the ClientHello with a fatal alert.
    server = local_server(
        chain=server_chain, maximum_version=ssl.TLSVersion.TLSv1_2, ciphers="eNULL"
    )

    endpoint = parse_target(f"www.example.test:{server.port}")
    result = await probe_address(endpoint, server.host, SETTINGS)

    assert result.error is not None
    assert result.error.reason is ErrorReason.TLS_HANDSHAKE_FAILED
    assert re.fullmatch(
        rf"The TLS handshake with 127\.0\.0\.1 port {server.port} failed: "
        r"(sslv3|tls) alert handshake failure\.",
        result.error.message,
    )
    assert result.chain == ()


async def test_probe_address_plaintext_server(local_server: StartServer) -> None:
    server = local_server(mode=Mode.PLAINTEXT)

    endpoint = parse_target(f"www.example.test:{server.port}")
    result = await probe_address(endpoint, server.host, SETTINGS)

    assert result.error is not None
    assert result.error.reason is ErrorReason.TLS_HANDSHAKE_FAILED
    assert result.error.message == (
        f"The TLS handshake with 127.0.0.1 port {server.port} failed: "
        "wrong version number; the server did not answer in TLS: if it "
        "upgrades with STARTTLS, name its protocol, as in smtp://HOST:PORT or "
        "--protocol smtp."
    )


async def test_probe_address_server_closes_at_once(local_server: StartServer) -> None:
    server = local_server(mode=Mode.CLOSE)

    endpoint = parse_target(f"www.example.test:{server.port}")
    result = await probe_address(endpoint, server.host, SETTINGS)

    assert result.error is not None
    assert result.error.reason is ErrorReason.TLS_HANDSHAKE_FAILED
    # The server's close arrives as a FIN, or as a reset when the ClientHello
    # was already in its receive buffer. Which one arrives depends on timing.
    assert (
        "the server closed the connection" in result.error.message
        or "Connection reset by peer" in result.error.message
    )


@pytest.mark.parametrize("mode", [Mode.STALL, Mode.TRICKLE])
async def test_probe_address_stalled_server_times_out(
    local_server: StartServer, mode: Mode
) -> None:
    server = local_server(mode=mode, trickle_interval=0.05)
    settings = ProbeSettings(timeout=0.5)

    endpoint = parse_target(f"www.example.test:{server.port}")
    started = time.monotonic()
    result = await probe_address(endpoint, server.host, settings)
    elapsed = time.monotonic() - started

    assert result.error is not None
    assert result.error.reason is ErrorReason.TIMEOUT
    assert result.error.message == (
        f"The TLS handshake with 127.0.0.1 port {server.port} timed out after 0.5 s."
    )
    assert 0.5 <= elapsed < 1.0
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_probe_address_connection_refused() -> None:
    with closed_port() as port:
        endpoint = parse_target(f"www.example.test:{port}")
        result = await probe_address(endpoint, "127.0.0.1", SETTINGS)

    assert result.error is not None
    assert result.error.reason is ErrorReason.CONNECTION_REFUSED
    assert result.error.message == (
        f"Connecting to 127.0.0.1 port {port} failed: Connection refused."
    )
    assert result.chain == ()


async def test_probe_address_thousand_names(
    local_server: StartServer, tls_ca: trustme.CA
) -> None:
    names = [f"host{index}.example.test" for index in range(1000)]
    leaf = tls_ca.issue_cert(*names)
    chain = Chain.from_pems(
        leaf.private_key_pem.bytes(), leaf.cert_chain_pems[0].bytes()
    )
    server = local_server(chain=chain)

    endpoint = parse_target(f"host999.example.test:{server.port}")
    result = await probe_address(endpoint, server.host, SETTINGS)

    assert result.error is None
    certificate = x509.load_der_x509_certificate(result.chain[0])
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.DNSName) == names


def test_client_context_built_once_per_settings() -> None:
    first = client_context(ProbeSettings(timeout=3.0))

    assert client_context(ProbeSettings(timeout=3.0)) is first
    assert client_context(ProbeSettings(timeout=4.0)) is not first


@pytest.mark.parametrize(
    ("curve", "version"),
    [
        pytest.param("secp384r1", ssl.TLSVersion.TLSv1_3, id="p384-tls13"),
        pytest.param("secp521r1", ssl.TLSVersion.TLSv1_2, id="p521-tls12"),
    ],
)
async def test_probe_address_server_with_one_other_group(
    local_server: StartServer,
    server_chain: Chain,
    curve: str,
    version: ssl.TLSVersion,
) -> None:
    # The probe sends an X25519 key share only; a server that accepts one
    # other group asks for it again (HelloRetryRequest in TLS 1.3).
    server = local_server(
        chain=server_chain,
        ecdh_curve=curve,
        minimum_version=version,
        maximum_version=version,
    )

    endpoint = parse_target(f"www.example.test:{server.port}")
    result = await probe_address(endpoint, server.host, SETTINGS)

    assert result.error is None
    assert result.chain == (leaf_der(server_chain),)
