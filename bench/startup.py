"""Time how long short `certwatch` commands take as whole processes.

Each command runs as a new process of the installed `certwatch` executable,
so the time includes interpreter start-up and every module import, which the
in-process store benchmark (`bench/store.py`) does not measure. The commands:

- `python -c pass`: interpreter start-up alone, the floor for every command;
- `certwatch --version` and `certwatch --help`;
- `certwatch list` on an empty SQLite store whose schema already exists;
- `certwatch check FILE` of one self-signed certificate file.

After one warm-up run, the median and the minimum of `--repeat` runs are
reported. Use `python -X importtime -c 'import certwatch.cli'` to see which
imports the time goes to.

Usage, from the repository root:

    .venv/bin/python bench/startup.py --repeat 10
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# Exit codes that `check` uses for its verdict, from OK to UNKNOWN. A
# self-signed certificate is CRITICAL, which is still a successful run.
CHECK_EXIT_CODES = {0, 1, 2, 3}


def write_certificate(path: Path) -> None:
    """Write a self-signed certificate for `startup.example.test` as PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "startup.example.test")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=90))
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


def time_process(
    argv: list[str], environ: dict[str, str], repeat: int, ok_codes: set[int]
) -> list[float]:
    """Run `argv` once to warm up, then `repeat` times, and return the timings.

    Raises:
        RuntimeError: a run exits with a code outside `ok_codes`.
    """
    seconds = []
    for run in range(repeat + 1):
        start = time.perf_counter()
        finished = subprocess.run(argv, env=environ, capture_output=True, check=False)
        elapsed = time.perf_counter() - start
        if finished.returncode not in ok_codes:
            raise RuntimeError(
                f"{' '.join(argv)!r} exited with {finished.returncode}: "
                f"{finished.stderr.decode(errors='replace').strip()}"
            )
        if run > 0:
            seconds.append(elapsed)
    return seconds


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """Read the command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeat", type=int, default=10, help="Timed runs per command (default 10)."
    )
    parser.add_argument(
        "--executable",
        type=Path,
        default=Path(sys.executable).parent / "certwatch",
        help="The certwatch executable (default: next to this Python).",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Time each command and print one line per command."""
    arguments = parse_arguments(argv)
    program = str(arguments.executable)
    with tempfile.TemporaryDirectory(prefix="certwatch-startup-") as folder:
        certificate = Path(folder) / "startup.pem"
        write_certificate(certificate)
        environ = dict(os.environ)
        environ["CERTWATCH_DATABASE_URL"] = f"sqlite:///{folder}/inventory.db"
        commands = [
            ("python -c pass", [sys.executable, "-c", "pass"], {0}),
            ("certwatch --version", [program, "--version"], {0}),
            ("certwatch --help", [program, "--help"], {0}),
            ("certwatch list (empty store)", [program, "list"], {0}),
            (
                "certwatch check FILE",
                [program, "check", str(certificate)],
                CHECK_EXIT_CODES,
            ),
        ]
        print(
            f"Python {platform.python_version()}, {os.cpu_count()} CPUs, "
            f"median and minimum of {arguments.repeat} runs after one warm-up"
        )
        startup: float | None = None
        for label, command, ok_codes in commands:
            seconds = time_process(command, environ, arguments.repeat, ok_codes)
            median = statistics.median(seconds)
            if startup is None:
                startup = median  # The first command is `python -c pass`.
            print(
                f"{label:32} median {median:6.3f} s  min {min(seconds):6.3f} s  "
                f"{median / startup:5.1f}x python -c pass"
            )


if __name__ == "__main__":
    main()
