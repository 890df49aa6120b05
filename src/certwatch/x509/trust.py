"""Decide whether a presented chain leads to a trusted root, and if not, why.

Two parts work together:

- The path validator of `cryptography` (`cryptography.x509.verification`) is
  the authority on whether a chain is valid. It builds its own path from the
  presented certificates, so order, duplicates and unneeded extras do not
  matter to it.
- When it rejects the chain, a path search of our own over the presented
  certificates and the roots (issuer name plus signature) finds the best
  candidate path. That path classifies the failure: a self-signed leaf, an
  untrusted root, a missing intermediate, an expired certificate on the path,
  or a complete path rejected for another reason.

The hostname is judged by `certwatch.x509.hostname`, not here. The validator
of `cryptography` has no mode without a server name, so it is given a name or
address that the leaf itself carries; a name mismatch then never shows up as
a trust failure.

The leaf's own validity period is reported by the `expired` and
`not_yet_valid` findings, so the chain is validated at `now` moved into the
leaf's validity period when the leaf is outside it. Every other certificate on
the path is still judged at `now`.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.verification import (
    PolicyBuilder,
    Store,
    Subject,
    VerificationError,
)

from certwatch.x509.expiry import (
    ExpiryWindows,
    describe_duration,
    format_time,
    is_outside_validity,
)
from certwatch.x509.facts import load_certificate, read_facts
from certwatch.x509.hostname import parse_ip
from certwatch.x509.model import CertificateFacts, Finding, Severity

# Bounds on our own path search, so a hostile chain of many certificates with
# the same names cannot make one analysis slow. Real chains are at most four
# or five certificates deep.
MAX_PATH_LENGTH = 10
MAX_SEARCH_STEPS = 500

# Entries in the cache of signature checks between two certificates.
SIGNATURE_CACHE_SIZE = 100_000

# Policy builders kept per trust store, one per validation time.
BUILDER_CACHE_SIZE = 64

# The label of a made-up host name under a wildcard, used only when the leaf
# names nothing but wildcards and the validator needs a concrete name.
_WILDCARD_PROBE_LABEL = "certwatch-wildcard-probe"


class PathEnd(Enum):
    """The kind of certificate a candidate path ends at."""

    TRUSTED_ROOT = "trusted_root"
    UNTRUSTED_ROOT = "untrusted_root"
    MISSING_ISSUER = "missing_issuer"


@dataclass(frozen=True)
class TrustResult:
    """The trust verdict on one presented chain.

    `path` is the path the findings are about, leaf first: the valid path
    when there is one, else the best candidate our search found (at least
    the leaf). `valid_path` is the same path when it leads to a trusted root
    and every certificate on it other than the leaf is valid at `now`,
    otherwise `None`. `trusted_roots` contains the fingerprints of the path
    certificates that are in the trust store.
    """

    path: tuple[CertificateFacts, ...]
    valid_path: tuple[CertificateFacts, ...] | None
    trusted_roots: frozenset[str]
    findings: tuple[Finding, ...]


@dataclass(frozen=True)
class _Node:
    facts: CertificateFacts
    certificate: x509.Certificate


@dataclass
class _Anchors:
    """The trust store in the two shapes we need, built once per roots tuple.

    `builders` contains a `PolicyBuilder` with the store and a validation
    time set, one per time. A builder is immutable, so one serves every leaf.
    """

    store: Store | None
    fingerprints: frozenset[str]
    nodes: tuple[_Node, ...]
    builders: dict[tuple[datetime, object], PolicyBuilder] = field(default_factory=dict)

    def builder(self, validation_time: datetime) -> PolicyBuilder:
        assert self.store is not None
        # Equal instants in different zones compare equal; the offset keeps
        # them apart, so a cached builder always has exactly this time.
        key = (validation_time, validation_time.utcoffset())
        builder = self.builders.get(key)
        if builder is None:
            builder = PolicyBuilder().store(self.store).time(validation_time)
            if len(self.builders) >= BUILDER_CACHE_SIZE:
                self.builders.clear()
            self.builders[key] = builder
        return builder


# The validator's result: the path it built, or `None` and its error.
_Outcome = tuple[list[x509.Certificate] | None, str]


@dataclass(order=True)
class _Candidate:
    """One path found by the search, ordered so that the best sorts first."""

    rank: tuple[int, int, int]
    nodes: tuple[_Node, ...] = field(compare=False)
    end: PathEnd = field(compare=False)


def assess_trust(
    chain: Sequence[CertificateFacts],
    roots: tuple[bytes, ...],
    *,
    now: datetime,
    windows: ExpiryWindows,
) -> TrustResult:
    """Validate a presented chain (leaf first) against `roots` at `now`.

    `windows` are the leaf's warning and critical points, which also decide
    when an intermediate that expires soon becomes `chain_expiring`.
    The chain must not be empty.
    """
    leaf = chain[0]
    leaf_certificate = load_certificate(leaf.der)
    if leaf_certificate is None:
        finding = Finding(
            "chain_invalid",
            Severity.CRITICAL,
            "The chain cannot be validated because cryptography cannot load the "
            "leaf certificate; see the parse_error finding for the reason.",
        )
        return TrustResult((leaf,), None, frozenset(), (finding,))

    anchors = _anchors(roots)
    leaf_node = _Node(leaf, leaf_certificate)
    presented = _presented_nodes(chain)
    validation_time = _validation_time(leaf, now)

    verified, error = _verify(leaf_node, presented, anchors, validation_time)
    if verified is None and _trusted_as_itself(leaf, anchors):
        # The leaf itself is trusted, as when an operator passes a service's
        # self-signed certificate with --ca-file. The validator rejects it if
        # it asserts cA (OpenSSL's `req -x509` default), but a client that
        # trusts this exact certificate accepts it.
        return TrustResult(
            path=(leaf,),
            valid_path=(leaf,),
            trusted_roots=frozenset({leaf.sha256}),
            findings=tuple(_expired_extras((leaf_node,), presented, now)),
        )
    if verified is not None and _expired_on_path(verified, now):
        # Validated at a time inside the leaf's validity, the validator may
        # pick a path through a certificate that has expired since. Another
        # path may avoid it, so try once more without such certificates.
        current = [n for n in presented if not is_outside_validity(n.facts, now)]
        verified = _verify(leaf_node, current, anchors, validation_time)[0] or verified
    if verified is not None:
        path, findings = verified, _expired_on_path(verified, now)
    else:
        path, findings = _classify(leaf_node, presented, anchors, now, error)

    findings += _expiring_on_path(path, anchors.fingerprints, now, windows)
    findings += _expired_extras(path, presented, now)
    valid = verified is not None and not any(
        f.code == "chain_expired" for f in findings
    )
    path_facts = tuple(node.facts for node in path)
    return TrustResult(
        path=path_facts,
        valid_path=path_facts if valid else None,
        trusted_roots=frozenset(
            n.facts.sha256 for n in path if n.facts.sha256 in anchors.fingerprints
        ),
        findings=tuple(findings),
    )


def _trusted_as_itself(leaf: CertificateFacts, anchors: _Anchors) -> bool:
    """Tell whether the leaf is a trust anchor that reads cleanly.

    A leaf with parse problems (such as a negative serial) is left to the
    validator's verdict, as strict clients reject it even when trusted.
    """
    return leaf.sha256 in anchors.fingerprints and not leaf.parse_problems


def clear_caches() -> None:
    """Forget the cached trust stores and signature checks."""
    _anchors.cache_clear()
    _SIGNATURES.clear()


# Validation with cryptography


def _verify(
    leaf: _Node,
    presented: Sequence[_Node],
    anchors: _Anchors,
    validation_time: datetime,
) -> tuple[tuple[_Node, ...] | None, str]:
    """Run the validator of cryptography; return its path or its error."""
    if anchors.store is None:
        return None, "the trust store contains no certificate"
    certificates, error = _run_validator(
        anchors.builder(validation_time),
        _validation_subjects(leaf.facts),
        leaf,
        presented,
    )
    if certificates is None:
        return None, error
    return _nodes_for(certificates, (*presented, *anchors.nodes), leaf), ""


def _run_validator(
    builder: PolicyBuilder,
    subjects: Iterable[Subject],
    leaf: _Node,
    presented: Sequence[_Node],
) -> _Outcome:
    """Validate with each name the leaf carries until one gives a verdict."""
    intermediates = [node.certificate for node in presented]
    error = "the leaf certificate names no DNS name or IP address to validate with"
    for subject in subjects:
        try:
            verifier = builder.build_server_verifier(subject)
        except ValueError:
            # The validator rejects names that break its syntax rules, such
            # as an underscore; try the next name the leaf carries.
            continue
        try:
            certificates = verifier.verify(leaf.certificate, intermediates)
        except VerificationError as exc:
            error = _short_error(exc)
            if "no matching subjectAltName" in error:
                continue
            return None, error
        return certificates, ""
    return None, error


def _validation_subjects(facts: CertificateFacts) -> Iterator[Subject]:
    """Yield names the leaf carries, in the form the validator accepts.

    The validator checks the name, so it must get one the leaf matches:
    plain DNS names first, then addresses, then a concrete name under each
    wildcard. The subject CN comes last, for a leaf without any SAN entry,
    which the validator then rejects for that reason.
    """
    wildcards = []
    for name in facts.dns_names:
        if name.startswith("*."):
            wildcards.append(f"{_WILDCARD_PROBE_LABEL}{name[1:]}")
        elif "*" not in name:
            yield from _dns_subject(name)
    for text in facts.ip_addresses:
        address = parse_ip(text)
        if address is not None:
            yield x509.IPAddress(address)
    for name in wildcards:
        yield from _dns_subject(name)
    if facts.common_name and not facts.dns_names and not facts.ip_addresses:
        yield from _dns_subject(facts.common_name)


def _dns_subject(name: str) -> Iterator[Subject]:
    if not name.isascii():
        return
    try:
        yield x509.DNSName(name)
    except ValueError:
        return


def _short_error(exc: VerificationError) -> str:
    """Return the validator's message without its certificate dump."""
    message = str(exc).removeprefix("validation failed: ")
    message = message.removeprefix("candidates exhausted: ")
    message = message.split(" (encountered processing", 1)[0]
    # cryptography 50 appends a Rust debug dump of the algorithm identifier to
    # "Forbidden signature algorithm"; the weak_signature finding names it.
    return message.split(": AlgorithmIdentifier {", 1)[0]


