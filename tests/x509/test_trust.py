"""Tests for chain validation and the classification of its failures."""

from __future__ import annotations

from datetime import timedelta

import pytest
from tests.certs import (
    NOW,
    Issued,
    cross_sign,
    make_intermediate,
    make_key,
    make_leaf,
    make_root,
    make_self_signed,
)

from certwatch.x509.expiry import expiry_windows
from certwatch.x509.facts import read_facts
from certwatch.x509.model import Severity, Thresholds
from certwatch.x509.trust import (
    MAX_PATH_LENGTH,
    TrustResult,
    assess_trust,
)


@pytest.fixture(scope="module")
def root() -> Issued:
    return make_root()


@pytest.fixture(scope="module")
def intermediate(root: Issued) -> Issued:
    return make_intermediate(root)


@pytest.fixture(scope="module")
def leaf(intermediate: Issued) -> Issued:
    return make_leaf(intermediate)


def assess(chain: list[Issued], roots: list[Issued], now=NOW) -> TrustResult:  # type: ignore[no-untyped-def]
    facts = [read_facts(c.der) for c in chain]
    windows = expiry_windows(facts[0], Thresholds())
    return assess_trust(facts, tuple(r.der for r in roots), now=now, windows=windows)


def codes(result: TrustResult) -> list[str]:
    return [f.code for f in result.findings]


def path_of(result: TrustResult) -> list[str]:
    return [f.sha256 for f in result.valid_path or ()]


def test_trust_valid_chain(leaf: Issued, intermediate: Issued, root: Issued) -> None:
    result = assess([leaf, intermediate], [root])

    assert codes(result) == []
    assert path_of(result) == [leaf.sha256, intermediate.sha256, root.sha256]
    assert result.trusted_roots == {root.sha256}


def test_trust_out_of_order_duplicates_and_root(
    leaf: Issued, intermediate: Issued, root: Issued
) -> None:
    result = assess([leaf, root, intermediate, leaf, intermediate], [root])

    assert codes(result) == []
    assert path_of(result) == [leaf.sha256, intermediate.sha256, root.sha256]


def test_trust_leaf_issued_by_root(root: Issued) -> None:
    leaf = make_leaf(root)

    result = assess([leaf], [root])

    assert codes(result) == []
    assert path_of(result) == [leaf.sha256, root.sha256]


def test_trust_incomplete_chain(leaf: Issued, root: Issued) -> None:
    result = assess([leaf], [root])

    assert codes(result) == ["incomplete_chain"]
    assert result.valid_path is None
    assert "CN=certwatch test intermediate" in result.findings[0].message
    assert result.findings[0].severity is Severity.CRITICAL


def test_trust_self_signed_leaf(root: Issued) -> None:
    leaf = make_self_signed(["www.example.test"])

    result = assess([leaf], [root])

    assert codes(result) == ["self_signed"]
    assert "self-signed" in result.findings[0].message


def test_trust_self_signed_leaf_in_store() -> None:
    leaf = make_self_signed(["www.example.test"])

    result = assess([leaf], [leaf])

    assert codes(result) == []
    assert path_of(result) == [leaf.sha256]


def test_trust_untrusted_root_sent(root: Issued) -> None:
    other = make_root("private root")
    intermediate = make_intermediate(other)
    leaf = make_leaf(intermediate)

    result = assess([leaf, intermediate, other], [root])

    assert codes(result) == ["untrusted_root"]
    assert "CN=private root" in result.findings[0].message


def test_trust_untrusted_root_not_sent_is_incomplete(root: Issued) -> None:
    other = make_root("private root")
    intermediate = make_intermediate(other)
    leaf = make_leaf(intermediate)

    result = assess([leaf, intermediate], [root])

    assert codes(result) == ["incomplete_chain"]
    assert "CN=private root" in result.findings[0].message


def test_trust_expired_intermediate(root: Issued) -> None:
    intermediate = make_intermediate(root, not_after=NOW - timedelta(seconds=1))
    leaf = make_leaf(intermediate)

    result = assess([leaf, intermediate], [root])

    assert codes(result) == ["chain_expired"]
    assert result.valid_path is None
    assert "expired on 2026-06-01 11:59:59 UTC" in result.findings[0].message


def test_trust_intermediate_valid_at_its_not_after(root: Issued) -> None:
    intermediate = make_intermediate(root, not_after=NOW)
    leaf = make_leaf(intermediate, not_after=NOW)

    result = assess([leaf, intermediate], [root])

    assert "chain_expired" not in codes(result)
    assert result.valid_path is not None


