"""The way out after a second signal is bounded even when a thread hangs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[2] / "src"

# A non-daemon thread that would keep the interpreter alive for a minute,
# as a lease renewal blocked on the database would.
PROGRAM = """
import threading, time
import certwatch.commands.monitor as monitor
monitor.FORCED_EXIT_SECONDS = 0.5
threading.Thread(target=time.sleep, args=(60,)).start()
monitor._exit_later(143)
raise SystemExit(143)
"""


def test_forced_exit_ends_hung_process() -> None:
    completed = subprocess.run(
        [sys.executable, "-c", PROGRAM],
        env={"PYTHONPATH": str(SOURCE)},
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert completed.returncode == 143, completed.stderr
    assert "exiting now; unreleased claims expire with their lease" in (
        completed.stderr
    )


def test_hung_thread_keeps_process_without_timer() -> None:
    # The control case: the same program without `_exit_later` is still
    # running when the first test's process has long ended.
    program = PROGRAM.replace("monitor._exit_later(143)\n", "")
    process = subprocess.Popen(
        [sys.executable, "-c", program],
        env={"PYTHONPATH": str(SOURCE)},
        stderr=subprocess.DEVNULL,
    )
    try:
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            still_running = True
        else:
            still_running = False
    finally:
        process.kill()
        process.wait()

    assert still_running
