"""The outbox: every alert message is stored before it is sent.

`enqueue` records one row per contact of a team, in the caller's
transaction, together with whatever decided the alert. `deliver_due` sends
the due rows with `certwatch.alerts.channels.deliver`, retries failures with
exponential backoff and records every outcome.

Each attempt is committed twice. First the row is claimed: its
`next_attempt_at` moves to the end of a lease. Then the outcome is
recorded. A process killed between the two leaves the row due again once
the lease ends, so the message is sent again under the same idempotency
key, which lets the receiver drop the duplicate, and is never lost. On
PostgreSQL the claim selects the row `FOR UPDATE SKIP LOCKED`, so two
processes never send the same row at once. On SQLite it is one
`UPDATE ... RETURNING`, which SQLite runs under its single write lock.

Each failed attempt also counts against the contact. A contact that keeps
failing is marked unhealthy and gets no new alerts. The team's other
contacts then receive a notice saying so, because an alert that reaches
nobody is how certificates expire.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import ReturningInsert

from certwatch.alerts.ack_links import ACK_KEY_NAME, AckLinkSigner
from certwatch.alerts.channels import DeliveryOutcome, deliver
from certwatch.alerts.channels.webhook import scrub_url
from certwatch.alerts.contacts import ContactAddress, ContactKind
from certwatch.alerts.message import EventKind, Notice, NoticeItem
from certwatch.alerts.retry import RandomSource, next_attempt_delay
from certwatch.alerts.serialize import notice_from_json, notice_to_json
from certwatch.alerts.settings import DeliverySettings
from certwatch.store.alerts import (
    healthy_contact_ids,
    record_contact_failure,
    record_contact_success,
    team_contact_ids,
)
from certwatch.store.models import ContactRow, OutboxRow, TeamRow
from certwatch.store.secrets import site_secret
from certwatch.x509.model import Severity

logger = logging.getLogger(__name__)

DEFAULT_LEASE = timedelta(minutes=5)
"""How long a claimed row stays away from other processes.