def test_trust_not_yet_valid_intermediate(root: Issued) -> None:
    intermediate = make_intermediate(root, not_before=NOW + timedelta(seconds=1))
    leaf = make_leaf(intermediate)

    result = assess([leaf, intermediate], [root])

    assert codes(result) == ["chain_expired"]
    assert "not valid until" in result.findings[0].message


def test_trust_expired_leaf_is_not_chain_expired(
    leaf: Issued, intermediate: Issued, root: Issued
) -> None:
    after = leaf.cert.not_valid_after_utc + timedelta(days=3)

    result = assess([leaf, intermediate], [root], now=after)

    assert codes(result) == []
    assert path_of(result) == [leaf.sha256, intermediate.sha256, root.sha256]


def test_trust_expired_leaf_and_intermediate(root: Issued) -> None:
    intermediate = make_intermediate(root, not_after=NOW + timedelta(days=1))
    leaf = make_leaf(intermediate, not_after=NOW + timedelta(days=2))

    result = assess([leaf, intermediate], [root], now=NOW + timedelta(days=5))

    assert codes(result) == ["chain_expired"]


def test_trust_expired_cross_sign_extra(
    leaf: Issued, intermediate: Issued, root: Issued
) -> None:
    old_root = make_root("old root", not_after=NOW - timedelta(days=10))
    cross = cross_sign(intermediate, old_root, not_after=NOW - timedelta(days=5))

    result = assess([leaf, cross, intermediate, old_root], [root, old_root])

    assert codes(result) == ["extra_certificate_expired"] * 2
    assert all(f.severity is Severity.INFO for f in result.findings)
    assert path_of(result) == [leaf.sha256, intermediate.sha256, root.sha256]


def test_trust_valid_cross_sign_to_other_root(
    leaf: Issued, intermediate: Issued
) -> None:
    new_root = make_root("new root")
    cross = cross_sign(intermediate, new_root)

    result = assess([leaf, cross], [new_root])

    assert codes(result) == []
    assert path_of(result) == [leaf.sha256, cross.sha256, new_root.sha256]


def test_trust_only_expired_cross_sign_sent(leaf: Issued, intermediate: Issued) -> None:
    old_root = make_root("old root")
    cross = cross_sign(intermediate, old_root, not_after=NOW - timedelta(days=5))

    result = assess([leaf, cross], [old_root])

    assert codes(result) == ["chain_expired"]


def test_trust_unrelated_extra_certificate(
    leaf: Issued, intermediate: Issued, root: Issued
) -> None:
    stranger = make_leaf(make_root("stranger"), dns_names=["other.example.test"])

    result = assess([leaf, stranger, intermediate], [root])

    assert codes(result) == []
    assert result.valid_path is not None


def test_trust_non_ca_intermediate_is_chain_invalid(root: Issued) -> None:
    intermediate = make_intermediate(root, ca=False)
    leaf = make_leaf(intermediate)

    result = assess([leaf, intermediate], [root])

    assert codes(result) == ["chain_invalid"]
    assert "basicConstraints.cA must be asserted" in result.findings[0].message


def test_trust_client_only_eku_is_chain_invalid(
    intermediate: Issued, root: Issued
) -> None:
    leaf = make_leaf(intermediate, server_auth=False)

    result = assess([leaf, intermediate], [root])

    assert codes(result) == ["chain_invalid"]
    assert "required EKU not found" in result.findings[0].message


def test_trust_sha1_intermediate_is_chain_invalid(root: Issued) -> None:
    intermediate = make_intermediate(root, hash_name="sha1")
    leaf = make_leaf(intermediate)

    result = assess([leaf, intermediate], [root])

    assert codes(result) == ["chain_invalid"]
    assert "Forbidden signature algorithm." in result.findings[0].message


def test_trust_md5_rsa_chain_is_found_by_search() -> None:
    rsa_root = make_root("rsa root", key=make_key("rsa"))
    intermediate = make_intermediate(rsa_root, key=make_key("rsa"), hash_name="md5")
    leaf = make_leaf(intermediate)

    result = assess([leaf, intermediate], [rsa_root])

    assert codes(result) == ["chain_invalid"]
    assert [f.sha256 for f in result.path] == [
        leaf.sha256,
        intermediate.sha256,
        rsa_root.sha256,
    ]


def test_trust_cn_only_leaf_is_chain_invalid(
    intermediate: Issued, root: Issued
) -> None:
    leaf = make_leaf(intermediate, san=False, common_name="legacy.example.test")

    result = assess([leaf, intermediate], [root])

    assert codes(result) == ["chain_invalid"]
    assert "no subjectAltName" in result.findings[0].message


