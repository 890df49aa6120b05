"""`certwatch check` on the command line, against local TLS servers.

Most tests call the click command in-process with `CliRunner`. Usage errors,
stdin and the `python -m certwatch` entry point run in a subprocess, because
only `main()` maps usage errors to exit code 3. The command reads the real
clock, so certificates here are dated relative to `datetime.now(UTC)`.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import certifi
import click
import pytest
from click.testing import CliRunner
from click.testing import Result as CliResult
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    pkcs12,
)
from tests.certs import Issued, make_intermediate, make_leaf, make_root, seconds
from tests.dialogue_servers import Behaviour, DialogueOptions, DialogueServer
from tests.servers import (
    Chain,
    LocalServer,
    Mode,
    ServerOptions,
    closed_port,
    ipv6_loopback_available,
)

from certwatch.cli import LAZY_COMMANDS, USAGE_ERROR_EXIT, LazyGroup, cli
from certwatch.result import Status

StartServer = Callable[..., LocalServer]
StartServers = Callable[..., list[LocalServer]]

requires_ipv6 = pytest.mark.skipif(
    not ipv6_loopback_available(), reason="this machine has no IPv6 loopback ::1"
)

LOOPBACKS = [
    pytest.param("127.0.0.1", id="ipv4"),
    pytest.param("::1", id="ipv6", marks=requires_ipv6),
]

ROOT = make_root()
INTERMEDIATE = make_intermediate(ROOT)

# A margin added to the remaining time of every leaf, so the whole days left
# stay the same while a test runs.
HALF_DAY = timedelta(hours=12)

ENDPOINT_KEYS = {
    "target",
    "kind",
    "host",
    "port",
    "server_name",
    "address",
    "protocol",
    "tls_version",
    "status",
    "error",
    "certificate",
    "chain",
    "valid_path",
    "findings",
}
FILE_KEYS = {
    "target",
    "kind",
    "path",
    "index",
    "status",
    "error",
    "certificate",
    "chain",
    "valid_path",
    "findings",
}


@pytest.fixture(params=LOOPBACKS)
def loopback(request: pytest.FixtureRequest) -> str:
    """The loopback address that the test's servers listen on."""
    address: str = request.param
    return address


@pytest.fixture
def ca_args(tmp_path: Path) -> list[str]:
    """Options that trust only the test root, so certifi plays no part."""
    path = tmp_path / "test-root.pem"
    path.write_bytes(ROOT.pem)
    return ["--ca-file", str(path), "--only-ca-file"]


def fresh_leaf(
    days_left: int, *, lifetime_days: int = 90, dns_names: tuple[str, ...] = ()
) -> Issued:
    """Issue a leaf with `days_left` whole days left by the real clock."""
    not_after = seconds(datetime.now(UTC)) + timedelta(days=days_left) + HALF_DAY
    return make_leaf(
        INTERMEDIATE,
        dns_names=dns_names or ("www.example.test",),
        ip_addresses=(),
        not_before=not_after - timedelta(days=lifetime_days),
        not_after=not_after,
    )


def serve(
    local_server: StartServer, host: str, leaf: Issued, **options: Any
) -> LocalServer:
    chain = Chain.from_pems(leaf.key_pem(), leaf.pem, INTERMEDIATE.pem)
    return local_server(chain=chain, host=host, **options)


def resolve_args(name: str, server: LocalServer) -> list[str]:
    address = f"[{server.host}]" if ":" in server.host else server.host
    return ["--resolve", f"{name}:{server.port}:{address}"]


