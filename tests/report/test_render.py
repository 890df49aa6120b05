import hashlib
import io
import json
from datetime import UTC, datetime, timedelta

from rich.console import Console

from certwatch.probe.model import ErrorReason, ProbeError
from certwatch.report.json import render_document
from certwatch.report.nagios import render_status_line
from certwatch.report.summary import sort_for_display, summarise_endpoints
from certwatch.report.table import print_table
from certwatch.result import Result, Status, status_from, worst_status
from certwatch.x509.model import CertificateFacts, ChainReport, Finding, Severity

NOW = datetime(2026, 12, 4, 12, 0, 0, tzinfo=UTC)


def _facts(name: str, days: float) -> CertificateFacts:
    der = name.encode()
    return CertificateFacts(
        der=der,
        sha256=hashlib.sha256(der).hexdigest(),
        subject=f"CN={name}",
        issuer="CN=Test CA,O=Example\\, Inc.",
        common_name=name,
        dns_names=(name,),
        not_before=NOW - timedelta(days=60),
        not_after=NOW + timedelta(days=days),
    )


def _result(
    target: str, address: str, days: float, findings: tuple[Finding, ...] = ()
) -> Result:
    leaf = _facts(target, days)
    report = ChainReport(
        leaf=leaf,
        chain=(leaf,),
        findings=findings,
        valid_path=(leaf.sha256,),
        days_left=int(days // 1),
    )
    return Result(
        target=target,
        status=status_from(findings),
        findings=findings,
        report=report,
        host=target,
        port=443,
        server_name=target,
        address=address,
        protocol="https",
        tls_version="TLSv1.3",
    )


EXPIRING = Finding("expiring_soon", Severity.WARNING, "Expires in 10 days.")
EXPIRED = Finding("expired", Severity.CRITICAL, "Expired 2 days ago.")
REFUSED = Result(
    target="down.example.test",
    status=Status.UNKNOWN,
    error=ProbeError(ErrorReason.CONNECTION_REFUSED, "Connection refused"),
    host="down.example.test",
    port=443,
    server_name="down.example.test",
    address="127.0.0.1",
)


def test_worst_status_orders_critical_above_unknown() -> None:
    assert worst_status([Status.OK, Status.UNKNOWN, Status.WARNING]) is Status.UNKNOWN
    assert worst_status([Status.UNKNOWN, Status.CRITICAL]) is Status.CRITICAL
    assert worst_status([]) is Status.OK


def test_status_from_info_finding_is_ok() -> None:
    info = Finding("extra_certificate_expired", Severity.INFO, "Extra.")

    assert status_from((info,)) is Status.OK
    assert status_from((info, EXPIRING)) is Status.WARNING


def test_summarise_endpoints_worst_address_wins() -> None:
    results = [
        _result("lb.example.test", "127.0.0.1", 80),
        _result("lb.example.test", "127.0.0.2", 80),
        _result("lb.example.test", "127.0.0.3", -2, (EXPIRED,)),
        _result("one.example.test", "127.0.0.1", 50),
    ]

    summaries = summarise_endpoints(results)

    assert [s.target for s in summaries] == ["lb.example.test", "one.example.test"]
    assert summaries[0].status is Status.CRITICAL
    assert summaries[0].days_left == -2
    assert summaries[0].result_count == 3
    assert summaries[1].status is Status.OK


def test_sort_for_display_errors_first_then_days_left() -> None:
    results = [
        _result("b.example.test", "127.0.0.1", 80),
        _result("a.example.test", "127.0.0.1", 10, (EXPIRING,)),
        REFUSED,
    ]

    ordered = sort_for_display(results)

    assert [r.target for r in ordered] == [
        "down.example.test",
        "a.example.test",
        "b.example.test",
    ]


def test_render_document_fields_and_counts() -> None:
    results = [_result("a.example.test", "127.0.0.1", 10.5, (EXPIRING,)), REFUSED]

    document = json.loads(json.dumps(render_document(results, now=NOW)))

    assert document["schema_version"] == 1
    assert document["checked_at"] == "2026-12-04T12:00:00Z"
    assert document["status"] == "unknown"
    assert document["exit_code"] == 3
    assert document["counts"] == {"ok": 0, "warning": 1, "critical": 0, "unknown": 1}
    first = document["results"][0]
    assert first["kind"] == "endpoint"
    assert first["address"] == "127.0.0.1"
    assert first["status"] == "warning"
    assert first["error"] is None
    assert first["certificate"]["not_after"] == "2026-12-15T00:00:00Z"
    assert first["certificate"]["days_left"] == 10
    assert first["certificate"]["lifetime_days"] == 70.5
    assert first["findings"] == [
        {
            "code": "expiring_soon",
            "severity": "warning",
            "message": "Expires in 10 days.",
        }
    ]
    second = document["results"][1]
    assert second["certificate"] is None
    assert second["chain"] == []
    assert second["error"] == {
        "reason": "connection_refused",
        "message": "Connection refused",
    }


def test_render_document_file_result_has_path_not_address() -> None:
    leaf = _facts("file.example.test", 100)
    report = ChainReport(
        leaf=leaf, chain=(leaf,), findings=(), valid_path=None, days_left=100
    )
    result = Result(
        target="/etc/ssl/a.pem",
        status=Status.OK,
        report=report,
        path="/etc/ssl/a.pem",
        index=2,
    )

    document = render_document([result], now=NOW)["results"][0]

    assert document["kind"] == "file"
    assert document["path"] == "/etc/ssl/a.pem"
    assert document["index"] == 2
    assert "address" not in document
    assert "host" not in document


def test_render_status_line_nagios_format() -> None:
    results = [
        _result("a.example.test", "127.0.0.1", 10, (EXPIRING,)),
        _result("b.example.test", "::1", 80),
    ]

    line = render_status_line(results, lambda result: (30, 7))

    assert line.startswith("CERTWATCH WARNING - 2 checked: 1 ok, 1 warning,")
    assert "a.example.test (127.0.0.1) expiring_soon" in line
    _status_text, perfdata = line.split(" | ")
    assert perfdata == (
        "'a.example.test@127.0.0.1'=10;30:;7:;; 'b.example.test@::1'=80;30:;7:;;"
    )


def test_render_status_line_without_certificates_has_no_perfdata() -> None:
    line = render_status_line([REFUSED], lambda result: None)

    assert line == (
        "CERTWATCH UNKNOWN - 1 checked: 0 ok, 0 warning, 0 critical, 1 unknown; "
        "down.example.test (127.0.0.1) connection_refused"
    )


def test_print_table_lists_rows_and_messages() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, width=200, color_system=None)

    print_table(
        [_result("a.example.test", "127.0.0.1", 10, (EXPIRING,)), REFUSED], console
    )

    output = buffer.getvalue()
    assert "WARNING" in output
    assert "Test CA" in output
    assert "connection_refused: Connection refused" in output
    assert "warning expiring_soon: Expires in 10 days." in output
    assert output.index("down.example.test") < output.index("a.example.test")


