"""Match a certificate against the name or address a client asked for.

The rules follow RFC 6125 as browsers apply them:

- DNS names compare case-insensitively as A-labels, ignoring one trailing dot.
- A wildcard is allowed only as the whole left-most label (`*.example.test`),
  matches exactly one non-empty label, and needs at least two labels after it,
  so `*.test` matches nothing.
- An IP address compares against iPAddress SAN entries as an address, never
  against DNS names or the subject CN.
- The subject CN is a fallback only when the certificate has no
  subjectAltName extension at all.
"""

from __future__ import annotations

import ipaddress

import idna
from cryptography import x509

from certwatch.x509.facts import load_certificate
from certwatch.x509.model import CertificateFacts

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def matches_hostname(
    facts: CertificateFacts, server_name: str | None, address: str | None
) -> bool:
    """Tell whether the certificate is valid for the requested identity.

    The identity is `server_name` when given (an IP literal there is treated
    as an address), otherwise `address`. With neither, nothing is requested
    and the result is `True`.
    """
    if server_name is not None:
        requested_ip = parse_ip(server_name)
        if requested_ip is None:
            return _matches_dns(facts, server_name)
        return _matches_ip(facts, requested_ip)
    if address is not None:
        requested_ip = parse_ip(address)
        return requested_ip is not None and _matches_ip(facts, requested_ip)
    return True


def certificate_names(facts: CertificateFacts) -> tuple[str, ...]:
    """Return the identities the certificate carries, as matching uses them.

    These are the DNS and IP SAN entries, or the subject CN when the
    certificate has no subjectAltName extension.
    """
    if has_san_extension(facts):
        return facts.dns_names + facts.ip_addresses
    return (facts.common_name,) if facts.common_name else ()


def has_san_extension(facts: CertificateFacts) -> bool:
    """Tell whether the certificate has a subjectAltName extension.

    A SAN extension with only e-mail or URI entries still counts, because it
    turns the CN fallback off just the same.
    """
    if facts.dns_names or facts.ip_addresses:
        return True
    certificate = load_certificate(facts.der)
    if certificate is None:
        return False
    try:
        certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return False
    except ValueError:
        # An unparsable extension block: the SAN may be there, so the CN must
        # not stand in for it.
        return True
    return True


def to_a_label(name: str) -> str | None:
    """Return `name` as lowercase A-labels without a trailing dot.

    Returns `None` when the name is empty or cannot be encoded with IDNA 2008
    and the UTS #46 mapping.
    """
    if name.endswith("."):
        name = name[:-1]
    if not name:
        return None
    if name.isascii():
        return name.lower()
    try:
        return idna.encode(name, uts46=True).decode("ascii").lower()
    except idna.IDNAError:
        return None


def parse_ip(text: str) -> IPAddress | None:
    """Parse an IPv4 or IPv6 literal, with or without brackets and zone."""
    candidate = text.strip()
    if candidate.startswith("[") and candidate.endswith("]"):
        candidate = candidate[1:-1]
    candidate = candidate.split("%", 1)[0]
    try:
        return ipaddress.ip_address(candidate)
    except ValueError:
        return None


def dns_pattern_matches(pattern: str, reference: str) -> bool:
    """Match one presented DNS identifier against one reference name.

    Both are compared as lowercase A-labels. `pattern` may be a wildcard
    pattern; `reference` never is.
    """
    presented = to_a_label(pattern)
    expected = to_a_label(reference)
    if presented is None or expected is None or "*" in expected:
        return False
    if "*" not in presented:
        return presented == expected

    pattern_labels = presented.split(".")
    reference_labels = expected.split(".")
    if pattern_labels[0] != "*" or "*" in ".".join(pattern_labels[1:]):
        return False
    if len(pattern_labels) < 3 or len(pattern_labels) != len(reference_labels):
        return False
    return reference_labels[0] != "" and pattern_labels[1:] == reference_labels[1:]


def _matches_dns(facts: CertificateFacts, server_name: str) -> bool:
    if has_san_extension(facts):
        presented: tuple[str, ...] = facts.dns_names
    else:
        presented = (facts.common_name,) if facts.common_name else ()
    return any(dns_pattern_matches(pattern, server_name) for pattern in presented)


def _matches_ip(facts: CertificateFacts, requested: IPAddress) -> bool:
    return any(parse_ip(text) == requested for text in facts.ip_addresses)
