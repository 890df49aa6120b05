"""Parse what a user types into endpoints.

Accepted forms: `host`, `host:port`, `[2001:db8::1]:8443`, bare IPv4 and IPv6
literals, and `SCHEME://host:port/path` for every protocol in `PROTOCOLS`,
such as `https://host/path` or `smtp://mail.example.test:2525`. Names typed
in Unicode become A-labels (IDNA 2008 with the UTS #46 mapping), which are
used for DNS, SNI and name matching alike.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

import idna

from certwatch.errors import TargetError

DEFAULT_PORT = 443
DEFAULT_PROTOCOL = "https"

# The `--protocol` value that picks the protocol from the port.
AUTO_PROTOCOL = "auto"


@dataclass(frozen=True)
class ServiceProtocol:
    """A protocol the probe speaks, and how it reaches the TLS handshake.

    `starttls` is true when a plain-text dialogue upgrades the connection to
    TLS, and false when the handshake starts at once (implicit TLS).
    """

    name: str
    port: int
    starttls: bool


PROTOCOLS = (
    ServiceProtocol("https", 443, starttls=False),
    # `tls` is another name for `https`: both mean a handshake at once.
    ServiceProtocol("tls", 443, starttls=False),
    ServiceProtocol("smtps", 465, starttls=False),
    ServiceProtocol("imaps", 993, starttls=False),
    ServiceProtocol("pop3s", 995, starttls=False),
    ServiceProtocol("ldaps", 636, starttls=False),
    ServiceProtocol("ftps", 990, starttls=False),
    ServiceProtocol("smtp", 25, starttls=True),
    ServiceProtocol("submission", 587, starttls=True),
    ServiceProtocol("imap", 143, starttls=True),
    ServiceProtocol("pop3", 110, starttls=True),
    ServiceProtocol("ftp", 21, starttls=True),
    ServiceProtocol("ldap", 389, starttls=True),
    ServiceProtocol("xmpp", 5222, starttls=True),
    ServiceProtocol("xmpp-server", 5269, starttls=True),
    ServiceProtocol("postgres", 5432, starttls=True),
    ServiceProtocol("mysql", 3306, starttls=True),
    ServiceProtocol("sieve", 4190, starttls=True),
    ServiceProtocol("nntp", 119, starttls=True),
)

# Every protocol name with its default port. The store and the CSV import
# validate protocol names against it.
SCHEME_PORTS = {protocol.name: protocol.port for protocol in PROTOCOLS}

STARTTLS_PROTOCOLS = frozenset(p.name for p in PROTOCOLS if p.starttls)

# `--protocol auto` reads the protocol from these ports, and falls back to
# `https` (a handshake at once) on any other port.
WELL_KNOWN_PORTS = {
    protocol.port: protocol.name for protocol in PROTOCOLS if protocol.name != "tls"
}

# Endpoints store `https` for `tls`, so that both spellings name one endpoint.
_ALIASES = {"tls": "https"}

_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_HEX_NUMBER = re.compile(r"0x[0-9a-f]*")


@dataclass(frozen=True)
class Endpoint:
    """One thing to connect to.

    `host` is an A-label name or a canonical IP address. `server_name` is the
    name sent as SNI and matched against the certificate, `None` for IP
    literals. `protocol` is a name from `PROTOCOLS`, with `tls` stored as
    `https`. `address` is set when the user pinned the address to connect to
    (`--resolve`), in which case DNS is not asked.
    """

    target: str
    host: str
    port: int
    server_name: str | None
    protocol: str = "https"
    address: str | None = None

    @property
    def is_ip(self) -> bool:
        return self.server_name is None


def parse_target(text: str, protocol: str = DEFAULT_PROTOCOL) -> Endpoint:
    """Parse one target string; raise `TargetError` naming the value if invalid.

    `protocol` applies to a target without a scheme: a name from `PROTOCOLS`,
    whose default port a target without a port gets, or `auto` to pick the
    protocol from the port (see `WELL_KNOWN_PORTS`). A scheme in the target
    takes precedence over it.
    """
    raw = text.strip()
    if not raw:
        raise TargetError("Empty target: give a host name, address or URL.")

    if "://" in raw:
        protocol, host_text, port = _split_url(raw)
    else:
        validate_protocol(protocol)
        host_text, port = _split_host_port(raw, _default_port(protocol))
        protocol = _protocol_for_port(protocol, port)

    host, server_name = _normalise_host(host_text, raw)
    return Endpoint(
        target=raw, host=host, port=port, server_name=server_name, protocol=protocol
    )


def validate_protocol(name: str) -> None:
    """Raise `TargetError` unless `name` is a protocol name or `auto`."""
    if name != AUTO_PROTOCOL and name not in SCHEME_PORTS:
        raise TargetError(f"Unknown protocol {name!r}: use one of {protocol_names()}.")


def protocol_names() -> str:
    """Return the valid `--protocol` values as a sorted, comma-separated list."""
    return ", ".join(sorted([AUTO_PROTOCOL, *SCHEME_PORTS]))


def _default_port(protocol: str) -> int:
    return SCHEME_PORTS.get(protocol, DEFAULT_PORT)


def _protocol_for_port(protocol: str, port: int) -> str:
    if protocol == AUTO_PROTOCOL:
        return WELL_KNOWN_PORTS.get(port, DEFAULT_PROTOCOL)
    return _ALIASES.get(protocol, protocol)


def parse_resolve(text: str) -> tuple[str, int, tuple[str, ...]]:
    """Parse a curl-style `name:port:address[,address...]` override.

    Returns the A-label name, the port and the canonical addresses.
    """
    name, sep, rest = text.partition(":")
    port_text, sep2, addresses_text = rest.partition(":")
    if not (sep and sep2 and name and port_text and addresses_text):
        raise TargetError(
            f"Invalid --resolve value {text!r}: use NAME:PORT:ADDRESS, "
            "for example www.example.test:443:127.0.0.1."
        )
    port = _parse_port(port_text, text)
    addresses = []
    for address_text in addresses_text.split(","):
        address = address_text.strip().strip("[]")
        try:
            addresses.append(str(ipaddress.ip_address(address)))
        except ValueError:
            raise TargetError(
                f"Invalid address {address_text!r} in --resolve value {text!r}: "
                "give IPv4 or IPv6 addresses separated by commas."
            ) from None
    host, _ = _normalise_host(name, text)
    return host, port, tuple(dict.fromkeys(addresses))


def apply_overrides(
    endpoint: Endpoint, overrides: dict[tuple[str, int], str]
) -> Endpoint:
    """Pin the endpoint's address when a `--resolve` override names it."""
    address = overrides.get((endpoint.host, endpoint.port))
    if address is None or endpoint.is_ip:
        return endpoint
    return Endpoint(
        target=endpoint.target,
        host=endpoint.host,
        port=endpoint.port,
        server_name=endpoint.server_name,
        protocol=endpoint.protocol,
        address=address,
    )


