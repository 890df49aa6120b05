"""Process resources the bench reads or raises: open files, CPU time, memory."""

from __future__ import annotations

import os
import resource

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