def ip_target(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def invoke(
    *args: str, input: str | None = None, env: Mapping[str, str | None] | None = None
) -> CliResult:
    """Run `certwatch check ARGS` in-process."""
    return CliRunner().invoke(cli, ["check", *args], input=input, env=env)


def run(
    *args: str, input: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `python -m certwatch check ARGS` in a subprocess."""
    env = {k: v for k, v in os.environ.items() if k != "CERTWATCH_PKCS12_PASSWORD"}
    return subprocess.run(
        [sys.executable, "-m", "certwatch", "check", *args],
        input=input,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=60,
        check=False,
    )


def document_of(output: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(output)
    return document


def results_by_target(document: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {result["target"]: result for result in document["results"]}


# A healthy endpoint, and the JSON document


def test_check_valid_endpoint_table(
    local_server: StartServer, loopback: str, ca_args: list[str]
) -> None:
    server = serve(local_server, loopback, fresh_leaf(60))
    target = f"www.example.test:{server.port}"

    outcome = invoke(*ca_args, *resolve_args("www.example.test", server), target)

    assert outcome.exit_code == 0, outcome.output
    row = next(line for line in outcome.stdout.splitlines() if target in line)
    assert "OK" in row
    assert " 60 " in row
    assert loopback in row
    assert server.server_names == ["www.example.test"]


def test_check_json_endpoint_document(
    local_server: StartServer, loopback: str, ca_args: list[str]
) -> None:
    leaf = fresh_leaf(60)
    server = serve(local_server, loopback, leaf)
    target = f"www.example.test:{server.port}"

    outcome = invoke(
        "--json", *ca_args, *resolve_args("www.example.test", server), target
    )

    assert outcome.exit_code == 0, outcome.output
    document = document_of(outcome.stdout)
    assert document["schema_version"] == 1
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", document["checked_at"])
    assert document["status"] == "ok"
    assert document["exit_code"] == 0
    assert document["counts"] == {"ok": 1, "warning": 0, "critical": 0, "unknown": 0}
    assert document["endpoints"] == [
        {"target": target, "status": "ok", "days_left": 60, "results": 1}
    ]
    [result] = document["results"]
    assert set(result) == ENDPOINT_KEYS
    assert result["target"] == target
    assert result["kind"] == "endpoint"
    assert result["host"] == "www.example.test"
    assert result["port"] == server.port
    assert result["server_name"] == "www.example.test"
    assert result["address"] == loopback
    assert result["protocol"] == "https"
    assert result["tls_version"] == "TLSv1.3"
    assert result["status"] == "ok"
    assert result["error"] is None
    assert result["findings"] == []
    assert result["certificate"]["sha256"] == leaf.sha256
    assert result["certificate"]["dns_names"] == ["www.example.test"]
    assert result["certificate"]["days_left"] == 60
    assert result["certificate"]["lifetime_days"] == 90.0
    assert result["certificate"]["not_after"] == leaf.cert.not_valid_after_utc.strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    assert [c["sha256"] for c in result["chain"]] == [leaf.sha256, INTERMEDIATE.sha256]
    assert result["valid_path"] == [leaf.sha256, INTERMEDIATE.sha256, ROOT.sha256]


def test_check_untrusted_without_ca_file(
    local_server: StartServer, loopback: str
) -> None:
    leaf = fresh_leaf(60)
    chain = Chain.from_pems(leaf.key_pem(), leaf.pem, INTERMEDIATE.pem, ROOT.pem)
    server = local_server(chain=chain, host=loopback)
    target = f"www.example.test:{server.port}"

    outcome = invoke("--json", *resolve_args("www.example.test", server), target)

    assert outcome.exit_code == 2, outcome.output
    [result] = document_of(outcome.stdout)["results"]
    assert [f["code"] for f in result["findings"]] == ["untrusted_root"]


# Exit codes: the worst result wins, and critical is worse than unknown

STATE_DAYS_LEFT = {"ok": 60, "warning": 20, "critical": -1}


@pytest.mark.parametrize(
    ("states", "exit_code"),
    [
        (["ok"], 0),
        (["ok", "warning"], 1),
        (["ok", "critical"], 2),
        (["ok", "unknown"], 3),
        (["warning", "unknown"], 3),
        (["critical", "unknown"], 2),
        (["ok", "warning", "critical", "unknown"], 2),
    ],
)
def test_check_exit_code_worst_wins(
    local_server: StartServer,
    loopback: str,
    ca_args: list[str],
    states: list[str],
    exit_code: int,
) -> None:
    args: list[str] = []
    expected: dict[str, str] = {}
    with closed_port(loopback) as refused_port:
        for state in states:
            name = f"{state}.example.test"
            if state == "unknown":
                target = ip_target(loopback, refused_port)
            else:
                leaf = fresh_leaf(STATE_DAYS_LEFT[state], dns_names=(name,))
                server = serve(local_server, loopback, leaf)
                args += resolve_args(name, server)
                target = f"{name}:{server.port}"
            args.append(target)
            expected[target] = state

        outcome = invoke("--json", *ca_args, *args)

    assert outcome.exit_code == exit_code, outcome.output
    document = document_of(outcome.stdout)
    assert document["exit_code"] == exit_code
    statuses = {r["target"]: r["status"] for r in document["results"]}
    assert statuses == expected


# Nagios


def test_check_nagios_line_with_perfdata(
    local_server: StartServer, loopback: str, ca_args: list[str]
) -> None:
    healthy = serve(local_server, loopback, fresh_leaf(60))
    expiring = serve(
        local_server,
        loopback,
        fresh_leaf(20, dns_names=("soon.example.test",)),
    )
    healthy_target = f"www.example.test:{healthy.port}"
    expiring_target = f"soon.example.test:{expiring.port}"

    outcome = invoke(
        "--nagios",
        *ca_args,
        *resolve_args("www.example.test", healthy),
        *resolve_args("soon.example.test", expiring),
        healthy_target,
        expiring_target,
    )

    assert outcome.exit_code == 1, outcome.output
    lines = outcome.stdout.splitlines()
    assert len(lines) == 1
    text, perfdata = lines[0].split(" | ")
    assert text == (
        "CERTWATCH WARNING - 2 checked: 1 ok, 1 warning, 0 critical, 0 unknown; "
        f"{expiring_target} ({loopback}) expiring_soon"
    )
    assert sorted(perfdata.split(" ")) == sorted(
        [
            f"'{healthy_target}@{loopback}'=60;30:;7:;;",
            f"'{expiring_target}@{loopback}'=20;30:;7:;;",
        ]
    )


# STARTTLS and implicit TLS protocols


def dialogue_options(
    protocol: str, leaf: Issued, host: str = "127.0.0.1", **options: Any
) -> DialogueOptions:
    chain = Chain.from_pems(leaf.key_pem(), leaf.pem, INTERMEDIATE.pem)
    return DialogueOptions(protocol, chain, host=host, **options)


def test_check_smtp_url_every_localhost_address(ca_args: list[str]) -> None:
    leaf = fresh_leaf(60, dns_names=("localhost",))

    with DialogueServer(dialogue_options("smtp", leaf, host="localhost")) as server:
        outcome = invoke("--json", *ca_args, f"smtp://localhost:{server.port}")

    assert outcome.exit_code == 0, outcome.output
    document = document_of(outcome.stdout)
    assert document["endpoints"] == [
        {
            "target": f"smtp://localhost:{server.port}",
            "status": "ok",
            "days_left": 60,
            "results": len(server.server_names),
        }
    ]
    for result in document["results"]:
        assert result["protocol"] == "smtp"
        assert result["port"] == server.port
        assert result["certificate"]["sha256"] == leaf.sha256
    assert set(server.server_names) == {"localhost"}


def test_check_protocol_option_for_targets_without_scheme(
    loopback: str, ca_args: list[str]
) -> None:
    leaf = fresh_leaf(60)

    with DialogueServer(dialogue_options("imap", leaf, host=loopback)) as server:
        target = f"www.example.test:{server.port}"
        outcome = invoke(
            "--json",
            "--protocol",
            "IMAP",
            *ca_args,
            *resolve_args("www.example.test", server),
            target,
        )

    assert outcome.exit_code == 0, outcome.output
    [result] = document_of(outcome.stdout)["results"]
    assert result["target"] == target
    assert result["protocol"] == "imap"
    assert result["address"] == loopback
    assert result["certificate"]["days_left"] == 60


def test_check_protocol_option_leaves_urls_alone(ca_args: list[str]) -> None:
    leaf = fresh_leaf(60)

    with (
        DialogueServer(dialogue_options("pop3", leaf)) as pop3,
        DialogueServer(dialogue_options("ftp", leaf)) as ftp,
    ):
        outcome = invoke(
            "--json",
            "--protocol",
            "ftp",
            *ca_args,
            *resolve_args("www.example.test", pop3),
            *resolve_args("www.example.test", ftp),
            f"pop3://www.example.test:{pop3.port}",
            f"www.example.test:{ftp.port}",
        )

    assert outcome.exit_code == 0, outcome.output
    protocols = [r["protocol"] for r in document_of(outcome.stdout)["results"]]
    assert sorted(protocols) == ["ftp", "pop3"]


def test_check_protocol_auto_unknown_port_is_tls(
    local_server: StartServer, ca_args: list[str]
) -> None:
    server = serve(local_server, "127.0.0.1", fresh_leaf(60))

    outcome = invoke(
        "--json",
        "--protocol",
        "auto",
        *ca_args,
        *resolve_args("www.example.test", server),
        f"www.example.test:{server.port}",
    )

    assert outcome.exit_code == 0, outcome.output
    [result] = document_of(outcome.stdout)["results"]
    assert result["protocol"] == "https"


def test_check_starttls_not_offered_table(ca_args: list[str]) -> None:
    leaf = fresh_leaf(60)
    options = dialogue_options("smtp", leaf, behaviour=Behaviour.NOT_OFFERED)

    with DialogueServer(options) as server:
        target = f"smtp://www.example.test:{server.port}"
        outcome = invoke(*ca_args, *resolve_args("www.example.test", server), target)

    assert outcome.exit_code == 2, outcome.output
    row = next(line for line in outcome.stdout.splitlines() if target in line)
    assert "CRITICAL" in row
    assert "starttls_not_offered" in row
    assert " - " in row
    assert (
        f"critical starttls_not_offered: The SMTP server at 127.0.0.1 port "
        f"{server.port} does not offer STARTTLS"
    ) in outcome.stdout


def test_check_starttls_not_offered_json_and_nagios(ca_args: list[str]) -> None:
    leaf = fresh_leaf(60)
    options = dialogue_options("postgres", leaf, behaviour=Behaviour.NOT_OFFERED)

    with DialogueServer(options) as server:
        target = f"postgres://www.example.test:{server.port}"
        pins = resolve_args("www.example.test", server)
        as_json = invoke("--json", *ca_args, *pins, target)
        nagios = invoke("--nagios", *ca_args, *pins, target)

    assert as_json.exit_code == 2, as_json.output
    document = document_of(as_json.stdout)
    assert document["status"] == "critical"
    assert document["endpoints"][0]["days_left"] is None
    [result] = document["results"]
    assert result["status"] == "critical"
    assert result["error"] is None
    assert result["certificate"] is None
    assert result["chain"] == []
    assert [f["code"] for f in result["findings"]] == ["starttls_not_offered"]
    assert result["findings"][0]["severity"] == "critical"
    assert nagios.exit_code == 2, nagios.output
    assert nagios.stdout == (
        "CERTWATCH CRITICAL - 1 checked: 0 ok, 0 warning, 1 critical, 0 unknown; "
        f"{target} (127.0.0.1) starttls_not_offered\n"
    )


def test_check_starttls_refused_nagios(ca_args: list[str]) -> None:
    leaf = fresh_leaf(60)
    options = dialogue_options("xmpp", leaf, behaviour=Behaviour.REFUSED)

    with DialogueServer(options) as server:
        target = f"xmpp://www.example.test:{server.port}"
        outcome = invoke(
            "--nagios", *ca_args, *resolve_args("www.example.test", server), target
        )

    assert outcome.exit_code == 3, outcome.output
    assert outcome.stdout == (
        "CERTWATCH UNKNOWN - 1 checked: 0 ok, 0 warning, 0 critical, 1 unknown; "
        f"{target} (127.0.0.1) starttls_refused\n"
    )
    assert server.stream_headers[0]["to"] == "www.example.test"


# Failures that still let the other targets be checked


def test_check_invalid_target_among_valid(
    local_server: StartServer, loopback: str, ca_args: list[str]
) -> None:
    server = serve(local_server, loopback, fresh_leaf(60))
    target = f"www.example.test:{server.port}"

    outcome = invoke(
        "--json",
        *ca_args,
        *resolve_args("www.example.test", server),
        "www.example.test:99999",
        target,
    )

    assert outcome.exit_code == 3, outcome.output
    results = results_by_target(document_of(outcome.stdout))
    invalid = results["www.example.test:99999"]
    assert invalid["status"] == "unknown"
    assert invalid["error"]["reason"] == "invalid_target"
    assert "'99999'" in invalid["error"]["message"]
    assert invalid["host"] is None
    assert invalid["certificate"] is None
    assert results[target]["status"] == "ok"


def test_check_connection_refused_has_no_expiry(
    loopback: str, ca_args: list[str]
) -> None:
    with closed_port(loopback) as port:
        target = ip_target(loopback, port)
        as_json = invoke("--json", *ca_args, target)
        as_nagios = invoke("--nagios", *ca_args, target)
        as_table = invoke(*ca_args, target)

    assert as_json.exit_code == 3, as_json.output
    document = document_of(as_json.stdout)
    [result] = document["results"]
    assert result["status"] == "unknown"
    assert result["error"]["reason"] == "connection_refused"
    assert result["certificate"] is None
    assert result["chain"] == []
    assert result["address"] == loopback
    assert document["endpoints"][0]["days_left"] is None

    assert as_nagios.exit_code == 3
    assert as_nagios.stdout.strip() == (
        "CERTWATCH UNKNOWN - 1 checked: 0 ok, 0 warning, 0 critical, 1 unknown; "
        f"{target} ({loopback}) connection_refused"
    )

    assert as_table.exit_code == 3
    row = next(line for line in as_table.stdout.splitlines() if target in line)
    assert "UNKNOWN" in row
    assert "connection_refused" in row
    assert not re.search(r"\d{4}-\d\d-\d\d", row)


def test_check_timeout_reports_other_targets(
    local_server: StartServer, loopback: str, ca_args: list[str]
) -> None:
    stalled = local_server(mode=Mode.TRICKLE, host=loopback, trickle_interval=0.1)
    healthy = serve(local_server, loopback, fresh_leaf(60))
    stalled_target = f"stalled.example.test:{stalled.port}"
    healthy_target = f"www.example.test:{healthy.port}"

    outcome = invoke(
        "--json",
        "--timeout",
        "0.5",
        "--concurrency",
        "1",
        *ca_args,
        *resolve_args("stalled.example.test", stalled),
        *resolve_args("www.example.test", healthy),
        stalled_target,
        healthy_target,
    )

    assert outcome.exit_code == 3, outcome.output
    results = results_by_target(document_of(outcome.stdout))
    assert results[stalled_target]["status"] == "unknown"
    assert results[stalled_target]["error"]["reason"] == "timeout"
    assert results[stalled_target]["certificate"] is None
    assert results[healthy_target]["status"] == "ok"


# Names and addresses


def test_check_idn_target(
    local_server: StartServer, loopback: str, ca_args: list[str]
) -> None:
    a_label = "xn--bcher-kva.example.test"
    server = serve(local_server, loopback, fresh_leaf(60, dns_names=(a_label,)))
    target = f"bücher.example.test:{server.port}"

    outcome = invoke(
        "--json", *ca_args, *resolve_args("bücher.example.test", server), target
    )

    assert outcome.exit_code == 0, outcome.output
    [result] = document_of(outcome.stdout)["results"]
    assert result["target"] == target
    assert result["host"] == a_label
    assert result["server_name"] == a_label
    assert result["status"] == "ok"
    assert server.server_names == [a_label]


@requires_ipv6
def test_check_resolve_ipv6_without_brackets(
    local_server: StartServer, ca_args: list[str]
) -> None:
    server = serve(local_server, "::1", fresh_leaf(60))
    target = f"www.example.test:{server.port}"

    outcome = invoke(
        "--json", *ca_args, "--resolve", f"www.example.test:{server.port}:::1", target
    )

    assert outcome.exit_code == 0, outcome.output
    [result] = document_of(outcome.stdout)["results"]
    assert result["address"] == "::1"
    assert result["status"] == "ok"


def test_check_ip_target_with_ip_san(
    local_server: StartServer, loopback: str, ca_args: list[str]
) -> None:
    now = seconds(datetime.now(UTC))
    leaf = make_leaf(
        INTERMEDIATE,
        dns_names=(),
        ip_addresses=(loopback,),
        not_before=now - timedelta(days=30),
        not_after=now + timedelta(days=60),
    )
    server = serve(local_server, loopback, leaf)
    target = ip_target(loopback, server.port)

    outcome = invoke("--json", *ca_args, target)

    assert outcome.exit_code == 0, outcome.output
    [result] = document_of(outcome.stdout)["results"]
    assert result["host"] == loopback
    assert result["server_name"] is None
    assert result["address"] == loopback
    assert result["certificate"]["ip_addresses"] == [loopback]
    assert server.server_names == [None]


def test_check_ip_target_dns_only_certificate(
    local_server: StartServer, loopback: str, ca_args: list[str]
) -> None:
    server = serve(local_server, loopback, fresh_leaf(60))
    target = ip_target(loopback, server.port)

    outcome = invoke("--json", *ca_args, target)

    assert outcome.exit_code == 2, outcome.output
    [result] = document_of(outcome.stdout)["results"]
    assert [f["code"] for f in result["findings"]] == ["hostname_mismatch"]


# Targets files


def test_check_targets_file_comments(
    local_server: StartServer, loopback: str, ca_args: list[str], tmp_path: Path
) -> None:
    first = serve(local_server, loopback, fresh_leaf(60))
    second = serve(local_server, loopback, fresh_leaf(60))
    targets_file = tmp_path / "hosts.txt"
    targets_file.write_text(
        "# production\n"
        "\n"
        f"www.example.test:{first.port}   # the first node\n"
        "   \n"
        "#www.example.test:1\n"
        f"  https://www.example.test:{second.port}/health\n",
        encoding="utf-8",
    )

    outcome = invoke(
        "--json",
        *ca_args,
        *resolve_args("www.example.test", first),
        *resolve_args("www.example.test", second),
        "--targets-file",
        str(targets_file),
    )

    assert outcome.exit_code == 0, outcome.output
    results = results_by_target(document_of(outcome.stdout))
    assert sorted(results) == sorted(
        [
            f"www.example.test:{first.port}",
            f"https://www.example.test:{second.port}/health",
        ]
    )
    assert {r["status"] for r in results.values()} == {"ok"}


def test_check_targets_file_byte_order_mark(
    local_server: StartServer, ca_args: list[str], tmp_path: Path
) -> None:
    server = serve(local_server, "127.0.0.1", fresh_leaf(60))
    target = f"www.example.test:{server.port}"
    targets_file = tmp_path / "hosts.txt"
    targets_file.write_text(f"{target}\n", encoding="utf-8-sig")

    outcome = invoke(
        "--json",
        *ca_args,
        *resolve_args("www.example.test", server),
        "--targets-file",
        str(targets_file),
    )

    [result] = document_of(outcome.stdout)["results"]
    assert result["target"] == target
    assert result["status"] == "ok"


def test_check_targets_file_from_stdin(
    local_server: StartServer, loopback: str, ca_args: list[str]
) -> None:
    server = serve(local_server, loopback, fresh_leaf(60))
    target = f"www.example.test:{server.port}"

    completed = run(
        "--json",
        *ca_args,
        *resolve_args("www.example.test", server),
        "--targets-file",
        "-",
        input=f"# from stdin\n\n{target}\n",
    )

    assert completed.returncode == 0, completed.stderr
    [result] = document_of(completed.stdout)["results"]
    assert result["target"] == target
    assert result["status"] == "ok"


# Files and folders


def test_check_certificate_file_and_folder(tmp_path: Path, ca_args: list[str]) -> None:
    site = tmp_path / "site.pem"
    site.write_bytes(fresh_leaf(60).pem)
    folder = tmp_path / "store"
    folder.mkdir()
    (folder / "a.pem").write_bytes(fresh_leaf(20).pem)
    (folder / "b.der").write_bytes(fresh_leaf(-1).der)

    outcome = invoke("--json", *ca_args, str(site), str(folder))

    assert outcome.exit_code == 2, outcome.output
    document = document_of(outcome.stdout)
    statuses = {r["path"]: r["status"] for r in document["results"]}
    assert statuses == {
        str(site): "ok",
        str(folder / "a.pem"): "warning",
        str(folder / "b.der"): "critical",
    }
    for result in document["results"]:
        assert set(result) == FILE_KEYS
        assert result["kind"] == "file"
        assert result["index"] == 0
        assert result["valid_path"] is None
    assert document["counts"] == {"ok": 1, "warning": 1, "critical": 1, "unknown": 0}
    summaries = {e["target"]: e for e in document["endpoints"]}
    assert set(summaries) == {str(site), str(folder)}
    assert summaries[str(folder)]["status"] == "critical"
    assert summaries[str(folder)]["results"] == 2


def test_check_missing_path_is_file_error(tmp_path: Path, ca_args: list[str]) -> None:
    completed = run("--json", *ca_args, "./missing.pem", cwd=tmp_path)

    assert completed.returncode == 3, completed.stderr
    [result] = document_of(completed.stdout)["results"]
    assert set(result) == FILE_KEYS
    assert result["path"] == "missing.pem"
    assert result["index"] is None
    assert result["status"] == "unknown"
    assert result["error"]["reason"] == "file_error"
    assert "not found" in result["error"]["message"]
    assert result["certificate"] is None


def test_check_path_target_as_given(tmp_path: Path, ca_args: list[str]) -> None:
    (tmp_path / "site.pem").write_bytes(fresh_leaf(60).pem)

    completed = run("--json", *ca_args, "./site.pem", "./missing.pem", cwd=tmp_path)

    targets = [r["target"] for r in document_of(completed.stdout)["results"]]
    assert sorted(targets) == ["./missing.pem", "./site.pem"]


@pytest.mark.parametrize(
    ("password", "exit_code", "status"),
    [
        pytest.param("s3cret", 0, "ok", id="right-password"),
        pytest.param("wrong", 3, "unknown", id="wrong-password"),
        pytest.param(None, 3, "unknown", id="no-password"),
    ],
)
def test_check_pkcs12_password_env(
    tmp_path: Path,
    ca_args: list[str],
    password: str | None,
    exit_code: int,
    status: str,
) -> None:
    leaf = fresh_leaf(60)
    path = tmp_path / "site.p12"
    path.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"site", leaf.key, leaf.cert, None, BestAvailableEncryption(b"s3cret")
        )
    )

    outcome = invoke(
        "--json", *ca_args, str(path), env={"CERTWATCH_PKCS12_PASSWORD": password}
    )

    assert outcome.exit_code == exit_code, outcome.output
    [result] = document_of(outcome.stdout)["results"]
    assert result["status"] == status
    if status == "ok":
        assert result["certificate"]["sha256"] == leaf.sha256
    else:
        assert result["error"]["reason"] == "file_error"


# Thresholds


@pytest.mark.parametrize(
    ("days_left", "lifetime_days", "options", "status"),
    [
        pytest.param(40, 200, [], "ok", id="default-ok"),
        pytest.param(40, 200, ["--warning", "25%"], "warning", id="warning-25%"),
        pytest.param(5, 90, [], "critical", id="default-critical"),
        pytest.param(5, 90, ["--critical", "3"], "warning", id="critical-3"),
        pytest.param(
            5, 90, ["--warning", "4", "--critical", "3"], "ok", id="warning-4"
        ),
    ],
)
def test_check_thresholds_change_verdict(
    local_server: StartServer,
    loopback: str,
    ca_args: list[str],
    days_left: int,
    lifetime_days: int,
    options: list[str],
    status: str,
) -> None:
    leaf = fresh_leaf(days_left, lifetime_days=lifetime_days)
    server = serve(local_server, loopback, leaf)
    target = f"www.example.test:{server.port}"

    outcome = invoke(
        "--json",
        *options,
        *ca_args,
        *resolve_args("www.example.test", server),
        target,
    )

    [result] = document_of(outcome.stdout)["results"]
    assert result["status"] == status
    assert outcome.exit_code == {"ok": 0, "warning": 1, "critical": 2}[status]


# Usage errors exit with 3 and name the offending value


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ["--warning", "abc", "www.example.test"],
            "Invalid threshold 'abc'",
            id="warning-abc",
        ),
        pytest.param(
            ["--critical", "150%", "www.example.test"],
            "Invalid threshold '150%'",
            id="critical-over-100%",
        ),
        pytest.param(
            ["--resolve", "www.example.test", "www.example.test"],
            "Invalid --resolve value 'www.example.test'",
            id="resolve-without-port",
        ),
        pytest.param(
            ["--resolve", "www.example.test:443:nowhere", "www.example.test"],
            "Invalid address 'nowhere'",
            id="resolve-bad-address",
        ),
        pytest.param(
            ["--only-ca-file", "www.example.test"],
            "--only-ca-file needs at least one --ca-file",
            id="only-ca-file-alone",
        ),
        pytest.param(
            ["--json", "--nagios", "www.example.test"],
            "Choose one of --json and --nagios",
            id="json-and-nagios",
        ),
        pytest.param([], "Give at least one target", id="no-target"),
        pytest.param(
            ["--targets-file", "/nonexistent/hosts.txt"],
            "'/nonexistent/hosts.txt': No such file or directory",
            id="targets-file-missing",
        ),
        pytest.param(
            ["--ca-file", "/nonexistent/roots.pem", "www.example.test"],
            "Cannot use CA file '/nonexistent/roots.pem'",
            id="ca-file-missing",
        ),
        pytest.param(
            ["--timeout", "0", "www.example.test"], "--timeout", id="timeout-zero"
        ),
        pytest.param(
            ["--timeout", "nan", "www.example.test"],
            "Invalid probe timeout nan",
            id="timeout-nan",
        ),
        pytest.param(
            ["--timeout", "inf", "www.example.test"],
            "Invalid probe timeout inf",
            id="timeout-inf",
        ),
        pytest.param(
            ["--warning", "10", "--critical", "20", "www.example.test"],
            "--critical 20 comes before --warning 10",
            id="critical-before-warning",
        ),
        pytest.param(
            ["--warning", "10%", "--critical", "20%", "www.example.test"],
            "--critical 20% comes before --warning 10%",
            id="critical-share-before-warning",
        ),
        pytest.param(
            ["--protocol", "gopher", "www.example.test"],
            "'gopher' is not one of 'auto', 'ftp', 'ftps', 'https', 'imap'",
            id="protocol-unknown",
        ),
    ],
)
def test_check_usage_error_exit_3(args: list[str], message: str) -> None:
    completed = run(*args)

    assert completed.returncode == 3, completed.stderr
    assert message in completed.stderr
    assert completed.stdout == ""


def test_check_empty_targets_file_names_it(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts.txt"
    hosts.write_text("# nothing yet\n\n")

    completed = run("--targets-file", str(hosts))

    assert completed.returncode == 3
    assert f"The targets file '{hosts}' contains no target" in completed.stderr


def test_check_repeated_target_checked_once(
    local_server: StartServer, ca_args: list[str]
) -> None:
    server = serve(local_server, "127.0.0.1", fresh_leaf(60))
    target = f"www.example.test:{server.port}"

    outcome = invoke(
        "--json",
        *ca_args,
        *resolve_args("www.example.test", server),
        target,
        target,
        f"WWW.example.test.:{server.port}",
    )

    assert outcome.exit_code == 0, outcome.output
    assert len(document_of(outcome.stdout)["results"]) == 1


def test_check_certificate_suffix_is_path(tmp_path: Path) -> None:
    completed = run("--json", "site.pem", cwd=tmp_path)

    result = document_of(completed.stdout)["results"][0]
    assert completed.returncode == 3
    assert result["kind"] == "file"
    assert result["error"]["reason"] == "file_error"
    assert "not found" in result["error"]["message"]


def test_check_targets_file_not_utf8(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts.txt"
    hosts.write_bytes(b"www.example.test\n\xff\xfe\x00junk\n")

    completed = run("--targets-file", str(hosts))

    assert completed.returncode == 3
    assert "is not UTF-8 text" in completed.stderr
    assert "Traceback" not in completed.stderr


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("a" * 300, id="name-too-long"),
        pytest.param("[/]", id="rich-markup"),
    ],
)
def test_check_odd_argument_is_unknown_not_crash(text: str) -> None:
    completed = run(text)

    assert completed.returncode == 3, completed.stderr
    assert "Traceback" not in completed.stderr


def test_check_broken_pipe_keeps_verdict_exit_code(tmp_path: Path) -> None:
    # Far more table than a pipe buffer holds, so writing hits the closed pipe.
    folder = tmp_path / "bundles"
    folder.mkdir()
    for copy in range(4):
        shutil.copy(certifi.where(), folder / f"roots{copy}.pem")
    (folder / "expired.pem").write_bytes(fresh_leaf(-3).pem)
    script = (
        f"{sys.executable} -m certwatch check {folder} "
        "| head -c 1 >/dev/null; echo ${PIPESTATUS[0]}"
    )

    completed = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, timeout=60, check=False
    )

    assert completed.stdout.strip() == "2", completed.stderr


@pytest.mark.parametrize("separate", [True, False], ids=["repeated", "comma-list"])
def test_check_resolve_several_addresses_worst_wins(
    local_servers_on_one_port: StartServers, ca_args: list[str], separate: bool
) -> None:
    healthy, expiring = (fresh_leaf(60), fresh_leaf(4))
    first, second = local_servers_on_one_port(
        ServerOptions(
            chain=Chain.from_pems(healthy.key_pem(), healthy.pem, INTERMEDIATE.pem),
            host="127.0.0.1",
        ),
        ServerOptions(
            chain=Chain.from_pems(expiring.key_pem(), expiring.pem, INTERMEDIATE.pem),
            host="127.0.0.2",
        ),
    )
    name = f"www.example.test:{first.port}"
    if separate:
        pins = ["--resolve", f"{name}:127.0.0.1", "--resolve", f"{name}:127.0.0.2"]
    else:
        pins = ["--resolve", f"{name}:127.0.0.1,127.0.0.2"]

    outcome = invoke("--json", *ca_args, *pins, name)

    document = document_of(outcome.stdout)
    statuses = {r["address"]: r["status"] for r in document["results"]}
    assert statuses == {"127.0.0.1": "ok", "127.0.0.2": "critical"}
    assert outcome.exit_code == 2
    assert second.port == first.port


def test_check_many_endpoints_through_python_m(
    local_server: StartServer, ca_args: list[str], tmp_path: Path
) -> None:
    # Enough endpoints to analyse in worker processes started by the command.
    server = serve(local_server, "127.0.0.1", fresh_leaf(60))
    names = [f"www.example.test:{server.port}"]
    names += [f"n{i}.example.test:{server.port}" for i in range(69)]
    pins = [arg for name in names for arg in ("--resolve", f"{name}:127.0.0.1")]
    hosts = tmp_path / "hosts.txt"
    hosts.write_text("\n".join(names) + "\n")

    completed = run("--json", *ca_args, *pins, "--targets-file", str(hosts))

    document = document_of(completed.stdout)
    assert len(document["results"]) == 70
    assert document["counts"]["ok"] == 1
    assert document["counts"]["critical"] == 69
    assert completed.returncode == 2, completed.stderr


def test_check_empty_argument_is_no_path() -> None:
    # An unset shell variable must not check the current folder.
    result = invoke("")

    assert result.exit_code == 3
    assert "Empty target: give a host name, address or URL." in result.output


# --- The command group: lazy subcommands ------------------------------------

# Modules that only `serve`, the web pages or the charts need.
WEB_MODULES = ("uvicorn", "fastapi", "starlette", "pygal", "certwatch.web.server")


def run_certwatch(*args: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m certwatch ARGS` in a new interpreter, 80 columns wide."""
    return subprocess.run(
        [sys.executable, "-m", "certwatch", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "80"},
        timeout=60,
        check=False,
    )


def listed_commands(help_text: str) -> list[str]:
    """Return the command names of the "Commands:" section of a help page."""
    section = help_text.split("Commands:\n", 1)[1]
    return [line.split()[0] for line in section.splitlines() if line.startswith("  ")]


def test_cli_help_lists_every_command() -> None:
    completed = run_certwatch("--help")

    assert completed.returncode == 0, completed.stderr
    assert listed_commands(completed.stdout) == sorted(LAZY_COMMANDS)
    assert "check" in LAZY_COMMANDS
    assert "serve" in LAZY_COMMANDS


@pytest.mark.parametrize("name", sorted(LAZY_COMMANDS))
def test_cli_command_loads_and_shows_help(name: str) -> None:
    group = LazyGroup("certwatch", lazy_commands=LAZY_COMMANDS)
    command = group.get_command(click.Context(group), name)

    assert command is not None
    assert command.name == name
    result = CliRunner().invoke(group, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: certwatch {name} ")


@pytest.mark.parametrize("name", sorted(LAZY_COMMANDS))
@pytest.mark.parametrize("limit", [30, 45, 1000])
def test_cli_table_short_help_matches_command(name: str, limit: int) -> None:
    group = LazyGroup("certwatch", lazy_commands=LAZY_COMMANDS)
    command = group.get_command(click.Context(group), name)
    stand_in = click.Command(name, help=LAZY_COMMANDS[name].short_help)

    assert command is not None
    assert stand_in.get_short_help_str(limit) == command.get_short_help_str(limit)


def reachable_commands(command: click.Command) -> list[click.Command]:
    """Return `command` and, for a group, every command under it."""
    found = [command]
    if isinstance(command, click.Group):
        for child in command.commands.values():
            found.extend(reachable_commands(child))
    return found


def test_cli_table_covers_every_command_module() -> None:
    # A command module added without a table entry would be unreachable.
    group = LazyGroup("certwatch", lazy_commands=LAZY_COMMANDS)
    reachable: set[int] = set()
    for name in LAZY_COMMANDS:
        loaded = group.get_command(click.Context(group), name)
        assert loaded is not None
        reachable.update(id(command) for command in reachable_commands(loaded))

    package = importlib.import_module("certwatch.commands")
    for module_info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"certwatch.commands.{module_info.name}")
        for attribute, value in vars(module).items():
            if isinstance(value, click.Command):
                assert id(value) in reachable, f"{module.__name__}.{attribute}"


def test_cli_help_same_before_and_after_loading() -> None:
    group = LazyGroup("certwatch", lazy_commands=LAZY_COMMANDS)
    before = CliRunner().invoke(group, ["--help"], terminal_width=80)
    for name in LAZY_COMMANDS:
        group.get_command(click.Context(group), name)
    after = CliRunner().invoke(group, ["--help"], terminal_width=80)

    assert before.exit_code == 0, before.output
    assert set(group.commands) == set(LAZY_COMMANDS)
    assert before.output == after.output


def test_cli_team_group_has_calendar() -> None:
    result = CliRunner().invoke(cli, ["team", "calendar", "--help"])

    assert result.exit_code == 0, result.output
    assert "Usage: cli team calendar" in result.output


def test_cli_unknown_command_is_usage_error() -> None:
    completed = run_certwatch("no-such-command")

    assert completed.returncode == USAGE_ERROR_EXIT
    assert "No such command 'no-such-command'" in completed.stderr


def test_cli_usage_error_exit_is_unknown() -> None:
    assert Status.UNKNOWN.exit_code == USAGE_ERROR_EXIT


def test_cli_import_leaves_out_web_modules() -> None:
    # A new interpreter, because this test process has imported them already.
    code = (
        "import sys, certwatch.cli\n"
        f"print(' '.join(m for m in {WEB_MODULES!r} if m in sys.modules))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split() == []


def test_cli_import_loads_no_command_module() -> None:
    code = (
        "import sys, certwatch.cli\n"
        "print(' '.join(m for m in sys.modules if m.startswith('certwatch.')))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    assert sorted(completed.stdout.split()) == ["certwatch.cli"]
