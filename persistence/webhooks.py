"""Webhook side of the store: addresses, inbound messages, provider reports, raw payloads.

Each webhook delivery is one transaction. Its dedupe keys are inserted into webhook_receipts in
that same transaction (ON CONFLICT DO NOTHING), so a report or inbound message is applied at
most once however often, and however concurrently, the provider delivers it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast
from uuid import UUID

from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.domain.addresses import conversation_key
from gateway.domain.channels import Channel, Direction
from gateway.domain.ids import new_id
from gateway.domain.records import DeliveryError, Message, MessageEvent
from gateway.domain.statuses import MessageStatus
from persistence.base import Repository, event_row, insert_events
from persistence.conversations import resolve_conversations
from persistence.lifecycle import Change, advancing_to, change_status
from persistence.models import AddressRow, WebhookReceiptRow
from persistence.rows import CONVERSATIONS, MESSAGES, message_from_row, message_to_row

ADDRESSES = cast(Table, AddressRow.__table__)
RECEIPTS = cast(Table, WebhookReceiptRow.__table__)


@dataclass(frozen=True, slots=True)
class Report:
    """What a provider told us about one message (storage-side view of a StatusReport)."""

    dedupe_key: str
    message_id: UUID | None
    provider: str
    provider_message_id: str | None
    status: MessageStatus | None
    kind: str
    detail: dict[str, Any]
    error: DeliveryError | None


@dataclass(frozen=True, slots=True)
class Inbound:
    account_id: UUID
    channel: Channel
    sender: str
    recipient: str
    body: str | None
    attachments: tuple[str, ...]
    provider: str
    provider_message_id: str
    sent_at: datetime | None
    dedupe_key: str
    metadata: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class ReportOutcome:
    applied: list[MessageEvent]
    duplicates: int
    unmatched: int


class WebhookRepository(Repository):
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
        self, source: str, reports: list[Report], now: datetime
    ) -> ReportOutcome:
        applied: list[MessageEvent] = []
        duplicates = unmatched = 0
        async with self.engine.begin() as conn:
            for report in reports:
                if not await self._claim(conn, source, report.dedupe_key, now):
                    duplicates += 1
                    continue
                message = await self._find(conn, report)
                if message is None:
                    unmatched += 1
                    await self._mark(conn, report.dedupe_key, "unmatched")
                    continue
                event = await self._apply(conn, message, report, now)
                if event is not None:
                    applied.append(event)
        return ReportOutcome(applied, duplicates, unmatched)

    async def _find(self, conn: AsyncConnection, report: Report) -> Message | None:
        m = MESSAGES.c
        if report.message_id is not None:
            query = select(MESSAGES).where(m.id == report.message_id)
        elif report.provider_message_id is not None:
            query = select(MESSAGES).where(m.provider_message_id == report.provider_message_id)
        else:
            return None
        # Locked (FOR NO KEY UPDATE): a report recorded without a status change copies the
        # current status into its event, so it must wait for a worker's uncommitted change
        # (e.g. SENDING -> SENT) instead of copying the status from before it.
        row = (await conn.execute(query.limit(1).with_for_update(key_share=True))).first()
        return message_from_row(row) if row else None

    async def _apply(
        self, conn: AsyncConnection, message: Message, report: Report, now: datetime
    ) -> MessageEvent | None:
        if report.status is None:
            # Recorded in the audit trail, status unchanged (deferred, engagement, ...).
            [event] = await insert_events(
                conn, [event_row(message, message.status, report.kind, report.detail, now)]
            )
            return event
        values: dict[str, Any] = {"status": report.status.value}
        if report.error is not None:
            values.update(
                error_code=report.error.code,
                error_description=report.error.description,
                error_permanent=report.error.permanent,
            )
        changes: list[Change] = await change_status(
            conn,
            [MESSAGES.c.id == message.id, advancing_to(report.status)],
            values,
            report.kind,
            report.detail,
            now,
        )
        # No change: a late or out-of-order report. The status never moves backwards.
        return changes[0].event if changes else None

    async def _mark(self, conn: AsyncConnection, dedupe_key: str, outcome: str) -> None:
        await conn.execute(
            RECEIPTS.update().where(RECEIPTS.c.dedupe_key == dedupe_key).values(outcome=outcome)
        )

    async def receive(self, inbound: Inbound, now: datetime) -> Change | None:
        """Store an inbound message (RECEIVED) in its conversation; None for a duplicate."""
        async with self.engine.begin() as conn:
            if not await self._claim(conn, inbound.provider, inbound.dedupe_key, now):
                return None
            triple = (inbound.account_id, *conversation_key(inbound.sender, inbound.recipient))
            conversations, _ = await resolve_conversations(self, conn, [triple], now)
            message = Message(
                id=new_id(),
                account_id=inbound.account_id,
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
                error=None,
                idempotency_key=None,
                send_at=None,
                next_attempt_at=None,
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

    async def keep_raw(
        self,
        source: str,
        *,
        outcome: str,
        content_type: str | None,
        payload: str,
        error: str | None,
        now: datetime,
    ) -> int:
        """Keep a payload we did not apply, for inspection and replay."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                RECEIPTS.insert().returning(RECEIPTS.c.id),
                {
                    "source": source,
                    "dedupe_key": None,
                    "outcome": outcome,
                    "content_type": content_type,
                    "payload": payload,
                    "error": error,
                    "received_at": now,
                },
            )
            receipt_id: int = result.scalar_one()
        return receipt_id
