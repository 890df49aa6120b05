"""The address policy: which addresses the probe connects to without private targets."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import aclosing

import pytest
from tests.servers import Chain, LocalServer

from certwatch.netpolicy import address_allowed, private_address_kind
from certwatch.probe.endpoint import probe_endpoint, probe_many
from certwatch.probe.model import ErrorReason, ProbeResult, ProbeSettings
from certwatch.probe.resolve import StaticResolver
from certwatch.targets import apply_overrides, parse_target

StartServer = Callable[..., LocalServer]

PUBLIC_ONLY = ProbeSettings(timeout=5.0, allow_private_addresses=False)
ANY_ADDRESS = ProbeSettings(timeout=5.0)


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("fd12:3456::1", "unique-local"),
        ("fec0::1", "site-local"),
        ("100.64.0.1", "shared (carrier-grade NAT)"),
        ("100.127.255.254", "shared (carrier-grade NAT)"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("0.1.2.3", "private"),
        ("224.0.0.251", "multicast"),
        ("239.1.2.3", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "private"),
        ("255.255.255.255", "private"),
        ("192.0.2.1", "private"),
        ("198.18.0.1", "private"),
        ("2001:db8::1", "private"),
        ("3fff::1", "documentation"),
        ("64:ff9b:1::a00:1", "local-use NAT64"),
        ("::ffff:127.0.0.1", "IPv4-mapped form of the loopback IPv4 address 127.0.0.1"),
        (
            "::ffff:169.254.169.254",
            "IPv4-mapped form of the link-local IPv4 address 169.254.169.254",
        ),
        ("64:ff9b::7f00:1", "NAT64 form of the loopback IPv4 address 127.0.0.1"),
        (
            "64:ff9b::a9fe:a9fe",
            "NAT64 form of the link-local IPv4 address 169.254.169.254",
        ),
        ("2002:a00:1::1", "6to4 form of the private IPv4 address 10.0.0.1"),
        ("::127.0.0.1", "reserved"),
    ],
)
def test_private_address_kind_blocked(address: str, kind: str) -> None:
    assert private_address_kind(address) == kind
    assert not address_allowed(address, allow_private=False)
    assert address_allowed(address, allow_private=True)


# Globally routable addresses that this test only classifies, without any
# socket: the IPv4 and IPv6 forms of one public address, and public
# addresses carried in IPv6 forms.
@pytest.mark.parametrize(
    "address",
    [
        "93.184.215.14",
        "2606:2800:21f:cb07:6820:80da:af6b:8b2c",
        "::ffff:93.184.215.14",
        "64:ff9b::5db8:d70e",
    ],
)
def test_private_address_kind_public(address: str) -> None:
    assert private_address_kind(address) is None
    assert address_allowed(address, allow_private=False)


def test_private_address_kind_invalid() -> None:
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6"):
        private_address_kind("www.example.test")


async def test_probe_endpoint_blocks_resolved_loopback(
    local_server: StartServer, server_chain: Chain
) -> None:
    server = local_server(chain=server_chain)
    endpoint = parse_target(f"www.example.test:{server.port}")
    resolver = StaticResolver({"www.example.test": ["127.0.0.1"]})

    [result] = await probe_endpoint(endpoint, PUBLIC_ONLY, resolver)

    assert result.address == "127.0.0.1"
    assert result.chain == ()
    assert result.error is not None
    assert result.error.reason is ErrorReason.ADDRESS_NOT_ALLOWED
    assert result.error.message == (
        f"Target 'www.example.test:{server.port}' resolves to 127.0.0.1 (loopback "
        "address), which this site does not probe "
        "(CERTWATCH_ALLOW_PRIVATE_TARGETS is false): add a public name or "
        "address, or ask the operator to set CERTWATCH_ALLOW_PRIVATE_TARGETS=true."
    )
    assert server.accepted == 0


async def test_probe_endpoint_blocks_literal_and_pinned(
    local_server: StartServer, server_chain: Chain
) -> None:
    server = local_server(chain=server_chain)
    literal = parse_target(f"127.0.0.1:{server.port}")
    pinned = apply_overrides(
        parse_target(f"www.example.test:{server.port}"),
        {("www.example.test", server.port): "127.0.0.1"},
    )
    no_dns = StaticResolver({})

    results = [
        *await probe_endpoint(literal, PUBLIC_ONLY, no_dns),
        *await probe_endpoint(pinned, PUBLIC_ONLY, no_dns),
    ]

    reasons = [r.error.reason if r.error else None for r in results]
    assert reasons == [ErrorReason.ADDRESS_NOT_ALLOWED] * 2
    assert server.accepted == 0


async def test_probe_endpoint_allows_private_by_default(
    local_server: StartServer, server_chain: Chain
) -> None:
    server = local_server(chain=server_chain)
    endpoint = parse_target(f"www.example.test:{server.port}")
    resolver = StaticResolver({"www.example.test": ["127.0.0.1"]})

    [result] = await probe_endpoint(endpoint, ANY_ADDRESS, resolver)

    assert result.error is None
    assert len(result.chain) == 1
    assert server.accepted == 1


async def test_probe_many_blocks_each_address(
    local_server: StartServer, server_chain: Chain
) -> None:
    server = local_server(chain=server_chain)
    endpoint = parse_target(f"www.example.test:{server.port}")
    resolver = StaticResolver({"www.example.test": ["127.0.0.1", "::1"]})

    async with aclosing(probe_many([endpoint], PUBLIC_ONLY, resolver)) as stream:
        results: list[ProbeResult] = [result async for result in stream]

    assert sorted(r.address or "" for r in results) == ["127.0.0.1", "::1"]
    for result in results:
        assert result.error is not None
        assert result.error.reason is ErrorReason.ADDRESS_NOT_ALLOWED
    assert server.accepted == 0