def _nodes_for(
    certificates: Sequence[x509.Certificate],
    known: Sequence[_Node],
    leaf: _Node,
) -> tuple[_Node, ...]:
    """Map the validator's path back to our nodes, leaf first.

    cryptography 50 returns the very certificate objects it was given, so
    they are matched by identity first, and by fingerprint only otherwise.
    """
    by_identity = {id(node.certificate): node for node in known}
    by_fingerprint: dict[str, _Node] | None = None
    nodes = [leaf]
    for certificate in certificates[1:]:
        node = by_identity.get(id(certificate))
        if node is None:
            if by_fingerprint is None:
                by_fingerprint = {n.facts.sha256: n for n in known}
            fingerprint = certificate.fingerprint(hashes.SHA256()).hex()
            node = by_fingerprint.get(fingerprint)
        if node is None:
            node = _Node(read_facts(_der(certificate)), certificate)
        nodes.append(node)
    return tuple(nodes)


def _der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(Encoding.DER)


# Classification of a rejected chain


def _classify(
    leaf: _Node,
    presented: Sequence[_Node],
    anchors: _Anchors,
    now: datetime,
    error: str,
) -> tuple[tuple[_Node, ...], list[Finding]]:
    best = _best_path(leaf, presented, anchors, now)
    path = best.nodes
    if best.end is PathEnd.MISSING_ISSUER:
        return path, [_incomplete_finding(path, presented)]
    if best.end is PathEnd.UNTRUSTED_ROOT:
        return path, [_untrusted_finding(path)]

    expired = _expired_on_path(path, now)
    if expired:
        return path, expired
    return path, [
        Finding(
            "chain_invalid",
            Severity.CRITICAL,
            f"The chain to the trusted root {_name(path[-1].facts)} is complete, "
            f"but the validator rejects it: {error}.",
        )
    ]


