"""`certwatch where` for certificates named only in their subject CN."""

from __future__ import annotations

from sqlalchemy import delete
from sqlalchemy.orm import Session
from tests.commands.conftest import Certwatch, StartServer, fresh_leaf, serve, target

from certwatch.store.database import create_store_engine
from certwatch.store.models import CertificateNameRow


def test_where_common_name_only(
    certwatch: Certwatch, local_server: StartServer
) -> None:
    legacy = fresh_leaf(common_name="legacy.example.test", san=False)
    server = serve(local_server, legacy)
    certwatch("add", target(server))

    document = certwatch.json("where", "Legacy.Example.Test.")

    [found] = document["certificates"]
    assert found["sha256"] == legacy.sha256
    assert found["deployments"][0]["target"] == target(server)


def test_where_common_name_stored_before_indexing(
    certwatch: Certwatch, local_server: StartServer
) -> None:
    legacy = fresh_leaf(common_name="legacy.example.test", san=False)
    server = serve(local_server, legacy)
    certwatch("add", target(server))
    # Stores written before CNs were indexed have no name rows for them.
    engine = create_store_engine(certwatch.database_url)
    with Session(engine) as session:
        session.execute(delete(CertificateNameRow))
        session.commit()
    engine.dispose()

    document = certwatch.json("where", "legacy.example.test")

    assert [item["sha256"] for item in document["certificates"]] == [legacy.sha256]


def test_where_after_source_removed(
    certwatch: Certwatch, local_server: StartServer
) -> None:
    leaf = fresh_leaf("gone.example.test")
    server = serve(local_server, leaf)
    certwatch("add", target(server))
    removed = certwatch("remove", target(server))

    by_name = certwatch("where", "gone.example.test")
    by_fingerprint = certwatch("where", leaf.sha256)

    assert removed.exit_code == 0, removed.output
    assert by_name.exit_code == 1
    assert "was ever seen" not in by_name.stderr
    assert (
        "No certificate for 'gone.example.test' is deployed now: it was seen, but "
        "every endpoint and file that showed it has been removed"
    ) in " ".join(by_name.stderr.split())
    assert by_fingerprint.exit_code == 1
    assert "it was seen, but every endpoint" in " ".join(by_fingerprint.stderr.split())
