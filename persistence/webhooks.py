"""Webhook side of the store: addresses, inbound messages, provider reports, raw payloads.

Dedupe keys are inserted into webhook_receipts in the transaction that applies them (ON
CONFLICT DO NOTHING), so a report or inbound message is applied at most once however often,
and however concurrently, the provider delivers it. Reports of concurrent deliveries share
one transaction (see ``apply_reports``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, cast
from uuid import UUID

from sqlalchemy import Boolean, Table, bindparam, case, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.domain.addresses import conversation_key
from gateway.domain.channels import Channel, Direction
from gateway.domain.ids import encode_id, new_id
from gateway.domain.pacing import Queued
from gateway.domain.records import DeliveryError, Message, MessageEvent
from gateway.domain.reports import KIND_THROUGHPUT_REQUEUED, InboundMessage, StatusReport
from gateway.domain.results import Change, ReportResult
from gateway.domain.statuses import Advance, MessageStatus, Requeue, Stale, decide_report
from gateway.domain.suppressions import NewSuppression, SuppressionReason, provider_suppression
from gateway.services.ports import RawPayload
from persistence import report_sql
from persistence.base import Repository, event_row, insert_events
from persistence.conversations import resolve_conversations
from persistence.models import AddressRow, WebhookReceiptRow
from persistence.rows import CONVERSATIONS, MESSAGES, message_to_row
from persistence.suppressions import SUPPRESSIONS, insert_new

ADDRESSES = cast(Table, AddressRow.__table__)
RECEIPTS = cast(Table, WebhookReceiptRow.__table__)


DUPLICATE: Final = ReportResult("duplicate")
UNMATCHED: Final = ReportResult("unmatched")
STALE: Final = ReportResult("stale")

_M = MESSAGES.c
_TARGET_COLUMNS: Final = (
    _M.id,
    _M.account_id,
    _M.conversation_id,
    _M.status,
    _M.provider_message_id,
    _M.error_code,
    _M.error_description,
    _M.error_permanent,
    _M.channel,
    _M.sender,
    _M.recipient,
    _M.segments,
)


@dataclass(slots=True, eq=False)
class _Target:
    """A locked message as the reports of one batch move it along; made from a row of
    ``_TARGET_COLUMNS``, in their order."""

    id: UUID
    account_id: UUID
    conversation_id: UUID
    status: MessageStatus
    provider_message_id: str | None
    error_code: str | None
    error_description: str | None
    error_permanent: bool | None
    channel: str
    sender: str
    recipient: str
    segments: int | None
    #: The status it had when it was locked.
    locked_status: MessageStatus = field(init=False)
    #: Its last attempt given back (a throughput requeue): not counted, due again now.
    uncounted: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        # The row carries the status as text.
        self.locked_status = self.status = MessageStatus(self.status)

    def advance(self, status: MessageStatus, error: DeliveryError | None) -> None:
        self.status = status
        if error is not None:
            self.error_code = error.code
            self.error_description = error.description
            self.error_permanent = error.permanent

    def requeue(self) -> Queued:
        """Back to QUEUED, its attempt given back; what to enqueue after the commit. It is due
        at once: the sender's pause in the shared pacer holds it until the pause is over."""
        self.status = MessageStatus.QUEUED
        self.uncounted = True
        return Queued(self.id, self.account_id, self.sender, max(1, self.segments or 1))

    def event_row(
        self, report: StatusReport, now: datetime, decision: Requeue | None = None
    ) -> dict[str, Any]:
        kind, detail = report.kind, report.detail
        if decision is not None:
            kind, detail = KIND_THROUGHPUT_REQUEUED, {**detail, "reason": decision.reason}
        return {
            "account_id": self.account_id,
            "message_id": self.id,
            "conversation_id": self.conversation_id,
            "status": self.status.value,
            "kind": kind,
            "detail": detail,
            "occurred_at": now,
        }

    def suppression(self, report: StatusReport, reason: SuppressionReason) -> NewSuppression:
        """What ``report`` suppresses: its message's recipient, for the message's account."""
        detail = {**report.detail, "messageId": encode_id("Message", self.id)}
        return provider_suppression(
            self.account_id, Channel(self.channel), self.sender, self.recipient, reason, detail
        )