def _incomplete_finding(path: Sequence[_Node], presented: Sequence[_Node]) -> Finding:
    """Say why the path stops: an issuer never sent, a wrong one, or a loop."""
    last = path[-1]
    named = [n for n in presented if n.certificate.subject == last.certificate.issuer]
    looping = [n for n in named if any(_same_key_and_name(n, seen) for seen in path)]
    if looping:
        reason = (
            f"the issuer {last.facts.issuer!r} of {_name(last.facts)} is a "
            "certificate already on the path, so the chain loops; send the "
            "intermediates that lead to a trusted root."
        )
    elif named:
        reason = (
            f"the server sent a certificate named {last.facts.issuer!r}, but it "
            f"did not sign {_name(last.facts)} (a wrong or outdated "
            "intermediate); send the intermediate that issued it."
        )
    else:
        reason = (
            f"the issuer {last.facts.issuer!r} of {_name(last.facts)} was not "
            "sent and is not in the trust store; if it is an intermediate, "
            "configure the server to send it, and if it is a private root, add "
            "it to the trust store (--ca-file)."
        )
    return Finding(
        "incomplete_chain", Severity.CRITICAL, f"The chain is incomplete: {reason}"
    )


def _untrusted_finding(path: Sequence[_Node]) -> Finding:
    root = path[-1].facts
    if len(path) == 1:
        return Finding(
            "self_signed",
            Severity.CRITICAL,
            f"The certificate {_name(root)} is self-signed and not a trusted root.",
        )
    return Finding(
        "untrusted_root",
        Severity.CRITICAL,
        f"The chain ends at the root {_name(root)}, which is not in the trust store.",
    )


