# ruff: noqa: F811 (the tests take the imported `site` fixture as a parameter)
"""CSV uploads on the add page that the reader must not trip on.

A cell over the csv module's size limit is a 400 that names the line, and
a row's target is never looked up on the server's disk, so the response
to a name is the same whether or not a file of that name exists in the
server's working folder.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from tests.servers import LocalServer, ServerOptions
from tests.web.test_api import Site, site  # noqa: F401

from certwatch.commands.inventory_csv import COLUMNS
from certwatch.store.accounts import (
    add_membership,
    create_session,
    create_user,
    find_session,
)
from certwatch.store.models import EndpointRow
from certwatch.web.auth import SESSION_COOKIE, session_csrf_token

CSV_FIELD_LIMIT = 131_072


def owner_client(site: Site, email: str) -> tuple[httpx.Client, str]:
    """Return a client logged in as a new owner of team alpha, and its CSRF token."""
    now = site.clock()
    with site.sessions.begin() as session:
        user = create_user(session, email, "unused", now=now)
        add_membership(session, user.id, site.alpha.id, "owner", now=now)
        token = create_session(session, user.id, now=now, lifetime=timedelta(days=1))
        login = find_session(session, token, now=now)
    assert login is not None
    client = site.client()
    client.cookies.set(SESSION_COOKIE, token)
    return client, session_csrf_token(login)


def upload(site: Site, client: httpx.Client, csrf: str, data: bytes) -> httpx.Response:
    return client.post(
        "/endpoints/new",
        data={"csrf_token": csrf, "team": str(site.alpha.id)},
        files={"csv": ("hosts.csv", data, "text/csv")},
    )


def stored_targets(site: Site) -> set[str]:
    with site.sessions() as session:
        rows = session.scalars(
            select(EndpointRow.target).where(EndpointRow.team_id == site.alpha.id)
        )
        return set(rows)


@pytest.mark.parametrize(
    ("data", "line"),
    [
        (b"target\n" + b"a" * (CSV_FIELD_LIMIT + 1) + b"\n", 2),
        (b"target\nok.example.test\n" + b"b" * 200_000 + b"\n", 3),
        (b"target," + b"c" * 200_000 + b"\nok.example.test,x\n", 1),
    ],
    ids=["first-row", "third-line", "header"],
)
def test_add_page_csv_long_cell_is_400(site: Site, data: bytes, line: int) -> None:
    client, csrf = owner_client(site, "long@example.test")
    before = stored_targets(site)

    response = upload(site, client, csrf, data)

    assert response.status_code == 400, response.text[:300]
    text = html.unescape(response.text)
    assert f"cannot be read at line {line}" in text
    assert "keep each cell under 131,072 characters" in text
    assert stored_targets(site) == before


def test_add_page_csv_names_ignore_server_files(
    site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "present.example.test").write_text("not a certificate")
    (tmp_path / "folder.example.test").mkdir()
    monkeypatch.chdir(tmp_path)
    client, csrf = owner_client(site, "files@example.test")
    rows = ["present.example.test", "folder.example.test", "absent.example.test"]

    response = upload(site, client, csrf, ("target\n" + "\n".join(rows)).encode())

    assert response.status_code == 200, response.text[:300]
    assert "Certificate files cannot be added" not in response.text
    assert set(rows) <= stored_targets(site)


@pytest.mark.parametrize("name", ["certs/present.pem", "certs/absent.pem"])
def test_add_page_csv_paths_same_answer(
    site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """A path gets the same response whether or not the file exists."""
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "present.pem").write_text("not a certificate")
    monkeypatch.chdir(tmp_path)
    client, csrf = owner_client(site, "paths@example.test")

    response = upload(site, client, csrf, f"target\n{name}\n".encode())

    assert response.status_code == 400, response.text[:300]
    text = html.unescape(response.text)
    assert "Line 2 of the CSV file names a certificate file" in text
    assert "present.pem" not in text


def test_add_page_csv_accepts_export_columns(
    site: Site, local_servers_on_one_port: Callable[..., list[LocalServer]]
) -> None:
    """A file in the layout of `certwatch export --format csv` adds its endpoints.

    The pinned rows keep their addresses, the file row is skipped and the
    scan settings are ignored, each with a notice rather than a rejection.
    """
    addresses = ("127.0.0.21", "127.0.0.22")
    servers = local_servers_on_one_port(
        *(
            ServerOptions(chain=site.pki.chain(site.pki.leaf), host=address)
            for address in addresses
        )
    )
    port = servers[0].port
    client, csrf = owner_client(site, "export@example.test")
    rows = [",".join(COLUMNS)]
    for address in addresses:
        target = f"lb.test:{port}"
        rows.append(f"{target},lb.test,{port},https,,{address},,alpha,web,1d,true,,")
    rows.append(",,,,,,/etc/ssl/site.pem,alpha,,1d,true,,")

    response = upload(site, client, csrf, ("\r\n".join(rows) + "\r\n").encode())

    assert response.status_code == 200, response.text[:500]
    text = html.unescape(response.text)
    for address in addresses:
        assert f"lb.test:{port} (at {address})" in text
    assert "Line 4 of the CSV file names a certificate file" in text
    assert "The columns enabled, interval were not applied" in text
    with site.sessions() as session:
        stored = session.execute(
            select(EndpointRow.target, EndpointRow.address).where(
                EndpointRow.team_id == site.alpha.id, EndpointRow.host == "lb.test"
            )
        ).all()
    assert sorted(stored) == [(f"lb.test:{port}", address) for address in addresses]