def _split_url(raw: str) -> tuple[str, str, int]:
    try:
        parts = urlsplit(raw)
        port_value = parts.port
    except ValueError as exc:
        raise TargetError(f"Invalid URL {raw!r}: {exc}.") from None

    scheme = parts.scheme.lower()
    if scheme not in SCHEME_PORTS:
        known = ", ".join(sorted(SCHEME_PORTS))
        raise TargetError(
            f"Unsupported scheme {scheme!r} in target {raw!r}: use one of {known}."
        )
    host = parts.hostname
    if not host:
        raise TargetError(f"Missing host in URL {raw!r}.")
    port = port_value if port_value is not None else SCHEME_PORTS[scheme]
    if port == 0:
        raise TargetError(f"Invalid port 0 in target {raw!r}: use 1 to 65535.")
    return _ALIASES.get(scheme, scheme), host, port


def _split_host_port(raw: str, default_port: int) -> tuple[str, int]:
    if raw.startswith("["):
        host, bracket, rest = raw[1:].partition("]")
        if not bracket:
            raise TargetError(f"Missing ']' in target {raw!r}.")
        if not rest:
            return host, default_port
        if not rest.startswith(":"):
            raise TargetError(
                f"Unexpected text {rest!r} after ']' in target {raw!r}: "
                "use [ADDRESS]:PORT."
            )
        return host, _parse_port(rest[1:], raw)

    if raw.count(":") > 1:
        # Several colons without brackets can only be a bare IPv6 literal.
        return raw, default_port
    host, sep, port_text = raw.partition(":")
    if not sep:
        return host, default_port
    return host, _parse_port(port_text, raw)


def _parse_port(text: str, raw: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise TargetError(f"Invalid port {text!r} in {raw!r}: use 1 to 65535.")
    return int(text)


def _normalise_host(host_text: str, raw: str) -> tuple[str, str | None]:
    """Return the canonical host and the server name (`None` for IP literals)."""
    candidate = host_text.strip().strip("[]")
    if "%" in candidate:
        raise TargetError(
            f"Zone index in {raw!r} is not supported: give a global or "
            "loopback address."
        )
    try:
        return str(ipaddress.ip_address(candidate)), None
    except ValueError:
        pass

    # One final dot marks a fully qualified name and is dropped; a second
    # one would leave an empty label.
    name = candidate[:-1] if candidate.endswith(".") else candidate
    if not name:
        raise TargetError(f"Missing host in target {raw!r}.")
    if "" in name.split("."):
        raise TargetError(
            f"Invalid host name {candidate!r} in {raw!r}: a label is empty, "
            "because of a leading dot or two dots in a row. Remove the extra dot."
        )
    if name.isascii():
        # ASCII names skip IDNA so that internal names with underscores pass.
        ascii_name = name.lower()
    else:
        try:
            ascii_name = idna.encode(name, uts46=True).decode("ascii").lower()
        except idna.IDNAError as exc:
            raise TargetError(
                f"Invalid host name {name!r} in {raw!r}: {exc}."
            ) from None

    labels = ascii_name.split(".")
    if len(ascii_name) > 253 or not all(_LABEL.match(label) for label in labels):
        raise TargetError(
            f"Invalid host name {name!r} in {raw!r}: use letters, digits and "
            "hyphens in labels of at most 63 characters."
        )
    # The C library's resolver reads a name whose last label is a decimal
    # or 0x hexadecimal number as an IPv4 address (127.1, 2130706433 and
    # 0x7f000001 are all 127.0.0.1), so such a name is no host name.
    if labels[-1].isdigit() or _HEX_NUMBER.fullmatch(labels[-1]):
        raise TargetError(
            f"Invalid address {name!r} in {raw!r}: it is neither an IPv4 "
            "address nor a host name."
        )
    return ascii_name, ascii_name
