"""Delivery settings: the SMTP server, webhook options and retry timing.

`load_delivery_settings` reads them once at start-up from environment
variables named `CERTWATCH_<SECTION>_<KEY>` and from the optional TOML file
that `CERTWATCH_CONFIG` names, the environment winning over the file, and
validates them. Every error names the variable or the file and key it came
from, and what to set instead. docs/configuration.md lists every
setting with its default.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import os
import ssl
import stat
import tomllib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from email.utils import formataddr, parseaddr
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import certifi

from certwatch.alerts.contacts import is_loopback_host, parse_email_address
from certwatch.alerts.errors import ContactError, DeliverySettingsError
from certwatch.errors import CertwatchError
from certwatch.netpolicy import ALLOW_PRIVATE_VARIABLE

CONFIG_VARIABLE = "CERTWATCH_CONFIG"
"""The environment variable that names the optional TOML config file."""

MAX_CONFIG_BYTES = 1024 * 1024
"""The largest config file read, in bytes. All the settings fit in a few hundred."""

ENV_PREFIX = "CERTWATCH_"

MIN_TIMEOUT = 0.1
"""The shortest SMTP or webhook timeout accepted, in seconds."""

MAX_TIMEOUT = 600.0
"""The longest SMTP or webhook timeout accepted, in seconds."""

SIGNUP_VARIABLE = "CERTWATCH_WEB_SIGNUP"
"""The web site's sign-up mode, which sets the default of the address policy."""

PUBLIC_URL_VARIABLE = "CERTWATCH_WEB_PUBLIC_URL"
"""The web service's public URL, which acknowledge links in emails start with."""

DEFAULT_SMTP_TIMEOUT = 30.0
DEFAULT_WEBHOOK_TIMEOUT = 10.0


class SmtpSecurity(enum.StrEnum):
    """The protection of the connection to the SMTP server."""

    STARTTLS = "starttls"
    """Connect in plain text, then upgrade with STARTTLS (required)."""
    TLS = "tls"
    """Start TLS at once (implicit TLS, often port 465)."""
    PLAIN = "plain"
    """No TLS at all; allowed only to a loopback host."""


DEFAULT_SMTP_PORTS = {
    SmtpSecurity.STARTTLS: 587,
    SmtpSecurity.TLS: 465,
    SmtpSecurity.PLAIN: 25,
}
"""The SMTP port used when none is set, per security mode."""

# The keys of each file section; the environment variable of a key is
# CERTWATCH_ followed by "section_key" in upper case.
_SECTION_KEYS = {
    "smtp": (
        "host",
        "port",
        "security",
        "username",
        "password",
        "from",
        "timeout",
        "ca_file",
    ),
    "webhook": ("timeout", "ca_file", "proxy"),
}


@dataclass(frozen=True)
class SmtpSettings:
    """The SMTP server that sends alert emails, and how to reach it.

    `sender` is the From header, an address with an optional display name
    (`certwatch <certwatch@example.test>`). `port` is `None` for the
    default port of `security`, which `server_port` returns. `username`
    and `password` are both set for SMTP AUTH, or both `None`. `timeout`
    is in seconds, for the connection and for each SMTP command. `ca_file`
    adds trusted roots to the certifi bundle for the server's certificate;
    `None` trusts certifi alone.
    """

    host: str
    sender: str
    port: int | None = None
    security: SmtpSecurity = SmtpSecurity.STARTTLS
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = DEFAULT_SMTP_TIMEOUT
    ca_file: Path | None = None

    def __post_init__(self) -> None:
        sender = _check_smtp(self, _env_name)
        object.__setattr__(self, "sender", sender)

    @property
    def sender_address(self) -> str:
        """The bare address of `sender`, for the SMTP envelope."""
        return parseaddr(self.sender)[1]

    @property
    def server_port(self) -> int:
        """The port to connect to: `port`, or the default of `security`."""
        return self.port or DEFAULT_SMTP_PORTS[self.security]


