"""`certwatch certificates` and `certwatch where`: the inventory by certificate.

Both list where certificates are deployed now, that is, seen in the latest
scan of an endpoint address or a file, and mark the addresses that still
serve a certificate after a newer one for the same names reached others
(the `stale_deployment` finding).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import click
import idna
from rich.table import Table
from rich.text import Text
from sqlalchemy import select
from sqlalchemy.orm import Session

from certwatch.commands.listing import DEFAULT_LIMIT, MAX_LIMIT
from certwatch.commands.output import (
    INVENTORY_SCHEMA_VERSION,
    certificate_document,
    certificate_names,
    closed_pipe_ignored,
    days_cell,
    days_until,
    echo_json,
    finding_document,
    minute,
    timestamp,
)
from certwatch.commands.queries import fingerprints_with_prefix
from certwatch.commands.store import open_store
from certwatch.report.console import stdout_console
from certwatch.report.table import SEVERITY_STYLES, plain_text, short_name
from certwatch.store.deployments import (
    CertificateSummary,
    DeployedCertificate,
    Deployment,
    certificate_summaries,
    certificates_named,
    deployment_history,
    deployments_now,
    served_certificates,
)
from certwatch.store.models import TeamRow
from certwatch.store.observations import index_common_names
from certwatch.store.stale import StaleDeployment, stale_deployments
from certwatch.x509.model import Finding

# A fingerprint prefix shorter than this matches too many certificates to
# be useful, and could be mistaken for a one-label host name.
MIN_FINGERPRINT_DIGITS = 8
FINGERPRINT_DIGITS = 64
# How many certificates an ambiguous fingerprint prefix lists.
_AMBIGUOUS_SHOWN = 5

_HEX = re.compile(r"[0-9a-f]+")


@dataclass(frozen=True)
class PlacedCertificate:
    """A certificate, its current places, and its `stale_deployment` findings.

    `stale` holds the (endpoint id, address) pairs that still serve the
    certificate after a renewal reached other addresses of their team.
    `findings` holds one finding per team with such addresses, and is
    empty when there are none.
    """

    certificate: CertificateSummary
    deployments: tuple[Deployment, ...]
    stale: frozenset[tuple[int, str]]
    findings: tuple[Finding, ...]

    def is_stale(self, deployment: Deployment) -> bool:
        if deployment.endpoint_id is None or deployment.address is None:
            return False
        return (deployment.endpoint_id, deployment.address) in self.stale


@click.command("certificates")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON document.")
@click.option(
    "--expiring",
    type=click.IntRange(min=0),
    metavar="DAYS",
    help="Keep only certificates that expire within DAYS days or have expired.",
)
@click.option(
    "--limit",
    type=click.IntRange(min=0, max=MAX_LIMIT),
    default=DEFAULT_LIMIT,
    show_default=True,
    help="Print at most this many, soonest expiry first; 0 prints all.",
)
def certificates_command(as_json: bool, expiring: int | None, limit: int) -> None:
    """List each certificate deployed now with every place it is deployed.

    Leaf certificates of endpoints and every certificate in files are
    listed, soonest not_after first; intermediates that servers send after
    their leaf are not.
    """
    now = datetime.now(UTC)
    before = None if expiring is None else now + timedelta(days=expiring)
    with open_store() as sessions, sessions() as session:
        page = served_certificates(
            session, limit=limit or None, not_after_before=before
        )
        sha256s = [item.certificate.sha256 for item in page.certificates]
        if not sha256s:
            stale = []
        elif limit or before is not None:
            stale = stale_deployments(session, now=now, sha256s=sha256s)
        else:
            # Every certificate is listed: no filter is cheaper than all of them.
            stale = stale_deployments(session, now=now)
        placed = _with_stale(page.certificates, stale, team_names(session))

    with closed_pipe_ignored():
        if as_json:
            document = _document(placed, now, key="certificates")
            document.update(limit=limit or None, truncated=page.truncated)
            echo_json(document)
            if page.truncated:
                click.echo(
                    f"certwatch: listed the first {len(placed)} matching "
                    "certificates; --limit 0 lists all.",
                    err=True,
                )
        else:
            _print_certificates(placed, now, truncated=page.truncated)


def _with_stale(
    deployed: Sequence[DeployedCertificate],
    stale: Sequence[StaleDeployment],
    teams: Mapping[int, str],
) -> list[PlacedCertificate]:
    by_certificate: dict[str, list[StaleDeployment]] = {}
    for found in stale:
        by_certificate.setdefault(found.certificate.sha256, []).append(found)
    placed = []
    for item in deployed:
        found_items = by_certificate.get(item.certificate.sha256, [])
        places = frozenset(
            (leaf.endpoint_id, leaf.address)
            for found in found_items
            for leaf in found.stale
        )
        findings = [found.finding for found in found_items]
        if len(found_items) > 1:
            # Each team's finding counts its own addresses, so say whose.
            findings = [
                replace(f, message=f"Team {teams[found.team_id]!r}: {f.message}")
                for f, found in zip(findings, found_items, strict=True)
            ]
        placed.append(
            PlacedCertificate(
                certificate=item.certificate,
                deployments=item.deployments,
                stale=places,
                findings=tuple(findings),
            )
        )
    return placed


def team_names(session: Session) -> dict[int, str]:
    """Return the name of every team by id."""
    rows = session.execute(select(TeamRow.id, TeamRow.name))
    return {team_id: name for team_id, name in rows}


@click.command("where")
@click.argument("name_or_fingerprint", metavar="NAME|FINGERPRINT")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON document.")
def where_command(name_or_fingerprint: str, as_json: bool) -> None:
    """Show every endpoint address and file where a certificate is deployed now.

    NAME finds certificates for that DNS name or IP address, exactly or
    through a wildcard such as *.example.test. FINGERPRINT is a SHA-256
    fingerprint in hex, colons allowed, or a unique prefix of at least 8
    hex digits.
    """
    if not name_or_fingerprint.strip().rstrip("."):
        raise click.BadParameter(
            "Empty name: give a DNS name, an IP address or a SHA-256 fingerprint.",
            param_hint="NAME|FINGERPRINT",
        )
    now = datetime.now(UTC)
    with open_store() as sessions, sessions() as session:
        # Certificates stored before subject CNs were indexed get their CN
        # now, so a CN-only certificate is found by name.
        if index_common_names(session):
            session.commit()
        search = _search(session, name_or_fingerprint)
        deployments = _current(session, search)
        if not deployments:
            raise click.ClickException(_nothing_found(session, search))
        placed = _placed(session, deployments, now)

    with closed_pipe_ignored():
        if as_json:
            document = _document(placed, now, key="certificates")
            document["query"] = name_or_fingerprint
            echo_json(document)
        else:
            _print_certificates(placed, now)


@dataclass(frozen=True)
class _Search:
    """What `where` looks for: fingerprints, or names including wildcards."""

    text: str
    sha256s: tuple[str, ...] = ()
    names: tuple[str, ...] = ()


def _search(session: Session, text: str) -> _Search:
    """Read the argument as a fingerprint when it can be one, else as a name.

    Raises:
        click.ClickException: a prefix matches several certificates, or a
            text with colons is no valid fingerprint.
    """
    if _is_ip_address(text.strip()):
        return _Search(text, names=(str(ipaddress.ip_address(text.strip())),))
    digits = text.strip().replace(":", "").lower()
    if _HEX.fullmatch(digits) and len(digits) >= MIN_FINGERPRINT_DIGITS:
        found = _fingerprints(session, text, digits)
        if found or ":" in text:
            return _Search(text, sha256s=tuple(found))
    elif ":" in text.strip() and _HEX.fullmatch(digits or "x"):
        raise click.ClickException(
            f"Fingerprint {text!r} is too short: give at least "
            f"{MIN_FINGERPRINT_DIGITS} hex digits of the SHA-256 fingerprint."
        )
    return _Search(text, names=_names_matching(text))


def _is_ip_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _fingerprints(session: Session, text: str, digits: str) -> list[str]:
    if len(digits) > FINGERPRINT_DIGITS:
        raise click.ClickException(
            f"Fingerprint {text!r} has {len(digits)} hex digits: a SHA-256 "
            f"fingerprint has {FINGERPRINT_DIGITS}."
        )
    found = fingerprints_with_prefix(session, digits, limit=_AMBIGUOUS_SHOWN + 1)
    if len(found) > 1:
        shown = ", ".join(found[:_AMBIGUOUS_SHOWN])
        more = " and more" if len(found) > _AMBIGUOUS_SHOWN else ""
        raise click.ClickException(
            f"Fingerprint prefix {text!r} matches several certificates ({shown}"
            f"{more}): give more hex digits."
        )
    return found


def _names_matching(text: str) -> tuple[str, ...]:
    """Return the name and the wildcard that would cover it, as stored (A-labels)."""
    name = text.strip().rstrip(".").lower()
    if not name.isascii():
        try:
            name = idna.encode(name, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise click.ClickException(
                f"Invalid name {text!r} ({exc}): give a DNS name, an IP address "
                "or a SHA-256 fingerprint."
            ) from exc
    labels = name.split(".")
    if len(labels) > 2 and labels[0] != "*":
        # A wildcard stands for exactly one leftmost label (RFC 6125), so
        # *.example.test covers www.example.test but not example.test.
        return (name, "*." + ".".join(labels[1:]))
    return (name,)


def _current(session: Session, search: _Search) -> list[Deployment]:
    found: list[Deployment] = []
    for sha256 in search.sha256s:
        found.extend(deployments_now(session, sha256=sha256))
    for name in search.names:
        found.extend(deployments_now(session, name=name))
    return found


def _nothing_found(session: Session, search: _Search) -> str:
    """Word the error for a search without current deployments."""
    if not search.sha256s and not search.names:
        return (
            f"No stored certificate has a fingerprint starting with "
            f"{search.text!r}: run 'certwatch certificates' to see them."
        )
    seen: list[Deployment] = []
    for sha256 in search.sha256s:
        seen.extend(deployment_history(session, sha256=sha256))
    for name in search.names:
        seen.extend(deployment_history(session, name=name))
    stored = list(search.sha256s)
    for name in search.names:
        stored.extend(certificates_named(session, name))
    if not seen and stored:
        return (
            f"No certificate for {search.text!r} is deployed now: it was seen, "
            "but every endpoint and file that showed it has been removed; add "
            "them again with 'certwatch add' to watch them."
        )
    if not seen:
        digits = search.text.strip().replace(":", "").lower()
        hint = ""
        if _HEX.fullmatch(digits) and len(digits) < MIN_FINGERPRINT_DIGITS:
            hint = (
                f" A fingerprint prefix needs at least {MIN_FINGERPRINT_DIGITS} "
                "hex digits."
            )
        return (
            f"No certificate for {search.text!r} was ever seen: add the endpoint "
            f"or file that serves it with 'certwatch add'.{hint}"
        )
    last = max(seen, key=lambda d: d.last_seen_at)
    return (
        f"No certificate for {search.text!r} is deployed now; one was last seen "
        f"{minute(last.last_seen_at)} UTC at {_place(last)}."
    )


def _placed(
    session: Session, deployments: Sequence[Deployment], now: datetime
) -> list[PlacedCertificate]:
    by_certificate: dict[str, list[Deployment]] = {}
    for deployment in deployments:
        places = by_certificate.setdefault(deployment.certificate_sha256, [])
        if deployment not in places:
            places.append(deployment)
    summaries = certificate_summaries(session, sorted(by_certificate))
    summaries.sort(key=lambda s: (s.not_after is None, s.not_after or now, s.sha256))
    stale = stale_deployments(
        session, now=now, sha256s=[summary.sha256 for summary in summaries]
    )
    deployed = [
        DeployedCertificate(summary, tuple(by_certificate[summary.sha256]))
        for summary in summaries
    ]
    return _with_stale(deployed, stale, team_names(session))


def _place(deployment: Deployment) -> str:
    if deployment.path is not None:
        return deployment.path
    return f"{deployment.target} ({deployment.address or 'no address'})"


def _document(
    placed: Sequence[PlacedCertificate], now: datetime, *, key: str
) -> dict[str, Any]:
    return {
        "schema_version": INVENTORY_SCHEMA_VERSION,
        "listed_at": timestamp(now),
        key: [_placed_document(item, now) for item in placed],
    }


def _placed_document(item: PlacedCertificate, now: datetime) -> dict[str, Any]:
    return {
        **certificate_document(item.certificate, now),
        "deployments": [
            _deployment_document(d, stale=item.is_stale(d)) for d in item.deployments
        ],
        "findings": [finding_document(finding) for finding in item.findings],
    }


def _deployment_document(deployment: Deployment, *, stale: bool) -> dict[str, Any]:
    document: dict[str, Any]
    if deployment.file_source_id is not None:
        document = {
            "kind": "file",
            "file_source_id": deployment.file_source_id,
            "target": deployment.target,
            "path": deployment.path,
        }
    else:
        document = {
            "kind": "endpoint",
            "endpoint_id": deployment.endpoint_id,
            "target": deployment.target,
            "address": deployment.address,
        }
    document.update(
        position=deployment.position,
        first_seen_at=timestamp(deployment.first_seen_at),
        last_seen_at=timestamp(deployment.last_seen_at),
        stale=stale,
    )
    return document


def _print_certificates(
    placed: Sequence[PlacedCertificate], now: datetime, *, truncated: bool = False
) -> None:
    table = Table(header_style="bold", show_lines=True)
    table.add_column("Days", justify="right", no_wrap=True)
    table.add_column("Not after (UTC)", no_wrap=True)
    table.add_column("Names", overflow="fold")
    table.add_column("Issuer", overflow="fold")
    table.add_column("SHA-256", no_wrap=True)
    table.add_column("Deployed at", overflow="fold")
    for item in placed:
        summary = item.certificate
        table.add_row(
            days_cell(days_until(summary.not_after, now)),
            Text(minute(summary.not_after)),
            _names_cell(certificate_names(summary)),
            plain_text(short_name(summary.issuer)),
            Text(summary.sha256[:16]),
            _places_cell(item),
        )
    console = stdout_console()
    console.print(table)
    for item in placed:
        for finding in item.findings:
            line = Text(f"{item.certificate.sha256[:16]} ")
            label = Text(f"{finding.severity.label} {finding.code}: ")
            label.stylize(SEVERITY_STYLES[finding.severity])
            line.append(label)
            line.append(plain_text(finding.message))
            console.print(line)
    count = len(placed)
    footer = f"{count} certificate{'s' * (count != 1)}."
    if truncated:
        footer = (
            f"{count} certificates shown, soonest expiry first; more match: "
            "--limit 0 lists all."
        )
    console.print(Text(footer, style="dim"))


def _names_cell(names: list[str]) -> Text:
    """Return one name per line, each escaped on its own."""
    if not names:
        return Text("-")
    return Text("\n").join(plain_text(name) for name in names)


def _places_cell(item: PlacedCertificate) -> Text:
    cell = Text()
    for index, deployment in enumerate(item.deployments):
        if index:
            cell.append("\n")
        cell.append(plain_text(_place(deployment)))
        if deployment.position > 0 and deployment.file_source_id is None:
            cell.append(f" [chain #{deployment.position}]", style="dim")
        if item.is_stale(deployment):
            cell.append(" stale", style="yellow")
    return cell
