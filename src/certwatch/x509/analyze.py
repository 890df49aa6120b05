"""Turn a presented chain or a stored certificate into a report of findings.

Every finding has a stable code, a severity and one plain sentence with the
values involved. `days_left` and the expiry findings always describe the
leaf. The functions are pure: `now` comes from the caller, and the caches
below them (facts per DER, trust store per roots tuple, signature checks per
pair of fingerprints) hold nothing that depends on time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from certwatch.x509.expiry import expiry_findings, expiry_windows
from certwatch.x509.facts import days_left, lifetime, read_facts
from certwatch.x509.hostname import certificate_names, matches_hostname
from certwatch.x509.model import (
    AnalysisPolicy,
    CertificateFacts,
    ChainReport,
    Finding,
    Severity,
)
from certwatch.x509.trust import assess_trust

# The longest lifetime browsers accept for a publicly trusted server
# certificate, by issuance date (not_before): 398 days from 2020-09-01 and
# 825 days from 2018-03-01 (CA/Browser Forum Baseline Requirements).
# NOTE: the shorter limits of ballot SC-081 (200 days from 2026-03-15) are not
# applied yet; add them here once clients enforce them.
MAX_PUBLIC_LIFETIMES = (
    (datetime(2020, 9, 1, tzinfo=UTC), timedelta(days=398)),
    (datetime(2018, 3, 1, tzinfo=UTC), timedelta(days=825)),
)

# Key sizes in bits below which a key is weak, and below which it is broken.
RSA_WEAK_BELOW = 2048
RSA_BROKEN_BELOW = 1024
EC_WEAK_BELOW = 256

# Hashes whose signatures can be forged (critical) or are no longer accepted
# by browsers because collisions are practical (warning).
BROKEN_SIGNATURE_HASHES = frozenset({"md2", "md5"})
WEAK_SIGNATURE_HASHES = frozenset({"sha1"})

# How many of the certificate's names a hostname_mismatch message lists.
MAX_NAMES_SHOWN = 10


def analyze_chain(
    chain: Sequence[bytes],
    *,
    server_name: str | None,
    address: str | None,
    now: datetime,
    policy: AnalysisPolicy,
) -> ChainReport:
    """Analyze a chain as a server presented it, leaf first.

    Args:
        chain: DER certificates in the order of presentation.
        server_name: The name the client asked for (SNI), or `None` for an
            IP target.
        address: The address connected to; matched against iPAddress SANs
            only when `server_name` is `None`.
        now: The instant to judge validity at (timezone-aware).
        policy: Trust roots, whether they are the public web PKI, thresholds.

    Returns:
        The report. An empty chain gives a report with `leaf=None` and no
        findings, because the caller reports why no certificate was seen.
    """
    if not chain:
        return ChainReport(
            leaf=None, chain=(), findings=(), valid_path=None, days_left=None
        )

    facts = tuple(read_facts(der) for der in chain)
    leaf = facts[0]
    windows = expiry_windows(leaf, policy.thresholds)
    trust = assess_trust(facts, policy.roots, now=now, windows=windows)
    judged = [c for c in _unique(trust.path) if c.sha256 not in trust.trusted_roots]

    findings = [
        *expiry_findings(leaf, now, policy.thresholds),
        *_hostname_findings(leaf, server_name, address),
        *trust.findings,
        *_key_findings(judged),
        *_signature_findings(judged),
        *_parse_findings(_unique(facts)),
    ]
    if policy.public_roots and trust.valid_path is not None:
        findings += _lifetime_findings(leaf)

    valid_path = trust.valid_path
    return ChainReport(
        leaf=leaf,
        chain=facts,
        findings=tuple(findings),
        valid_path=None if valid_path is None else tuple(c.sha256 for c in valid_path),
        days_left=_days_left(leaf, now),
    )


def analyze_certificate(
    der: bytes, *, now: datetime, policy: AnalysisPolicy
) -> ChainReport:
    """Analyze one stored certificate, for example from a file.

    Only the findings that need no chain and no server apply: expiry, key
    strength, signature hash and parse problems. A certificate that is one
    of `policy.roots` gets no signature finding, because clients do not
    check the signature of a trust root.
    """
    facts = read_facts(der)
    trusted_root = der in policy.roots
    findings = [
        *expiry_findings(facts, now, policy.thresholds),
        *_key_findings([facts]),
        *([] if trusted_root else _signature_findings([facts])),
        *_parse_findings([facts]),
    ]
    return ChainReport(
        leaf=facts,
        chain=(facts,),
        findings=tuple(findings),
        valid_path=None,
        days_left=_days_left(facts, now),
    )


def _days_left(leaf: CertificateFacts, now: datetime) -> int | None:
    return None if leaf.not_after is None else days_left(leaf.not_after, now)


def _hostname_findings(
    leaf: CertificateFacts, server_name: str | None, address: str | None
) -> list[Finding]:
    if matches_hostname(leaf, server_name, address):
        return []
    requested = server_name if server_name is not None else address
    return [
        Finding(
            "hostname_mismatch",
            Severity.CRITICAL,
            f"The certificate is not valid for {requested!r}: it names "
            f"{_list_names(certificate_names(leaf))}.",
        )
    ]


def _list_names(names: Sequence[str]) -> str:
    if not names:
        return "no DNS name or IP address"
    shown = ", ".join(repr(name) for name in names[:MAX_NAMES_SHOWN])
    hidden = len(names) - MAX_NAMES_SHOWN
    return f"{shown} and {hidden} more" if hidden > 0 else shown


def _key_findings(certificates: Iterable[CertificateFacts]) -> list[Finding]:
    findings = []
    for facts in certificates:
        severity = _key_severity(facts.key_type, facts.key_size)
        if severity is None:
            continue
        findings.append(
            Finding(
                "weak_key",
                severity,
                f"The certificate {_name(facts)} has a {facts.key_size}-bit "
                f"{facts.key_type} key; use RSA of at least {RSA_WEAK_BELOW} bits "
                f"or EC of at least {EC_WEAK_BELOW} bits.",
            )
        )
    return findings


def _key_severity(key_type: str | None, key_size: int | None) -> Severity | None:
    if key_size is None:
        return None
    if key_type in ("RSA", "DSA"):
        if key_size < RSA_BROKEN_BELOW:
            return Severity.CRITICAL
        if key_size < RSA_WEAK_BELOW:
            return Severity.WARNING
    if key_type == "EC" and key_size < EC_WEAK_BELOW:
        return Severity.WARNING
    return None


def _signature_findings(certificates: Iterable[CertificateFacts]) -> list[Finding]:
    findings = []
    for facts in certificates:
        hash_name = facts.signature_hash
        if hash_name in BROKEN_SIGNATURE_HASHES:
            severity = Severity.CRITICAL
        elif hash_name in WEAK_SIGNATURE_HASHES:
            severity = Severity.WARNING
        else:
            continue
        findings.append(
            Finding(
                "weak_signature",
                severity,
                f"The certificate {_name(facts)} is signed with "
                f"{facts.signature_algorithm or hash_name}, a hash that clients no "
                "longer accept; reissue it with SHA-256 or stronger.",
            )
        )
    return findings


def _parse_findings(certificates: Iterable[CertificateFacts]) -> list[Finding]:
    return [
        Finding(
            "parse_error",
            Severity.WARNING,
            f"The certificate {_name(facts)} has parse problems: "
            f"{' '.join(facts.parse_problems)}",
        )
        for facts in certificates
        if facts.parse_problems
    ]


def _lifetime_findings(leaf: CertificateFacts) -> list[Finding]:
    total = lifetime(leaf)
    limit = _lifetime_limit(leaf.not_before)
    if total is None or limit is None or total <= limit:
        return []
    days = total / timedelta(days=1)
    return [
        Finding(
            "excessive_lifetime",
            Severity.WARNING,
            f"The certificate is valid for {days:.0f} days, longer than the "
            f"{limit.days} days that browsers accept for publicly trusted "
            "certificates issued when it was.",
        )
    ]


def _lifetime_limit(not_before: datetime | None) -> timedelta | None:
    if not_before is None:
        return None
    for since, limit in MAX_PUBLIC_LIFETIMES:
        if not_before >= since:
            return limit
    return None


def _unique(certificates: Iterable[CertificateFacts]) -> list[CertificateFacts]:
    seen: dict[str, CertificateFacts] = {}
    for facts in certificates:
        seen.setdefault(facts.sha256, facts)
    return list(seen.values())


def _name(facts: CertificateFacts) -> str:
    if facts.subject:
        return repr(facts.subject)
    return f"with SHA-256 {facts.sha256}"
