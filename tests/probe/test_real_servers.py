"""`certwatch check` against real servers of every STARTTLS and implicit-TLS protocol.

`scripts/protocol-servers.sh start` runs Dovecot (IMAP, POP3, ManageSieve),
vsftpd (FTP), OpenLDAP slapd, Prosody (XMPP), PostgreSQL, MariaDB and INN's
nnrpd (NNTP), as
tests/real_servers.py describes. A test whose server is not running skips
with the reason. aiosmtpd serves SMTP inside the test itself. Every check
goes through the `python -m certwatch check --json` command line, and the
leaf it reports must be the one the server was given.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.handlers import Sink
from aiosmtpd.smtp import SMTP
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from tests.certs import make_leaf, make_root
from tests.real_servers import require_server

# Every protocol that the script serves with TLS, by its certwatch name.
REAL_SERVER_PROTOCOLS = [
    "imap",
    "imaps",
    "pop3",
    "pop3s",
    "sieve",
    "ftp",
    "ftps",
    "ldap",
    "ldaps",
    "xmpp",
    "xmpp-server",
    "postgres",
    "mysql",
    "nntp",
]

SMTP_NAME = "mail.example.test"
LOOPBACK = "127.0.0.1"


def run_check(*args: str) -> tuple[int, dict[str, Any]]:
    """Run `python -m certwatch check ARGS --json`; return exit code and document."""
    completed = subprocess.run(
        [sys.executable, "-m", "certwatch", "check", *args, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.stdout, completed.stderr
    document: dict[str, Any] = json.loads(completed.stdout)
    return completed.returncode, document


async def run_check_async(*args: str) -> tuple[int, dict[str, Any]]:
    """Run `python -m certwatch check ARGS --json` without blocking the event loop."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "certwatch",
        "check",
        *args,
        "--json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
    assert stdout, stderr.decode()
    document: dict[str, Any] = json.loads(stdout)
    assert process.returncode is not None
    return process.returncode, document


def sha256_of_pem(pem: bytes) -> str:
    certificate = x509.load_pem_x509_certificate(pem)
    return certificate.fingerprint(hashes.SHA256()).hex()


def resolve_to_loopback(name: str, port: int) -> list[str]:
    """Pin NAME to 127.0.0.1, because the servers listen on no other address."""
    return ["--resolve", f"{name}:{port}:{LOOPBACK}"]


def only_result(document: Mapping[str, Any]) -> dict[str, Any]:
    results: list[dict[str, Any]] = document["results"]
    assert len(results) == 1, results
    return results[0]


def assert_leaf_trusted(
    exit_code: int,
    document: Mapping[str, Any],
    *,
    protocol: str,
    port: int,
    server_name: str,
    leaf_sha256: str,
    ca_sha256: str,
) -> None:
    """Assert one ok result whose leaf is LEAF_SHA256 with a path to the CA."""
    result = only_result(document)
    assert result["error"] is None, result["error"]
    assert document["status"] == "ok", result["findings"]
    assert exit_code == 0
    assert result["protocol"] == protocol
    assert result["address"] == LOOPBACK
    assert result["port"] == port
    assert result["server_name"] == server_name
    assert result["certificate"]["sha256"] == leaf_sha256
    assert result["chain"][0]["sha256"] == leaf_sha256
    assert result["valid_path"][-1] == ca_sha256


# Servers started by scripts/protocol-servers.sh


@pytest.mark.parametrize("protocol", REAL_SERVER_PROTOCOLS)
def test_check_scheme_target_on_real_server(protocol: str) -> None:
    server = require_server(protocol)
    target = f"{protocol}://{server.server_name}:{server.port}"

    exit_code, document = run_check(
        target,
        *resolve_to_loopback(server.server_name, server.port),
        "--ca-file",
        str(server.ca_file),
    )

    assert_leaf_trusted(
        exit_code,
        document,
        protocol=protocol,
        port=server.port,
        server_name=server.server_name,
        leaf_sha256=server.leaf_sha256,
        ca_sha256=sha256_of_pem(server.ca_file.read_bytes()),
    )
    assert document["results"][0]["target"] == target


