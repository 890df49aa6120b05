"""`certwatch add --protocol` and what `list` shows once STARTTLS goes away.

The endpoints are local STARTTLS servers from `tests.dialogue_servers`. A
server's behaviour is switched between two `add` runs, so the same endpoint
first upgrades to TLS and then stops offering the upgrade.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
from tests.commands.conftest import INTERMEDIATE, ROOT, Certwatch, fresh_leaf
from tests.dialogue_servers import Behaviour, DialogueOptions, DialogueServer
from tests.servers import Chain

from certwatch.result import Status


@pytest.fixture
def roots(tmp_path: Path) -> Path:
    path = tmp_path / "root.pem"
    path.write_bytes(ROOT.pem)
    return path


def smtp_server(behaviour: Behaviour = Behaviour.OFFER) -> DialogueServer:
    """An SMTP server for a leaf valid for 127.0.0.1, 60 days left."""
    leaf = fresh_leaf("www.example.test", ip_addresses=("127.0.0.1",))
    chain = Chain.from_pems(leaf.key_pem(), leaf.pem, INTERMEDIATE.pem)
    return DialogueServer(DialogueOptions("smtp", chain, behaviour=behaviour))


def add(certwatch: Certwatch, roots: Path, *args: str) -> Any:
    return certwatch("add", "--ca-file", str(roots), "--only-ca-file", *args)


def listed(certwatch: Certwatch) -> dict[str, Any]:
    [source] = certwatch.json("list")["sources"]
    assert isinstance(source, dict)
    return source


def test_add_protocol_smtp_stored(certwatch: Certwatch, roots: Path) -> None:
    with smtp_server() as server:
        target = f"127.0.0.1:{server.port}"
        outcome = add(certwatch, roots, "--protocol", "smtp", target)

    assert outcome.exit_code == Status.OK.exit_code, outcome.output
    assert "starttls" not in outcome.stdout
    source = listed(certwatch)
    assert source["protocol"] == "smtp"
    assert source["target"] == target
    assert source["port"] == server.port
    assert source["days_left"] == 60
    assert source["reasons"] == []
    assert server.received[0].startswith(b"EHLO ")


def test_add_protocol_auto_reads_port(certwatch: Certwatch, roots: Path) -> None:
    # Port 465 is SMTPS. Whether anything listens there does not matter,
    # because only the stored protocol is checked.
    outcome = add(certwatch, roots, "--protocol", "auto", "127.0.0.1:465")

    assert "1 added, 0 updated" in outcome.stderr, outcome.output
    source = listed(certwatch)
    assert source["protocol"] == "smtps"
    assert source["target"] == "127.0.0.1:465"


def test_add_protocol_unknown_rejected(certwatch: Certwatch) -> None:
    outcome = certwatch("add", "--protocol", "gopher", "127.0.0.1:25")

    assert outcome.exit_code == 2
    assert "'gopher' is not one of 'auto', 'ftp'" in outcome.stderr
    assert certwatch.json("list")["sources"] == []


def test_add_url_keeps_its_scheme(certwatch: Certwatch, roots: Path) -> None:
    with smtp_server() as server:
        outcome = add(
            certwatch, roots, "--protocol", "imap", f"smtp://127.0.0.1:{server.port}"
        )

    assert outcome.exit_code == Status.OK.exit_code, outcome.output
    assert listed(certwatch)["protocol"] == "smtp"


@pytest.mark.parametrize(
    ("behaviour", "reason"),
    [
        (Behaviour.NOT_OFFERED, "starttls_not_offered"),
        (Behaviour.REFUSED, "starttls_refused"),
    ],
)
def test_list_starttls_gone_has_no_expiry(
    certwatch: Certwatch, roots: Path, behaviour: Behaviour, reason: str
) -> None:
    with smtp_server() as server:
        target = f"smtp://127.0.0.1:{server.port}"
        first = add(certwatch, roots, target)
        server.options = dataclasses.replace(server.options, behaviour=behaviour)
        second = add(certwatch, roots, target)
    table = certwatch("list")

    assert first.exit_code == Status.OK.exit_code, first.output
    assert second.exit_code != Status.OK.exit_code, second.output
    source = listed(certwatch)
    assert source["status"] in ("critical", "unknown")
    assert source["not_after"] is None
    assert source["days_left"] is None
    assert source["not_after_last_seen"] is False
    assert source["reasons"] == [reason]
    row = next(line for line in table.stdout.splitlines() if target in line)
    before_target = row.split(target)[0]
    assert reason in before_target
    assert not re.search(r"\d{4}-\d\d-\d\d", before_target), row


def test_list_outage_marks_last_seen_expiry(certwatch: Certwatch, roots: Path) -> None:
    with smtp_server() as server:
        target = f"smtp://127.0.0.1:{server.port}"
        first = add(certwatch, roots, target)
    # The server is gone, so the next probe is refused.
    second = add(certwatch, roots, target)
    table = certwatch("list")

    assert first.exit_code == Status.OK.exit_code, first.output
    assert second.exit_code == Status.UNKNOWN.exit_code, second.output
    source = listed(certwatch)
    assert source["status"] == "unknown"
    assert source["days_left"] == 60
    assert source["not_after_last_seen"] is True
    assert source["reasons"] == ["connection_refused"]
    row = next(line for line in table.stdout.splitlines() if target in line)
    assert "connection_refused" in row
    assert "(last seen)" in row


@pytest.mark.parametrize("protocol", ["auto", "gopher"])
def test_import_csv_rejects_protocol(
    certwatch: Certwatch, tmp_path: Path, protocol: str
) -> None:
    spreadsheet = tmp_path / "hosts.csv"
    spreadsheet.write_text(f"host,port,protocol\nmail.example.test,25,{protocol}\n")

    outcome = certwatch("import", str(spreadsheet))

    assert outcome.exit_code != 0
    assert f"Unsupported protocol {protocol!r}: use one of ftp, ftps" in (
        outcome.output
    )
    assert certwatch.json("list")["sources"] == []


def test_import_csv_accepts_protocol_names(
    certwatch: Certwatch, tmp_path: Path
) -> None:
    spreadsheet = tmp_path / "hosts.csv"
    spreadsheet.write_text(
        "host,port,protocol\nmail.example.test,,SMTP\nldap.example.test,1389,ldap\n"
    )

    outcome = certwatch("import", str(spreadsheet))

    assert outcome.exit_code == 0, outcome.output
    sources = {s["host"]: s for s in certwatch.json("list")["sources"]}
    assert sources["mail.example.test"]["protocol"] == "smtp"
    assert sources["mail.example.test"]["port"] == 25
    assert sources["ldap.example.test"]["protocol"] == "ldap"
    assert sources["ldap.example.test"]["port"] == 1389
