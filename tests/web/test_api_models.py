"""The JSON shapes of the API, built from check results."""

from __future__ import annotations

from certwatch.result import Result, Status
from certwatch.web.api_models import ResultOut
from certwatch.x509.model import Finding, Severity


def test_finding_severity_is_a_word() -> None:
    """The API words severities as `certwatch check --json` does."""
    result = Result(
        target="www.example.test",
        status=Status.CRITICAL,
        findings=(
            Finding("self_signed", Severity.CRITICAL, "The certificate signs itself."),
            Finding("weak_key", Severity.WARNING, "The key is short."),
        ),
    )

    findings = ResultOut.of(result).findings

    assert [f.severity for f in findings] == ["critical", "warning"]
