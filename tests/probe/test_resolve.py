"""Address lookup: the system resolver on loopback names and the static resolver."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest

from certwatch.probe.endpoint import resolve_addresses
from certwatch.probe.model import ErrorReason, ProbeResult, ProbeSettings
from certwatch.probe.resolve import ResolutionError, StaticResolver, SystemResolver
from certwatch.targets import parse_target


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


async def test_system_resolver_slow_name_does_not_delay_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_getaddrinfo = socket.getaddrinfo

    def fake_getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        # Stands in for a DNS server that never answers for these names.
        if host.endswith(".slow.test"):
            time.sleep(2)
        return real_getaddrinfo("127.0.0.1", port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    resolver = SystemResolver()
    settings = ProbeSettings(timeout=0.5)
    slow = [parse_target(f"s{i}.slow.test") for i in range(20)]
    started = time.monotonic()

    outcomes = await asyncio.gather(
        *(resolve_addresses(endpoint, settings, resolver) for endpoint in slow),
        resolve_addresses(parse_target("good.test"), settings, resolver),
    )

    assert time.monotonic() - started < 1.5
    assert outcomes[-1] == ["127.0.0.1"]
    for outcome in outcomes[:-1]:
        assert isinstance(outcome, ProbeResult)
        assert outcome.error is not None
        assert outcome.error.reason is ErrorReason.DNS_ERROR
