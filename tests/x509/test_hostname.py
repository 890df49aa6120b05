"""Tests for RFC 6125 name matching on generated certificates."""

from __future__ import annotations

from typing import Any

import pytest
from tests.certs import make_leaf, make_root

from certwatch.x509.facts import read_facts
from certwatch.x509.hostname import (
    certificate_names,
    dns_pattern_matches,
    matches_hostname,
    to_a_label,
)
from certwatch.x509.model import CertificateFacts

ROOT = make_root()


def facts_for(**options: Any) -> CertificateFacts:
    return read_facts(make_leaf(ROOT, **options).der)


@pytest.mark.parametrize(
    ("pattern", "reference", "expected"),
    [
        ("www.example.test", "www.example.test", True),
        ("www.example.test", "WWW.Example.TEST", True),
        ("www.example.test", "www.example.test.", True),
        ("*.example.test", "a.example.test", True),
        ("*.example.test", "A.EXAMPLE.test", True),
        ("*.example.test", "example.test", False),
        ("*.example.test", "a.b.example.test", False),
        ("*.example.test", ".example.test", False),
        ("f*.example.test", "foo.example.test", False),
        ("*o.example.test", "foo.example.test", False),
        ("a.*.example.test", "a.b.example.test", False),
        ("*.*.example.test", "a.b.example.test", False),
        ("*.test", "example.test", False),
        ("*", "example", False),
        ("*.example.test", "*.example.test", False),
        ("*.example.test", "xn--bcher-kva.example.test", True),
    ],
)
def test_dns_pattern_matches_cases(
    pattern: str, reference: str, expected: bool
) -> None:
    assert dns_pattern_matches(pattern, reference) is expected


def test_to_a_label_converts_u_label() -> None:
    assert to_a_label("Bücher.example.test") == "xn--bcher-kva.example.test"


def test_to_a_label_rejects_invalid_name() -> None:
    assert to_a_label("\u2764\ufe0f..example.test") is None


def test_matches_hostname_idn_u_label_request() -> None:
    facts = facts_for(dns_names=["xn--bcher-kva.example.test"])

    assert matches_hostname(facts, "bücher.example.test", None)
    assert matches_hostname(facts, "XN--BCHER-KVA.example.test", None)
    assert not matches_hostname(facts, "bucher.example.test", None)


def test_matches_hostname_wildcard_san() -> None:
    facts = facts_for(dns_names=["*.example.test"])

    assert matches_hostname(facts, "a.example.test", None)
    assert not matches_hostname(facts, "example.test", None)
    assert not matches_hostname(facts, "a.b.example.test", None)


def test_matches_hostname_public_suffix_wildcard() -> None:
    facts = facts_for(dns_names=["*.test"])

    assert not matches_hostname(facts, "example.test", None)


def test_matches_hostname_ipv4_san() -> None:
    facts = facts_for(dns_names=[], ip_addresses=["192.0.2.10"])

    assert matches_hostname(facts, None, "192.0.2.10")
    assert not matches_hostname(facts, None, "192.0.2.11")


def test_matches_hostname_ipv6_san_as_address() -> None:
    facts = facts_for(dns_names=[], ip_addresses=["2001:db8::1"])

    assert matches_hostname(facts, None, "2001:0db8:0000:0000:0000:0000:0000:0001")
    assert matches_hostname(facts, None, "[2001:DB8::1]")
    assert matches_hostname(facts, "2001:db8::1", None)
    assert not matches_hostname(facts, None, "2001:db8::2")


def test_matches_hostname_ip_never_against_dns_san() -> None:
    facts = facts_for(dns_names=["192.0.2.10", "2001:db8::1"], ip_addresses=[])

    assert not matches_hostname(facts, None, "192.0.2.10")
    assert not matches_hostname(facts, None, "2001:db8::1")


def test_matches_hostname_ipv4_not_mapped_ipv6() -> None:
    facts = facts_for(dns_names=[], ip_addresses=["192.0.2.10"])

    assert not matches_hostname(facts, None, "::ffff:192.0.2.10")


def test_matches_hostname_cn_used_without_san() -> None:
    facts = facts_for(san=False, common_name="legacy.example.test")

    assert matches_hostname(facts, "legacy.example.test", None)
    assert certificate_names(facts) == ("legacy.example.test",)


def test_matches_hostname_cn_ignored_with_san() -> None:
    facts = facts_for(dns_names=["www.example.test"], common_name="cn.example.test")

    assert not matches_hostname(facts, "cn.example.test", None)
    assert matches_hostname(facts, "www.example.test", None)


def test_matches_hostname_cn_ignored_with_ip_only_san() -> None:
    facts = facts_for(
        dns_names=[], ip_addresses=["192.0.2.1"], common_name="cn.example.test"
    )

    assert not matches_hostname(facts, "cn.example.test", None)


def test_matches_hostname_cn_never_matches_ip() -> None:
    facts = facts_for(san=False, common_name="192.0.2.10")

    assert not matches_hostname(facts, None, "192.0.2.10")


def test_matches_hostname_server_name_wins_over_address() -> None:
    facts = facts_for(dns_names=["www.example.test"], ip_addresses=["192.0.2.1"])

    assert matches_hostname(facts, "www.example.test", "198.51.100.7")
    assert not matches_hostname(facts, "other.example.test", "192.0.2.1")


def test_matches_hostname_nothing_requested() -> None:
    assert matches_hostname(facts_for(), None, None)


def test_matches_hostname_thousand_sans() -> None:
    names = [f"host{i}.example.test" for i in range(1000)]
    facts = facts_for(dns_names=names)

    assert matches_hostname(facts, "host999.example.test", None)
    assert not matches_hostname(facts, "host1000.example.test", None)
