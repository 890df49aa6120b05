"""`certwatch history` after the certificate at a server changed."""

from __future__ import annotations

from pathlib import Path

from tests.commands.conftest import (
    Certwatch,
    StartServer,
    fresh_leaf,
    serve,
    target,
)
from tests.servers import LocalServer

from certwatch.store.stale import STALE_DEPLOYMENT


def renew(
    local_server: StartServer, server: LocalServer, *names: str, days_left: int
) -> LocalServer:
    """Stop `server` and serve a new leaf on the same port."""
    server.close()
    return serve(
        local_server, fresh_leaf(*names, days_left=days_left), port=server.port
    )


def test_history_after_renewal(certwatch: Certwatch, local_server: StartServer) -> None:
    old = fresh_leaf("www.example.test", days_left=10)
    new = fresh_leaf("www.example.test", "api.example.test", days_left=90)
    server = serve(local_server, old)
    certwatch("add", target(server))
    server.close()
    server = serve(local_server, new, port=server.port)

    certwatch("add", target(server))
    document = certwatch.json("history", target(server))

    [source] = document["sources"]
    assert source["kind"] == "endpoint"
    assert source["target"] == target(server)
    served = source["served"]
    assert [item["sha256"] for item in served] == [old.sha256, new.sha256]
    assert [item["current"] for item in served] == [False, True]
    assert {item["address"] for item in served} == {"127.0.0.1"}
    assert served[0]["first_seen_at"] <= served[0]["last_seen_at"]
    assert served[0]["last_seen_at"] <= served[1]["first_seen_at"]
    [change] = source["changes"]
    assert change["address"] == "127.0.0.1"
    assert change["old_sha256"] == old.sha256
    assert change["new_sha256"] == new.sha256
    assert change["names_added"] == ["api.example.test"]
    assert change["names_removed"] == []
    assert change["key_reused"] is False
    assert change["old_not_after"] < change["new_not_after"]


def test_history_table(certwatch: Certwatch, local_server: StartServer) -> None:
    old = fresh_leaf("www.example.test", days_left=10)
    new = fresh_leaf("www.example.test", "api.example.test", days_left=90)
    server = serve(local_server, old)
    certwatch("add", target(server))
    server.close()
    server = serve(local_server, new, port=server.port)
    certwatch("add", target(server))

    outcome = certwatch("history", target(server))

    assert outcome.exit_code == 0, outcome.output
    text = outcome.stdout
    assert old.sha256[:16] in text
    assert "(now)" in text
    assert "1 change:" in text
    assert f"{old.sha256[:16]} -> {new.sha256[:16]}" in text
    assert "names added: api.example.test" in text
    assert "new key" in text


def test_history_unchanged_has_no_change(
    certwatch: Certwatch, local_server: StartServer
) -> None:
    server = serve(local_server, fresh_leaf())
    certwatch("add", target(server))
    certwatch("add", target(server))

    [source] = certwatch.json("history", target(server))["sources"]

    assert len(source["served"]) == 1
    assert source["changes"] == []


def test_where_old_certificate_after_renewal(
    certwatch: Certwatch, local_server: StartServer
) -> None:
    old = fresh_leaf("www.example.test", days_left=10)
    server = serve(local_server, old)
    certwatch("add", target(server))
    renew(local_server, server, "www.example.test", days_left=90)
    certwatch("add", target(server))

    outcome = certwatch("where", old.sha256)

    assert outcome.exit_code == 1
    assert "is deployed now; one was last seen" in outcome.stderr
    assert f"{target(server)} (127.0.0.1)" in outcome.stderr


def test_stale_deployment_clears_after_renewal(
    certwatch: Certwatch, local_server: StartServer
) -> None:
    new = fresh_leaf("www.example.test", days_left=90)
    behind = serve(local_server, fresh_leaf("www.example.test", days_left=10))
    renewed = serve(local_server, new)
    certwatch("add", target(behind), target(renewed))
    stale_before = [
        item["findings"] for item in certwatch.json("certificates")["certificates"]
    ]

    behind.close()
    serve(local_server, new, port=behind.port)
    certwatch("add", target(behind))
    stale_after = [
        item["findings"] for item in certwatch.json("certificates")["certificates"]
    ]

    assert [f["code"] for found in stale_before for f in found] == [STALE_DEPLOYMENT]
    assert [f for found in stale_after for f in found] == []


def test_history_file_source(certwatch: Certwatch, tmp_path: Path) -> None:
    old = fresh_leaf("disk.example.test", days_left=10)
    new = fresh_leaf("disk.example.test", days_left=90)
    path = tmp_path / "disk.pem"
    path.write_bytes(old.pem)
    certwatch("add", str(path))
    path.write_bytes(new.pem)
    certwatch("add", str(path))

    [source] = certwatch.json("history", str(path))["sources"]

    assert source["kind"] == "file"
    assert [item["sha256"] for item in source["served"]] == [old.sha256, new.sha256]
    assert {item["path"] for item in source["served"]} == {str(path)}
    [change] = source["changes"]
    assert change["path"] == str(path)
    assert change["new_sha256"] == new.sha256


def test_history_not_in_inventory(certwatch: Certwatch) -> None:
    outcome = certwatch("history", "nowhere.example.test")

    assert outcome.exit_code == 1
    assert "'nowhere.example.test' is not in the inventory" in outcome.stderr
    assert "on another port" not in outcome.stderr


def test_history_without_port_names_other_ports(
    certwatch: Certwatch, tmp_path: Path
) -> None:
    path = tmp_path / "inventory.csv"
    path.write_text("host,port\nwww.example.test,8443\n")
    certwatch("import", str(path))

    outcome = certwatch("history", "www.example.test")

    assert outcome.exit_code == 1
    assert "The inventory has 'www.example.test:8443' on another port" in (
        outcome.stderr
    )


def test_history_never_scanned(certwatch: Certwatch, tmp_path: Path) -> None:
    path = tmp_path / "inventory.csv"
    path.write_text("host\nwww.example.test\n")
    certwatch("import", str(path))

    outcome = certwatch("history", "www.example.test")

    assert outcome.exit_code == 0, outcome.output
    assert "No certificate seen yet." in outcome.stdout