@dataclass(frozen=True)
class WebhookSettings:
    """The connection options of webhook, Slack, Teams and Apprise deliveries.

    `timeout` is in seconds, for connecting and for each read and write.
    `ca_file` adds trusted roots to the certifi bundle, for receivers with
    an internal CA. `proxy` is an http:// or https:// proxy URL, or `None`
    to connect directly; proxy variables of the environment are ignored.
    `allow_private_addresses` false sends nothing to receivers at
    loopback, private and other non-public addresses, for a site with open
    sign-up; it is not read from the file but set by `with_receiver_policy`.
    """

    timeout: float = DEFAULT_WEBHOOK_TIMEOUT
    ca_file: Path | None = None
    proxy: str | None = field(default=None, repr=False)
    allow_private_addresses: bool = True

    def __post_init__(self) -> None:
        _check_timeout(self.timeout, _env_name("webhook", "timeout"))
        if self.proxy is not None:
            _check_proxy(self.proxy, _env_name("webhook", "proxy"))


@dataclass(frozen=True)
class RetryPolicy:
    """The waits before trying a failed delivery again.

    The n-th retry waits `first_delay` times 2 to the power n-1, at most
    `max_delay`, less a random share of up to `jitter` (0 to 1) of it, so
    that deliveries that failed together do not retry together. After
    `max_attempts` failed attempts the delivery is given up; the defaults
    keep trying for about a day.
    """

    first_delay: timedelta = timedelta(minutes=1)
    max_delay: timedelta = timedelta(hours=1)
    jitter: float = 0.25
    max_attempts: int = 30

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise DeliverySettingsError(
                f"Invalid maximum of delivery attempts {self.max_attempts!r}: "
                "give at least 1."
            )
        if self.first_delay <= timedelta(0) or self.max_delay < self.first_delay:
            raise DeliverySettingsError(
                f"Invalid retry delays {self.first_delay} and {self.max_delay}: the "
                "first delay must be positive and at most the maximum delay."
            )
        if not 0 <= self.jitter <= 1:
            raise DeliverySettingsError(
                f"Invalid retry jitter {self.jitter!r}: give a share from 0 to 1."
            )


@dataclass(frozen=True)
class DeliverySettings:
    """Everything the channels need to deliver alerts.

    `smtp` is `None` when no SMTP server is configured; email contacts then
    cannot be delivered. `public_url` is the web service's `http://` or
    `https://` URL that acknowledge links in emails start with; `None`
    leaves the links out, because a relative link is useless in an email.
    """

    smtp: SmtpSettings | None = None
    webhook: WebhookSettings = field(default_factory=WebhookSettings)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    public_url: str | None = None


def load_delivery_settings(
    environ: Mapping[str, str] = os.environ,
    *,
    other_sections: Collection[str] = (),
) -> DeliverySettings:
    """Read and validate the delivery settings from the environment and file.

    `other_sections` are config file sections that other parts of certwatch
    read; they are left alone instead of being reported as unknown.

    Raises:
        DeliverySettingsError: the config file cannot be read, contains an
            unknown key, or a setting is invalid.
    """
    values = _read_config_file(environ, other_sections)
    values.update(_read_environment(environ))
    return DeliverySettings(
        smtp=_smtp_settings(values),
        webhook=_webhook_settings(values),
        public_url=_public_url(environ.get(PUBLIC_URL_VARIABLE)),
    )


def with_receiver_policy(
    settings: DeliverySettings, *, allow_private: bool
) -> DeliverySettings:
    """Return `settings` with the address policy of the web site for receivers.

    `allow_private` is the site's `CERTWATCH_ALLOW_PRIVATE_TARGETS`: when
    false, webhook, Slack, Teams and Apprise deliveries go to public
    addresses only. Email goes through the operator's SMTP server and is
    not affected.
    """
    webhook = dataclasses.replace(
        settings.webhook, allow_private_addresses=allow_private
    )
    return dataclasses.replace(settings, webhook=webhook)