def test_trust_wildcard_only_leaf(intermediate: Issued, root: Issued) -> None:
    leaf = make_leaf(intermediate, dns_names=["*.example.test"])

    assert codes(assess([leaf, intermediate], [root])) == []


def test_trust_ip_only_leaf(intermediate: Issued, root: Issued) -> None:
    leaf = make_leaf(intermediate, dns_names=[], ip_addresses=["2001:db8::1"])

    assert codes(assess([leaf, intermediate], [root])) == []


def test_trust_intermediate_expiring_before_leaf(root: Issued) -> None:
    intermediate = make_intermediate(root, not_after=NOW + timedelta(days=45))
    leaf = make_leaf(intermediate, not_after=NOW + timedelta(days=60))

    result = assess([leaf, intermediate], [root])

    assert codes(result) == ["chain_expiring"]
    assert result.findings[0].severity is Severity.WARNING
    assert "before the leaf does" in result.findings[0].message
    assert result.valid_path is not None


def test_trust_intermediate_inside_critical_window(root: Issued) -> None:
    intermediate = make_intermediate(root, not_after=NOW + timedelta(days=3))
    leaf = make_leaf(intermediate, not_after=NOW + timedelta(days=2))

    result = assess([leaf, intermediate], [root])

    assert codes(result) == ["chain_expiring"]
    assert result.findings[0].severity is Severity.CRITICAL


def test_trust_intermediate_outlives_leaf_far_off(root: Issued) -> None:
    intermediate = make_intermediate(root, not_after=NOW + timedelta(days=365))
    leaf = make_leaf(intermediate, not_after=NOW + timedelta(days=60))

    assert codes(assess([leaf, intermediate], [root])) == []


def test_trust_empty_store(leaf: Issued, intermediate: Issued, root: Issued) -> None:
    result = assess([leaf, intermediate], [])

    assert codes(result) == ["incomplete_chain"]


def test_trust_verdict_follows_now(root: Issued) -> None:
    intermediate = make_intermediate(root, not_after=NOW + timedelta(days=10))
    leaf = make_leaf(intermediate, not_after=NOW + timedelta(days=5))

    before = assess([leaf, intermediate], [root], now=NOW)
    after = assess([leaf, intermediate], [root], now=NOW + timedelta(days=11))
    again = assess([leaf, intermediate], [root], now=NOW)

    assert "chain_expired" not in codes(before)
    assert "chain_expired" in codes(after)
    assert codes(again) == codes(before)


def test_trust_search_bounded_on_name_loops(root: Issued) -> None:
    # Many CAs with the same name, each cross-signing the others.
    cas = [make_intermediate(root, "loop ca") for _ in range(6)]
    crosses = [cross_sign(a, b) for a in cas for b in cas if a is not b]
    issuing = make_intermediate(cas[0], "issuing ca")
    leaf = make_leaf(issuing)

    result = assess([leaf, issuing, *crosses], [make_root("unrelated")])

    assert codes(result) == ["incomplete_chain"]
    assert "issuer 'CN=loop ca,O=certwatch tests'" in result.findings[0].message
    assert len(result.path) <= MAX_PATH_LENGTH


def test_trust_ca_certificate_trusted_as_leaf() -> None:
    # OpenSSL's `req -x509` marks a service's self-signed certificate cA=TRUE.
    service = make_root("service.example.test")

    result = assess([service], [service])

    assert codes(result) == []
    assert path_of(result) == [service.sha256]
    assert result.valid_path is not None


def test_trust_wrong_intermediate_is_named(
    leaf: Issued, intermediate: Issued, root: Issued
) -> None:
    impostor = make_intermediate(root, common_name="certwatch test intermediate")

    result = assess([leaf, impostor], [root])

    assert codes(result) == ["incomplete_chain"]
    assert "did not sign" in result.findings[0].message
    assert "was not sent" not in result.findings[0].message


def test_trust_chain_loop_is_named(root: Issued) -> None:
    first = make_root("loop a")
    second = make_root("loop b")
    first_by_second = cross_sign(first, second)
    second_by_first = cross_sign(second, first)
    leaf = make_leaf(first)

    result = assess([leaf, first_by_second, second_by_first], [root])

    assert codes(result) == ["incomplete_chain"]
    assert "loops" in result.findings[0].message


def test_trust_missing_private_root_suggests_trust_store(root: Issued) -> None:
    private = make_root("private root")
    leaf = make_leaf(make_intermediate(private))

    result = assess([leaf], [root])

    assert codes(result) == ["incomplete_chain"]
    assert "was not sent" in result.findings[0].message
    assert "--ca-file" in result.findings[0].message
