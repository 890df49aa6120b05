"""The settings of the web service, read once from the environment at start-up."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from certwatch.alerts.settings import parse_public_url
from certwatch.errors import CertwatchError
from certwatch.netpolicy import ALLOW_PRIVATE_VARIABLE

HOST_VARIABLE = "CERTWATCH_WEB_HOST"
PORT_VARIABLE = "CERTWATCH_WEB_PORT"
TOKEN_VARIABLE = "CERTWATCH_METRICS_TOKEN"
DISABLED_VARIABLE = "CERTWATCH_WEB_DISABLED"
PUBLIC_URL_VARIABLE = "CERTWATCH_WEB_PUBLIC_URL"
SIGNUP_VARIABLE = "CERTWATCH_WEB_SIGNUP"
ENDPOINT_LIMIT_VARIABLE = "CERTWATCH_TEAM_ENDPOINT_LIMIT"
REQUEST_LIMIT_VARIABLE = "CERTWATCH_WEB_REQUESTS_PER_MINUTE"
TRUSTED_PROXIES_VARIABLE = "CERTWATCH_WEB_TRUSTED_PROXIES"

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
# With open sign-up, anyone can make a team, so each team's inventory is
# bounded by default; an invite-only site trusts its users.
OPEN_SIGNUP_ENDPOINT_LIMIT = 1000
# A person clicking through pages sends a few requests a minute, and a
# script that lists and updates endpoints one by one stays well below this.
DEFAULT_REQUESTS_PER_MINUTE = 120

SIGNUP_MODES = ("invite", "open")
"""`invite`: after the first account, sign-up needs an invitation; `open`: anyone."""

# A shorter metrics token could be guessed by trying; 16 characters of
# `openssl rand -hex 16` or similar give 64 bits or more.
MIN_TOKEN_LENGTH = 16

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})
_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
# Visible ASCII only, because the token travels in an HTTP header.
_TOKEN_CHARACTERS = re.compile(r"[\x21-\x7e]+")


class WebSettingsError(CertwatchError, ValueError):
    """A web setting in the environment that is invalid; the message names it."""


@dataclass(frozen=True)
class WebSettings:
    """The web service's listening address and the access rule of `/metrics`.

    `metrics_token` is `None` when `/metrics` is served to loopback clients
    only. `public_url` is the address users reach the service at, used in
    the calendar URLs that certwatch prints; `None` means the listening
    address. `port` 0 lets the system pick a free port. `signup` is one of
    `SIGNUP_MODES`.

    `allow_private_targets` lets the probe reach loopback, private and
    other non-public addresses. `team_endpoint_limit` bounds the endpoints
    of a team whose own limit is unset (`None`: no bound).
    `requests_per_minute` bounds the API requests and form posts of each
    user and API token. The field defaults suit an invite-only site;
    `load_web_settings` picks safer ones for open sign-up.

    `trusted_proxies` are the addresses and networks (in CIDR form) of the
    reverse proxies whose X-Forwarded-For and X-Forwarded-Proto headers
    are believed. Empty means that no proxy is trusted, so the client's
    address is the connection's peer, whatever headers it sends.
    """

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    metrics_token: str | None = None
    disabled: bool = False
    public_url: str | None = None
    signup: str = "invite"
    allow_private_targets: bool = True
    team_endpoint_limit: int | None = None
    requests_per_minute: int = DEFAULT_REQUESTS_PER_MINUTE
    trusted_proxies: tuple[str, ...] = ()

    def base_url(self) -> str:
        """Return the URL that printed links start with, without a final `/`."""
        if self.public_url is not None:
            return self.public_url.rstrip("/")
        return http_url(self.host, self.port)


def http_url(host: str, port: int) -> str:
    """Return the `http://` URL of a host and port, with IPv6 in brackets."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def load_web_settings(environ: Mapping[str, str] = os.environ) -> WebSettings:
    """Read the web settings from the environment, with defaults for the unset.

    Raises:
        WebSettingsError: a variable is invalid; the message names it.
    """
    signup = _signup(environ.get(SIGNUP_VARIABLE))
    open_signup = signup == "open"
    return WebSettings(
        host=_host(environ.get(HOST_VARIABLE)),
        port=_port(environ.get(PORT_VARIABLE)),
        metrics_token=_token(environ.get(TOKEN_VARIABLE)),
        disabled=_flag(environ.get(DISABLED_VARIABLE)),
        public_url=parse_public_url(environ.get(PUBLIC_URL_VARIABLE), WebSettingsError),
        signup=signup,
        allow_private_targets=_allow_private(
            environ.get(ALLOW_PRIVATE_VARIABLE), default=not open_signup
        ),
        team_endpoint_limit=_endpoint_limit(
            environ.get(ENDPOINT_LIMIT_VARIABLE),
            default=OPEN_SIGNUP_ENDPOINT_LIMIT if open_signup else None,
        ),
        requests_per_minute=_requests_per_minute(environ.get(REQUEST_LIMIT_VARIABLE)),
        trusted_proxies=parse_trusted_proxies(environ.get(TRUSTED_PROXIES_VARIABLE)),
    )


