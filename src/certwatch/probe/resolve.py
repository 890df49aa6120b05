"""Resolve a host name to every IPv4 and IPv6 address it has."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import threading
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
    """A resolver that runs the system's `getaddrinfo` in a daemon thread.

    The loop's default executor is not used, because a lookup that outlives
    its deadline cannot be cancelled. In that small shared pool it would hold
    a worker and delay the lookups of healthy names queued behind it, and
    `asyncio.run` would wait for it before returning. A daemon thread per
    lookup starts at once and is abandoned at exit.
    """

    async def resolve(self, host: str, port: int) -> list[str]:
        """Return every A and AAAA address of `host`, IPv4 first, each sorted.

        The order is sorted rather than the one DNS returned so that the
        results of two runs against a round-robin name line up.
        """
        try:
            addresses = await _getaddrinfo_in_thread(host, port)
        except (OSError, UnicodeError) as exc:
            raise ResolutionError(f"Resolving {host!r} failed: {exc}.") from exc

        if not addresses:
            raise ResolutionError(f"Resolving {host!r} returned no IP address.")
        return _canonical_sorted(addresses)


async def _getaddrinfo_in_thread(host: str, port: int) -> list[str]:
    """Return the IPv4 and IPv6 addresses `getaddrinfo` gives for `host`."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[list[str]] = loop.create_future()

    def deliver(outcome: list[str] | BaseException) -> None:
        if future.done():
            return
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

    def lookup() -> None:
        outcome: list[str] | BaseException
        try:
            entries = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            outcome = [
                str(sockaddr[0])
                for family, _, _, _, sockaddr in entries
                if family in (socket.AF_INET, socket.AF_INET6)
            ]
        except (OSError, UnicodeError) as exc:
            outcome = exc
        # The loop is closed when the run ended before this lookup did.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(deliver, outcome)

    threading.Thread(target=lookup, name=f"getaddrinfo {host}", daemon=True).start()
    return await future


class PinnedResolver:
    """A resolver that returns pinned addresses and asks another for other names.

    Args:
        pins: The addresses to use for a (host, port) pair, as
            `--resolve NAME:PORT:ADDRESS[,ADDRESS...]` gives them.
        fallback: The resolver for every other name.
    """

    def __init__(
        self, pins: Mapping[tuple[str, int], Iterable[str]], fallback: Resolver
    ) -> None:
        self._pins = {key: _canonical_sorted(value) for key, value in pins.items()}
        self._fallback = fallback

    async def resolve(self, host: str, port: int) -> list[str]:
        """Return the pinned addresses of `host` and `port`, or ask the fallback."""
        pinned = self._pins.get((host, port))
        if pinned:
            return list(pinned)
        return await self._fallback.resolve(host, port)


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
