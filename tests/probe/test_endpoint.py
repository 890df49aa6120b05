"""Probing every address of an endpoint, and many endpoints under one bound."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import aclosing

import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from tests.servers import Chain, LocalServer, Mode, ServerOptions

from certwatch.probe.endpoint import probe_endpoint, probe_many
from certwatch.probe.model import ErrorReason, ProbeResult, ProbeSettings
from certwatch.probe.resolve import StaticResolver
from certwatch.targets import Endpoint, apply_overrides, parse_target

StartServer = Callable[..., LocalServer]
StartServers = Callable[..., list[LocalServer]]

SETTINGS = ProbeSettings(timeout=5.0)

# A resolver that fails for every name, so a test fails if it is called.
NO_DNS = StaticResolver({})


class StalledResolver:
    """A resolver whose lookups never finish."""

    async def resolve(self, host: str, port: int) -> list[str]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable: the event is never set")


def leaf_der(chain: Chain) -> bytes:
    certificate = x509.load_pem_x509_certificate(chain.certificates_pem)
    return certificate.public_bytes(Encoding.DER)


def make_chain(ca: trustme.CA, name: str) -> Chain:
    leaf = ca.issue_cert(name)
    return Chain.from_pems(
        leaf.private_key_pem.bytes(), leaf.cert_chain_pems[0].bytes()
    )


async def collect(
    endpoints: list[Endpoint], settings: ProbeSettings, resolver: StaticResolver
) -> list[ProbeResult]:
    return [result async for result in probe_many(endpoints, settings, resolver)]


async def test_probe_endpoint_pinned_address(
    local_server: StartServer, server_chain: Chain
) -> None:
    server = local_server(chain=server_chain)
    endpoint = apply_overrides(
        parse_target(f"www.example.test:{server.port}"),
        {("www.example.test", server.port): "127.0.0.1"},
    )

    results = await probe_endpoint(endpoint, SETTINGS, NO_DNS)

    assert [result.address for result in results] == ["127.0.0.1"]
    assert results[0].error is None
    assert results[0].chain == (leaf_der(server_chain),)
    assert server.server_names == ["www.example.test"]


async def test_probe_endpoint_ip_literal(
    local_server: StartServer, server_chain: Chain
) -> None:
    server = local_server(chain=server_chain)
    endpoint = parse_target(f"127.0.0.1:{server.port}")

    results = await probe_endpoint(endpoint, SETTINGS, NO_DNS)

    assert [result.address for result in results] == ["127.0.0.1"]
    assert results[0].error is None
    assert server.server_names == [None]


async def test_probe_endpoint_every_address(
    local_servers_on_one_port: StartServers, tls_ca: trustme.CA
) -> None:
    first_chain = make_chain(tls_ca, "www.example.test")
    second_chain = make_chain(tls_ca, "www.example.test")
    first, second = local_servers_on_one_port(
        ServerOptions(chain=first_chain, host="127.0.0.1"),
        ServerOptions(chain=second_chain, host="127.0.0.2"),
    )
    resolver = StaticResolver({"www.example.test": ["127.0.0.2", "127.0.0.1"]})
    endpoint = parse_target(f"www.example.test:{first.port}")

    results = await probe_endpoint(endpoint, SETTINGS, resolver)

    assert [result.address for result in results] == ["127.0.0.1", "127.0.0.2"]
    assert [result.error for result in results] == [None, None]
    assert results[0].chain == (leaf_der(first_chain),)
    assert results[1].chain == (leaf_der(second_chain),)
    assert first.server_names == ["www.example.test"]
    assert second.server_names == ["www.example.test"]


async def test_probe_endpoint_one_address_refused(
    local_server: StartServer, server_chain: Chain
) -> None:
    server = local_server(chain=server_chain, host="127.0.0.1")
    resolver = StaticResolver({"www.example.test": ["127.0.0.1", "127.0.0.2"]})
    endpoint = parse_target(f"www.example.test:{server.port}")

    results = await probe_endpoint(endpoint, SETTINGS, resolver)

    assert [result.address for result in results] == ["127.0.0.1", "127.0.0.2"]
    assert results[0].error is None
    assert results[1].error is not None
    assert results[1].error.reason is ErrorReason.CONNECTION_REFUSED


async def test_probe_endpoint_dns_failure() -> None:
    endpoint = parse_target("missing.example.test:443")

    results = await probe_endpoint(endpoint, SETTINGS, NO_DNS)

    assert len(results) == 1
    assert results[0].address is None
    assert results[0].error is not None
    assert results[0].error.reason is ErrorReason.DNS_ERROR
    assert results[0].error.message == (
        "Resolving 'missing.example.test' failed: the static mapping has no "
        "address for it."
    )


async def test_probe_endpoint_dns_timeout() -> None:
    endpoint = parse_target("slow.example.test:443")
    settings = ProbeSettings(timeout=0.2)

    started = time.monotonic()
    results = await probe_endpoint(endpoint, settings, StalledResolver())
    elapsed = time.monotonic() - started

    assert len(results) == 1
    assert results[0].address is None
    assert results[0].error is not None
    assert results[0].error.reason is ErrorReason.DNS_ERROR
    assert results[0].error.message == (
        "Resolving 'slow.example.test' timed out after 0.2 s."
    )
    assert elapsed < 1.0


async def test_probe_many_every_result(
    local_servers_on_one_port: StartServers, tls_ca: trustme.CA
) -> None:
    first, _ = local_servers_on_one_port(
        ServerOptions(chain=make_chain(tls_ca, "www.example.test"), host="127.0.0.1"),
        ServerOptions(chain=make_chain(tls_ca, "www.example.test"), host="127.0.0.2"),
    )
    resolver = StaticResolver({"www.example.test": ["127.0.0.1", "127.0.0.2"]})
    endpoints = [
        parse_target(f"www.example.test:{first.port}"),
        parse_target(f"127.0.0.2:{first.port}"),
        parse_target("missing.example.test:443"),
    ]

    results = await collect(endpoints, SETTINGS, resolver)

    outcomes = sorted(
        (result.endpoint.host, result.address or "", result.error is None)
        for result in results
    )
    assert outcomes == [
        ("127.0.0.2", "127.0.0.2", True),
        ("missing.example.test", "", False),
        ("www.example.test", "127.0.0.1", True),
        ("www.example.test", "127.0.0.2", True),
    ]


async def test_probe_many_no_endpoints() -> None:
    assert await collect([], SETTINGS, NO_DNS) == []


async def test_probe_many_concurrency_bound(
    local_servers_on_one_port: StartServers,
) -> None:
    # Seven address probes against stalling servers, two at a time, must run
    # in four waves of one deadline each.
    servers = local_servers_on_one_port(
        ServerOptions(mode=Mode.STALL, host="127.0.0.1"),
        ServerOptions(mode=Mode.STALL, host="127.0.0.2"),
    )
    port = servers[0].port
    names = ["a.example.test", "b.example.test", "c.example.test"]
    resolver = StaticResolver({name: ["127.0.0.1", "127.0.0.2"] for name in names})
    endpoints = [parse_target(f"{name}:{port}") for name in names]
    endpoints.append(parse_target(f"127.0.0.1:{port}"))
    settings = ProbeSettings(timeout=0.3, concurrency=2)

    started = time.monotonic()
    probing = asyncio.create_task(collect(endpoints, settings, resolver))
    await asyncio.sleep(0.15)
    accepted_in_first_wave = sum(server.accepted for server in servers)
    results = await probing
    elapsed = time.monotonic() - started

    assert accepted_in_first_wave == 2
    assert sum(server.accepted for server in servers) == 7
    assert len(results) == 7
    assert {result.error.reason for result in results if result.error} == {
        ErrorReason.TIMEOUT
    }
    assert 1.2 <= elapsed < 2.5


async def test_probe_many_close_early_cancels(local_server: StartServer) -> None:
    server = local_server(mode=Mode.STALL)
    endpoints = [parse_target("missing.example.test:443")]
    endpoints += [parse_target(f"127.0.0.1:{server.port}") for _ in range(3)]

    started = time.monotonic()
    async with aclosing(probe_many(endpoints, SETTINGS, NO_DNS)) as results:
        first = await anext(results)
    elapsed = time.monotonic() - started

    assert first.error is not None
    assert first.error.reason is ErrorReason.DNS_ERROR
    assert elapsed < 1.0
    assert asyncio.all_tasks() == {asyncio.current_task()}
