"""Apply the address policy of an open site to webhook and chat receivers.

On a site where anyone can sign up and private targets are off
(`CERTWATCH_ALLOW_PRIVATE_TARGETS=false`), a contact URL is a way to make
the service send requests, and the test button reports the receiver's
HTTP status. A URL whose host is, or resolves to, a loopback, private,
link-local or other non-public address would let strangers probe the
operator's network. `check_contact` rejects such contacts when they are
added. `receiver_addresses` checks again at delivery time, and the webhook
channel connects to an address it returned. So a DNS answer that changes
in between cannot redirect the request.

Email contacts are not checked: the operator's SMTP server delivers them.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from certwatch.alerts.contacts import ContactAddress, ContactKind
from certwatch.alerts.errors import ContactError
from certwatch.netpolicy import (
    ALLOW_PRIVATE_VARIABLE,
    is_loopback_name,
    literal_address,
    private_address_kind,
)
from certwatch.probe.resolve import ResolutionError, Resolver

# Apprise schemes whose host is always a network host to connect to. In
# other Apprise URLs a single-label host is often a token, which must not
# be sent to DNS.
_APPRISE_HOST_SCHEMES = frozenset({"json", "jsons", "form", "forms", "xml", "xmls"})


class ReceiverNotAllowed(ContactError):
    """A receiver URL whose host is or resolves to a non-public address."""


async def receiver_addresses(
    contact: ContactAddress,
    host: str,
    port: int,
    resolver: Resolver,
    *,
    allow_private: bool,
    timeout: float,
) -> list[str]:
    """Return the addresses to connect to for `host`, checked under the policy.

    An IP literal is its own address. A name is resolved with `resolver`
    within `timeout` seconds. With `allow_private` false, every address
    must be public, since the connection may go to any of them.

    Raises:
        ReceiverNotAllowed: an address is not public; the message names the
            redacted contact, the address and the setting.
        ResolutionError: the name does not resolve, or resolving timed out.
    """
    literal = _ip_literal(host)
    if not allow_private and literal is None and is_loopback_name(host):
        raise ReceiverNotAllowed(not_allowed_message(contact, host, "loopback"))
    if literal is not None:
        addresses = [literal]
    else:
        try:
            async with asyncio.timeout(timeout):
                addresses = await resolver.resolve(host, port)
        except TimeoutError:
            raise ResolutionError(
                f"Resolving {host!r} timed out after {timeout:g} s."
            ) from None
    if not allow_private:
        for address in addresses:
            _check_address(contact, address)
    return addresses


async def check_contact(
    contact: ContactAddress,
    resolver: Resolver,
    *,
    timeout: float,
    reject_unresolved: bool = False,
) -> None:
    """Reject a contact whose receiver is or resolves to a non-public address.

    For sites with private targets off. A name that does not resolve now
    passes unless `reject_unresolved` is true, because each delivery checks
    the addresses again.

    Raises:
        ReceiverNotAllowed: the receiver's host is not public, or with
            `reject_unresolved` its name does not resolve.
    """
    host = receiver_host(contact)
    if host is None:
        return
    try:
        await receiver_addresses(
            contact,
            host,
            _default_port(contact.value),
            resolver,
            allow_private=False,
            timeout=timeout,
        )
    except ResolutionError as exc:
        if reject_unresolved:
            raise ReceiverNotAllowed(unresolved_message(contact, host)) from exc


def receiver_host(contact: ContactAddress) -> str | None:
    """Return the host that a delivery to `contact` connects to.

    Returns `None` for an email contact, and for an Apprise URL whose host
    position contains no host name that can be checked, such as a bot token.
    """
    if contact.kind is ContactKind.EMAIL:
        return None
    host = urlsplit(contact.value).hostname
    if not host:
        return None
    if contact.kind is not ContactKind.APPRISE:
        return host
    scheme = contact.value.partition(":")[0].lower()
    # NOTE: other Apprise services that take a self-hosted server (gotify,
    # ntfy, mattermost, ...) are checked only when their host is an IP
    # literal or a dotted name. Apprise also resolves the name again when it
    # sends, so the check at delivery time runs before its connection.
    if scheme in _APPRISE_HOST_SCHEMES or "." in host or host == "localhost":
        return host
    return _ip_literal(host)


def not_allowed_message(contact: ContactAddress, address: str, kind: str) -> str:
    """Return the message for a receiver at a non-public address."""
    return (
        f"The {contact.kind.value} URL {contact.redacted()!r} leads to {address} "
        f"({kind} address), and this site sends nothing to non-public addresses "
        f"({ALLOW_PRIVATE_VARIABLE} is false): give a receiver on a public "
        f"address, or ask the operator to set {ALLOW_PRIVATE_VARIABLE}=true."
    )


def unresolved_message(contact: ContactAddress, host: str) -> str:
    """Return the message for a receiver whose host name does not resolve."""
    return (
        f"The {contact.kind.value} URL {contact.redacted()!r} names the host "
        f"{host!r}, which does not resolve, so this site cannot check that its "
        "address is public: give a receiver whose name resolves to a public "
        f"address, or ask the operator to set {ALLOW_PRIVATE_VARIABLE}=true."
    )


def _check_address(contact: ContactAddress, address: str) -> None:
    kind = private_address_kind(address)
    if kind is not None:
        raise ReceiverNotAllowed(not_allowed_message(contact, address, kind))


def _ip_literal(host: str) -> str | None:
    return literal_address(host)


def _default_port(url: str) -> int:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is not None:
        return port
    return 80 if parts.scheme.lower() in ("http", "json", "form", "xml") else 443
