"""Plain data produced by the certificate analysis."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime


class Severity(enum.IntEnum):
    """How urgent a finding is; higher is worse, so `max()` picks the worst."""

    INFO = 0
    WARNING = 1
    CRITICAL = 2

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Finding:
    """One problem with a stable `code`, a severity and a human message.

    The codes are a public contract (JSON output, exit codes, alerts):
    expired, expiring_soon, not_yet_valid, hostname_mismatch, self_signed,
    untrusted_root, incomplete_chain, chain_expired, chain_expiring,
    chain_invalid, weak_key, weak_signature, excessive_lifetime, parse_error,
    extra_certificate_expired, client_certificate_required.
    """

    code: str
    severity: Severity
    message: str


@dataclass(frozen=True)
class CertificateFacts:
    """What one certificate says about itself.

    Any field other than `sha256` and `der` is `None` (or empty) when that part
    of the certificate could not be read; `parse_problems` then gives the reason.
    """

    der: bytes = field(repr=False)
    sha256: str
    subject: str | None = None
    issuer: str | None = None
    serial: str | None = None
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()
    common_name: str | None = None
    not_before: datetime | None = None
    not_after: datetime | None = None
    spki_sha256: str | None = None
    key_type: str | None = None
    key_size: int | None = None
    signature_algorithm: str | None = None
    signature_hash: str | None = None
    is_ca: bool | None = None
    ocsp_urls: tuple[str, ...] = ()
    ca_issuers_urls: tuple[str, ...] = ()
    crl_urls: tuple[str, ...] = ()
    parse_problems: tuple[str, ...] = ()

    @property
    def self_issued(self) -> bool:
        return self.subject is not None and self.subject == self.issuer


@dataclass(frozen=True)
class Threshold:
    """A point before expiry: a number of days or a share of the lifetime.

    Exactly one of `days` and `share` is set; `share` is between 0 and 1.
    """

    days: float | None = None
    share: float | None = None


@dataclass(frozen=True)
class Thresholds:
    """When a certificate becomes `expiring_soon` (warning) and critical.

    With `None`, the lifetime-aware default applies: warning once less than
    a third of the lifetime or 30 days remains, critical once less than a
    tenth or 7 days remains, whichever of the two is shorter.
    """

    warning: Threshold | None = None
    critical: Threshold | None = None


@dataclass(frozen=True)
class AnalysisPolicy:
    """How to judge certificates.

    `roots` are the trusted root certificates (DER). `public_roots` is
    whether they are the public web PKI (certifi), which enables the checks
    that only apply to publicly trusted leaves, such as `excessive_lifetime`.
    """

    roots: tuple[bytes, ...]
    public_roots: bool = True
    thresholds: Thresholds = field(default_factory=Thresholds)


@dataclass(frozen=True)
class ChainReport:
    """The analysis of one presented chain or one stored certificate.

    `leaf` is `None` when no certificate was given. `chain` follows the order
    of presentation. `valid_path` lists the SHA-256 fingerprints of a path
    from the leaf to a trusted root (root included), or is `None` when no
    such path exists. `days_left` describes the leaf, `None` when its
    not_after could not be read.
    """

    leaf: CertificateFacts | None
    chain: tuple[CertificateFacts, ...]
    findings: tuple[Finding, ...]
    valid_path: tuple[str, ...] | None
    days_left: int | None

    @property
    def severity(self) -> Severity | None:
        return max((f.severity for f in self.findings), default=None)