def _expired_on_path(path: Sequence[_Node], now: datetime) -> list[Finding]:
    findings = []
    for node in path[1:]:
        facts = node.facts
        if not is_outside_validity(facts, now):
            continue
        if facts.not_after is not None and now > facts.not_after:
            when = f"expired on {format_time(facts.not_after)}"
        else:
            assert facts.not_before is not None
            when = f"is not valid until {format_time(facts.not_before)}"
        findings.append(
            Finding(
                "chain_expired",
                Severity.CRITICAL,
                f"The chain certificate {_name(facts)} {when}, and the path to a "
                "trusted root needs it.",
            )
        )
    return findings


def _expiring_on_path(
    path: Sequence[_Node],
    trusted: frozenset[str],
    now: datetime,
    windows: ExpiryWindows,
) -> list[Finding]:
    """Find intermediates that expire before the leaf or inside its windows.

    An intermediate that expires before the leaf breaks the served chain
    early, so it warns however far off that is; inside the leaf's critical
    window it is critical. Roots are left out, because the server cannot
    replace a root.
    """
    leaf = path[0].facts
    findings = []
    for node in path[1:]:
        facts = node.facts
        if facts.sha256 in trusted or facts.self_issued:
            continue
        if facts.not_after is None or is_outside_validity(facts, now):
            continue
        remaining = facts.not_after - now
        before_leaf = leaf.not_after is not None and facts.not_after < leaf.not_after
        if remaining <= windows.critical:
            severity = Severity.CRITICAL
        elif remaining <= windows.warning or before_leaf:
            severity = Severity.WARNING
        else:
            continue
        reason = ", before the leaf does" if before_leaf else ""
        findings.append(
            Finding(
                "chain_expiring",
                severity,
                f"The intermediate {_name(facts)} expires on "
                f"{format_time(facts.not_after)}, in "
                f"{describe_duration(remaining)}{reason}; the chain breaks then "
                "unless the server sends a renewed intermediate.",
            )
        )
    return findings


