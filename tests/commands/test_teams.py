"""Commands on an inventory where two teams watch the same endpoint.

Only an import can give two teams the same endpoint on the command line:
`certwatch add --team` moves an endpoint that one other team watches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.commands.conftest import (
    Certwatch,
    StartServer,
    fresh_leaf,
    serve,
    target,
)


def import_rows(certwatch: Certwatch, tmp_path: Path, *rows: str) -> None:
    path = tmp_path / "teams.csv"
    path.write_text("target,team,tags\n" + "".join(f"{row}\n" for row in rows))
    outcome = certwatch("import", str(path))
    assert outcome.exit_code == 0, outcome.output


def sources(certwatch: Certwatch) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = certwatch.json("list")["sources"]
    return sorted(listed, key=lambda source: source["team"])


def test_import_same_endpoint_two_teams(certwatch: Certwatch, tmp_path: Path) -> None:
    import_rows(
        certwatch,
        tmp_path,
        "www.example.test,alpha,web",
        "https://www.example.test/,beta,shop",
    )

    listed = sources(certwatch)

    assert [(s["team"], s["target"], s["tags"]) for s in listed] == [
        ("alpha", "www.example.test", ["web"]),
        ("beta", "https://www.example.test/", ["shop"]),
    ]
    assert listed[0]["id"] != listed[1]["id"]


def test_export_import_keeps_both_teams(
    certwatch: Certwatch, other_certwatch: Certwatch, tmp_path: Path
) -> None:
    import_rows(
        certwatch, tmp_path, "www.example.test,alpha,web", "www.example.test,beta,"
    )
    for output_format in ("csv", "json"):
        exported = certwatch("export", "--format", output_format)
        assert exported.exit_code == 0, exported.output
        path = tmp_path / f"export.{output_format}"
        path.write_text(exported.stdout)

        imported = other_certwatch("import", str(path))

        assert imported.exit_code == 0, imported.output
        rebuilt = [
            (s["team"], s["target"], s["tags"]) for s in sources(other_certwatch)
        ]
        assert rebuilt == [
            ("alpha", "www.example.test", ["web"]),
            ("beta", "www.example.test", []),
        ], output_format


def test_import_clashing_rows_of_one_endpoint(
    certwatch: Certwatch, tmp_path: Path
) -> None:
    path = tmp_path / "clash.csv"
    path.write_text(
        "target,team\n"
        "www.example.test,alpha\n"  # line 2
        "www.example.test,beta\n"  # line 3: another team's endpoint
        "www.example.test,\n"  # line 4: updates whichever exists
        "www.example.test,alpha\n"  # line 5: alpha again
    )

    outcome = certwatch("import", str(path))

    assert outcome.exit_code == 1
    assert f"{path}:3:" not in outcome.stderr
    assert f"{path}:4: Same endpoint as line 2" in outcome.stderr
    assert f"{path}:5: Same endpoint as line 2" in outcome.stderr


# A closed port on loopback: `add` probes it and is refused at once.
CLOSED = "127.0.0.1:1"


def test_add_without_team_names_the_teams(certwatch: Certwatch, tmp_path: Path) -> None:
    import_rows(certwatch, tmp_path, f"{CLOSED},alpha,", f"{CLOSED},beta,")

    outcome = certwatch("add", CLOSED, "--tag", "new")
    moved = certwatch("add", CLOSED, "--team", "gamma")

    assert outcome.exit_code == 2
    assert (
        f"Endpoint '{CLOSED}' is watched by several teams ('alpha', 'beta')"
        in outcome.stderr
    )
    assert "Give the team with --team." in outcome.stderr
    assert moved.exit_code == 2
    assert "but not by 'gamma'" in moved.stderr
    assert [(s["team"], s["tags"]) for s in sources(certwatch)] == [
        ("alpha", []),
        ("beta", []),
    ]


def test_add_with_team_changes_that_team(certwatch: Certwatch, tmp_path: Path) -> None:
    import_rows(certwatch, tmp_path, f"{CLOSED},alpha,", f"{CLOSED},beta,")

    outcome = certwatch("add", CLOSED, "--team", "beta", "--tag", "shop")

    assert "0 added, 1 updated" in outcome.stderr, outcome.output
    assert [(s["team"], s["tags"]) for s in sources(certwatch)] == [
        ("alpha", []),
        ("beta", ["shop"]),
    ]


def test_remove_with_several_teams(certwatch: Certwatch, tmp_path: Path) -> None:
    import_rows(
        certwatch, tmp_path, "www.example.test,alpha,", "www.example.test,beta,"
    )

    refused = certwatch("remove", "www.example.test")
    removed = certwatch("remove", "www.example.test", "--team", "beta")

    assert refused.exit_code == 2
    assert "watched by several teams ('alpha', 'beta')" in refused.stderr
    assert "nothing was removed: give the team with --team" in refused.stderr
    assert removed.exit_code == 0, removed.output
    assert [s["team"] for s in sources(certwatch)] == ["alpha"]


def test_history_names_the_teams(certwatch: Certwatch, tmp_path: Path) -> None:
    import_rows(
        certwatch, tmp_path, "www.example.test,alpha,", "www.example.test,beta,"
    )

    document = certwatch.json("history", "www.example.test")

    assert [source["target"] for source in document["sources"]] == [
        "www.example.test (team alpha)",
        "www.example.test (team beta)",
    ]


def test_certificates_stale_per_team(
    certwatch: Certwatch, local_server: StartServer, tmp_path: Path
) -> None:
    old = fresh_leaf("www.example.test", days_left=20)
    new = fresh_leaf("www.example.test", days_left=80)
    behind = serve(local_server, old)
    renewed = serve(local_server, new)
    import_rows(
        certwatch,
        tmp_path,
        f"{target(behind)},alpha,",
        f"{target(renewed)},alpha,",
        f"{target(behind)},beta,",
    )
    scanned = certwatch("scan", "--all")
    assert scanned.exit_code in (0, 2), scanned.output

    document = certwatch.json("certificates")
    table = certwatch("certificates")

    [listed] = [c for c in document["certificates"] if c["sha256"] == old.sha256]
    stale = {d["endpoint_id"]: d["stale"] for d in listed["deployments"]}
    teams = {s["id"]: s["team"] for s in sources(certwatch)}
    assert sorted((teams[i], flag) for i, flag in stale.items()) == [
        ("alpha", True),
        ("beta", False),
    ]
    [finding] = listed["findings"]
    # Beta's address also serves the old certificate, but only alpha's
    # addresses are compared with alpha's renewal.
    assert finding["message"].startswith(
        "1 of 2 addresses still serves the certificate that expires on "
    )
    assert "Team 'alpha'" not in table.stdout


def test_certificates_stale_in_two_teams(
    certwatch: Certwatch, local_server: StartServer, tmp_path: Path
) -> None:
    old = fresh_leaf("www.example.test", days_left=20)
    new = fresh_leaf("www.example.test", days_left=80)
    behind = serve(local_server, old)
    renewed = serve(local_server, new)
    import_rows(
        certwatch,
        tmp_path,
        *(
            f"{target(server)},{team},"
            for team in ("alpha", "beta")
            for server in (behind, renewed)
        ),
    )
    certwatch("scan", "--all")

    document = certwatch.json("certificates")

    [listed] = [c for c in document["certificates"] if c["sha256"] == old.sha256]
    assert all(d["stale"] for d in listed["deployments"])
    messages = sorted(f["message"] for f in listed["findings"])
    assert len(messages) == 2
    assert messages[0].startswith("Team 'alpha': 1 of 2 addresses still serves ")
    assert messages[1].startswith("Team 'beta': 1 of 2 addresses still serves ")
