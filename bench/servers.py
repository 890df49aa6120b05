"""Local TLS endpoints for the bench, served by a child process.

Run as a script, this module serves the bench leaves on 127.0.0.1, either one
listening port per leaf (`port` mode) or a single port whose SNI callback picks
the leaf named by the client (`sni` mode). It prints one JSON line with the
ports once it listens, and serves until its standard input closes or it gets
SIGTERM. The parent uses `run_servers`, which starts the child and stops it
however the parent leaves the block.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import select
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from certs import BenchPki, leaf_file, server_name
from resources import cpu_seconds_of, raise_open_file_limit

MODES = ("port", "sni")

# The kernel caps this at net.core.somaxconn. A deep queue matters in `sni`
# mode, where every connection of a run arrives at one port.
LISTEN_BACKLOG = 4096

STARTUP_TIMEOUT = 300.0
STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class RunningServers:
    """A started server child: its process and the ports it listens on.

    In `port` mode `ports[i]` serves leaf `i`. In `sni` mode `ports` contains
    one port that serves every leaf.
    """

    process: subprocess.Popen[bytes]
    ports: tuple[int, ...]

    def cpu_seconds(self) -> float:
        """Return the CPU time the server child has used so far."""
        return cpu_seconds_of(self.process.pid)


@contextmanager
def run_servers(pki: BenchPki, mode: str, concurrency: int) -> Iterator[RunningServers]:
    """Start the server child and stop it when the block ends, also on errors."""
    command = [sys.executable, __file__, "--mode", mode]
    command += ["--concurrency", str(concurrency), "--count", str(pki.count)]
    command += [str(pki.directory)]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        ports = _read_ports(process)
        yield RunningServers(process=process, ports=ports)
    finally:
        _stop(process)


def _read_ports(process: subprocess.Popen[bytes]) -> tuple[int, ...]:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], STARTUP_TIMEOUT)
    line = process.stdout.readline() if ready else b""
    if not line:
        raise RuntimeError(
            f"The TLS server child did not report its ports within "
            f"{STARTUP_TIMEOUT:.0f} s (exit code {process.poll()!r}); "
            "see its error output above."
        )
    return tuple(int(port) for port in json.loads(line)["ports"])


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Close the child's standard input, then escalate to SIGTERM and SIGKILL."""
    if process.stdin is not None:
        process.stdin.close()
    try:
        process.wait(STOP_TIMEOUT)
        return
    except subprocess.TimeoutExpired:
        process.terminate()
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _server_context(leaf_file: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # TLS 1.3 session tickets would add work to every server handshake, and
    # neither client resumes sessions.
    context.num_tickets = 0
    context.load_cert_chain(leaf_file)
    return context


def _sni_context(leaf_files: list[Path]) -> ssl.SSLContext:
    """Build one context that switches to the leaf named in the client's SNI.

    A client that sends no name or an unknown one gets leaf 0.
    """
    contexts = {
        server_name(index): _server_context(path)
        for index, path in enumerate(leaf_files)
    }
    default = contexts[server_name(0)]

    def select_leaf(
        connection: ssl.SSLObject | ssl.SSLSocket,
        name: str | None,
        _context: ssl.SSLContext,
    ) -> None:
        chosen = contexts.get(name) if name is not None else None
        if chosen is not None:
            connection.context = chosen

    default.sni_callback = select_leaf
    return default


def _listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(LISTEN_BACKLOG)
    sock.setblocking(False)
    return sock


async def _serve(mode: str, leaf_files: list[Path]) -> None:
    loop = asyncio.get_running_loop()
    if mode == "port":
        pairs = [(_listening_socket(), _server_context(path)) for path in leaf_files]
    else:
        pairs = [(_listening_socket(), _sni_context(leaf_files))]

    # The base protocol discards data and closes on end of file. That is all a
    # server needs when its clients only complete the handshake.
    servers = [
        await loop.create_server(asyncio.Protocol, sock=sock, ssl=context)
        for sock, context in pairs
    ]
    ports = [sock.getsockname()[1] for sock, _ in pairs]
    print(json.dumps({"ports": ports}), flush=True)

    stopped = asyncio.Event()
    loop.add_reader(sys.stdin.fileno(), stopped.set)
    loop.add_signal_handler(signal.SIGTERM, stopped.set)
    await stopped.wait()
    for server in servers:
        server.close()


def main() -> None:
    """Serve the bench leaves until standard input closes or SIGTERM arrives."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=MODES, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("directory", type=Path)
    args = parser.parse_args()
    leaf_files = [leaf_file(args.directory, index) for index in range(args.count)]

    # Ctrl-C reaches the whole process group. The parent stops this child by
    # closing its standard input, so the child ignores SIGINT.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    listening = args.count if args.mode == "port" else 1
    # Each listener and each accepted connection takes one descriptor. A
    # connection the client has just closed may still be open here, so allow
    # twice the client's concurrency.
    raise_open_file_limit(listening + 2 * args.concurrency)
    asyncio.run(_serve(args.mode, leaf_files))


if __name__ == "__main__":
    main()