def _expired_extras(
    path: Sequence[_Node], presented: Sequence[_Node], now: datetime
) -> list[Finding]:
    used = {node.facts.sha256 for node in path}
    findings = []
    for node in presented:
        facts = node.facts
        if facts.sha256 in used or not is_outside_validity(facts, now):
            continue
        state = (
            "expired" if facts.not_after and now > facts.not_after else "not yet valid"
        )
        findings.append(
            Finding(
                "extra_certificate_expired",
                Severity.INFO,
                f"The server also sends {_name(facts)}, which is {state} "
                f"(valid {_period(facts)}); the path to the root does not need "
                "it, so it can be removed from the served chain.",
            )
        )
    return findings


# Our own path search


def _best_path(
    leaf: _Node, presented: Sequence[_Node], anchors: _Anchors, now: datetime
) -> _Candidate:
    """Search issuer paths from the leaf and return the best one.

    Paths that end at a trusted root beat paths to an untrusted root, which
    beat paths with a missing issuer; then fewer certificates outside their
    validity at `now`, then shorter paths.
    """
    pool = _unique_nodes((*presented, *anchors.nodes))
    search = _PathSearch(pool, anchors.fingerprints, now)
    search.extend((leaf,))
    return min(search.found)


class _PathSearch:
    """Depth-first search over issuer links, bounded in depth and steps."""

    def __init__(
        self, pool: Sequence[_Node], trusted: frozenset[str], now: datetime
    ) -> None:
        self._by_subject: dict[x509.Name, list[_Node]] = {}
        for node in pool:
            self._by_subject.setdefault(node.certificate.subject, []).append(node)
        self._trusted = trusted
        self._now = now
        self._steps = 0
        self.found: list[_Candidate] = []

    def extend(self, path: tuple[_Node, ...]) -> None:
        last = path[-1]
        if last.facts.sha256 in self._trusted:
            self._record(path, PathEnd.TRUSTED_ROOT)
            return
        if self._done() or len(path) >= MAX_PATH_LENGTH:
            self._record(path, PathEnd.MISSING_ISSUER)
            return

        issuers = [
            issuer
            for issuer in self._issuers(last)
            if not any(_same_key_and_name(issuer, seen) for seen in path)
        ]
        if _is_self_signed(last):
            self._record(path, PathEnd.UNTRUSTED_ROOT)
        elif not issuers:
            self._record(path, PathEnd.MISSING_ISSUER)
        for issuer in issuers:
            self.extend((*path, issuer))

    def _issuers(self, node: _Node) -> list[_Node]:
        candidates = self._by_subject.get(node.certificate.issuer, [])
        issuers = []
        for candidate in candidates:
            self._steps += 1
            if _is_signed_by(node, candidate):
                issuers.append(candidate)
        return issuers

    def _record(self, path: tuple[_Node, ...], end: PathEnd) -> None:
        outside = sum(is_outside_validity(n.facts, self._now) for n in path[1:])
        end_rank = list(PathEnd).index(end)
        self.found.append(_Candidate((end_rank, outside, len(path)), path, end))

    def _done(self) -> bool:
        perfect = any(c.rank[:2] == (0, 0) for c in self.found)
        return perfect or self._steps >= MAX_SEARCH_STEPS


def _is_self_signed(node: _Node) -> bool:
    certificate = node.certificate
    return certificate.subject == certificate.issuer and _is_signed_by(node, node)


