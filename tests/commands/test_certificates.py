"""`certwatch certificates` and `certwatch where` after `certwatch add`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.commands.conftest import (
    INTERMEDIATE,
    Certwatch,
    StartServer,
    fresh_leaf,
    serve,
    target,
)


def by_sha256(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["sha256"]: item for item in document["certificates"]}


def colon_hex(sha256: str) -> str:
    """Write a fingerprint as `AB:CD:...`, as browsers and OpenSSL show it."""
    return ":".join(sha256[i : i + 2] for i in range(0, len(sha256), 2)).upper()


def test_certificates_lists_places_and_stale(
    certwatch: Certwatch, local_server: StartServer
) -> None:
    old = fresh_leaf("www.example.test", days_left=20)
    new = fresh_leaf("www.example.test", days_left=80)
    behind = serve(local_server, old)
    renewed = serve(local_server, new)
    certwatch("add", target(behind), target(renewed))

    document = certwatch.json("certificates")

    # Leaves only: the intermediate that both servers send is not listed.
    assert [item["sha256"] for item in document["certificates"]] == [
        old.sha256,
        new.sha256,
    ]
    listed = by_sha256(document)
    [old_place] = listed[old.sha256]["deployments"]
    assert old_place["kind"] == "endpoint"
    assert old_place["target"] == target(behind)
    assert old_place["address"] == "127.0.0.1"
    assert old_place["position"] == 0
    assert old_place["stale"] is True
    [finding] = listed[old.sha256]["findings"]
    assert finding["code"] == "stale_deployment"
    assert finding["message"].startswith(
        "1 of 2 addresses still serves the certificate that expires on "
    )
    assert listed[old.sha256]["days_left"] == 20
    assert listed[old.sha256]["dns_names"] == ["www.example.test"]
    [new_place] = listed[new.sha256]["deployments"]
    assert new_place["stale"] is False
    assert listed[new.sha256]["findings"] == []
    assert INTERMEDIATE.sha256 not in listed


def test_certificates_table(
    certwatch: Certwatch, local_server: StartServer, tmp_path: Path
) -> None:
    old = fresh_leaf("www.example.test", days_left=20)
    new = fresh_leaf("www.example.test", days_left=80)
    behind = serve(local_server, old)
    renewed = serve(local_server, new)
    path = tmp_path / "disk.pem"
    path.write_bytes(fresh_leaf("disk.example.test", days_left=5).pem)
    certwatch("add", target(behind), target(renewed), str(path))

    outcome = certwatch("certificates")

    assert outcome.exit_code == 0, outcome.output
    lines = outcome.stdout
    assert "disk.example.test" in lines
    assert f"{target(behind)} (127.0.0.1) stale" in lines
    assert f"{old.sha256[:16]} warning stale_deployment: 1 of 2 addresses" in lines
    assert "3 certificates." in lines


def test_certificates_empty_inventory(certwatch: Certwatch) -> None:
    assert certwatch.json("certificates")["certificates"] == []


def test_where_by_name(certwatch: Certwatch, local_server: StartServer) -> None:
    old = fresh_leaf("www.example.test", days_left=20)
    new = fresh_leaf("www.example.test", "api.example.test", days_left=80)
    other = fresh_leaf("other.example.test")
    behind = serve(local_server, old)
    renewed = serve(local_server, new)
    unrelated = serve(local_server, other)
    certwatch("add", target(behind), target(renewed), target(unrelated))

    document = certwatch.json("where", "WWW.example.test.")

    listed = by_sha256(document)
    assert list(listed) == [old.sha256, new.sha256]
    assert listed[old.sha256]["deployments"][0]["target"] == target(behind)
    assert listed[old.sha256]["deployments"][0]["stale"] is True
    assert listed[new.sha256]["deployments"][0]["target"] == target(renewed)
    assert document["query"] == "WWW.example.test."


def test_where_by_wildcard_san(certwatch: Certwatch, local_server: StartServer) -> None:
    wildcard = fresh_leaf("*.wild.example.test")
    server = serve(local_server, wildcard)
    certwatch("add", target(server))

    covered = certwatch("where", "--json", "api.wild.example.test")
    apex = certwatch("where", "wild.example.test")
    deeper = certwatch("where", "a.b.wild.example.test")

    assert covered.exit_code == 0, covered.output
    assert '"sha256": "' + wildcard.sha256 in covered.stdout
    assert apex.exit_code == 1
    assert "No certificate for 'wild.example.test' was ever seen" in apex.stderr
    assert deeper.exit_code == 1


def test_where_by_fingerprint(certwatch: Certwatch, local_server: StartServer) -> None:
    first = fresh_leaf("www.example.test")
    second = fresh_leaf("www.example.test")
    server_one = serve(local_server, first)
    server_two = serve(local_server, second)
    certwatch("add", target(server_one), target(server_two))

    full = certwatch.json("where", colon_hex(first.sha256))
    prefix = certwatch.json("where", first.sha256[:8].upper())
    colon_prefix = certwatch.json("where", colon_hex(second.sha256)[:14])

    assert list(by_sha256(full)) == [first.sha256]
    assert list(by_sha256(prefix)) == [first.sha256]
    assert list(by_sha256(colon_prefix)) == [second.sha256]
    place = by_sha256(prefix)[first.sha256]["deployments"][0]
    assert place["target"] == target(server_one)


def test_where_intermediate_fingerprint(
    certwatch: Certwatch, local_server: StartServer
) -> None:
    server = serve(local_server, fresh_leaf())
    certwatch("add", target(server))

    document = certwatch.json("where", INTERMEDIATE.sha256)

    [place] = by_sha256(document)[INTERMEDIATE.sha256]["deployments"]
    assert place["position"] == 1
    assert place["target"] == target(server)


def test_where_nothing_matches(certwatch: Certwatch) -> None:
    by_name = certwatch("where", "nowhere.example.test")
    by_prefix = certwatch("where", "AB:CD:EF:01:23")
    too_short = certwatch("where", "AB:CD")
    too_long = certwatch("where", "ab" * 33)
    address = certwatch("where", "::1")

    assert by_name.exit_code == 1
    assert "No certificate for 'nowhere.example.test' was ever seen" in by_name.stderr
    assert by_prefix.exit_code == 1
    assert "No stored certificate has a fingerprint starting with" in by_prefix.stderr
    assert too_short.exit_code == 1
    assert "Fingerprint 'AB:CD' is too short" in too_short.stderr
    assert too_long.exit_code == 1
    assert "has 66 hex digits" in too_long.stderr
    assert address.exit_code == 1
    assert "No certificate for '::1' was ever seen" in address.stderr


def test_where_file_source(certwatch: Certwatch, tmp_path: Path) -> None:
    leaf = fresh_leaf("disk.example.test")
    path = tmp_path / "disk.pem"
    path.write_bytes(leaf.pem + INTERMEDIATE.pem)
    certwatch("add", str(path))

    outcome = certwatch("where", "disk.example.test")
    document = certwatch.json("where", "disk.example.test")

    assert outcome.exit_code == 0, outcome.output
    assert str(path) in outcome.stdout.replace("\n", "")
    [place] = by_sha256(document)[leaf.sha256]["deployments"]
    assert place["kind"] == "file"
    assert place["path"] == str(path)


def test_certificates_table_one_name_per_line(
    certwatch: Certwatch, tmp_path: Path
) -> None:
    path = tmp_path / "site.pem"
    path.write_bytes(fresh_leaf("www.example.test", "example.test").pem)
    certwatch("add", str(path))

    outcome = certwatch("certificates")

    assert outcome.exit_code == 0, outcome.output
    assert "\\n" not in outcome.stdout
    assert "www.example.test" in outcome.stdout
    assert "example.test" in outcome.stdout.replace("www.example.test", "")


def test_certificates_limit_and_expiring(
    certwatch: Certwatch, local_server: StartServer
) -> None:
    leaves = [
        fresh_leaf(f"s{days}.example.test", days_left=days) for days in (5, 40, 90)
    ]
    certwatch("add", *(target(serve(local_server, leaf)) for leaf in leaves))

    first = certwatch.json("certificates", "--limit", "2")
    paged = certwatch("certificates", "--limit", "2", "--json")
    everything = certwatch.json("certificates", "--limit", "0")
    whole = certwatch("certificates", "--limit", "0", "--json")
    soon = certwatch.json("certificates", "--expiring", "30")
    table = certwatch("certificates", "--limit", "1")

    assert [c["sha256"] for c in first["certificates"]] == [
        leaves[0].sha256,
        leaves[1].sha256,
    ]
    assert first["truncated"] is True
    assert "listed the first 2 matching certificates" in paged.stderr
    assert whole.stderr == ""
    assert first["limit"] == 2
    assert len(everything["certificates"]) == 3
    assert everything["truncated"] is False
    assert everything["limit"] is None
    assert [c["sha256"] for c in soon["certificates"]] == [leaves[0].sha256]
    assert table.exit_code == 0, table.output
    assert "1 certificates shown, soonest expiry first; more match" in table.stdout


def test_where_empty_name(certwatch: Certwatch) -> None:
    outcome = certwatch("where", " ")

    assert outcome.exit_code == 2
    assert "Empty name: give a DNS name, an IP address or a SHA-256" in outcome.stderr
