"""One line of a report: what certwatch found at one address or in one file."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from certwatch.probe.model import ProbeError
from certwatch.x509.model import CertificateFacts, ChainReport, Finding, Severity


class Status(enum.StrEnum):
    """The verdict of one result, ordered as Nagios plugin states."""

    OK = "ok"
    WARNING = "warning"
    CRITICAL = "critical"
    UNKNOWN = "unknown"

    @property
    def exit_code(self) -> int:
        return _EXIT_CODES[self]

    @property
    def rank(self) -> int:
        """Order for "worst wins": ok < warning < unknown < critical."""
        return _RANKS[self]


_EXIT_CODES = {Status.OK: 0, Status.WARNING: 1, Status.CRITICAL: 2, Status.UNKNOWN: 3}
_RANKS = {Status.OK: 0, Status.WARNING: 1, Status.UNKNOWN: 2, Status.CRITICAL: 3}


@dataclass(frozen=True)
class Result:
    """The outcome for one address of an endpoint, or one certificate of a file.

    Network results set `host`, `port` and (except after a DNS failure)
    `address`; file results set `path` and `index` instead. `report` is
    `None` when no certificate was obtained, and then `error` says why.
    """

    target: str
    status: Status
    findings: tuple[Finding, ...] = ()
    report: ChainReport | None = None
    error: ProbeError | None = None
    host: str | None = None
    port: int | None = None
    server_name: str | None = None
    address: str | None = None
    protocol: str | None = None
    tls_version: str | None = None
    path: str | None = None
    index: int | None = None

    @property
    def leaf(self) -> CertificateFacts | None:
        return self.report.leaf if self.report else None

    @property
    def days_left(self) -> int | None:
        return self.report.days_left if self.report else None

    @property
    def place(self) -> str:
        """Where this result was seen, for tables and status lines."""
        if self.path is not None:
            return self.path if self.index in (None, 0) else f"{self.path}#{self.index}"
        return self.address or "-"


def status_from(findings: tuple[Finding, ...]) -> Status:
    """Map the worst finding severity to a status; info counts as ok."""
    worst = max((f.severity for f in findings), default=Severity.INFO)
    if worst is Severity.CRITICAL:
        return Status.CRITICAL
    if worst is Severity.WARNING:
        return Status.WARNING
    return Status.OK


def worst_status(statuses: list[Status]) -> Status:
    """Return the worst status, `ok` for an empty list."""
    return max(statuses, key=lambda status: status.rank, default=Status.OK)