@pytest.mark.parametrize("protocol", REAL_SERVER_PROTOCOLS)
def test_check_protocol_option_on_real_server(protocol: str) -> None:
    server = require_server(protocol)

    exit_code, document = run_check(
        "--protocol",
        protocol,
        f"{server.server_name}:{server.port}",
        *resolve_to_loopback(server.server_name, server.port),
        "--ca-file",
        str(server.ca_file),
    )

    assert_leaf_trusted(
        exit_code,
        document,
        protocol=protocol,
        port=server.port,
        server_name=server.server_name,
        leaf_sha256=server.leaf_sha256,
        ca_sha256=sha256_of_pem(server.ca_file.read_bytes()),
    )


def test_check_ftp_server_without_tls() -> None:
    # vsftpd 3.0.3 with ssl_enable=NO replies to AUTH TLS with 530 "Please
    # login with USER and PASS": it has no TLS to offer.
    server = require_server("ftp", tls=False)

    exit_code, document = run_check(
        f"ftp://ftp.example.test:{server.port}",
        *resolve_to_loopback("ftp.example.test", server.port),
        "--ca-file",
        str(server.ca_file),
    )

    result = only_result(document)
    assert result["certificate"] is None
    assert document["endpoints"][0]["days_left"] is None
    assert result["status"] == "critical"
    assert exit_code == 2
    assert result["error"] is None
    [finding] = result["findings"]
    assert finding["code"] == "starttls_not_offered"
    assert "530" in finding["message"]


def test_check_xmpp_stream_to_unknown_domain() -> None:
    # Prosody serves only the domain localhost. The stream must be opened to
    # the target's host name, so another name is refused although the address
    # is the same.
    server = require_server("xmpp")

    _, document = run_check(
        f"xmpp://mail.example.test:{server.port}",
        *resolve_to_loopback("mail.example.test", server.port),
        "--ca-file",
        str(server.ca_file),
    )

    result = only_result(document)
    assert result["certificate"] is None
    assert result["error"]["reason"] == "starttls_refused"
    assert "host-unknown" in result["error"]["message"]


def test_check_imap_dialogue_on_pop3_port() -> None:
    server = require_server("pop3")

    _, document = run_check(
        "--protocol",
        "imap",
        f"{server.server_name}:{server.port}",
        *resolve_to_loopback(server.server_name, server.port),
        "--ca-file",
        str(server.ca_file),
    )

    result = only_result(document)
    assert result["certificate"] is None
    assert result["status"] == "unknown"
    assert result["error"]["reason"] == "starttls_failed"
    assert "+OK" in result["error"]["message"]


# SMTP, served by aiosmtpd in the test's event loop


@dataclass(frozen=True)
class SmtpCertificates:
    """The files an aiosmtpd of this module serves and the CA that issued them."""

    ca_file: Path
    ca_sha256: str
    leaf_sha256: str
    chain_file: Path
    key_file: Path


@pytest.fixture(scope="module")
def smtp_certificates(tmp_path_factory: pytest.TempPathFactory) -> SmtpCertificates:
    # certwatch judges the leaf against the real clock, so it is valid now
    # rather than around the fixed instant the factory defaults to.
    now = datetime.now(UTC).replace(microsecond=0)
    root = make_root("certwatch SMTP test root")
    leaf = make_leaf(
        root,
        dns_names=[SMTP_NAME, "localhost"],
        not_before=now - timedelta(days=1),
        not_after=now + timedelta(days=90),
    )
    folder = tmp_path_factory.mktemp("smtp")
    certificates = SmtpCertificates(
        ca_file=folder / "ca.pem",
        ca_sha256=root.sha256,
        leaf_sha256=leaf.sha256,
        chain_file=folder / "leaf.pem",
        key_file=folder / "leaf.key",
    )
    certificates.ca_file.write_bytes(root.pem)
    certificates.chain_file.write_bytes(leaf.pem)
    certificates.key_file.write_bytes(leaf.key_pem())
    return certificates