def _same_key_and_name(first: _Node, second: _Node) -> bool:
    """Tell whether two certificates are versions of one CA (RFC 4158 loops)."""
    return (
        first.certificate.subject == second.certificate.subject
        and first.facts.spki_sha256 == second.facts.spki_sha256
    )


def _unique_nodes(nodes: Sequence[_Node]) -> list[_Node]:
    seen: dict[str, _Node] = {}
    for node in nodes:
        seen.setdefault(node.facts.sha256, node)
    return list(seen.values())


def _presented_nodes(chain: Sequence[CertificateFacts]) -> list[_Node]:
    """Return the loadable presented certificates after the leaf, once each."""
    leaf_fingerprint = chain[0].sha256
    nodes: dict[str, _Node] = {}
    for facts in chain[1:]:
        if facts.sha256 == leaf_fingerprint or facts.sha256 in nodes:
            continue
        certificate = load_certificate(facts.der)
        if certificate is not None:
            nodes[facts.sha256] = _Node(facts, certificate)
    return list(nodes.values())


# Signature checks, cached by fingerprints because they never depend on time.

_SIGNATURES: dict[tuple[str, str], bool] = {}
_SIGNATURES_LOCK = threading.Lock()


def _is_signed_by(child: _Node, issuer: _Node) -> bool:
    key = (child.facts.sha256, issuer.facts.sha256)
    cached = _SIGNATURES.get(key)
    if cached is not None:
        return cached

    result = _check_signature(child.certificate, issuer.certificate)
    with _SIGNATURES_LOCK:
        if len(_SIGNATURES) >= SIGNATURE_CACHE_SIZE:
            _SIGNATURES.clear()
        _SIGNATURES[key] = result
    return result


def _check_signature(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(issuer)
    except InvalidSignature:
        return False
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        # cryptography 50 does not check SHA-1 and MD5 signatures here
        # ("Unsupported signature algorithm"), but the path search must still
        # find the issuer of such a certificate to report it.
        if child.issuer != issuer.subject:
            return False
        return _check_legacy_signature(child, issuer, exc)
    return True


def _check_legacy_signature(
    child: x509.Certificate, issuer: x509.Certificate, error: Exception
) -> bool:
    try:
        algorithm = child.signature_hash_algorithm
        public_key = issuer.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return False
    if not isinstance(algorithm, hashes.SHA1 | hashes.MD5):
        return False
    try:
        if isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(
                child.signature,
                child.tbs_certificate_bytes,
                padding.PKCS1v15(),
                algorithm,
            )
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(
                child.signature, child.tbs_certificate_bytes, ec.ECDSA(algorithm)
            )
        else:
            return False
    except (InvalidSignature, ValueError, UnsupportedAlgorithm):
        return False
    return True


# Trust store


@functools.lru_cache(maxsize=16)
def _anchors(roots: tuple[bytes, ...]) -> _Anchors:
    nodes = []
    for der in roots:
        certificate = load_certificate(der)
        if certificate is not None:
            nodes.append(_Node(read_facts(der), certificate))
    nodes = _unique_nodes(nodes)
    return _Anchors(
        store=Store([node.certificate for node in nodes]) if nodes else None,
        fingerprints=frozenset(node.facts.sha256 for node in nodes),
        nodes=tuple(nodes),
    )


# Helpers


def _validation_time(leaf: CertificateFacts, now: datetime) -> datetime:
    """Move `now` into the leaf's validity period when it lies outside."""
    if leaf.not_after is not None and now > leaf.not_after:
        return leaf.not_after
    if leaf.not_before is not None and now < leaf.not_before:
        return leaf.not_before
    return now


def _name(facts: CertificateFacts) -> str:
    if facts.subject:
        return f"{facts.subject!r}"
    return f"with SHA-256 {facts.sha256}"


def _period(facts: CertificateFacts) -> str:
    start = format_time(facts.not_before) if facts.not_before else "unknown"
    end = format_time(facts.not_after) if facts.not_after else "unknown"
    return f"{start} to {end}"