def test_render_status_line_pipe_in_path_is_replaced() -> None:
    leaf = _facts("pipe.example.test", 5)
    report = ChainReport(
        leaf=leaf, chain=(leaf,), findings=(EXPIRING,), valid_path=None, days_left=5
    )
    result = Result(
        target="/srv/a|b.pem",
        status=Status.WARNING,
        findings=(EXPIRING,),
        report=report,
        path="/srv/a|b.pem\nx",
        index=0,
    )

    line = render_status_line([result], lambda result: (30, 7))

    assert line.count("|") == 1
    assert "\n" not in line
    assert line.endswith("'/srv/a/b.pem@/srv/a/b.pem x'=5;30:;7:;;")


def test_print_table_markup_and_control_characters_are_literal() -> None:
    hostile = _result("x[/]y.example.test", "127.0.0.1", 10, (EXPIRING,))
    buffer = io.StringIO()
    console = Console(file=buffer, width=300, color_system="standard")

    print_table([hostile, REFUSED], console, skipped=())

    output = buffer.getvalue()
    assert "x[/]y.example.test" in output


def test_print_table_control_characters_escaped() -> None:
    leaf = _facts("evil\x1b]0;pwned\x07.example.test", 10)
    report = ChainReport(
        leaf=leaf, chain=(leaf,), findings=(), valid_path=None, days_left=10
    )
    result = Result(target="evil.example.test", status=Status.OK, report=report)
    buffer = io.StringIO()
    console = Console(file=buffer, width=300, color_system=None)

    print_table([result], console)

    output = buffer.getvalue()
    assert "\x1b" not in output
    assert "\x07" not in output
    assert "evil\\x1b]0;pwned\\x07.example.test" in output


def test_print_table_bidirectional_controls_escaped() -> None:
    leaf = _facts("gpj.\u202eevil.example.test", 10)
    report = ChainReport(
        leaf=leaf, chain=(leaf,), findings=(), valid_path=None, days_left=10
    )
    result = Result(target="evil.example.test", status=Status.OK, report=report)
    buffer = io.StringIO()
    console = Console(file=buffer, width=300, color_system=None)

    print_table([result], console)

    output = buffer.getvalue()
    assert "\u202e" not in output
    assert "gpj.\\u202eevil.example.test" in output
