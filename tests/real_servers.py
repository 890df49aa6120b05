"""The real protocol servers that `scripts/protocol-servers.sh start` runs.

The script installs Dovecot, vsftpd, slapd, Prosody, PostgreSQL, MariaDB and
INN from Debian packages, starts a private instance of each on fixed 127.0.0.1
ports with a certificate from its own CA, and describes them in a JSON
manifest. This module reads that manifest, so that tests can run certwatch
against each server and compare what it reports with what the server serves.
A test that needs a server which is not there skips with the reason.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import pytest

STATE_DIR_VARIABLE = "CERTWATCH_PROTOCOL_SERVERS_DIR"
DEFAULT_STATE_DIR = Path("/tmp/certwatch-protocol-servers")
START_COMMAND = "sh scripts/protocol-servers.sh start"


@dataclass(frozen=True)
class RealServer:
    """One protocol on one port of a server that the script started.

    `tls` is false for a server that offers no TLS at all. `reason` is None
    when the server listens, else why it does not, and `running` is false.
    """

    protocol: str
    host: str
    port: int
    server_name: str
    tls: bool
    ca_file: Path
    leaf_sha256: str
    software: str
    version: str
    package: str
    log: Path
    running: bool
    reason: str | None


def manifest_path() -> Path:
    """Return where the script writes its manifest."""
    state_dir = os.environ.get(STATE_DIR_VARIABLE)
    return (Path(state_dir) if state_dir else DEFAULT_STATE_DIR) / "manifest.json"


def load_servers() -> list[RealServer]:
    """Read every server of the manifest; skip the test when there is none."""
    path = manifest_path()
    if not path.is_file():
        pytest.skip(
            f"the real protocol servers are not running: {path} is missing; "
            f"start them as root with `{START_COMMAND}`"
        )
    document = json.loads(path.read_text(encoding="utf-8"))
    return [
        RealServer(
            protocol=entry["protocol"],
            host=entry["host"],
            port=entry["port"],
            server_name=entry["server_name"],
            tls=entry["tls"],
            ca_file=Path(entry["ca_file"]),
            leaf_sha256=entry["leaf_sha256"],
            software=entry["software"],
            version=entry["version"],
            package=entry["package"],
            log=Path(entry["log"]),
            running=entry["running"],
            reason=entry["reason"],
        )
        for entry in document["servers"]
    ]


def require_server(protocol: str, *, tls: bool = True) -> RealServer:
    """Return the running server for PROTOCOL, or skip the test with the reason."""
    path = manifest_path()
    for server in load_servers():
        if server.protocol != protocol or server.tls != tls:
            continue
        if not server.running:
            pytest.skip(
                f"{server.software} for {protocol} on port {server.port} is not "
                f"running: {server.reason} (log: {server.log}; restart with "
                f"`{START_COMMAND}`)"
            )
        if not is_listening(server):
            pytest.skip(
                f"{path} lists {server.software} for {protocol} as running, but "
                f"nothing accepts connections on {server.host} port {server.port}; "
                f"restart the servers with `{START_COMMAND}`"
            )
        return server
    kind = "with TLS" if tls else "without TLS"
    pytest.skip(f"{path} lists no {protocol} server {kind}")


def is_listening(server: RealServer) -> bool:
    """Return whether SERVER accepts a TCP connection, which is closed at once.

    A manifest outlives its servers when the machine restarts, so a server it
    lists as running may be gone.
    """
    try:
        with socket.create_connection((server.host, server.port), timeout=5):
            return True
    except OSError:
        return False
