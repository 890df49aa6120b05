"""The outcome of one probe of one address."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from certwatch.targets import Endpoint


class ErrorReason(enum.StrEnum):
    """Why a probe produced no certificate; the values are a public contract."""

    DNS_ERROR = "dns_error"
    CONNECTION_REFUSED = "connection_refused"
    CONNECTION_FAILED = "connection_failed"
    TIMEOUT = "timeout"
    TLS_HANDSHAKE_FAILED = "tls_handshake_failed"
    STARTTLS_REFUSED = "starttls_refused"
    STARTTLS_FAILED = "starttls_failed"
    NO_CERTIFICATE = "no_certificate"
    INVALID_TARGET = "invalid_target"
    FILE_ERROR = "file_error"
    ADDRESS_NOT_ALLOWED = "address_not_allowed"


@dataclass(frozen=True)
class ProbeError:
    """A failed probe: a stable `reason` and the underlying message."""

    reason: ErrorReason
    message: str


@dataclass(frozen=True)
class ProbeSettings:
    """How to probe: the deadline per address, concurrency and address policy.

    With `allow_private_addresses` false, the probe connects only to public
    addresses (see `certwatch.netpolicy`); any other resolved or pinned
    address gets a result with `ErrorReason.ADDRESS_NOT_ALLOWED` instead.
    """

    timeout: float = 10.0
    concurrency: int = 100
    allow_private_addresses: bool = True

    def __post_init__(self) -> None:
        if not (math.isfinite(self.timeout) and self.timeout > 0):
            raise ValueError(
                f"Invalid probe timeout {self.timeout!r}: give a number of "
                "seconds above 0."
            )
        if self.concurrency < 1:
            raise ValueError(
                f"Invalid probe concurrency {self.concurrency!r}: give at least 1."
            )


@dataclass(frozen=True)
class ProbeResult:
    """One probe of one address.

    `address` is `None` only when DNS resolution failed. `chain` contains the DER
    certificates exactly as the server sent them, leaf first; it is empty when
    `error` is set. A server that requires a client certificate and aborts
    after sending its own chain gives that chain, no error, and
    `client_certificate_requested`.

    `starttls_not_offered` is set, and `chain` empty with no `error`, when
    the server replied to a STARTTLS dialogue without offering the upgrade
    to TLS. It is a sentence with a sanitised excerpt of what the server sent.
    """

    endpoint: Endpoint
    address: str | None
    chain: tuple[bytes, ...] = ()
    tls_version: str | None = None
    cipher: str | None = None
    error: ProbeError | None = None
    client_certificate_requested: bool = False
    starttls_not_offered: str | None = None
