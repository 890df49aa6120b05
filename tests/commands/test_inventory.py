"""`certwatch add`, `remove` and `list` against local TLS servers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.commands.conftest import (
    ROOT,
    Certwatch,
    StartServer,
    fresh_leaf,
    serve,
    target,
)
from tests.servers import closed_port

from certwatch.result import Status


def sources_by_target(certwatch: Certwatch, *options: str) -> dict[str, Any]:
    document = certwatch.json("list", *options)
    return {
        source.get("target") or source["path"]: source for source in document["sources"]
    }


def test_add_then_list(certwatch: Certwatch, local_server: StartServer) -> None:
    leaf = fresh_leaf(days_left=40)
    server = serve(local_server, leaf)

    outcome = certwatch(
        "add",
        target(server),
        "--tag",
        "web",
        "--tag",
        "prod",
        "--team",
        "shop",
        "--interval",
        "30m",
    )

    # The test root is not in certifi and the name does not match, so the
    # instant report is CRITICAL, with the exit code `check` would give.
    assert outcome.exit_code == Status.CRITICAL.exit_code, outcome.output
    assert target(server) in outcome.stdout
    assert "incomplete_chain" in outcome.stdout
    assert "1 added, 0 updated" in outcome.stderr
    listed = sources_by_target(certwatch)
    assert list(listed) == [target(server)]
    source = listed[target(server)]
    assert source["kind"] == "endpoint"
    assert source["host"] == "127.0.0.1"
    assert source["port"] == server.port
    assert source["team"] == "shop"
    assert source["tags"] == ["prod", "web"]
    assert source["interval_seconds"] == 1800
    assert source["status"] == "critical"
    assert source["days_left"] == 40
    assert source["not_after"] == leaf.cert.not_valid_after_utc.strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    assert source["scanned_at"] is not None


def test_add_json_report(certwatch: Certwatch, local_server: StartServer) -> None:
    leaf = fresh_leaf()
    server = serve(local_server, leaf)

    outcome = certwatch("add", "--json", target(server))

    assert outcome.exit_code == Status.CRITICAL.exit_code, outcome.output
    document = json.loads(outcome.stdout)
    assert document["status"] == "critical"
    assert document["results"][0]["certificate"]["sha256"] == leaf.sha256


def test_add_list_table(certwatch: Certwatch, local_server: StartServer) -> None:
    server = serve(local_server, fresh_leaf(days_left=20))
    certwatch("add", "--team", "shop", target(server))

    outcome = certwatch("list")

    assert outcome.exit_code == 0, outcome.output
    assert "CRITICAL" in outcome.stdout
    assert target(server) in outcome.stdout
    assert "shop" in outcome.stdout
    assert "1 in the inventory match." in outcome.stdout


def test_add_twice_updates(certwatch: Certwatch, local_server: StartServer) -> None:
    server = serve(local_server, fresh_leaf())
    certwatch("add", target(server), "--team", "shop", "--tag", "web")
    url = f"https://{target(server)}/health"

    outcome = certwatch("add", url, "--team", "payments", "--interval", "1d")

    assert outcome.exit_code == Status.CRITICAL.exit_code, outcome.output
    assert "0 added, 1 updated" in outcome.stderr
    document = certwatch.json("list")
    assert len(document["sources"]) == 1
    source = document["sources"][0]
    assert source["target"] == url
    assert source["team"] == "payments"
    assert source["tags"] == ["web"]
    assert source["interval_seconds"] == 86400


def test_add_default_interval_from_environment(
    certwatch: Certwatch, local_server: StartServer
) -> None:
    first = serve(local_server, fresh_leaf())
    second = serve(local_server, fresh_leaf())
    certwatch("add", target(first), "--interval", "6h")
    certwatch("add", target(second))
    two_hours = {"CERTWATCH_DEFAULT_INTERVAL": "2h"}

    outcome = certwatch("list", "--json", env=two_hours)
    listed = {s["target"]: s for s in json.loads(outcome.stdout)["sources"]}

    # A source added without --interval follows the default as it changes.
    assert listed[target(first)]["interval_seconds"] == 6 * 3600
    assert listed[target(first)]["interval_default"] is False
    assert listed[target(second)]["interval_seconds"] == 2 * 3600
    assert listed[target(second)]["interval_default"] is True


def test_add_invalid_interval(certwatch: Certwatch) -> None:
    outcome = certwatch("add", "www.example.test", "--interval", "6 hours")

    assert outcome.exit_code == 2
    assert "Invalid duration '6 hours'" in outcome.stderr
    assert certwatch.json("list")["sources"] == []


def test_add_invalid_target_stores_nothing(certwatch: Certwatch) -> None:
    outcome = certwatch("add", "www.example.test", "https://[::1")

    assert outcome.exit_code == 2
    assert "https://[::1" in outcome.stderr
    assert certwatch.json("list")["sources"] == []


def test_add_tag_with_separator(certwatch: Certwatch) -> None:
    outcome = certwatch("add", "www.example.test", "--tag", "web;prod")

    assert outcome.exit_code == 2
    assert "Invalid tag 'web;prod'" in outcome.stderr


def test_add_file_path(certwatch: Certwatch, tmp_path: Path) -> None:
    leaf = fresh_leaf(days_left=25)
    path = tmp_path / "site.pem"
    path.write_bytes(leaf.pem)

    outcome = certwatch("add", str(path), "--tag", "disk")

    assert outcome.exit_code != 0
    assert str(path) in outcome.stdout
    listed = sources_by_target(certwatch)
    source = listed[str(path)]
    assert source["kind"] == "file"
    assert source["tags"] == ["disk"]
    assert source["days_left"] == 25
    assert source["status"] in {"warning", "critical"}


def test_add_missing_file(certwatch: Certwatch, tmp_path: Path) -> None:
    missing = tmp_path / "gone.pem"

    outcome = certwatch("add", str(missing))

    assert outcome.exit_code == 2
    assert f"File or folder '{missing}' not found" in outcome.stderr
    assert certwatch.json("list")["sources"] == []


def test_add_refused_is_unknown(certwatch: Certwatch) -> None:
    with closed_port() as port:
        outcome = certwatch("add", f"127.0.0.1:{port}")

    assert outcome.exit_code == Status.UNKNOWN.exit_code, outcome.output
    assert "connection_refused" in outcome.stdout
    source = certwatch.json("list")["sources"][0]
    assert source["status"] == "unknown"
    assert source["days_left"] is None


def test_remove_endpoint_and_file(
    certwatch: Certwatch, local_server: StartServer, tmp_path: Path
) -> None:
    kept = serve(local_server, fresh_leaf())
    removed = serve(local_server, fresh_leaf())
    path = tmp_path / "site.pem"
    path.write_bytes(fresh_leaf().pem)
    certwatch("add", target(kept), target(removed), str(path))

    outcome = certwatch("remove", f"https://{target(removed)}/", str(path))

    assert outcome.exit_code == 0, outcome.output
    assert "Removed 2" in outcome.stdout
    assert list(sources_by_target(certwatch)) == [target(kept)]


def test_remove_unknown_removes_nothing(
    certwatch: Certwatch, local_server: StartServer
) -> None:
    server = serve(local_server, fresh_leaf())
    certwatch("add", target(server))

    outcome = certwatch("remove", target(server), "nowhere.example.test")

    assert outcome.exit_code == 1
    assert "Not in the inventory: 'nowhere.example.test'" in outcome.stderr
    assert list(sources_by_target(certwatch)) == [target(server)]


def test_list_filters(certwatch: Certwatch, local_server: StartServer) -> None:
    soon = serve(local_server, fresh_leaf(days_left=10))
    later = serve(local_server, fresh_leaf(days_left=200))
    certwatch("add", target(soon), "--tag", "web", "--tag", "prod")
    certwatch("add", target(later), "--tag", "web")
    with closed_port() as port:
        refused = f"127.0.0.1:{port}"
        certwatch("add", refused, "--tag", "prod")

    expiring = sources_by_target(certwatch, "--expiring", "30")
    tagged = sources_by_target(certwatch, "--tag", "web")
    both_tags = sources_by_target(certwatch, "--tag", "web", "--tag", "prod")
    unknown = sources_by_target(certwatch, "--status", "unknown")
    critical = sources_by_target(certwatch, "--status", "critical")
    everything = certwatch.json("list")

    # The refused endpoint's expiry is unknown, so --expiring keeps it.
    assert list(expiring) == [target(soon), refused]
    assert list(tagged) == [target(soon), target(later)]
    assert list(both_tags) == [target(soon)]
    assert list(unknown) == [refused]
    assert list(critical) == [target(soon), target(later)]
    # Soonest not_after first, sources without a certificate last.
    targets = [source["target"] for source in everything["sources"]]
    assert targets == [target(soon), target(later), refused]


def test_list_expiring_includes_boundary(
    certwatch: Certwatch, local_server: StartServer
) -> None:
    server = serve(local_server, fresh_leaf(days_left=30))
    certwatch("add", target(server))

    assert list(sources_by_target(certwatch, "--expiring", "31")) == [target(server)]
    assert list(sources_by_target(certwatch, "--expiring", "30")) == []


def test_list_invalid_status(certwatch: Certwatch) -> None:
    outcome = certwatch("list", "--status", "broken")

    assert outcome.exit_code == 2
    assert "'broken' is not one of" in outcome.stderr


def test_add_with_ca_file_is_ok(
    certwatch: Certwatch, local_server: StartServer, tmp_path: Path
) -> None:
    leaf = fresh_leaf("www.example.test", ip_addresses=("127.0.0.1",))
    server = serve(local_server, leaf)
    roots = tmp_path / "root.pem"
    roots.write_bytes(ROOT.pem)

    outcome = certwatch(
        "add", target(server), "--ca-file", str(roots), "--only-ca-file"
    )

    assert outcome.exit_code == Status.OK.exit_code, outcome.output
    assert "OK" in outcome.stdout


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ("host.test..",),
            "Invalid host name 'host.test..' in 'host.test..': a label is empty",
        ),
        (
            ("0x7f000001",),
            "Invalid address '0x7f000001' in '0x7f000001': it is neither an IPv4 "
            "address nor a host name.",
        ),
        (
            ("host.test", "--interval", "1m1m"),
            "Invalid duration '1m1m': the unit 'm' appears more than once",
        ),
    ],
)
def test_add_rejects_before_scanning(
    certwatch: Certwatch, arguments: tuple[str, ...], message: str
) -> None:
    outcome = certwatch("add", *arguments)

    assert outcome.exit_code == 2, outcome.output
    assert message in " ".join(outcome.output.split())
    assert certwatch.json("list")["sources"] == []


def test_add_missing_ca_file(certwatch: Certwatch, tmp_path: Path) -> None:
    missing = tmp_path / "missing-root.pem"

    outcome = certwatch("add", "www.example.test", "--ca-file", str(missing))

    assert outcome.exit_code == 2
    assert str(missing) in outcome.stderr
    assert certwatch.json("list")["sources"] == []


def test_add_schedules_next_scan_after_interval(
    certwatch: Certwatch, local_server: StartServer
) -> None:
    server = serve(local_server, fresh_leaf(days_left=40))

    certwatch("add", target(server), "--interval", "30m")
    outcome = certwatch("run", "--once")

    # The scan made by `add` counts, so the new endpoint is not due yet.
    assert outcome.exit_code == 0, outcome.output
    assert server.accepted == 1


def test_remove_ip_endpoint_with_server_name(
    certwatch: Certwatch, tmp_path: Path
) -> None:
    spreadsheet = tmp_path / "hosts.csv"
    spreadsheet.write_text("host,port,server_name\n127.0.0.1,8443,www.example.test\n")
    imported = certwatch("import", str(spreadsheet))
    assert imported.exit_code == 0, imported.output

    outcome = certwatch("remove", "127.0.0.1:8443")

    assert outcome.exit_code == 0, outcome.output
    assert sources_by_target(certwatch) == {}


def test_add_resolve_pins_address(
    certwatch: Certwatch, local_server: StartServer
) -> None:
    server = serve(local_server, fresh_leaf(days_left=40))
    name = f"www.example.test:{server.port}"

    outcome = certwatch("add", "--resolve", f"{name}:127.0.0.1", name)

    assert "www.example.test" in outcome.stdout, outcome.output
    assert "127.0.0.1" in outcome.stdout
    source = sources_by_target(certwatch)[name]
    assert source["address"] == "127.0.0.1"
    assert source["server_name"] == "www.example.test"
    assert server.server_names == ["www.example.test"]


def test_add_unpinned_warns_about_pinned_twin(
    certwatch: Certwatch, local_server: StartServer
) -> None:
    server = serve(local_server, fresh_leaf(days_left=40))
    name = f"www.example.test:{server.port}"
    certwatch("add", "--resolve", f"{name}:127.0.0.1", name)

    again = certwatch("add", "--resolve", f"{name}:127.0.0.1", name)
    unpinned = certwatch("add", name)

    assert "pinned to" not in again.stderr
    assert f"'{name}' is also in the inventory pinned to 127.0.0.1" in (unpinned.stderr)


def test_remove_wrong_pinned_address_names_pins(
    certwatch: Certwatch, local_server: StartServer
) -> None:
    server = serve(local_server, fresh_leaf(days_left=40))
    name = f"www.example.test:{server.port}"
    certwatch("add", "--resolve", f"{name}:127.0.0.1", name)

    outcome = certwatch("remove", name, "--address", "127.0.0.99")

    assert outcome.exit_code == 1
    assert f"'{name}' is pinned to 127.0.0.1, not to 127.0.0.99." in outcome.stderr
    assert list(sources_by_target(certwatch)) == [name]


def test_remove_without_port_names_other_ports(
    certwatch: Certwatch, local_server: StartServer
) -> None:
    server = serve(local_server, fresh_leaf(days_left=40))
    certwatch("add", target(server))

    outcome = certwatch("remove", "127.0.0.1")

    assert outcome.exit_code == 1
    assert f"The inventory has '{target(server)}' on another port" in outcome.stderr
    assert "means port 443, so give the port" in outcome.stderr


def test_add_resolve_several_addresses_rejected(certwatch: Certwatch) -> None:
    outcome = certwatch(
        "add",
        "--resolve",
        "www.example.test:443:127.0.0.1,127.0.0.2",
        "www.example.test",
    )

    assert outcome.exit_code != 0
    assert "one pinned address per endpoint" in outcome.output


def test_list_expiring_keeps_endpoint_that_is_down(
    certwatch: Certwatch, local_server: StartServer
) -> None:
    server = serve(local_server, fresh_leaf(days_left=90))
    certwatch("add", target(server))
    with closed_port("127.0.0.1") as port:
        certwatch("add", f"127.0.0.1:{port}")

        listed = sources_by_target(certwatch, "--expiring", "30")

    assert list(listed) == [f"127.0.0.1:{port}"]
    assert listed[f"127.0.0.1:{port}"]["status"] == "unknown"


def test_list_limit_sorts_by_expiry_and_counts(
    certwatch: Certwatch, local_server: StartServer
) -> None:
    leaves = [fresh_leaf(f"s{d}.example.test", days_left=d) for d in (70, 3, 30)]
    servers = [serve(local_server, leaf) for leaf in leaves]
    certwatch("add", *(target(server) for server in servers))

    document = certwatch.json("list", "--limit", "2")
    paged = certwatch("list", "--limit", "2", "--json")
    whole = certwatch("list", "--limit", "0", "--json")
    table = certwatch("list", "--limit", "2")

    assert [s["days_left"] for s in document["sources"]] == [3, 30]
    assert "listed 2 of 3 matching sources; --limit 0 lists all" in paged.stderr
    assert whole.stderr == ""
    assert document["total"] == 3
    assert document["limit"] == 2
    assert table.exit_code == 0, table.output
    assert "2 of 3 in the inventory match, soonest expiry shown" in table.stdout


def test_list_shows_stale_deployment_on_the_endpoint_behind(
    certwatch: Certwatch, local_server: StartServer
) -> None:
    old = fresh_leaf("www.example.test", days_left=20)
    new = fresh_leaf("www.example.test", days_left=80)
    behind = serve(local_server, old)
    renewed = serve(local_server, new)
    certwatch("add", target(behind), target(renewed))

    document = certwatch.json("list")
    table = certwatch("list")

    by_target = {source["target"]: source for source in document["sources"]}
    [finding] = by_target[target(behind)]["findings"]
    assert finding["code"] == "stale_deployment"
    assert finding["severity"] == "warning"
    assert by_target[target(renewed)]["findings"] == []
    assert f"{target(behind)}: warning stale_deployment: 1 of 2" in table.stdout


def test_add_reports_and_stores_stale_deployment(
    certwatch: Certwatch, local_server: StartServer, tmp_path: Path
) -> None:
    names = {"ip_addresses": ("127.0.0.1",)}
    old = fresh_leaf("www.example.test", days_left=50, **names)
    new = fresh_leaf("www.example.test", days_left=80, **names)
    behind = serve(local_server, old)
    renewed = serve(local_server, new)
    roots = tmp_path / "root.pem"
    roots.write_bytes(ROOT.pem)
    trust = ("--ca-file", str(roots), "--only-ca-file")
    certwatch("add", target(renewed), *trust)

    outcome = certwatch("add", target(behind), *trust, "--json")
    listed = certwatch.json("list", "--status", "warning")

    assert outcome.exit_code == 1, outcome.output
    [result] = json.loads(outcome.stdout)["results"]
    assert [f["code"] for f in result["findings"]] == ["stale_deployment"]
    assert result["status"] == "warning"
    # The finding is stored: it raised the latest status of the endpoint.
    assert [s["target"] for s in listed["sources"]] == [target(behind)]


def test_add_and_scan_take_thresholds(
    certwatch: Certwatch, local_server: StartServer, tmp_path: Path
) -> None:
    leaf = fresh_leaf("www.example.test", days_left=60, ip_addresses=("127.0.0.1",))
    server = serve(local_server, leaf)
    roots = tmp_path / "root.pem"
    roots.write_bytes(ROOT.pem)
    trust = ("--ca-file", str(roots), "--only-ca-file")

    added = certwatch("add", target(server), *trust, "--warning", "90")
    default = certwatch("scan", target(server), *trust)
    status_after_default = certwatch.json("list")["sources"][0]["status"]
    critical = certwatch("scan", target(server), *trust, "--critical", "61")
    status_after_critical = certwatch.json("list")["sources"][0]["status"]
    invalid = certwatch("scan", "--all", "--warning", "5", "--critical", "9")

    assert added.exit_code == Status.WARNING.exit_code, added.output
    assert default.exit_code == 0, default.output
    assert status_after_default == "ok"
    assert critical.exit_code == 0, critical.output
    assert status_after_critical == "critical"
    assert invalid.exit_code == 2
    assert "--critical 9 comes before --warning 5" in invalid.output


def test_add_reminders_stored_and_exported(
    certwatch: Certwatch, local_server: StartServer, other_certwatch: Certwatch
) -> None:
    server = serve(local_server, fresh_leaf("www.example.test"))
    certwatch("add", target(server), "--reminders", "7, 21,3")
    bad = certwatch("add", target(server), "--reminders", "7,soon")

    [listed] = certwatch.json("list")["sources"]
    exported = certwatch("export", "--format", "json")

    assert listed["reminders"] == "21,7,3"
    assert bad.exit_code == 2
    assert "Invalid reminder point 'soon'" in bad.output
    assert '"reminders": "21,7,3"' in exported.stdout


def test_ca_file_from_environment(
    certwatch: Certwatch, local_server: StartServer, tmp_path: Path
) -> None:
    leaf = fresh_leaf("www.example.test", ip_addresses=("127.0.0.1",))
    server = serve(local_server, leaf)
    roots = tmp_path / "root.pem"
    roots.write_bytes(ROOT.pem)
    environment = {"CERTWATCH_CA_FILE": f"{tmp_path / 'none.pem'}:{roots}"}

    missing = certwatch("add", target(server), env={"CERTWATCH_CA_FILE": "/none"})
    added = certwatch("add", target(server), env={"CERTWATCH_CA_FILE": str(roots)})
    scanned = certwatch("scan", "--all", env=environment)

    assert missing.exit_code == 2
    assert added.exit_code == Status.OK.exit_code, added.output
    # One missing path among several is still an error that names it.
    assert scanned.exit_code == 2
    assert "none.pem" in scanned.output


def test_remove_one_pinned_address(certwatch: Certwatch, tmp_path: Path) -> None:
    spreadsheet = tmp_path / "hosts.csv"
    spreadsheet.write_text(
        "host,address\nwww.example.test,192.0.2.1\nwww.example.test,192.0.2.2\n"
    )
    assert certwatch("import", str(spreadsheet)).exit_code == 0

    outcome = certwatch("remove", "www.example.test", "--address", "192.0.2.1")
    unknown = certwatch("remove", "www.example.test", "--address", "192.0.2.9")
    invalid = certwatch("remove", "www.example.test", "--address", "nowhere")

    assert outcome.exit_code == 0, outcome.output
    assert "Removed 1 from the inventory." in outcome.stdout
    [left] = certwatch.json("list")["sources"]
    assert left["address"] == "192.0.2.2"
    assert unknown.exit_code == 1
    assert invalid.exit_code == 2
    assert "Invalid address 'nowhere'" in invalid.output


def test_relative_sqlite_path_warns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    relative = Certwatch("sqlite:///store/x.db")
    (tmp_path / "store").mkdir()

    outcome = relative("list")

    assert outcome.exit_code == 0, outcome.output
    assert "Warning: the SQLite database path 'store/x.db' is relative" in (
        outcome.stderr
    )
    assert "sqlite:////store/x.db" in outcome.stderr


def test_add_team_name_checks(certwatch: Certwatch, tmp_path: Path) -> None:
    certificate_file = tmp_path / "site.pem"
    certificate_file.write_bytes(ROOT.pem)

    created = certwatch("add", str(certificate_file), "--team", "webx")
    again = certwatch("add", str(certificate_file), "--team", "webx")
    broken = certwatch("add", str(certificate_file), "--team", "web\nops")

    assert "Warning: created team 'webx', which has no contacts" in created.stderr
    assert "Warning" not in again.stderr
    assert broken.exit_code != 0
    assert "control and text-direction characters are not allowed" in broken.output
