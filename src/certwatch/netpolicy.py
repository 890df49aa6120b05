"""Tell public IP addresses from those the probe must not reach on a public site.

A site with open sign-up lets anyone on the internet add targets, so a
target that resolves to the operator's own network (loopback, RFC 1918,
link-local such as the cloud metadata address 169.254.169.254, ...) would
let strangers probe it. `private_address_kind` classifies one address; the
probe applies it to every resolved address before connecting, so the
address checked is the address connected to.

Python's `ipaddress` properties do most of the work. The explicit checks
cover what they miss in Python 3.11: IPv6 forms that carry an IPv4
address (IPv4-mapped, NAT64 and 6to4), whose IPv4 part decides, and
multicast and the IPv6 documentation prefix, which `is_global` accepts.
"""

from __future__ import annotations

import ipaddress
from ipaddress import IPv4Address, IPv6Address

ALLOW_PRIVATE_VARIABLE = "CERTWATCH_ALLOW_PRIVATE_TARGETS"
"""The operator setting that lets the probe reach non-public addresses."""

# RFC 6598 shared address space, used by carrier-grade NAT inside providers.
_SHARED = ipaddress.ip_network("100.64.0.0/10")
# RFC 4193 unique local addresses, the IPv6 counterpart of RFC 1918.
_UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")
# RFC 6052 well-known NAT64 prefix: the last 32 bits are an IPv4 address.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# RFC 8215 local-use NAT64 prefix, which translates inside one network.
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
# RFC 9637 IPv6 documentation prefix, newer than Python 3.11's tables.
_DOCUMENTATION_V6 = ipaddress.ip_network("3fff::/20")


def private_address_kind(address: str) -> str | None:
    """Return what kind of non-public address this is, or `None` for public.

    The kind is a phrase such as "loopback" or "NAT64 form of the private
    IPv4 address 10.0.0.1".

    An IPv6 address that carries an IPv4 address (IPv4-mapped, NAT64 or
    6to4) is judged by that IPv4 address, because a connection to it ends
    there.

    Raises:
        ValueError: `address` is not an IPv4 or IPv6 address.
    """
    ip = ipaddress.ip_address(address)
    if isinstance(ip, IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            form, carried = embedded
            kind = _kind(carried)
            if kind is None:
                return None
            return f"{form} form of the {kind} IPv4 address {carried}"
        if ip in _NAT64_LOCAL:
            return "local-use NAT64"
        if ip in _DOCUMENTATION_V6:
            return "documentation"
        if ip.is_site_local:
            return "site-local"
    return _kind(ip)


def literal_address(host: str) -> str | None:
    """Return the IP address that `host` is written as, or `None` for a name.

    Brackets around an IPv6 address and the trailing dot of an absolute
    name are ignored, so `169.254.169.254.` is that address.
    """
    text = host.strip("[]")
    if text.endswith("."):
        text = text[:-1]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def is_loopback_name(host: str) -> bool:
    """Tell whether `host` is `localhost` or a name under it, dot or not.

    RFC 6761 reserves these names for loopback addresses, and resolvers
    answer them without DNS, or (`localhost.` on glibc) not at all.
    """
    name = host.lower().removesuffix(".")
    return name == "localhost" or name.endswith(".localhost")


def address_allowed(address: str, *, allow_private: bool) -> bool:
    """Tell whether the probe may connect to `address` under the setting."""
    return allow_private or private_address_kind(address) is None


def blocked_address_message(target: str, address: str, kind: str) -> str:
    """Return the message for a target that resolves to a non-public address."""
    return (
        f"Target {target!r} resolves to {address} ({kind} address), which this "
        f"site does not probe ({ALLOW_PRIVATE_VARIABLE} is false): add a public "
        f"name or address, or ask the operator to set {ALLOW_PRIVATE_VARIABLE}=true."
    )


def _embedded_ipv4(ip: IPv6Address) -> tuple[str, IPv4Address] | None:
    """Return the form and the IPv4 address that an IPv6 address carries."""
    if ip.ipv4_mapped is not None:
        return "IPv4-mapped", ip.ipv4_mapped
    if ip in _NAT64:
        return "NAT64", IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return "6to4", ip.sixtofour
    return None


def _kind(ip: IPv4Address | IPv6Address) -> str | None:
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip in _SHARED:
        return "shared (carrier-grade NAT)"
    if ip in _UNIQUE_LOCAL:
        return "unique-local"
    if ip.is_private:
        return "private"
    if ip.is_reserved:
        return "reserved"
    if not ip.is_global:
        return "non-public"
    return None
