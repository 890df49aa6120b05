"""Deliver a notice to a generic JSON, Slack or Microsoft Teams webhook.

Each delivery is one HTTP POST with a JSON body, the notice's idempotency
key in the `Idempotency-Key` header, and a User-Agent naming certwatch.
Redirects are not followed, because a webhook URL that redirects is a
stale contact and following it would send the body to an unconfigured URL.

Without a proxy, the channel resolves the receiver's name itself and
connects to one of the addresses it checked, keeping the name in the Host
header and in the TLS server name (SNI) and certificate check. So the
address policy of an open site (`WebhookSettings.allow_private_addresses`)
holds for the address actually connected to.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import logging
import re
import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from certwatch import __version__
from certwatch.alerts.channels.outcome import DeliveryOutcome
from certwatch.alerts.contacts import ContactAddress, ContactKind, redact_url
from certwatch.alerts.message import Notice
from certwatch.alerts.payloads import slack_payload, teams_payload, webhook_payload
from certwatch.alerts.receivers import ReceiverNotAllowed, receiver_addresses
from certwatch.alerts.settings import WebhookSettings, tls_context
from certwatch.probe.resolve import ResolutionError, Resolver, SystemResolver

USER_AGENT = f"certwatch/{__version__}"

IDEMPOTENCY_HEADER = "Idempotency-Key"
EVENT_HEADER = "X-Certwatch-Event"

# Status codes below 500 that a later attempt may get past: 408 Request
# Timeout and 429 Too Many Requests.
_TRANSIENT_CLIENT_ERRORS = frozenset({408, 429})

# A response body shown in a reason only when it is a short error code such
# as Slack's `no_service` or `invalid_payload`, since a longer body could
# echo the request.
_ERROR_CODE_BODY = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")

# The longest Retry-After honoured; a longer one is capped to it.
_MAX_RETRY_AFTER = timedelta(days=1)


class _RedactUrlArguments(logging.Filter):
    """Replace URLs in httpx log records by their redacted form.

    httpx logs every request at INFO level with its full URL (httpx 0.29
    writes `HTTP Request: POST URL "HTTP/1.1 200 OK"`), which would print
    the secret path of a Slack or Teams webhook when certwatch runs with
    `-v`.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_url(str(arg)) if isinstance(arg, httpx.URL) else arg
                for arg in record.args
            )
        return True


logging.getLogger("httpx").addFilter(_RedactUrlArguments())


MAX_RESPONSE_BYTES = 16 * 1024
"""The maximum number of bytes read from a receiver's response body."""


@dataclass(frozen=True)
class _Route:
    """One way to send the request: the URL to open, and what keeps the name.

    `url` has the checked IP address in place of the host name when the
    channel connects directly. `headers` then contain the original Host,
    and `extensions` the TLS server name that httpcore sends and verifies.
    """

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    extensions: dict[str, Any] = field(default_factory=dict)


async def post_webhook(
    contact: ContactAddress,
    notice: Notice,
    settings: WebhookSettings,
    resolver: Resolver | None = None,
) -> DeliveryOutcome:
    """POST `notice` to a webhook, Slack or Teams contact in its own format.

    `resolver` turns the receiver's name into addresses, the system's
    resolver by default. When connecting to an address is refused or
    fails, the next address is tried. A network or HTTP failure, and a
    receiver that the address policy of `settings` blocks, are returned as
    an outcome, with the reason and whether a retry may help, rather than
    raised.
    """
    try:
        routes = await _routes(contact, settings, resolver or SystemResolver())
    except ReceiverNotAllowed as exc:
        return DeliveryOutcome.rejected(str(exc))
    except ResolutionError as exc:
        return DeliveryOutcome.transient(f"the receiver's name did not resolve: {exc}")

    body = json.dumps(_payload(contact.kind, notice), ensure_ascii=False)
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": USER_AGENT,
        IDEMPOTENCY_HEADER: notice.key,
        EVENT_HEADER: notice.event.value,
    }
    for index, route in enumerate(routes):
        try:
            async with (
                _client(settings) as client,
                client.stream(
                    "POST",
                    route.url,
                    content=body.encode("utf-8"),
                    headers={**headers, **route.headers},
                    extensions=route.extensions,
                ) as response,
            ):
                text = await _read_start(response)
        except httpx.ConnectError as exc:
            # Nothing was sent, so the next address gets the same request.
            if index + 1 < len(routes):
                continue
            return DeliveryOutcome.transient(_describe_error(exc, route.url))
        except httpx.TimeoutException:
            return DeliveryOutcome.transient(
                f"the receiver did not respond within {settings.timeout:g} s"
            )
        except httpx.HTTPError as exc:
            return DeliveryOutcome.transient(_describe_error(exc, route.url))
        return classify_response(response.status_code, response.headers, text)
    # receiver_addresses returns at least one address or raises.
    raise AssertionError(f"no address to deliver to for {contact.redacted()}")


