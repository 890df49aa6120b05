"""`certwatch import` and `certwatch export`, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.commands.conftest import Certwatch

INVENTORY_CSV = (
    "target,host,port,protocol,server_name,address,path,team,tags,interval,"
    "enabled,notes,reminders\n"
    'www.example.test,,,,,,,shop,web;prod,30m,true,front page,"20,5"\n'
    ',api.example.test,8443,https,,,,payments,api,6h,,"rotated by hand,\n'
    'see the runbook",\n'
    "https://pinned.example.test/health,,,,,192.0.2.10,,shop,,1d,false,,10%\n"
    ",2001:db8::5,443,,sni.example.test,,,,,,,,\n"
    ",,,,,,/etc/ssl/certs/site.pem,ops,disk,12h,,,7\n"
)


def write(tmp_path: Path, text: str, name: str = "inventory.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode())
    return path


def endpoints_by_target(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["target"]: entry for entry in document["endpoints"]}


def exported(certwatch: Certwatch) -> dict[str, Any]:
    outcome = certwatch("export", "--format", "json")
    assert outcome.exit_code == 0, outcome.output
    document: dict[str, Any] = json.loads(outcome.stdout)
    return document


def test_import_csv(certwatch: Certwatch, tmp_path: Path) -> None:
    outcome = certwatch("import", str(write(tmp_path, INVENTORY_CSV)))

    assert outcome.exit_code == 0, outcome.output
    assert "5 added, 0 updated" in outcome.stdout
    for team in ("default", "ops", "shop"):
        assert f"Warning: team {team!r} has no contact that receives alerts" in (
            outcome.stderr
        )
    document = exported(certwatch)
    endpoints = endpoints_by_target(document)
    assert set(endpoints) == {
        "www.example.test",
        "api.example.test:8443",
        "https://pinned.example.test/health",
        "[2001:db8::5]",
    }
    front = endpoints["www.example.test"]
    assert front["team"] == "shop"
    assert front["tags"] == ["prod", "web"]
    assert front["interval_seconds"] == 1800
    assert front["notes"] == "front page"
    assert front["reminders"] == "20,5"
    api = endpoints["api.example.test:8443"]
    assert api["host"] == "api.example.test"
    assert api["port"] == 8443
    assert api["notes"] == "rotated by hand,\nsee the runbook"
    pinned = endpoints["https://pinned.example.test/health"]
    assert pinned["address"] == "192.0.2.10"
    assert pinned["enabled"] is False
    sni = endpoints["[2001:db8::5]"]
    assert sni["host"] == "2001:db8::5"
    assert sni["server_name"] == "sni.example.test"
    assert sni["team"] == "default"
    assert sni["interval_seconds"] is None
    assert sni["reminders"] is None
    [file_source] = document["file_sources"]
    assert file_source["path"] == "/etc/ssl/certs/site.pem"
    assert file_source["team"] == "ops"


def test_import_lists_never_scanned_as_unknown(
    certwatch: Certwatch, tmp_path: Path
) -> None:
    certwatch("import", str(write(tmp_path, "host,port\nwww.example.test,443\n")))

    [source] = certwatch.json("list", "--status", "unknown")["sources"]

    assert source["target"] == "www.example.test"
    assert source["status"] is None
    assert source["scanned_at"] is None


def test_import_no_warning_for_team_with_contact(
    certwatch: Certwatch, tmp_path: Path
) -> None:
    certwatch("contact", "add", "default", "email:ops@example.test")

    outcome = certwatch("import", str(write(tmp_path, "host\nwww.example.test\n")))

    assert outcome.exit_code == 0, outcome.output
    assert "has no contact" not in outcome.stderr


def test_import_again_updates(certwatch: Certwatch, tmp_path: Path) -> None:
    path = write(tmp_path, INVENTORY_CSV)
    certwatch("import", str(path))

    outcome = certwatch("import", str(path))

    assert outcome.exit_code == 0, outcome.output
    assert "0 added, 5 updated" in outcome.stdout
    assert len(exported(certwatch)["endpoints"]) == 4


def test_import_errors_import_nothing(certwatch: Certwatch, tmp_path: Path) -> None:
    text = (
        "host,port,team,tags,interval,notes\n"  # line 1
        "good.example.test,443,shop,web,6h,fine\n"  # line 2
        "bad port.example.test,443,,,,\n"  # line 3
        "www.example.test,70000,,,,\n"  # line 4
        'notes.example.test,443,,,,"two\nlines"\n'  # lines 5 and 6
        "slow.example.test,443,,,6 hours,\n"  # line 7
        "\n"  # line 8, blank
        "good.example.test,443,,,,\n"  # line 9, same as line 2
    )
    path = write(tmp_path, text)

    outcome = certwatch("import", str(path))

    assert outcome.exit_code == 1
    errors = outcome.stderr
    assert f"{path}:3: Invalid" in errors
    assert "'bad port.example.test'" in errors
    assert f"{path}:4: Invalid port '70000': use 1 to 65535." in errors
    assert f"{path}:7: Invalid duration '6 hours'" in errors
    assert f"{path}:9: Same endpoint as line 2" in errors
    assert f"{path}:2:" not in errors
    assert f"{path}:5:" not in errors
    assert "4 rows are invalid" in errors
    assert "nothing was imported" in errors
    assert exported(certwatch)["endpoints"] == []


def test_import_unknown_column_warns(certwatch: Certwatch, tmp_path: Path) -> None:
    path = write(tmp_path, "host,owner,team\nwww.example.test,alice,shop\n")

    outcome = certwatch("import", str(path))

    assert outcome.exit_code == 0, outcome.output
    assert "Warning" in outcome.stderr
    assert "ignoring unknown column 'owner'" in outcome.stderr
    [endpoint] = exported(certwatch)["endpoints"]
    assert endpoint["team"] == "shop"


def test_import_bom_crlf_semicolons(certwatch: Certwatch, tmp_path: Path) -> None:
    text = '\ufeffHost;Port;Tags\r\nwww.example.test;8443;"web;prod"\r\n'
    path = write(tmp_path, text)

    outcome = certwatch("import", str(path))

    assert outcome.exit_code == 0, outcome.output
    [endpoint] = exported(certwatch)["endpoints"]
    assert endpoint["host"] == "www.example.test"
    assert endpoint["port"] == 8443
    assert endpoint["tags"] == ["prod", "web"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("", "The CSV file is empty", id="empty"),
        pytest.param(
            "owner,notes\nalice,x\n", "names none of the columns", id="no-key"
        ),
        pytest.param(
            "host,host\na.test,b.test\n", "names host more than once", id="dup"
        ),
    ],
)
def test_import_unusable_file(
    certwatch: Certwatch, tmp_path: Path, text: str, message: str
) -> None:
    outcome = certwatch("import", str(write(tmp_path, text)))

    assert outcome.exit_code == 1
    assert message in outcome.stderr


def test_export_import_empty_inventory(certwatch: Certwatch, tmp_path: Path) -> None:
    exported = certwatch("export")
    path = write(tmp_path, exported.stdout)

    imported = certwatch("import", str(path))

    assert exported.exit_code == 0, exported.output
    assert imported.exit_code == 0, imported.output
    assert "has a header but no rows: nothing to import" in imported.stderr
    assert f"Imported {path}: 0 added, 0 updated." in imported.stdout


def test_import_not_utf8(certwatch: Certwatch, tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("host,notes\nwww.example.test,caf\xe9\n".encode("latin-1"))

    outcome = certwatch("import", str(path))

    assert outcome.exit_code == 1
    assert "is not UTF-8 text" in outcome.stderr


def test_import_invalid_json(certwatch: Certwatch, tmp_path: Path) -> None:
    document = {"version": 1, "endpoints": [{"target": "x", "port": 0}]}
    path = write(tmp_path, json.dumps(document), name="inventory.json")

    outcome = certwatch("import", str(path))

    assert outcome.exit_code == 1
    assert f"{path}: endpoints[0]: Invalid port 0" in outcome.stderr
    assert "1 entry is invalid" in outcome.stderr
    assert "nothing was imported" in outcome.stderr


def add_team_settings(certwatch: Certwatch) -> None:
    """Give team ops alert settings and two contacts, one for escalation."""
    commands = [
        ("team", "add", "ops", "--reminders", "60,30", "--escalate-after", "4h"),
        ("contact", "add", "ops", "webhook:https://hooks.example.test/t0ken"),
        ("contact", "add", "ops", "email:oncall@example.test", "--escalation"),
    ]
    for command in commands:
        outcome = certwatch(*command)
        assert outcome.exit_code == 0, outcome.output


@pytest.mark.parametrize("output_format", ["csv", "json"])
def test_export_import_round_trip(
    certwatch: Certwatch,
    other_certwatch: Certwatch,
    tmp_path: Path,
    output_format: str,
) -> None:
    certwatch("import", str(write(tmp_path, INVENTORY_CSV)))
    add_team_settings(certwatch)
    before = exported(certwatch)
    outcome = certwatch("export", "--format", output_format)
    assert outcome.exit_code == 0, outcome.output
    path = write(tmp_path, outcome.stdout, name=f"export.{output_format}")

    imported = other_certwatch("import", str(path))

    assert imported.exit_code == 0, imported.output
    assert "5 added, 0 updated" in imported.stdout
    after = exported(other_certwatch)
    assert after["endpoints"] == before["endpoints"]
    assert after["file_sources"] == before["file_sources"]
    if output_format == "json":
        assert after["teams"] == before["teams"]
    else:
        # CSV carries endpoints and files only, and says so on stderr.
        assert "leaves out the alert settings and contacts" in outcome.stderr
        assert "'ops'" in outcome.stderr
        names = [team["name"] for team in after["teams"]]
        assert names == [team["name"] for team in before["teams"]]


def test_export_json_keeps_team_settings(
    certwatch: Certwatch, other_certwatch: Certwatch, tmp_path: Path
) -> None:
    add_team_settings(certwatch)
    path = write(tmp_path, certwatch("export", "--format", "json").stdout, "a.json")

    first = other_certwatch("import", str(path))
    second = other_certwatch("import", str(path))

    assert first.exit_code == 0, first.output
    assert second.exit_code == 0, second.output
    [ops] = [
        team for team in exported(other_certwatch)["teams"] if team["name"] == "ops"
    ]
    assert ops["reminders"] == "60,30"
    assert ops["escalate_after_seconds"] == 4 * 3600
    assert ops["contacts"] == [
        {
            "kind": "webhook",
            "address": "https://hooks.example.test/t0ken",
            "escalation": False,
        },
        {"kind": "email", "address": "oncall@example.test", "escalation": True},
    ]
    listed = other_certwatch.json("team", "list")["teams"]
    [summary] = [team for team in listed if team["name"] == "ops"]
    assert summary["contact_count"] == 2
    assert summary["reminder_schedule"] == "60,30"


def test_default_interval_follows_environment(
    certwatch: Certwatch, tmp_path: Path
) -> None:
    certwatch("import", str(write(tmp_path, "host\nwww.example.test\n")))

    two_hours = {"CERTWATCH_DEFAULT_INTERVAL": "2h"}
    [source] = certwatch.json("list")["sources"]
    [changed] = json.loads(certwatch("list", "--json", env=two_hours).stdout)["sources"]
    table = certwatch("list", env=two_hours).stdout
    exported_csv = certwatch("export").stdout

    assert source["interval_seconds"] == 6 * 3600
    assert source["interval_default"] is True
    assert changed["interval_seconds"] == 2 * 3600
    assert "default (2h)" in table
    assert "www.example.test,www.example.test,443,https,,,,default,,,true,," in (
        exported_csv.splitlines()
    )


def test_export_csv_columns(certwatch: Certwatch, tmp_path: Path) -> None:
    certwatch("import", str(write(tmp_path, INVENTORY_CSV)))

    outcome = certwatch("export")

    lines = outcome.stdout.splitlines()
    assert lines[0] == (
        "target,host,port,protocol,server_name,address,path,team,tags,interval,"
        "enabled,notes,reminders"
    )
    assert (
        "www.example.test,www.example.test,443,https,,,,shop,prod;web,30m,true,"
        'front page,"20,5"' in lines
    )
    assert ",,,,,,/etc/ssl/certs/site.pem,ops,disk,12h,true,,7" in lines


def _json_export_with(**endpoint: Any) -> str:
    entry = {
        "target": "www.example.test",
        "protocol": "https",
        "host": "www.example.test",
        "port": 443,
        "server_name": "www.example.test",
        "address": None,
        "team": "default",
        "tags": [],
        "interval_seconds": 3600,
        "enabled": True,
        "notes": "",
        **endpoint,
    }
    return json.dumps({"version": 1, "endpoints": [entry]})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        pytest.param({"host": "a..b.test"}, "Invalid endpoint host", id="bad-host"),
        pytest.param({"host": "WWW.EXAMPLE.TEST"}, "write it as", id="upper-case"),
        pytest.param({"protocol": "gopher"}, "Invalid protocol", id="protocol"),
        pytest.param({"address": "not-an-ip"}, "Invalid address", id="address"),
        pytest.param({"notes": "a\u0000b"}, "NUL byte", id="nul"),
        pytest.param(
            {"interval_seconds": 99999999999}, "interval_seconds", id="interval"
        ),
    ],
)
def test_import_json_checks_entries(
    certwatch: Certwatch, tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    document = tmp_path / "inventory.json"
    document.write_text(_json_export_with(**changes))

    outcome = certwatch("import", str(document))

    assert outcome.exit_code != 0
    assert message in outcome.output
    assert "Traceback" not in outcome.output
    assert certwatch("list", "--json").exit_code == 0
    listed = json.loads(certwatch("list", "--json").stdout)["sources"]
    assert listed == []


@pytest.mark.parametrize(
    ("row", "message"),
    [
        pytest.param("nul.example.test,a\x00b", "NUL byte", id="nul"),
        pytest.param(
            'big.example.test,"' + "x" * 200_000 + '"', "unreadable row", id="huge-cell"
        ),
    ],
)
def test_import_csv_odd_cells_listed(
    certwatch: Certwatch, tmp_path: Path, row: str, message: str
) -> None:
    path = write(tmp_path, f"host,notes\nok.example.test,fine\n{row}\n")

    outcome = certwatch("import", str(path))

    assert outcome.exit_code != 0
    assert f"{path}:3: " in outcome.stderr
    assert message in outcome.stderr
    assert "Traceback" not in outcome.output


def test_export_csv_guards_formulas_and_round_trips(
    certwatch: Certwatch, other_certwatch: Certwatch, tmp_path: Path
) -> None:
    notes = [
        '=HYPERLINK("http://evil.example","x")',
        "=kept",
        "'two",
        "'plain",
        "line\rnext",
    ]
    document = json.loads(_json_export_with(team="=cmd", tags=["+x", "-y", "@z"]))
    template = document["endpoints"][0]
    document["endpoints"] = [
        {
            **template,
            "target": f"=n{i}.example.test" if i == 0 else f"n{i}.example.test",
            "host": f"n{i}.example.test",
            "server_name": f"n{i}.example.test",
            "notes": note,
        }
        for i, note in enumerate(notes)
    ]
    source = tmp_path / "inventory.json"
    source.write_text(json.dumps(document))
    assert certwatch("import", str(source)).exit_code == 0

    exported = certwatch("export", "--format", "csv").stdout

    assert ",=cmd," not in exported
    assert ",'=cmd,'+x;-y;@z," in exported
    assert "\n=n0" not in exported
    assert "\n'=n0.example.test," in exported
    again = write(tmp_path, exported, name="again.csv")
    assert other_certwatch("import", str(again)).exit_code == 0
    assert other_certwatch("export", "--format", "csv").stdout == exported
    rebuilt = json.loads(other_certwatch("export", "--format", "json").stdout)
    assert sorted(entry["notes"] for entry in rebuilt["endpoints"]) == sorted(notes)
    assert {entry["team"] for entry in rebuilt["endpoints"]} == {"=cmd"}


def test_import_keeps_protocol_column(certwatch: Certwatch, tmp_path: Path) -> None:
    text = (
        "host,port,protocol,target\n"
        "mail.example.test,,smtp,\n"
        "imap.example.test,1143,imap,\n"
        ",,submission,relay.example.test\n"
    )
    imported = certwatch("import", str(write(tmp_path, text)))
    exported = certwatch("export", "--format", "json")

    assert imported.exit_code == 0, imported.output
    endpoints = {e["host"]: e for e in json.loads(exported.stdout)["endpoints"]}
    assert endpoints["mail.example.test"]["protocol"] == "smtp"
    assert endpoints["mail.example.test"]["port"] == 25
    assert endpoints["mail.example.test"]["target"] == "smtp://mail.example.test"
    assert endpoints["imap.example.test"]["protocol"] == "imap"
    assert endpoints["imap.example.test"]["port"] == 1143
    assert endpoints["relay.example.test"]["protocol"] == "submission"
    assert endpoints["relay.example.test"]["port"] == 587


def test_import_rejects_protocol_disagreeing_with_target(
    certwatch: Certwatch, tmp_path: Path
) -> None:
    text = "target,protocol\nsmtp://mail.example.test,imap\n"

    outcome = certwatch("import", str(write(tmp_path, text)))

    assert outcome.exit_code == 1
    assert "Protocol 'imap' disagrees with target 'smtp://mail.example.test'" in (
        outcome.stderr
    )