async def start_aiosmtpd(
    certificates: SmtpCertificates, *, implicit_tls: bool
) -> asyncio.Server:
    """Serve aiosmtpd on a free 127.0.0.1 port: STARTTLS, or TLS from the start."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificates.chain_file, certificates.key_file)
    loop = asyncio.get_running_loop()
    if implicit_tls:
        return await loop.create_server(
            lambda: SMTP(Sink(), hostname=SMTP_NAME),
            LOOPBACK,
            0,
            ssl=context,
        )
    return await loop.create_server(
        lambda: SMTP(
            Sink(), hostname=SMTP_NAME, tls_context=context, require_starttls=False
        ),
        LOOPBACK,
        0,
    )


@pytest.fixture
async def starttls_smtp_port(
    smtp_certificates: SmtpCertificates,
) -> AsyncIterator[int]:
    server = await start_aiosmtpd(smtp_certificates, implicit_tls=False)
    port: int = server.sockets[0].getsockname()[1]
    yield port
    server.close()
    await server.wait_closed()


@pytest.fixture
async def implicit_tls_smtp_port(
    smtp_certificates: SmtpCertificates,
) -> AsyncIterator[int]:
    server = await start_aiosmtpd(smtp_certificates, implicit_tls=True)
    port: int = server.sockets[0].getsockname()[1]
    yield port
    server.close()
    await server.wait_closed()


@pytest.mark.parametrize("protocol", ["smtp", "submission"])
async def test_check_scheme_target_on_aiosmtpd(
    protocol: str, starttls_smtp_port: int, smtp_certificates: SmtpCertificates
) -> None:
    port = starttls_smtp_port

    exit_code, document = await run_check_async(
        f"{protocol}://{SMTP_NAME}:{port}",
        *resolve_to_loopback(SMTP_NAME, port),
        "--ca-file",
        str(smtp_certificates.ca_file),
    )

    assert_leaf_trusted(
        exit_code,
        document,
        protocol=protocol,
        port=port,
        server_name=SMTP_NAME,
        leaf_sha256=smtp_certificates.leaf_sha256,
        ca_sha256=smtp_certificates.ca_sha256,
    )


@pytest.mark.parametrize("protocol", ["smtp", "submission"])
async def test_check_protocol_option_on_aiosmtpd(
    protocol: str, starttls_smtp_port: int, smtp_certificates: SmtpCertificates
) -> None:
    port = starttls_smtp_port

    exit_code, document = await run_check_async(
        "--protocol",
        protocol,
        f"{SMTP_NAME}:{port}",
        *resolve_to_loopback(SMTP_NAME, port),
        "--ca-file",
        str(smtp_certificates.ca_file),
    )

    assert_leaf_trusted(
        exit_code,
        document,
        protocol=protocol,
        port=port,
        server_name=SMTP_NAME,
        leaf_sha256=smtp_certificates.leaf_sha256,
        ca_sha256=smtp_certificates.ca_sha256,
    )


async def test_check_smtps_on_aiosmtpd(
    implicit_tls_smtp_port: int, smtp_certificates: SmtpCertificates
) -> None:
    port = implicit_tls_smtp_port

    exit_code, document = await run_check_async(
        f"smtps://{SMTP_NAME}:{port}",
        *resolve_to_loopback(SMTP_NAME, port),
        "--ca-file",
        str(smtp_certificates.ca_file),
    )

    assert_leaf_trusted(
        exit_code,
        document,
        protocol="smtps",
        port=port,
        server_name=SMTP_NAME,
        leaf_sha256=smtp_certificates.leaf_sha256,
        ca_sha256=smtp_certificates.ca_sha256,
    )