A send is cut off after half the lease, so its outcome is recorded before
another process may claim the row again.
"""

DEFAULT_LIMIT = 500
"""The maximum number of rows that one `deliver_due` call attempts."""

DEFAULT_CONCURRENCY = 10
"""The maximum number of deliveries in flight at once."""

CONTACT_FAILURE_LIMIT = 5
"""Failed attempts in a row after which a contact is marked unhealthy."""

CONTACT_FAILING = "contact_failing"
"""The finding code of the notice sent when a contact stops receiving alerts."""

CONTACT_FAILING_KEY = "contact-failing"
"""The start of the notice key of that notice."""


class DeliveryState(enum.StrEnum):
    """The state of an outbox message after an attempt."""

    DELIVERED = "delivered"
    RETRYING = "retrying"
    """The attempt failed, and another one is scheduled."""
    FAILED = "failed"
    """certwatch gave up: a permanent failure, or the last allowed attempt."""


@dataclass(frozen=True)
class OutboxClaim:
    """An outbox row claimed for one delivery attempt.

    `lease_expires_at` is the row's `next_attempt_at` while the claim holds.
    The outcome of a failed attempt is recorded only while it is unchanged.
    `notice` is the stored document, read back when the row is sent.
    `contact_address` contains the contact's secrets.
    """

    outbox_id: int
    team_id: int
    team: str
    contact_id: int
    contact_kind: str
    contact_address: str = field(repr=False)
    notice: dict[str, object] = field(repr=False)
    attempts: int
    lease_expires_at: datetime


@dataclass(frozen=True)
class DeliveryAttempt:
    """The outcome of one attempt to deliver an outbox message.

    `contact` is the redacted contact. `attempts` counts the attempts so
    far, this one included. `next_attempt_at` is set when `state` is
    `retrying`. `recorded` is false when the claim's lease had ended
    before the outcome of a failure was recorded, so another process owns
    the row.
    """

    outbox_id: int
    team: str
    contact_id: int
    contact: str
    state: DeliveryState
    reason: str
    attempts: int
    next_attempt_at: datetime | None
    recorded: bool = True


@dataclass(frozen=True)
class DeliveryReport:
    """The attempts of one `deliver_due` or `deliver_now` call.

    `unhealthy_contacts` lists the contacts (redacted) that these attempts
    marked unhealthy.
    """

    attempts: tuple[DeliveryAttempt, ...] = ()
    unhealthy_contacts: tuple[str, ...] = ()

    @property
    def delivered(self) -> int:
        """Messages delivered."""
        return self._count(DeliveryState.DELIVERED)

    @property
    def retrying(self) -> int:
        """Messages that failed and will be tried again."""
        return self._count(DeliveryState.RETRYING)

    @property
    def failed(self) -> int:
        """Messages given up."""
        return self._count(DeliveryState.FAILED)

    def _count(self, state: DeliveryState) -> int:
        return sum(1 for attempt in self.attempts if attempt.state is state)


def enqueue(
    session: Session,
    *,
    team_id: int,
    notice: Notice,
    now: datetime,
    escalation: bool = False,
) -> int:
    """Record `notice` for the team's contacts, due at `now`; return rows inserted.

    The notice goes to the team's contacts that are not unhealthy: the
    escalation contacts when `escalation` is set, the other contacts when
    it is not. A contact that already has a row with the notice's key is
    skipped, so deciding the same alert again after a crash adds nothing.
    A notice that no contact receives is logged as an error, except an
    escalation, because escalation contacts are optional. The caller commits.
    """
    contact_ids = healthy_contact_ids(session, team_id, escalation=escalation)
    if not contact_ids and not escalation:
        logger.error(
            "Team %s has no contact that receives alerts, so message %s reaches "
            "nobody: add one with 'certwatch contact add %s email:ADDRESS' (or "
            "webhook:, slack:, teams:).",
            notice.team,
            notice.key,
            notice.team,
        )
    return len(_insert(session, team_id, contact_ids, notice, now=now, due_at=now))


def claim_due(
    session: Session,
    *,
    now: datetime,
    limit: int,
    lease: timedelta = DEFAULT_LEASE,
    exclude: Collection[int] = (),
) -> list[OutboxClaim]:
    """Claim up to `limit` due rows, the longest waiting first.

    A row is due when it is neither delivered nor given up and its
    `next_attempt_at` has passed. Claiming moves `next_attempt_at` to
    `now + lease`. Rows with an id in `exclude` are left alone. The caller
    commits right after, which publishes the claims and on SQLite ends the
    write lock. On SQLite the claim must be the first statement of its
    transaction, because only then does it take the write lock before it
    reads.
    """
    if limit < 1:
        raise ValueError(f"Invalid claim limit {limit!r}: give at least 1.")
    if lease <= timedelta(0):
        raise ValueError(f"Invalid lease {lease!r}: give a positive duration.")
    lease_expires_at = now + lease
    due = (
        select(OutboxRow.id)
        .where(
            OutboxRow.delivered_at.is_(None),
            OutboxRow.failed_at.is_(None),
            OutboxRow.next_attempt_at <= now,
        )
        .order_by(OutboxRow.next_attempt_at, OutboxRow.id)
        .limit(limit)
    )
    if exclude:
        due = due.where(OutboxRow.id.not_in(sorted(exclude)))
    claim = (
        update(OutboxRow)
        .values(next_attempt_at=lease_expires_at)
        .execution_options(synchronize_session=False)
    )
    if session.get_bind().dialect.name == "postgresql":
        ids = list(session.scalars(due.with_for_update(skip_locked=True)))
        if ids:
            session.execute(claim.where(OutboxRow.id.in_(ids)))
    else:
        ids = list(
            session.scalars(claim.where(OutboxRow.id.in_(due)).returning(OutboxRow.id))
        )
    return _claims(session, ids, lease_expires_at)


def deliver_due(
    sessions: Callable[[], Session],
    *,
    settings: DeliverySettings,
    now_fn: Callable[[], datetime],
    rng: RandomSource | None = None,
    limit: int = DEFAULT_LIMIT,
    concurrency: int = DEFAULT_CONCURRENCY,
    lease: timedelta = DEFAULT_LEASE,
    failure_limit: int = CONTACT_FAILURE_LIMIT,
) -> DeliveryReport:
    """Send up to `limit` due outbox rows and record each outcome.

    Each row is claimed in its own transaction just before it is sent, and
    its outcome is recorded in another. A failure that may pass is tried
    again after `next_attempt_delay`, or after the receiver's Retry-After
    when that is longer. A permanent failure, or a failure of the last
    attempt that `settings.retry` allows, gives the row up. A row is tried
    at most once per call. `now_fn` returns the current time and `rng`
    spreads the retry delays.
    """
    return asyncio.run(
        deliver_due_async(
            sessions,
            settings=settings,
            now_fn=now_fn,
            rng=rng,
            limit=limit,
            concurrency=concurrency,
            lease=lease,
            failure_limit=failure_limit,
        )
    )


async def deliver_due_async(
    sessions: Callable[[], Session],
    *,
    settings: DeliverySettings,
    now_fn: Callable[[], datetime],
    rng: RandomSource | None = None,
    limit: int = DEFAULT_LIMIT,
    concurrency: int = DEFAULT_CONCURRENCY,
    lease: timedelta = DEFAULT_LEASE,
    failure_limit: int = CONTACT_FAILURE_LIMIT,
) -> DeliveryReport:
    """Do what `deliver_due` does, inside a running event loop."""
    if concurrency < 1:
        raise ValueError(f"Invalid concurrency {concurrency!r}: give at least 1.")
    sender = _Sender(
        sessions, settings, now_fn, rng or random.Random(), lease, failure_limit
    )
    remaining = limit
    tried: set[int] = set()

    async def work() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            with sessions() as session, session.begin():
                claims = claim_due(
                    session, now=now_fn(), limit=1, lease=lease, exclude=tried
                )
            if not claims:
                return
            tried.add(claims[0].outbox_id)
            await sender.attempt(claims[0], final=False)

    async with asyncio.TaskGroup() as group:
        for _ in range(min(concurrency, limit)):
            group.create_task(work())
    return sender.report()


def deliver_now(
    sessions: Callable[[], Session],
    *,
    team_id: int,
    notice: Notice,
    settings: DeliverySettings,
    now_fn: Callable[[], datetime],
    concurrency: int = DEFAULT_CONCURRENCY,
    lease: timedelta = DEFAULT_LEASE,
    failure_limit: int = CONTACT_FAILURE_LIMIT,
) -> DeliveryReport:
    """Send `notice` at once to every contact of a team, and record each send.

    Escalation contacts and unhealthy contacts get it too, so a test
    message shows whether each contact works, and a delivery clears a
    contact's unhealthy mark. Each send is an outbox row, recorded as
    claimed before it is sent. A failure is recorded as given up instead
    of being retried, but counts against the contact like any other. A
    contact that already has a row with the notice's key is skipped.
    """
    return asyncio.run(
        _deliver_now(
            sessions,
            team_id=team_id,
            notice=notice,
            settings=settings,
            now_fn=now_fn,
            concurrency=concurrency,
            lease=lease,
            failure_limit=failure_limit,
        )
    )


async def _deliver_now(
    sessions: Callable[[], Session],
    *,
    team_id: int,
    notice: Notice,
    settings: DeliverySettings,
    now_fn: Callable[[], datetime],
    concurrency: int = DEFAULT_CONCURRENCY,
    lease: timedelta = DEFAULT_LEASE,
    failure_limit: int = CONTACT_FAILURE_LIMIT,
) -> DeliveryReport:
    now = now_fn()
    with sessions() as session, session.begin():
        contact_ids = team_contact_ids(session, team_id)
        inserted = _insert(
            session, team_id, contact_ids, notice, now=now, due_at=now + lease
        )
        claims = _claims(session, inserted, now + lease)
    sender = _Sender(sessions, settings, now_fn, random.Random(), lease, failure_limit)
    slots = asyncio.Semaphore(concurrency)

    async def attempt(claim: OutboxClaim) -> None:
        async with slots:
            await sender.attempt(claim, final=True)

    async with asyncio.TaskGroup() as group:
        for claim in claims:
            group.create_task(attempt(claim))
    return sender.report()


def contact_failing_notice(
    *,
    team: str,
    contact_id: int,
    contact: ContactAddress,
    failures: int,
    reason: str,
    since: datetime,
) -> Notice:
    """Build the notice telling a team that `contact` no longer receives alerts.

    The key names the contact and the time it was marked unhealthy, so
    recording the notice twice for the same event adds nothing.
    """
    if failures > 1:
        what = f"its last {failures} deliveries failed, the last one with"
    else:
        what = "its last delivery failed with"
    message = (
        f"The contact {contact.redacted()} no longer receives alerts for team "
        f"{team}: {what}: {reason}. Fix or remove it, then run "
        f"'certwatch notify test {team}' to check that it works again."
    )
    item = NoticeItem(
        event=EventKind.PROBLEM,
        severity=Severity.CRITICAL,
        message=message,
        finding_code=CONTACT_FAILING,
    )
    return Notice(
        key=f"{CONTACT_FAILING_KEY}-{contact_id}-{since:%Y%m%dT%H%M%S%fZ}",
        team=team,
        event=EventKind.PROBLEM,
        generated_at=since,
        items=(item,),
    )


def withdraw_failing_notices(session: Session, contact_id: int) -> int:
    """Delete the unsent notices telling a team that this contact fails.

    A contact that works again would otherwise be reported as broken by
    a notice recorded while it failed. Returns how many were deleted.
    """
    prefix = f"{CONTACT_FAILING_KEY}-{contact_id}-"
    result = session.execute(
        delete(OutboxRow).where(
            OutboxRow.notice_key.startswith(prefix, autoescape=True),
            OutboxRow.delivered_at.is_(None),
            OutboxRow.failed_at.is_(None),
        )
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


class _Sender:
    """Sends claimed rows and records their outcomes, for one call."""

    def __init__(
        self,
        sessions: Callable[[], Session],
        settings: DeliverySettings,
        now_fn: Callable[[], datetime],
        rng: RandomSource,
        lease: timedelta,
        failure_limit: int,
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.now_fn = now_fn
        self.rng = rng
        self.deadline = lease.total_seconds() / 2
        self.failure_limit = failure_limit
        self.attempts: list[DeliveryAttempt] = []
        self.unhealthy: list[str] = []
        self._ack_links: AckLinkSigner | None = None

    def report(self) -> DeliveryReport:
        return DeliveryReport(tuple(self.attempts), tuple(self.unhealthy))

    async def attempt(self, claim: OutboxClaim, *, final: bool) -> None:
        """Send one claimed row and record the outcome; a failure is final if asked."""
        try:
            contact = _contact(claim)
            notice = notice_from_json(claim.notice)
        except ValueError as exc:
            self._give_up_unreadable(claim, str(exc))
            return
        outcome = await self._send(contact, notice)
        with self.sessions() as session, session.begin():
            if outcome.delivered:
                attempt = self._record_delivery(session, claim, contact, outcome)
            else:
                attempt = self._record_failure(
                    session, claim, contact, outcome, final=final
                )
        _log_attempt(attempt)
        self.attempts.append(attempt)

    async def _send(self, contact: ContactAddress, notice: Notice) -> DeliveryOutcome:
        try:
            async with asyncio.timeout(self.deadline):
                return await deliver(
                    contact,
                    notice,
                    self.settings,
                    ack_links=self._signer(contact, notice),
                )
        except TimeoutError:
            return DeliveryOutcome.transient(
                f"the delivery did not finish within {self.deadline:g} s"
            )
        except Exception as exc:
            # The top of the delivery job: a bug in a channel becomes a failed
            # attempt, recorded on the row and retried like any other.
            # No traceback is logged, since its message may contain the URL.
            detail = scrub_url(str(exc), contact.value)[:200]
            reason = (
                f"unexpected {type(exc).__name__} in the {contact.kind.value} "
                f"channel: {detail}"
            )
            logger.error("Delivery to %s failed: %s", contact.redacted(), reason)
            return DeliveryOutcome.transient(reason)

    def _signer(self, contact: ContactAddress, notice: Notice) -> AckLinkSigner | None:
        """Return the signer of acknowledge links when this email needs one.

        An email needs links when a public URL is set and an item names an
        open alert. The signing key is read, or made, on first use.
        """
        public_url = self.settings.public_url
        if public_url is None or contact.kind is not ContactKind.EMAIL:
            return None
        if all(item.alert_id is None for item in notice.items):
            return None
        if self._ack_links is None:
            with self.sessions() as session, session.begin():
                key = site_secret(session, ACK_KEY_NAME, now=self.now_fn())
            self._ack_links = AckLinkSigner(public_url.rstrip("/"), key)
        return self._ack_links

    def _record_delivery(
        self,
        session: Session,
        claim: OutboxClaim,
        contact: ContactAddress,
        outcome: DeliveryOutcome,
    ) -> DeliveryAttempt:
        now = self.now_fn()
        # A delivery is recorded even after the lease ended, because the
        # message did arrive.
        session.execute(
            update(OutboxRow)
            .where(OutboxRow.id == claim.outbox_id, OutboxRow.delivered_at.is_(None))
            .values(
                delivered_at=now,
                failed_at=None,
                attempts=OutboxRow.attempts + 1,
            )
        )
        if record_contact_success(session, claim.contact_id):
            withdrawn = withdraw_failing_notices(session, claim.contact_id)
            logger.info(
                "Contact %s of team %s works again and receives alerts; "
                "withdrew %d unsent notices that said it failed",
                contact.redacted(),
                claim.team,
                withdrawn,
            )
        return DeliveryAttempt(
            outbox_id=claim.outbox_id,
            team=claim.team,
            contact_id=claim.contact_id,
            contact=contact.redacted(),
            state=DeliveryState.DELIVERED,
            reason=outcome.reason,
            attempts=claim.attempts + 1,
            next_attempt_at=None,
        )

    def _record_failure(
        self,
        session: Session,
        claim: OutboxClaim,
        contact: ContactAddress,
        outcome: DeliveryOutcome,
        *,
        final: bool,
    ) -> DeliveryAttempt:
        now = self.now_fn()
        attempts = claim.attempts + 1
        policy = self.settings.retry
        next_attempt_at = None
        if not (final or outcome.permanent or attempts >= policy.max_attempts):
            delay = next_attempt_delay(attempts, self.rng, policy)
            if outcome.retry_after is not None:
                delay = max(delay, outcome.retry_after)
            next_attempt_at = now + delay
        recorded = _record_failed_row(
            session, claim, now, attempts, outcome.reason, next_attempt_at
        )
        failure = record_contact_failure(
            session,
            claim.contact_id,
            reason=outcome.reason,
            now=now,
            limit=self.failure_limit,
            permanent=outcome.permanent,
        )
        if failure.became_unhealthy:
            self._announce_unhealthy(
                session, claim, contact, failure.failures, outcome.reason, now
            )
        return DeliveryAttempt(
            outbox_id=claim.outbox_id,
            team=claim.team,
            contact_id=claim.contact_id,
            contact=contact.redacted(),
            state=(
                DeliveryState.FAILED
                if next_attempt_at is None
                else DeliveryState.RETRYING
            ),
            reason=outcome.reason,
            attempts=attempts,
            next_attempt_at=next_attempt_at,
            recorded=recorded,
        )

    def _announce_unhealthy(
        self,
        session: Session,
        claim: OutboxClaim,
        contact: ContactAddress,
        failures: int,
        reason: str,
        now: datetime,
    ) -> None:
        self.unhealthy.append(contact.redacted())
        others = healthy_contact_ids(
            session, claim.team_id, escalation=None, exclude=claim.contact_id
        )
        if not others:
            logger.error(
                "Contact %s of team %s no longer receives alerts (%s), and the "
                "team has no other working contact: alerts for team %s reach "
                "nobody. Fix the contact, or add another with 'certwatch contact "
                "add'.",
                contact.redacted(),
                claim.team,
                reason,
                claim.team,
            )
            return
        notice = contact_failing_notice(
            team=claim.team,
            contact_id=claim.contact_id,
            contact=contact,
            failures=failures,
            reason=reason,
            since=now,
        )
        _insert(session, claim.team_id, others, notice, now=now, due_at=now)
        logger.warning(
            "Contact %s of team %s no longer receives alerts (%s); telling the "
            "team's %d other %s",
            contact.redacted(),
            claim.team,
            reason,
            len(others),
            "contact" if len(others) == 1 else "contacts",
        )

    def _give_up_unreadable(self, claim: OutboxClaim, problem: str) -> None:
        # The row itself is broken, not the contact, so the contact's health
        # is left alone.
        now = self.now_fn()
        with self.sessions() as session, session.begin():
            recorded = _record_failed_row(
                session, claim, now, claim.attempts + 1, problem, None
            )
        attempt = DeliveryAttempt(
            outbox_id=claim.outbox_id,
            team=claim.team,
            contact_id=claim.contact_id,
            contact=_redacted_or_kind(claim),
            state=DeliveryState.FAILED,
            reason=problem,
            attempts=claim.attempts + 1,
            next_attempt_at=None,
            recorded=recorded,
        )
        _log_attempt(attempt)
        self.attempts.append(attempt)


def _insert(
    session: Session,
    team_id: int,
    contact_ids: Sequence[int],
    notice: Notice,
    *,
    now: datetime,
    due_at: datetime,
) -> list[int]:
    """Insert a row per contact unless it has one with the key; return new ids."""
    if not contact_ids:
        return []
    document = notice_to_json(notice)
    rows = [
        {
            "team_id": team_id,
            "contact_id": contact_id,
            "notice_key": notice.key,
            "event": notice.event.value,
            "notice": document,
            "created_at": now,
            "next_attempt_at": due_at,
            "attempts": 0,
        }
        for contact_id in contact_ids
    ]
    key = [OutboxRow.contact_id, OutboxRow.notice_key]
    statement: ReturningInsert[tuple[int]]
    if session.get_bind().dialect.name == "postgresql":
        statement = (
            postgresql_insert(OutboxRow)
            .values(rows)
            .on_conflict_do_nothing(index_elements=key)
            .returning(OutboxRow.id)
        )
    else:
        statement = (
            sqlite_insert(OutboxRow)
            .values(rows)
            .on_conflict_do_nothing(index_elements=key)
            .returning(OutboxRow.id)
        )
    return sorted(session.scalars(statement))


def _claims(
    session: Session, ids: Sequence[int], lease_expires_at: datetime
) -> list[OutboxClaim]:
    if not ids:
        return []
    query = (
        select(
            OutboxRow.id,
            OutboxRow.team_id,
            TeamRow.name,
            OutboxRow.contact_id,
            ContactRow.kind,
            ContactRow.address,
            OutboxRow.notice,
            OutboxRow.attempts,
        )
        .join(TeamRow, TeamRow.id == OutboxRow.team_id)
        .join(ContactRow, ContactRow.id == OutboxRow.contact_id)
        .where(OutboxRow.id.in_(ids))
        .order_by(OutboxRow.id)
    )
    return [
        OutboxClaim(
            outbox_id=outbox_id,
            team_id=team_id,
            team=team,
            contact_id=contact_id,
            contact_kind=kind,
            contact_address=address,
            notice=notice,
            attempts=attempts,
            lease_expires_at=lease_expires_at,
        )
        for (
            outbox_id,
            team_id,
            team,
            contact_id,
            kind,
            address,
            notice,
            attempts,
        ) in session.execute(query)
    ]


def _record_failed_row(
    session: Session,
    claim: OutboxClaim,
    now: datetime,
    attempts: int,
    reason: str,
    next_attempt_at: datetime | None,
) -> bool:
    """Record a failed attempt while the claim holds; return whether it held."""
    values: dict[str, object] = {"attempts": attempts, "last_error": reason}
    if next_attempt_at is None:
        values["failed_at"] = now
    else:
        values["next_attempt_at"] = next_attempt_at
    result = session.execute(
        update(OutboxRow)
        .where(
            OutboxRow.id == claim.outbox_id,
            OutboxRow.delivered_at.is_(None),
            OutboxRow.failed_at.is_(None),
            OutboxRow.next_attempt_at == claim.lease_expires_at,
        )
        .values(**values)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def _contact(claim: OutboxClaim) -> ContactAddress:
    try:
        kind = ContactKind(claim.contact_kind)
    except ValueError:
        raise ValueError(
            f"the stored contact kind {claim.contact_kind!r} is unknown to this "
            "version of certwatch"
        ) from None
    return ContactAddress(kind, claim.contact_address)


def _redacted_or_kind(claim: OutboxClaim) -> str:
    try:
        return _contact(claim).redacted()
    except ValueError:
        return f"{claim.contact_kind}:…"


def _log_attempt(attempt: DeliveryAttempt) -> None:
    if attempt.state is DeliveryState.DELIVERED:
        logger.info(
            "Outbox %d: delivered to %s for team %s: %s",
            attempt.outbox_id,
            attempt.contact,
            attempt.team,
            attempt.reason,
        )
    elif attempt.state is DeliveryState.RETRYING:
        logger.warning(
            "Outbox %d: delivery to %s for team %s failed (attempt %d), next "
            "attempt at %s: %s",
            attempt.outbox_id,
            attempt.contact,
            attempt.team,
            attempt.attempts,
            attempt.next_attempt_at,
            attempt.reason,
        )
    else:
        logger.error(
            "Outbox %d: gave up delivering to %s for team %s at attempt %d: %s",
            attempt.outbox_id,
            attempt.contact,
            attempt.team,
            attempt.attempts,
            attempt.reason,
        )
    if not attempt.recorded:
        logger.warning(
            "Outbox %d: the claim ended before the outcome was recorded; another "
            "process owns the message now",
            attempt.outbox_id,
        )
