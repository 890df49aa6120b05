"""Resolve a host name to every IPv4 and IPv6 address it has."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable, Mapping
from typing import Protocol

from certwatch.errors import CertwatchError


class ResolutionError(CertwatchError):
    """A host name that did not resolve to any address.

    The probe turns it into a result with `ErrorReason.DNS_ERROR`, so it never
    leaves the `certwatch.probe` package.
    """


class Resolver(Protocol):
    """Anything that turns a host name into the addresses to connect to."""

    async def resolve(self, host: str, port: int) -> list[str]:
        """Return each address of `host` once, in canonical form.

        Raises:
            ResolutionError: The name has no address or the lookup failed.
        """
        ...


class SystemResolver:
    """A resolver that uses the system's `getaddrinfo` in the loop's executor."""

    async def resolve(self, host: str, port: int) -> list[str]:
        """Return every A and AAAA address of `host`, IPv4 first, each sorted.

        The order is sorted rather than the one DNS returned so that the
        results of two runs against a round-robin name line up.
        """
        loop = asyncio.get_running_loop()
        try:
            entries = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise ResolutionError(f"Resolving {host!r} failed: {exc}.") from exc

        addresses = [
            str(sockaddr[0])
            for family, _, _, _, sockaddr in entries
            if family in (socket.AF_INET, socket.AF_INET6)
        ]
        if not addresses:
            raise ResolutionError(f"Resolving {host!r} returned no IP address.")
        return _canonical_sorted(addresses)


class StaticResolver:
    """A resolver with fixed addresses per name, for tests and pinned addresses.

    Args:
        mapping: The addresses of each host name; each address is an IPv4 or
            IPv6 literal.

    Raises:
        ValueError: An address in `mapping` is not an IP address.
    """

    def __init__(self, mapping: Mapping[str, Iterable[str]]) -> None:
        self._mapping: dict[str, list[str]] = {}
        for host, addresses in mapping.items():
            try:
                self._mapping[host] = _canonical_sorted(addresses)
            except ValueError as exc:
                raise ValueError(
                    f"Invalid address for {host!r} in the static mapping ({exc}): "
                    "give IPv4 or IPv6 addresses."
                ) from exc

    async def resolve(self, host: str, port: int) -> list[str]:
        """Return the addresses given for `host`, IPv4 first, each sorted."""
        addresses = self._mapping.get(host)
        if not addresses:
            raise ResolutionError(
                f"Resolving {host!r} failed: the static mapping has no address for it."
            )
        return list(addresses)


def _canonical_sorted(addresses: Iterable[str]) -> list[str]:
    unique = {ipaddress.ip_address(address) for address in addresses}
    ordered = sorted(unique, key=lambda address: (address.version, address))
    return [str(address) for address in ordered]
