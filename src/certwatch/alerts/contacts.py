"""Parse the contacts that alerts are delivered to, and show them safely.

A contact is written `KIND:VALUE`:

- `email:ops@example.test`: an email address, sent through the SMTP server
  of the delivery settings;
- `webhook:https://alerts.example.test/certwatch`: a generic JSON webhook;
- `slack:https://hooks.slack.com/services/...`: a Slack incoming webhook;
- `teams:https://...`: a Microsoft Teams incoming webhook (Workflows);
- `apprise:SCHEME://...`: any service that Apprise reaches, when the optional
  `certwatch[apprise]` extra is installed.

Webhook URLs carry their secret in the path or the query, so `redacted()`
is the only form to print or log.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

import idna

from certwatch.alerts import apprise_support
from certwatch.alerts.errors import ContactError

MAX_CONTACT_LENGTH = 2048
"""The maximum length of a contact text, kind prefix included."""

# RFC 5321 limits: 64 octets for the local part, 254 for a whole path.
MAX_EMAIL_LENGTH = 254
MAX_LOCAL_PART_LENGTH = 64

# The dot-atom form of RFC 5322. Quoted local parts and non-ASCII ones
# (SMTPUTF8) are rejected: few servers and no example in the field use them.
_LOCAL_PART = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$"
)
_DNS_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

# Apprise schemes whose host part is a real network host. In other Apprise
# URLs the host position often contains a token (`tgram://BOT_TOKEN/CHAT`).
_APPRISE_HOST_SCHEMES = frozenset({"json", "jsons", "form", "forms", "xml", "xmls"})

# How much of a URL path `redacted()` keeps: the first segment, when it is
# this short and more segments follow (`/services/…`), since a short
# leading segment names an API route rather than a secret.
_SHOWN_SEGMENT_LENGTH = 12


class ContactKind(enum.StrEnum):
    """The channel a contact is reached through."""

    EMAIL = "email"
    WEBHOOK = "webhook"
    SLACK = "slack"
    TEAMS = "teams"
    APPRISE = "apprise"


@dataclass(frozen=True, repr=False)
class ContactAddress:
    """A parsed contact: its kind and its normalised address or URL.

    `value` is the email address (domain in A-labels) or the full URL,
    secrets included: store it, but print and log only `redacted()`.
    """

    kind: ContactKind
    value: str

    @property
    def text(self) -> str:
        """The contact as `KIND:VALUE`, which `parse_contact` reads back."""
        return f"{self.kind.value}:{self.value}"

    def redacted(self) -> str:
        """Return the contact in a form safe to show and log.

        An email address is shown in full. A URL keeps its scheme, host and
        port, and at most its first short path segment, such as
        `slack:https://hooks.slack.com/services/…`. A password, the rest of
        the path and the query are left out.
        """
        if self.kind is ContactKind.EMAIL:
            return self.text
        if self.kind is ContactKind.APPRISE:
            return f"{self.kind.value}:{_redact_apprise_url(self.value)}"
        return f"{self.kind.value}:{redact_url(self.value)}"

    def __repr__(self) -> str:
        return f"ContactAddress({self.redacted()!r})"


def parse_contact(text: str) -> ContactAddress:
    """Parse `KIND:VALUE` into a contact.

    Raises:
        ContactError: the kind is unknown, or the value is not a valid
            address or URL for that kind. The message names the value
            (redacted for URLs) and what to give instead.
    """
    stripped = text.strip()
    _check_characters(stripped)
    kind_text, separator, value = stripped.partition(":")
    kind = _parse_kind(kind_text.strip().lower(), stripped if separator else "")
    value = value.strip()
    if not value:
        raise ContactError(
            f"Invalid contact {stripped!r}: give an address after "
            f"'{kind.value}:', such as {_EXAMPLES[kind]}."
        )
    if kind is ContactKind.EMAIL:
        return ContactAddress(kind, parse_email_address(value))
    if kind is ContactKind.APPRISE:
        return ContactAddress(kind, _parse_apprise_url(value))
    return ContactAddress(kind, _parse_webhook_url(kind, value))


def parse_email_address(text: str) -> str:
    """Validate an email address and return it with its domain in A-labels.

    Raises:
        ContactError: the address is not `local@domain`, or a part of it is
            invalid or too long.
    """
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain:
        raise ContactError(
            f"Invalid email address {text!r}: give local@domain, such as "
            "ops@example.test."
        )
    if len(local) > MAX_LOCAL_PART_LENGTH or not _LOCAL_PART.match(local):
        raise ContactError(
            f"Invalid email address {text!r}: the part before @ must be at most "
            f"{MAX_LOCAL_PART_LENGTH} letters, digits, dots or !#$%&'*+/=?^_`{{|}}~-, "
            "with no dot at either end and no two dots in a row."
        )
    address = f"{local}@{_parse_email_domain(domain, text)}"
    if len(address) > MAX_EMAIL_LENGTH:
        raise ContactError(
            f"Invalid email address {text!r}: it is longer than "
            f"{MAX_EMAIL_LENGTH} characters."
        )
    return address


def is_loopback_host(host: str) -> bool:
    """Return whether `host` is `localhost` or an address in 127.0.0.0/8 or ::1."""
    name = host.strip("[]").lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def redact_url(url: str) -> str:
    """Return `url` with only its scheme, host, port and a short path prefix.

    The user information, any path past a first short segment, and the
    query are replaced by `…`, so the secret of a webhook URL never shows.
    """
    parts = urlsplit(url)
    shown = f"{parts.scheme}://{_host_and_port(parts)}"
    segments = [segment for segment in parts.path.split("/") if segment]
    if len(segments) > 1 and len(segments[0]) <= _SHOWN_SEGMENT_LENGTH:
        shown += f"/{segments[0]}/…"
    elif segments:
        shown += "/…"
    else:
        shown += "/"
    if parts.query:
        shown += "?…"
    return shown


_EXAMPLES = {
    ContactKind.EMAIL: "email:ops@example.test",
    ContactKind.WEBHOOK: "webhook:https://alerts.example.test/certwatch",
    ContactKind.SLACK: "slack:https://hooks.slack.com/services/...",
    ContactKind.TEAMS: "teams:https://example.test/workflows/...",
    ContactKind.APPRISE: "apprise:json://alerts.example.test/certwatch",
}


def _check_characters(text: str) -> None:
    if len(text) > MAX_CONTACT_LENGTH:
        # Only the kind is shown, since the start of a URL can hold a secret.
        kind = text.partition(":")[0][:20]
        raise ContactError(
            f"Invalid contact {kind!r}:...: it is {len(text)} characters long, "
            f"and at most {MAX_CONTACT_LENGTH} are accepted."
        )
    control = _CONTROL.search(text)
    if control is not None:
        raise ContactError(
            f"Invalid contact: it contains the control character "
            f"{control.group()!r} at position {control.start()}; remove it."
        )


def _parse_kind(kind_text: str, text: str) -> ContactKind:
    try:
        return ContactKind(kind_text)
    except ValueError:
        pass
    examples = ", ".join(_EXAMPLES[kind] for kind in ContactKind)
    if not text:
        raise ContactError(
            f"Invalid contact {kind_text!r}: start it with its kind, as in {examples}."
        )
    raise ContactError(
        f"Invalid contact kind {kind_text!r}: use one of "
        f"{', '.join(kind.value for kind in ContactKind)}, as in {examples}."
    )


def _parse_email_domain(domain: str, text: str) -> str:
    if domain.startswith("["):
        raise ContactError(
            f"Invalid email address {text!r}: give a domain name after @, not an "
            "address literal."
        )
    try:
        ascii_domain = idna.encode(domain.rstrip("."), uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise ContactError(
            f"Invalid email address {text!r}: the domain {domain!r} is not a valid "
            f"host name ({exc})."
        ) from exc
    labels = ascii_domain.lower().split(".")
    if not all(_DNS_LABEL.match(label) for label in labels):
        raise ContactError(
            f"Invalid email address {text!r}: the domain {domain!r} is not a valid "
            "host name; use letters, digits and hyphens between dots."
        )
    return ".".join(labels)


def _parse_webhook_url(kind: ContactKind, url: str) -> str:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ContactError(
            f"Invalid {kind.value} URL {_redact_for_error(url)!r}: {exc}; give a "
            f"URL such as {_EXAMPLES[kind]}."
        ) from exc
    scheme = parts.scheme.lower()
    shown = _redact_for_error(url)
    if scheme not in ("http", "https"):
        raise ContactError(
            f"Invalid {kind.value} URL {shown!r}: it must start with https:// "
            f"(or http://), such as {_EXAMPLES[kind]}."
        )
    if not parts.hostname:
        raise ContactError(
            f"Invalid {kind.value} URL {shown!r}: it has no host; give a URL such "
            f"as {_EXAMPLES[kind]}."
        )
    if parts.username is not None or parts.password is not None:
        raise ContactError(
            f"Invalid {kind.value} URL {shown!r}: it contains a user name or "
            "password before @, which certwatch does not send; remove it and use "
            "the token that the receiver puts in its webhook URL."
        )
    if parts.fragment:
        raise ContactError(
            f"Invalid {kind.value} URL {shown!r}: the #fragment is never sent to "
            "the receiver; remove it."
        )
    _check_url_host(kind, parts.hostname, shown)
    _check_chat_scheme(kind, scheme, parts.hostname, shown)
    if port == 0:
        raise ContactError(f"Invalid {kind.value} URL {shown!r}: port 0 is invalid.")
    return parts._replace(scheme=scheme).geturl()


def _check_url_host(kind: ContactKind, host: str, shown: str) -> None:
    if " " in host or any(character in host for character in "\\<>\"'`{}|^"):
        raise ContactError(
            f"Invalid {kind.value} URL {shown!r}: the host {host!r} contains "
            "characters that no host name has."
        )


def _check_chat_scheme(kind: ContactKind, scheme: str, host: str, shown: str) -> None:
    # Slack and Teams serve their webhooks over https only; plain http to
    # another host would send the secret path in clear text for nothing.
    # Loopback stays allowed for a local relay or a test receiver.
    if kind is ContactKind.WEBHOOK or scheme == "https" or is_loopback_host(host):
        return
    raise ContactError(
        f"Invalid {kind.value} URL {shown!r}: {kind.value} webhooks use https; "
        "write https:// instead of http://."
    )


def _parse_apprise_url(url: str) -> str:
    shown = _redact_apprise_url(url)
    if "://" not in url:
        raise ContactError(
            f"Invalid Apprise URL {shown!r}: give SCHEME://..., such as "
            f"{_EXAMPLES[ContactKind.APPRISE]}."
        )
    try:
        plugin = apprise_support.instantiate(url)
    except ImportError as exc:
        raise ContactError(f"{apprise_support.INSTALL_HINT}.") from exc
    if plugin is None:
        raise ContactError(
            f"Invalid Apprise URL {shown!r}: Apprise does not accept it; check the "
            "scheme and the parts that the service's Apprise documentation lists."
        )
    return url


def _redact_apprise_url(url: str) -> str:
    scheme, separator, _ = url.partition("://")
    if not separator:
        return "…"
    if scheme.lower() in _APPRISE_HOST_SCHEMES:
        return redact_url(url)
    return f"{scheme.lower()}://…"


def _redact_for_error(url: str) -> str:
    try:
        return redact_url(url)
    except ValueError:
        # urlsplit rejects malformed IPv6 brackets; keep only the scheme.
        scheme, _, _ = url.partition(":")
        return f"{scheme}:…"


def _host_and_port(parts: SplitResult) -> str:
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    return host if port is None else f"{host}:{port}"