async def _routes(
    contact: ContactAddress, settings: WebhookSettings, resolver: Resolver
) -> list[_Route]:
    """Return the routes to try in turn, after checking the address policy.

    Raises:
        ReceiverNotAllowed: an address of the receiver is not public and
            the settings allow public addresses only.
        ResolutionError: the receiver's name does not resolve.
    """
    url = httpx.URL(contact.value)
    host = url.raw_host.decode("ascii")
    if settings.proxy is not None:
        # NOTE: the proxy resolves the name again when it connects, so with
        # a proxy the policy is checked on this lookup only. An operator who
        # sets a proxy on an open site should make it reject internal
        # addresses too.
        if not settings.allow_private_addresses:
            await _checked_addresses(contact, url, settings, resolver)
        return [_Route(contact.value)]

    addresses = await _checked_addresses(contact, url, settings, resolver)
    if _is_ip_literal(host):
        return [_Route(contact.value)]
    headers = {"Host": url.netloc.decode("ascii")}
    extensions = {"sni_hostname": host} if url.scheme == "https" else {}
    return [
        _Route(str(url.copy_with(host=address)), headers, extensions)
        for address in addresses
    ]


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def _checked_addresses(
    contact: ContactAddress,
    url: httpx.URL,
    settings: WebhookSettings,
    resolver: Resolver,
) -> list[str]:
    port = url.port or (443 if url.scheme == "https" else 80)
    return await receiver_addresses(
        contact,
        url.raw_host.decode("ascii"),
        port,
        resolver,
        allow_private=settings.allow_private_addresses,
        timeout=settings.timeout,
    )


async def _read_start(response: httpx.Response) -> str:
    """Read at most `MAX_RESPONSE_BYTES` of the body, then stop.

    Only the start of a response is ever shown, and a receiver that sends
    without end must not fill the memory.
    """
    start = bytearray()
    async for chunk in response.aiter_raw():
        start.extend(chunk[: MAX_RESPONSE_BYTES - len(start)])
        if len(start) >= MAX_RESPONSE_BYTES:
            break
    return start.decode("utf-8", errors="replace")


def classify_response(
    status: int, headers: httpx.Headers, text: str, now: datetime | None = None
) -> DeliveryOutcome:
    """Turn a webhook's HTTP response into a delivery outcome.

    2xx is delivered. 408, 429 and 5xx may pass and honour Retry-After. A
    redirect and any other 4xx are permanent. `now` is the time that an
    HTTP-date Retry-After is measured from, the current time by default.
    """
    detail = f"HTTP {status}{_error_code(text)}"
    if 200 <= status < 300:
        return DeliveryOutcome.success(f"accepted with {detail}")
    if 300 <= status < 400:
        location = headers.get("Location", "")
        target = f" to {_redact_location(location)}" if location else ""
        return DeliveryOutcome.rejected(
            f"the receiver redirected{target} with {detail}, and certwatch does not "
            "follow redirects; update the contact URL"
        )
    if status in _TRANSIENT_CLIENT_ERRORS or status >= 500:
        retry_after = parse_retry_after(headers.get("Retry-After"), now)
        return DeliveryOutcome.transient(
            f"the receiver failed with {detail}", retry_after=retry_after
        )
    if 400 <= status < 500:
        return DeliveryOutcome.rejected(
            f"the receiver rejected the notice with {detail}"
        )
    return DeliveryOutcome.transient(f"the receiver responded with {detail}")


def parse_retry_after(
    value: str | None, now: datetime | None = None
) -> timedelta | None:
    """Read a Retry-After header, in seconds or as an HTTP date, up to a day.

    Returns `None` when the header is missing or invalid.
    """
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        # Compared as a number first: a huge value overflows timedelta.
        seconds = int(text)
        if seconds >= _MAX_RETRY_AFTER.total_seconds():
            return _MAX_RETRY_AFTER
        return timedelta(seconds=seconds)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    wait = moment - (now or datetime.now(UTC))
    return min(max(wait, timedelta(0)), _MAX_RETRY_AFTER)


def _payload(kind: ContactKind, notice: Notice) -> dict[str, Any]:
    if kind is ContactKind.SLACK:
        return slack_payload(notice)
    if kind is ContactKind.TEAMS:
        return teams_payload(notice)
    return webhook_payload(notice)


def _client(settings: WebhookSettings) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=settings.timeout,
        follow_redirects=False,
        verify=_cached_tls_context(settings),
        proxy=settings.proxy,
        # Environment proxies and .netrc credentials would change where the
        # body goes and what it carries; CERTWATCH_WEBHOOK_PROXY is explicit.
        trust_env=False,
    )


@functools.lru_cache(maxsize=8)
def _cached_tls_context(settings: WebhookSettings) -> ssl.SSLContext:
    return tls_context(settings.ca_file)


def _describe_error(exc: httpx.HTTPError, url: str) -> str:
    if isinstance(exc, httpx.ConnectError):
        kind = "connecting to the receiver failed"
    elif isinstance(exc, httpx.ProxyError):
        kind = "the proxy failed"
    else:
        kind = "the request failed"
    return f"{kind}: {scrub_url(str(exc), url)[:200] or type(exc).__name__}"


def scrub_url(text: str, url: str) -> str:
    """Replace `url`, and its path and query on their own, in `text`."""
    parts = urlsplit(url)
    text = text.replace(url, redact_url(url))
    for secret in (parts.query, parts.path):
        if len(secret) > 1:
            text = text.replace(secret, "…")
    return text


def _error_code(text: str) -> str:
    stripped = text.strip()
    return f" ({stripped})" if _ERROR_CODE_BODY.match(stripped) else ""


def _redact_location(location: str) -> str:
    try:
        return redact_url(location) if "://" in location else "another path"
    except ValueError:
        return "an invalid location"
