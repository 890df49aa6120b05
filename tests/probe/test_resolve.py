"""Address lookup: the system resolver on loopback names and the static resolver."""

from __future__ import annotations

import pytest

from certwatch.probe.resolve import ResolutionError, StaticResolver, SystemResolver


async def test_system_resolver_localhost() -> None:
    addresses = await SystemResolver().resolve("localhost", 443)

    assert "127.0.0.1" in addresses
    assert len(addresses) == len(set(addresses))


@pytest.mark.parametrize(
    ("host", "expected"),
    [("127.0.0.1", ["127.0.0.1"]), ("::1", ["::1"]), ("0:0::1", ["::1"])],
)
async def test_system_resolver_ip_literal_canonical(
    host: str, expected: list[str]
) -> None:
    assert await SystemResolver().resolve(host, 443) == expected


async def test_system_resolver_invalid_name() -> None:
    # Python's IDNA codec rejects the 64-character label before any DNS
    # query is sent.
    host = "a" * 64 + ".example.test"

    with pytest.raises(ResolutionError, match=r"Resolving 'a+\.example\.test' failed"):
        await SystemResolver().resolve(host, 443)


async def test_static_resolver_canonical_sorted_unique() -> None:
    resolver = StaticResolver(
        {"www.example.test": ["::1", "127.0.0.2", "0:0:0:0:0:0:0:1", "127.0.0.1"]}
    )

    addresses = await resolver.resolve("www.example.test", 443)

    assert addresses == ["127.0.0.1", "127.0.0.2", "::1"]


async def test_static_resolver_unknown_name() -> None:
    resolver = StaticResolver({"www.example.test": ["127.0.0.1"]})

    with pytest.raises(
        ResolutionError,
        match=r"^Resolving 'other\.example\.test' failed: the static mapping has no "
        r"address for it\.$",
    ):
        await resolver.resolve("other.example.test", 443)


async def test_static_resolver_empty_list() -> None:
    resolver = StaticResolver({"www.example.test": []})

    with pytest.raises(ResolutionError, match="the static mapping has no address"):
        await resolver.resolve("www.example.test", 443)


def test_static_resolver_invalid_address() -> None:
    with pytest.raises(
        ValueError,
        match=r"^Invalid address for 'www\.example\.test' in the static mapping "
        r"\(.+\): give IPv4 or IPv6 addresses\.$",
    ):
        StaticResolver({"www.example.test": ["www.example.test"]})