def parse_trusted_proxies(text: str | None) -> tuple[str, ...]:
    """Parse a comma-separated list of proxy addresses and CIDR networks.

    Returns each entry in canonical form; an address becomes a one-address
    network such as `127.0.0.1/32`. `None` or an empty text trusts no proxy.

    Raises:
        WebSettingsError: an entry is not an IP address or network.
    """
    networks: list[str] = []
    for entry in (text or "").split(","):
        stripped = entry.strip()
        if not stripped:
            continue
        try:
            network = ipaddress.ip_network(stripped.strip("[]"), strict=False)
        except ValueError:
            raise WebSettingsError(
                f"{TRUSTED_PROXIES_VARIABLE} contains {stripped!r}, which is not "
                "an IP address or network: list the addresses or CIDR networks "
                "of your reverse proxies, separated by commas, such as "
                "127.0.0.1,10.0.0.0/8, or unset it when no proxy is in front."
            ) from None
        networks.append(str(network))
    return tuple(dict.fromkeys(networks))


def _host(text: str | None) -> str:
    if text is None:
        return DEFAULT_HOST
    host = text.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    labels = host.removesuffix(".").split(".")
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise WebSettingsError(
            f"{HOST_VARIABLE}={text!r} is not an IP address or host name: set it "
            f"to the address to listen on, such as {DEFAULT_HOST} or 0.0.0.0."
        )
    return host


def _port(text: str | None) -> int:
    if text is None:
        return DEFAULT_PORT
    try:
        port = int(text.strip())
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise WebSettingsError(
            f"{PORT_VARIABLE}={text!r} is not a port number: set it to a number "
            f"from 1 to 65535, such as {DEFAULT_PORT}, or 0 for any free port."
        )
    return port


def _token(text: str | None) -> str | None:
    if text is None:
        return None
    if len(text) < MIN_TOKEN_LENGTH or not _TOKEN_CHARACTERS.fullmatch(text):
        # The value itself is a secret and is left out of the message.
        raise WebSettingsError(
            f"{TOKEN_VARIABLE} is invalid: set it to at least {MIN_TOKEN_LENGTH} "
            "visible ASCII characters without spaces (such as the output of "
            f"'openssl rand -hex 16'), or unset it to serve /metrics to this "
            "machine only."
        )
    return text


def _flag(text: str | None) -> bool:
    value = (text or "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise WebSettingsError(
        f"{DISABLED_VARIABLE}={text!r} is not a yes or no: set it to 1 to run "
        "the monitor without the web service, or to 0 or nothing to run both."
    )


def _signup(text: str | None) -> str:
    mode = (text or "").strip().lower() or SIGNUP_MODES[0]
    if mode not in SIGNUP_MODES:
        raise WebSettingsError(
            f"{SIGNUP_VARIABLE}={text!r} is not a sign-up mode: set it to invite "
            "(the default: new accounts need an invitation) or open (anyone can "
            "sign up)."
        )
    return mode


def _allow_private(text: str | None, *, default: bool) -> bool:
    if text is None or not text.strip():
        return default
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise WebSettingsError(
        f"{ALLOW_PRIVATE_VARIABLE}={text!r} is not true or false: set it to true "
        "to let anyone who can add targets probe loopback and private "
        "addresses (fit for a site of trusted users), or to false to probe "
        "public addresses only."
    )


def _endpoint_limit(text: str | None, *, default: int | None) -> int | None:
    if text is None or not text.strip():
        return default
    value = text.strip().lower()
    if value == "none":
        return None
    if value.isdigit() and int(value) > 0:
        return int(value)
    raise WebSettingsError(
        f"{ENDPOINT_LIMIT_VARIABLE}={text!r} is not a limit: set it to the "
        "maximum number of endpoints per team, such as "
        f"{OPEN_SIGNUP_ENDPOINT_LIMIT}, or to none for no limit."
    )


def _requests_per_minute(text: str | None) -> int:
    if text is None or not text.strip():
        return DEFAULT_REQUESTS_PER_MINUTE
    value = text.strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    raise WebSettingsError(
        f"{REQUEST_LIMIT_VARIABLE}={text!r} is not a number of requests: set it "
        "to the number of API requests and form posts a user or API token may "
        f"send per minute, such as {DEFAULT_REQUESTS_PER_MINUTE}."
    )
