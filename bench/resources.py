"""Process resources the bench reads or raises: open files, CPU time, memory."""

from __future__ import annotations

import os
import resource
import threading

# File descriptors a process needs besides its sockets: stdio, the event
# loop's selector and self-pipe, imported modules and certificate files.
FILE_DESCRIPTOR_SLACK = 64


def raise_open_file_limit(sockets: int) -> None:
    """Raise the soft open-file limit so that `sockets` sockets fit.

    The soft limit is raised up to the hard limit only. Raises `SystemExit`
    with the numbers when even the hard limit is too low.
    """
    needed = sockets + FILE_DESCRIPTOR_SLACK
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise SystemExit(
            f"The open-file hard limit is {hard}, but {needed} descriptors are "
            "needed: raise it (ulimit -Hn as root) or use fewer endpoints."
        )
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    target = hard if hard != resource.RLIM_INFINITY else needed
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def peak_rss_kib() -> int:
    """Return the peak resident set size of this process in KiB (Linux units)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def cpu_seconds_of(pid: int) -> float:
    """Return the user plus system CPU time used so far by process `pid`.

    Reads `/proc/PID/stat`, so it works on Linux only.
    """
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        text = stat.read()

    # The command name in brackets may contain spaces, so split after it.
    fields = text[text.rindex(")") + 2 :].split()
    user_ticks, system_ticks = int(fields[11]), int(fields[12])
    return (user_ticks + system_ticks) / os.sysconf("SC_CLK_TCK")


class ProcessTreeSampler:
    """Sample the memory and CPU of this process's descendants in a thread.

    The certwatch client analyses chains in worker processes, so its own
    `ru_maxrss` and `process_time()` would leave their share out. Every
    `interval` seconds this reads `/proc` (Linux only) and keeps the peak of
    the summed proportional set size (PSS) of this process and all its
    descendants, and the last CPU time seen of each descendant. PSS rather
    than RSS, because forked workers share pages with their parent, and a sum
    of RSS would count those pages once per process.
    """

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak_tree_pss_kib = 0
        self._descendant_cpu: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ProcessTreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def descendant_cpu_seconds(self) -> float:
        """CPU time used by descendants while the sampler ran."""
        return sum(self._descendant_cpu.values())

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()
        self._sample()

    def _sample(self) -> None:
        descendants = _descendants(os.getpid())
        total = _pss_kib(os.getpid())
        for pid in descendants:
            total += _pss_kib(pid)
            try:
                self._descendant_cpu[pid] = cpu_seconds_of(pid)
            except OSError:
                continue
        self.peak_tree_pss_kib = max(self.peak_tree_pss_kib, total)


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    pending = [pid]
    while pending:
        parent = pending.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(
                    f"/proc/{parent}/task/{task}/children", encoding="ascii"
                ) as f:
                    children = [int(child) for child in f.read().split()]
            except OSError:
                continue
            found.extend(children)
            pending.extend(children)
    return found


def _pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        return 0
    return 0
