"""Advice for findings whose one code stands for problems with different fixes."""

from __future__ import annotations

from tests.certs import NOW, Issued, cross_sign, make_intermediate, make_leaf, make_root

from certwatch.web.advice import (
    FINDING_ADVICE,
    INCOMPLETE_CHAIN_ADVICE,
    Advice,
    finding_advice,
)
from certwatch.x509.expiry import expiry_windows
from certwatch.x509.facts import read_facts
from certwatch.x509.model import Finding, Thresholds
from certwatch.x509.trust import assess_trust


def chain_finding(chain: list[Issued], roots: list[Issued]) -> Finding:
    """Run the trust analysis on `chain` and return its one finding."""
    facts = [read_facts(certificate.der) for certificate in chain]
    windows = expiry_windows(facts[0], Thresholds())
    result = assess_trust(
        facts, tuple(root.der for root in roots), now=NOW, windows=windows
    )
    assert len(result.findings) == 1, result.findings
    return result.findings[0]


def advice_for(finding: Finding) -> Advice:
    return finding_advice(finding.code, finding.message)


def test_advice_private_root_not_sent() -> None:
    public = make_root("public root")
    private = make_root("private root")
    intermediate = make_intermediate(private)
    leaf = make_leaf(intermediate)

    finding = chain_finding([leaf, intermediate], [public])
    advice = advice_for(finding)

    assert finding.code == "incomplete_chain"
    assert (
        advice == INCOMPLETE_CHAIN_ADVICE["was not sent and is not in the trust store"]
    )
    assert "add the root to the trust store" in advice.action
    assert "servers need not send roots" in advice.action


def test_advice_untrusted_root_sent() -> None:
    public = make_root("public root")
    private = make_root("private root")
    intermediate = make_intermediate(private)
    leaf = make_leaf(intermediate)

    finding = chain_finding([leaf, intermediate, private], [public])
    advice = advice_for(finding)

    assert finding.code == "untrusted_root"
    assert advice == FINDING_ADVICE["untrusted_root"]
    assert "sending more intermediates does not help" in advice.meaning
    assert "intermediates" not in advice.action


def test_advice_wrong_intermediate() -> None:
    root = make_root()
    leaf = make_leaf(make_intermediate(root))
    impostor = make_intermediate(root, common_name="certwatch test intermediate")

    finding = chain_finding([leaf, impostor], [root])
    advice = advice_for(finding)

    assert finding.code == "incomplete_chain"
    assert advice == INCOMPLETE_CHAIN_ADVICE["did not sign"]
    assert "Replace that intermediate" in advice.action


def test_advice_chain_loop() -> None:
    first = make_root("loop a")
    second = make_root("loop b")
    leaf = make_leaf(first)

    finding = chain_finding(
        [leaf, cross_sign(first, second), cross_sign(second, first)], [make_root()]
    )
    advice = advice_for(finding)

    assert finding.code == "incomplete_chain"
    assert advice == INCOMPLETE_CHAIN_ADVICE["so the chain loops"]


def test_advice_incomplete_chain_unknown_wording() -> None:
    advice = finding_advice("incomplete_chain", "The chain is incomplete: new reason.")

    assert advice == FINDING_ADVICE["incomplete_chain"]
    assert finding_advice("incomplete_chain") == advice
    assert advice not in INCOMPLETE_CHAIN_ADVICE.values()