class _Targets:
    def __init__(self) -> None:
        self.by_id: dict[UUID, _Target] = {}
        self.by_provider_id: dict[str, _Target] = {}

    def add(self, target: _Target) -> None:
        self.by_id[target.id] = target
        if target.provider_message_id is not None:
            # Rows come in id order: the first one wins, as a lookup by provider id alone did.
            self.by_provider_id.setdefault(target.provider_message_id, target)

    def changed(self) -> list[_Target]:
        return [t for t in self.by_id.values() if t.status != t.locked_status]


def _target_of(targets: _Targets, report: StatusReport) -> _Target | None:
    if report.message_id is not None:
        return targets.by_id.get(report.message_id)
    if report.provider_message_id is not None:
        return targets.by_provider_id.get(report.provider_message_id)
    return None


def _names(reports: Sequence[StatusReport]) -> tuple[list[UUID], list[str]]:
    """The message ids the reports name, and the provider ids of those naming no id."""
    ids = sorted({r.message_id for r in reports if r.message_id is not None})
    sids = sorted(
        {
            r.provider_message_id
            for r in reports
            if r.message_id is None and r.provider_message_id is not None
        }
    )
    return ids, sids


@dataclass(frozen=True, slots=True)
class _Batch:
    """The (source, report) pairs of one ``apply_reports`` call, and its results to fill in."""

    reports: Sequence[tuple[str, StatusReport]]
    #: The index of each dedupe key's first report, in order: the others are duplicates.
    fresh: list[int]
    results: list[ReportResult]
    now: datetime

    def fresh_reports(self) -> list[tuple[str, StatusReport]]:
        return [self.reports[index] for index in self.fresh]


def _execute(
    batch: _Batch, targets: _Targets, claimed: set[str]
) -> tuple[list[int], list[dict[str, Any]], list[NewSuppression], dict[int, Queued]]:
    """Move the locked targets along the claimed reports, in order, as ``decide_report``
    decides; fills the batch's results for the reports that apply nothing and returns the
    others' indexes and event rows, the suppressions the claimed reports leave (a stale one's
    too: a hard bounce after a delivery still says the address is gone), and by report index
    the messages requeued, to enqueue after the commit."""
    pending: list[int] = []
    rows: list[dict[str, Any]] = []
    suppressions: list[NewSuppression] = []
    requeued: dict[int, Queued] = {}
    results = batch.results
    for index in batch.fresh:
        report = batch.reports[index][1]
        if report.dedupe_key not in claimed:
            continue  # applied by another request (or an earlier delivery)
        target = _target_of(targets, report)
        if target is None:
            results[index] = UNMATCHED
            continue
        if report.suppression is not None:
            suppressions.append(target.suppression(report, report.suppression))
        decision = decide_report(
            target.status, report.status, throughput_refusal=report.throughput_refusal
        )
        if isinstance(decision, Stale):
            results[index] = STALE
            continue
        if isinstance(decision, Advance):
            target.advance(decision.to, report.error)
        requeue = decision if isinstance(decision, Requeue) else None
        if requeue is not None:
            requeued[index] = target.requeue()
        pending.append(index)
        rows.append(target.event_row(report, batch.now, requeue))
    return pending, rows, suppressions, requeued