def private_receivers_allowed(environ: Mapping[str, str] = os.environ) -> bool:
    """Read `CERTWATCH_ALLOW_PRIVATE_TARGETS` for receivers, as `serve` reads it.

    Unset or blank, it is true on an invite-only site and false with
    `CERTWATCH_WEB_SIGNUP=open`, the defaults of the web settings. Only
    these two variables are read, so `contact add`, `notify test` and
    `run --once` neither import the web service nor fail on its other
    settings.

    Raises:
        DeliverySettingsError: either variable has a value that is not valid.
    """
    signup_text = environ.get(SIGNUP_VARIABLE)
    signup = (signup_text or "").strip().lower() or "invite"
    if signup not in ("invite", "open"):
        raise DeliverySettingsError(
            f"{SIGNUP_VARIABLE}={signup_text!r} is not a sign-up mode: set it to "
            "invite (new accounts need an invitation) or open (anyone can sign up)."
        )
    text = environ.get(ALLOW_PRIVATE_VARIABLE)
    if text is None or not text.strip():
        return signup != "open"
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise DeliverySettingsError(
        f"{ALLOW_PRIVATE_VARIABLE}={text!r} is not true or false: set it to true "
        "to deliver to receivers at loopback and private addresses, or to false "
        "to deliver to public addresses only."
    )


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """Build a client TLS context trusting certifi plus the roots in `ca_file`.

    Raises:
        DeliverySettingsError: `ca_file` cannot be read or contains no
            certificate.
    """
    context = ssl.create_default_context(cafile=certifi.where())
    if ca_file is not None:
        try:
            context.load_verify_locations(cafile=str(ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise DeliverySettingsError(
                f"Invalid CA file {str(ca_file)!r}: {exc}; give a readable file of "
                "PEM certificates."
            ) from exc
    return context


@dataclass(frozen=True)
class _Value:
    """One setting as read, with where it came from for error messages."""

    value: object
    origin: str
    base: Path | None = None
    """The folder that a relative path in the value is relative to."""


def _env_name(section: str, key: str | None = None) -> str:
    """Return the variable of `section` and `key`, or of `section` as `smtp.host`."""
    if key is None:
        section, _, key = section.partition(".")
    return f"{ENV_PREFIX}{section}_{key}".upper()


def _read_environment(environ: Mapping[str, str]) -> dict[str, _Value]:
    values = {}
    for section, keys in _SECTION_KEYS.items():
        for key in keys:
            name = _env_name(section, key)
            text = environ.get(name, "").strip()
            if text:
                values[f"{section}.{key}"] = _Value(text, name)
    return values


def _read_config_file(
    environ: Mapping[str, str], other_sections: Collection[str]
) -> dict[str, _Value]:
    path_text = environ.get(CONFIG_VARIABLE, "").strip()
    if not path_text:
        return {}
    path = Path(path_text).expanduser()
    try:
        data = _read_regular_file(path)
    except OSError as exc:
        raise DeliverySettingsError(
            f"{CONFIG_VARIABLE}: cannot read the config file {path_text!r} "
            f"({exc.strerror or exc}); fix the path or unset {CONFIG_VARIABLE}."
        ) from exc
    if data is None:
        raise DeliverySettingsError(
            f"{CONFIG_VARIABLE}: {path_text!r} is not a regular file; give the "
            f"path of a TOML file or unset {CONFIG_VARIABLE}."
        )
    if len(data) > MAX_CONFIG_BYTES:
        raise DeliverySettingsError(
            f"{CONFIG_VARIABLE}: the config file {path_text!r} is larger than "
            f"{MAX_CONFIG_BYTES:,} bytes; give a TOML file of certwatch settings "
            "only."
        )
    try:
        document = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DeliverySettingsError(
            f"{path}: invalid TOML (not UTF-8 text: {exc.reason} at byte "
            f"{exc.start}); save the file as UTF-8."
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise DeliverySettingsError(
            f"{path}: invalid TOML ({exc}); fix the file."
        ) from exc
    return _file_values(document, path, other_sections)


def _read_regular_file(path: Path) -> bytes | None:
    """Read at most `MAX_CONFIG_BYTES` + 1 bytes, or return `None` for a non-file.

    The file is opened without blocking and checked after opening, so a
    FIFO cannot hang the start and a device such as /dev/zero is not read.
    """
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            return None
        chunks = []
        remaining = MAX_CONFIG_BYTES + 1
        while remaining > 0:
            chunk = os.read(descriptor, remaining)
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(descriptor)


def _file_values(
    document: dict[str, Any], path: Path, other_sections: Collection[str]
) -> dict[str, _Value]:
    values = {}
    known = ", ".join(sorted([*_SECTION_KEYS, *other_sections]))
    for section, table in document.items():
        if section in other_sections:
            continue
        if section not in _SECTION_KEYS or not isinstance(table, dict):
            raise DeliverySettingsError(
                f"{path}: unknown key {section!r}; the file may contain the "
                f"sections {known}."
            )
        for key, value in table.items():
            if key not in _SECTION_KEYS[section]:
                keys = ", ".join(_SECTION_KEYS[section])
                raise DeliverySettingsError(
                    f"{path}: unknown key '{section}.{key}'; [{section}] may "
                    f"contain {keys}."
                )
            origin = f"{path}: {section}.{key}"
            values[f"{section}.{key}"] = _Value(value, origin, path.parent)
    return values


def _smtp_settings(values: Mapping[str, _Value]) -> SmtpSettings | None:
    present = sorted(key for key in values if key.startswith("smtp."))
    if not present:
        return None
    if "smtp.host" not in values:
        first = values[present[0]].origin
        raise DeliverySettingsError(
            f"{first} is set but {_env_name('smtp.host')} (smtp.host in the config "
            "file) is not: set the host of the SMTP server, or remove the other "
            "SMTP settings."
        )
    if "smtp.from" not in values:
        raise DeliverySettingsError(
            f"{_env_name('smtp.from')} (smtp.from in the config file) is missing: "
            "set the address alerts are sent from, such as certwatch@example.test."
        )
    security_text = _string(values, "smtp.security") or SmtpSecurity.STARTTLS.value
    settings = _SmtpFields(
        host=_string(values, "smtp.host") or "",
        sender=_string(values, "smtp.from") or "",
        port=_integer(values, "smtp.port"),
        security=_security(security_text, _origin(values, "smtp.security")),
        username=_string(values, "smtp.username"),
        password=_string(values, "smtp.password"),
        timeout=_number(values, "smtp.timeout", DEFAULT_SMTP_TIMEOUT),
        ca_file=_ca_file(values, "smtp.ca_file"),
    )

    def origin(section: str, key: str) -> str:
        return _origin(values, f"{section}.{key}")

    _check_smtp(settings, origin)
    return SmtpSettings(**dataclasses.asdict(settings))


def _public_url(text: str | None) -> str | None:
    url = parse_public_url(text, DeliverySettingsError)
    return None if url is None else url.rstrip("/")


def parse_public_url(text: str | None, error: type[CertwatchError]) -> str | None:
    """Return the stripped public URL, `None` when it is unset or blank.

    Raises:
        CertwatchError: `error`, when the URL is not http or https, has no
            host, or has a query or fragment.
    """
    if text is None or not text.strip():
        return None
    url = text.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise error(
            f"{PUBLIC_URL_VARIABLE}={text!r} is not an http or https URL: set it "
            "to the address users open, such as https://certwatch.example.test."
        )
    if parts.query or parts.fragment:
        raise error(
            f"{PUBLIC_URL_VARIABLE}={text!r} has a query or fragment: give only "
            "the scheme, host and optional path prefix."
        )
    return url


def _webhook_settings(values: Mapping[str, _Value]) -> WebhookSettings:
    timeout = _number(values, "webhook.timeout", DEFAULT_WEBHOOK_TIMEOUT)
    _check_timeout(timeout, _origin(values, "webhook.timeout"))
    proxy = _string(values, "webhook.proxy")
    if proxy is not None:
        _check_proxy(proxy, _origin(values, "webhook.proxy"))
    return WebhookSettings(
        timeout=timeout, ca_file=_ca_file(values, "webhook.ca_file"), proxy=proxy
    )


@dataclass
class _SmtpFields:
    """The SMTP fields after type conversion, before the final checks."""

    host: str
    sender: str
    port: int | None
    security: SmtpSecurity
    username: str | None
    password: str | None
    timeout: float
    ca_file: Path | None


def _check_smtp(
    smtp: SmtpSettings | _SmtpFields, origin: Callable[[str, str], str]
) -> str:
    """Check the SMTP fields together and return the normalised sender."""
    host = smtp.host.strip("[]")
    if not host or any(character.isspace() for character in host):
        raise DeliverySettingsError(
            f"{origin('smtp', 'host')}: invalid SMTP host {smtp.host!r}; give a "
            "host name or an IP address."
        )
    if smtp.port is not None and not 1 <= smtp.port <= 65535:
        raise DeliverySettingsError(
            f"{origin('smtp', 'port')}: invalid port {smtp.port!r}; give a number "
            "from 1 to 65535."
        )
    if smtp.security is SmtpSecurity.PLAIN and not is_loopback_host(host):
        raise DeliverySettingsError(
            f"{origin('smtp', 'security')}: plain SMTP sends messages and passwords "
            f"unencrypted, so it is allowed only to a loopback host, and the host "
            f"is {smtp.host!r}; use starttls or tls."
        )
    _check_credentials(smtp, origin)
    _check_timeout(smtp.timeout, origin("smtp", "timeout"))
    return _check_sender(smtp.sender, origin("smtp", "from"))


def _check_credentials(
    smtp: SmtpSettings | _SmtpFields, origin: Callable[[str, str], str]
) -> None:
    if smtp.password is not None and smtp.username is None:
        raise DeliverySettingsError(
            f"{origin('smtp', 'password')} is set without a user name: set "
            f"{_env_name('smtp.username')} too, or remove the password."
        )
    if smtp.username is not None and smtp.password is None:
        raise DeliverySettingsError(
            f"{origin('smtp', 'username')} is set without a password: set "
            f"{_env_name('smtp.password')} too, or remove the user name."
        )


def _check_sender(sender: str, origin: str) -> str:
    display_name, address = parseaddr(sender)
    try:
        normalised = parse_email_address(address) if address else None
    except ContactError:
        normalised = None
    if normalised is None or any(ord(character) < 32 for character in sender):
        raise DeliverySettingsError(
            f"{origin}: invalid From address {sender!r}; give an address such as "
            "certwatch@example.test or 'certwatch <certwatch@example.test>'."
        )
    return formataddr((display_name, normalised))


def _check_timeout(timeout: float, origin: str) -> None:
    # A timeout far below a network round trip fails every delivery.
    if not (math.isfinite(timeout) and MIN_TIMEOUT <= timeout <= MAX_TIMEOUT):
        raise DeliverySettingsError(
            f"{origin}: invalid timeout {timeout!r}; give a number of seconds "
            f"from {MIN_TIMEOUT:g} to {MAX_TIMEOUT:g}."
        )


def _check_proxy(proxy: str, origin: str) -> None:
    try:
        parts = urlsplit(proxy)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        # urlsplit checks the port only when it is read.
        _ = parts.port
    except ValueError:
        valid = False
    if not valid:
        raise DeliverySettingsError(
            f"{origin}: invalid proxy URL; give http://HOST:PORT or https://HOST:PORT."
        )


def _origin(values: Mapping[str, _Value], key: str) -> str:
    value = values.get(key)
    return value.origin if value is not None else _env_name(key)


def _string(values: Mapping[str, _Value], key: str) -> str | None:
    value = values.get(key)
    if value is None:
        return None
    if not isinstance(value.value, str):
        raise DeliverySettingsError(
            f"{value.origin}: invalid value {value.value!r}; give a string."
        )
    return value.value.strip()


def _integer(values: Mapping[str, _Value], key: str) -> int | None:
    value = values.get(key)
    if value is None:
        return None
    raw = value.value
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().isdigit():
        return int(raw)
    raise DeliverySettingsError(
        f"{value.origin}: invalid port {raw!r}; give a number from 1 to 65535."
    )


def _number(values: Mapping[str, _Value], key: str, default: float) -> float:
    value = values.get(key)
    if value is None:
        return default
    raw = value.value
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return float(raw)
    if isinstance(raw, str):
        try:
            return float(raw)
        except ValueError:
            pass
    raise DeliverySettingsError(
        f"{value.origin}: invalid number {raw!r}; give a number of seconds such as "
        "10 or 2.5."
    )


def _security(text: str, origin: str) -> SmtpSecurity:
    try:
        return SmtpSecurity(text.lower())
    except ValueError:
        choices = ", ".join(mode.value for mode in SmtpSecurity)
        raise DeliverySettingsError(
            f"{origin}: invalid SMTP security {text!r}; use one of {choices}."
        ) from None


def _ca_file(values: Mapping[str, _Value], key: str) -> Path | None:
    text = _string(values, key)
    if text is None:
        return None
    base = values[key].base
    path = Path(text).expanduser()
    if base is not None and not path.is_absolute():
        path = base / path
    if not path.is_file():
        raise DeliverySettingsError(
            f"{values[key].origin}: the CA file {str(path)!r} does not exist or is "
            "not a file; give the path of a PEM file of CA certificates."
        )
    try:
        tls_context(path)
    except DeliverySettingsError as exc:
        raise DeliverySettingsError(f"{values[key].origin}: {exc}") from exc
    return path
