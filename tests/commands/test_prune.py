"""`certwatch prune`: compaction leaves `history` and `where` as they were."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session
from tests.commands.conftest import Certwatch, StartServer, fresh_leaf, serve, target
from tests.servers import LocalServer

from certwatch.store.database import create_store_engine
from certwatch.store.retention import compact_history


def scan_times(certwatch: Certwatch, server: LocalServer, times: int) -> None:
    for _ in range(times):
        outcome = certwatch("scan", target(server))
        assert outcome.exit_code == 0, outcome.output


def without_time(document: dict[str, Any]) -> dict[str, Any]:
    """Drop the time of the listing, which changes between two runs."""
    return {key: value for key, value in document.items() if key != "listed_at"}


def alternate(certwatch: Certwatch, local_server: StartServer) -> LocalServer:
    """Serve one leaf for 3 scans, a renewal for 3, then the first again for 3."""
    first = fresh_leaf("www.example.test", days_left=20)
    renewed = fresh_leaf("www.example.test", days_left=80)
    server = serve(local_server, first)
    certwatch("add", target(server))
    scan_times(certwatch, server, 2)
    for leaf in (renewed, first):
        server.close()
        server = serve(local_server, leaf, port=server.port)
        scan_times(certwatch, server, 3)
    return server


def test_prune_keeps_history_and_where(
    certwatch: Certwatch, local_server: StartServer
) -> None:
    server = alternate(certwatch, local_server)
    # The shortest retention age is one second.
    time.sleep(1.1)
    history = certwatch.json("history", target(server))
    where = without_time(certwatch.json("where", "www.example.test"))

    dry_run = certwatch("prune", "--older-than", "1s", "--dry-run")
    after_dry_run = certwatch.json("history", target(server))
    pruned = certwatch("prune", "--older-than", "1s")
    again = certwatch("prune", "--older-than", "1s")

    assert dry_run.exit_code == 0, dry_run.output
    # Three runs of three observations each lose their middle one.
    assert "Would remove 3 of 9 observations" in dry_run.stdout
    assert "Nothing was deleted (dry run)." in dry_run.stdout
    assert after_dry_run == history
    assert pruned.exit_code == 0, pruned.output
    assert "Removed 3 of 9 observations" in pruned.stdout
    assert "at 1 place." in pruned.stdout
    assert "Removed 0 of 6 observations" in again.stdout
    assert certwatch.json("history", target(server)) == history
    assert without_time(certwatch.json("where", "www.example.test")) == where
    # Going back to the first leaf is an alternation, which records no change.
    assert len(history["sources"][0]["changes"]) == 1


def test_prune_default_retention_keeps_recent(
    certwatch: Certwatch, local_server: StartServer
) -> None:
    server = serve(local_server, fresh_leaf())
    certwatch("add", target(server))
    scan_times(certwatch, server, 2)

    outcome = certwatch("prune")

    assert outcome.exit_code == 0, outcome.output
    assert "Removed 0 of 0 observations" in outcome.stdout


def test_prune_retention_from_environment(certwatch: Certwatch) -> None:
    outcome = certwatch("prune", "--dry-run", env={"CERTWATCH_HISTORY_RETENTION": "2w"})

    assert outcome.exit_code == 0, outcome.output
    assert "Would remove 0 of 0 observations" in outcome.stdout


def test_prune_invalid_durations(certwatch: Certwatch) -> None:
    option = certwatch("prune", "--older-than", "30 days")
    variable = certwatch("prune", env={"CERTWATCH_HISTORY_RETENTION": "forever"})

    assert option.exit_code == 2
    assert "Invalid duration '30 days'" in option.output
    assert variable.exit_code == 2
    assert "CERTWATCH_HISTORY_RETENTION: Invalid duration 'forever'" in variable.output


def test_prune_store_function_matches_command(
    certwatch: Certwatch, local_server: StartServer
) -> None:
    alternate(certwatch, local_server)
    time.sleep(1.1)
    engine = create_store_engine(certwatch.database_url)
    try:
        result = compact_history(
            lambda: Session(engine), cutoff=datetime.now(UTC), dry_run=True
        )
    finally:
        engine.dispose()

    assert result.removed == 3
    assert result.examined == 9


def test_serve_rejects_invalid_retention(certwatch: Certwatch) -> None:
    outcome = certwatch(
        "serve",
        env={"CERTWATCH_HISTORY_RETENTION": "forever", "CERTWATCH_WEB_PORT": "0"},
    )

    assert outcome.exit_code != 0
    assert "CERTWATCH_HISTORY_RETENTION: Invalid duration 'forever'" in outcome.output