class WebhookRepository(Repository):
    async def reachable(self) -> bool:
        """Whether the database answers now (the replay of kept payloads waits for it)."""
        try:
            async with self.engine.connect() as conn:
                await conn.execute(select(1))
        except Exception:
            return False
        return True

    async def owner_of(self, address: str) -> UUID | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(ADDRESSES.c.account_id).where(ADDRESSES.c.address == address)
                )
            ).first()
        return row[0] if row else None

    async def add_address(self, account_id: UUID, address: str, now: datetime) -> UUID:
        """Give ``address`` to the account; returns the owner (another account if taken)."""
        async with self.engine.begin() as conn:
            await conn.execute(
                self.upsert(ADDRESSES).on_conflict_do_nothing(),
                {"id": new_id(), "account_id": account_id, "address": address, "created_at": now},
            )
            row = (
                await conn.execute(
                    select(ADDRESSES.c.account_id).where(ADDRESSES.c.address == address)
                )
            ).one()
        owner: UUID = row[0]
        return owner

    async def addresses_of(self, account_id: UUID) -> set[str]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(ADDRESSES.c.address).where(ADDRESSES.c.account_id == account_id)
            )
        return {r[0] for r in rows}

    async def _claim(
        self, conn: AsyncConnection, source: str, dedupe_key: str, now: datetime
    ) -> bool:
        result = await conn.execute(
            self.upsert(RECEIPTS).on_conflict_do_nothing().returning(RECEIPTS.c.id),
            {"source": source, "dedupe_key": dedupe_key, "outcome": "applied", "received_at": now},
        )
        return result.first() is not None

    async def apply_reports(
        self, reports: Sequence[tuple[str, StatusReport]], now: datetime
    ) -> list[ReportResult]:
        """Apply (source, report) pairs in one transaction; one result per pair, in order.

        Concurrent webhook requests share this call (group commit), so the transaction costs a
        fixed number of statements however many reports it carries. Within it, reports apply
        in the order given: a ``sent`` and a ``delivered`` for one message both count.
        """
        results: list[ReportResult] = [DUPLICATE] * len(reports)
        first: dict[str, int] = {}
        for index, (_, report) in enumerate(reports):
            first.setdefault(report.dedupe_key, index)  # a repeat within the batch: duplicate
        batch = _Batch(reports, sorted(first.values()), results, now)
        if self.dialect == "postgresql":
            applied = await self._apply_on_postgresql(batch)
        else:
            applied = await self._apply_portably(batch)
        pending, events, requeued = applied
        for index, event in zip(pending, events, strict=True):
            results[index] = ReportResult("applied", event, requeued.get(index))
        return results

    async def _apply_on_postgresql(
        self, batch: _Batch
    ) -> tuple[list[int], list[MessageEvent], dict[int, Queued]]:
        """Two statements on the driver's connection (see persistence/report_sql.py)."""
        fresh, now = batch.fresh_reports(), batch.now
        ids, sids = _names([r for _, r in fresh])
        claims = [(src, r.dedupe_key, r.message_id, r.provider_message_id) for src, r in fresh]
        async with self.driver() as driver, driver.transaction():
            locked, claimed = await report_sql.lock_and_claim(driver, ids, sids, claims, now)
            targets = _Targets()
            for row in locked:
                targets.add(_Target(*row))
            pending, rows, suppressions, requeued = _execute(batch, targets, claimed)
            events = await report_sql.record(driver, targets.changed(), rows, now)
            await report_sql.suppress(driver, suppressions, now)
        return pending, events, requeued

    async def _apply_portably(
        self, batch: _Batch
    ) -> tuple[list[int], list[MessageEvent], dict[int, Queued]]:
        fresh, now = batch.fresh_reports(), batch.now
        async with self.engine.begin() as conn:
            targets = await self._lock_targets(conn, [r for _, r in fresh])
            claims = []
            for source, report in fresh:
                found = _target_of(targets, report) is not None
                claims.append((source, report.dedupe_key, "applied" if found else "unmatched"))
            claimed = await self._claim_many(conn, claims, now)
            pending, rows, suppressions, requeued = _execute(batch, targets, claimed)
            await self._write_changes(conn, targets.changed(), now)
            events = await insert_events(conn, rows)
            await insert_new(conn, self.upsert(SUPPRESSIONS), suppressions, now)
        return pending, events, requeued

    async def _lock_targets(self, conn: AsyncConnection, reports: list[StatusReport]) -> _Targets:
        """The messages the reports name, locked (FOR NO KEY UPDATE) in id order.

        Locked: a report recorded without a status change copies the current status into its
        event, and a status change is decided here from the current status, so both must wait
        for a worker's uncommitted change (e.g. SENDING -> SENT). Id order: two batches
        locking overlapping messages cannot deadlock.
        """
        ids, sids = _names(reports)
        targets = _Targets()
        if not ids and not sids:
            return targets
        m = MESSAGES.c
        where = []
        if ids:
            where.append(m.id.in_(ids))
        if sids:
            where.append(m.provider_message_id.in_(sids))
        rows = await conn.execute(
            select(*_TARGET_COLUMNS)
            .where(or_(*where))
            .order_by(m.id)
            .with_for_update(key_share=True)
        )
        for row in rows:
            values: tuple[Any, ...] = tuple(row)
            targets.add(_Target(*values))
        return targets

    async def _claim_many(
        self, conn: AsyncConnection, claims: list[tuple[str, str, str]], now: datetime
    ) -> set[str]:
        """Insert the dedupe keys; returns those that were new (not applied before), or
        unmatched before and matched now."""
        if not claims:
            return set()
        # Key order: two batches claiming overlapping keys wait on each other in one order.
        rows = [
            {"source": source, "dedupe_key": key, "outcome": outcome, "received_at": now}
            for source, key, outcome in sorted(claims, key=lambda claim: claim[1])
        ]
        # As on PostgreSQL (persistence/report_sql.py): a key left unmatched before is claimed
        # again once its message is found.
        upsert = self.upsert(RECEIPTS)
        r = RECEIPTS.c
        statement = upsert.on_conflict_do_update(
            index_elements=[r.dedupe_key],
            set_={"outcome": upsert.excluded.outcome, "received_at": upsert.excluded.received_at},
            where=(r.outcome == "unmatched") & (upsert.excluded.outcome == "applied"),
        ).returning(r.dedupe_key)
        result = await conn.execute(statement, rows)
        return {row[0] for row in result}

    async def _write_changes(
        self, conn: AsyncConnection, changed: list[_Target], now: datetime
    ) -> None:
        if not changed:
            return
        m = MESSAGES.c
        uncounted = bindparam("b_uncounted", type_=Boolean())
        # Guarded by the status read under lock: belt and braces for forward-only statuses.
        statement = (
            update(MESSAGES)
            .where(m.id == bindparam("b_id"), m.status == bindparam("b_was"))
            .values(
                status=bindparam("b_status"),
                error_code=bindparam("b_code"),
                error_description=bindparam("b_description"),
                error_permanent=bindparam("b_permanent"),
                attempts=case((uncounted, m.attempts - 1), else_=m.attempts),
                next_attempt_at=case(
                    (uncounted, literal(now, m.next_attempt_at.type)), else_=m.next_attempt_at
                ),
                updated_at=now,
            )
        )
        await conn.execute(
            statement,
            [
                {
                    "b_id": t.id,
                    "b_was": t.locked_status.value,
                    "b_status": t.status.value,
                    "b_code": t.error_code,
                    "b_description": t.error_description,
                    "b_permanent": t.error_permanent,
                    "b_uncounted": t.uncounted,
                }
                for t in changed
            ],
        )

    async def receive(
        self, account_id: UUID, inbound: InboundMessage, now: datetime
    ) -> Change | None:
        """Store an inbound message (RECEIVED) in its conversation; None for a duplicate.
        In the running unit of work, if any (an inbound keyword is acted on in it too)."""
        async with self.transaction() as conn:
            if not await self._claim(conn, inbound.provider, inbound.dedupe_key, now):
                return None
            triple = (account_id, *conversation_key(inbound.sender, inbound.recipient))
            conversations, _ = await resolve_conversations(self, conn, [triple], now)
            message = Message(
                id=new_id(),
                account_id=account_id,
                conversation_id=conversations[triple],
                channel=inbound.channel,
                direction=Direction.INBOUND,
                sender=inbound.sender,
                recipient=inbound.recipient,
                body=inbound.body,
                attachments=inbound.attachments,
                status=MessageStatus.RECEIVED,
                provider=inbound.provider,
                provider_message_id=inbound.provider_message_id,
                attempts=0,
                segments=None,
                encoding=None,
                metadata=inbound.metadata,
                created_at=now,
                updated_at=now,
                sent_at=inbound.sent_at,
            )
            await conn.execute(MESSAGES.insert(), [message_to_row(message)])
            # A reply makes its conversation the most recently active one. (Inbound traffic is
            # one row per webhook call, so this row lock is short and rarely contended.)
            c = CONVERSATIONS.c
            await conn.execute(
                CONVERSATIONS.update()
                .where(c.id == message.conversation_id, c.last_message_at < now)
                .values(last_message_at=now)
            )
            [event] = await insert_events(
                conn,
                [
                    event_row(
                        message,
                        MessageStatus.RECEIVED,
                        "received",
                        {"provider": inbound.provider},
                        now,
                    )
                ],
            )
        return Change(message, event)

    async def keep_raw(self, raw: RawPayload, now: datetime) -> int:
        """Keep a payload we did not apply, for inspection and replay."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                RECEIPTS.insert().returning(RECEIPTS.c.id),
                {
                    "source": raw.source,
                    "dedupe_key": None,
                    "outcome": raw.outcome,
                    "content_type": raw.content_type,
                    "payload": raw.payload,
                    "error": raw.error,
                    "received_at": now,
                    "route": raw.route,
                    "query": raw.query,
                },
            )
            receipt_id: int = result.scalar_one()
        return receipt_id
