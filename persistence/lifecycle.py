"""Status changes after acceptance: claims, outcomes, callbacks, cancel, retry, scheduling.

Every change is a conditional UPDATE whose WHERE clause names the statuses it may leave, so two
processes racing on one message cannot both win, and a status never moves backwards whatever
order callbacks arrive in. Each change writes its audit-trail event in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import ColumnElement, bindparam, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.domain.records import DeliveryError, Message, MessageEvent
from gateway.domain.statuses import MessageStatus, can_advance, can_cancel, can_retry
from persistence.base import Repository, event_row, insert_events
from persistence.rows import CONVERSATIONS, MESSAGES, message_from_row

S = MessageStatus


@dataclass(frozen=True, slots=True)
class Change:
    """A committed status change: the message as it is now and the event that recorded it."""

    message: Message
    event: MessageEvent


def _from(statuses: list[MessageStatus]) -> ColumnElement[bool]:
    return MESSAGES.c.status.in_([s.value for s in statuses])


def _error_columns(error: DeliveryError | None) -> dict[str, Any]:
    return {
        "error_code": error.code if error else None,
        "error_description": error.description if error else None,
        "error_permanent": error.permanent if error else None,
    }


async def change_status(
    conn: AsyncConnection,
    where: list[ColumnElement[bool]],
    values: dict[str, Any],
    kind: str,
    detail: dict[str, Any] | None,
    now: datetime,
) -> list[Change]:
    """Conditional UPDATE of messages plus one audit-trail event per changed message."""
    rows = await conn.execute(
        update(MESSAGES).where(*where).values(updated_at=now, **values).returning(MESSAGES)
    )
    messages = [message_from_row(r) for r in rows]
    events = await insert_events(
        conn, [event_row(m, m.status, kind, detail, now) for m in messages]
    )
    return [Change(m, e) for m, e in zip(messages, events, strict=True)]


def advancing_to(new: MessageStatus) -> ColumnElement[bool]:
    """WHERE clause: the statuses a message may leave to reach ``new`` going forward."""
    return _from([s for s in MessageStatus if can_advance(s, new)])


class LifecycleRepository(Repository):
    _change = staticmethod(change_status)

    async def _one(
        self,
        where: list[ColumnElement[bool]],
        values: dict[str, Any],
        kind: str,
        detail: dict[str, Any] | None,
        now: datetime,
    ) -> Change | None:
        async with self.engine.begin() as conn:
            changes = await self._change(conn, where, values, kind, detail, now)
        return changes[0] if changes else None

    async def claim(self, message_id: UUID, now: datetime) -> Change | None:
        """QUEUED and due -> SENDING, one attempt more. None when someone else got it first."""
        m = MESSAGES.c
        return await self._one(
            [m.id == message_id, _from([S.QUEUED]), m.next_attempt_at <= now],
            {"status": S.SENDING.value, "attempts": m.attempts + 1},
            "attempt",
            None,
            now,
        )

    async def record_sent(
        self, message_id: UUID, provider: str, provider_message_id: str, now: datetime
    ) -> Change | None:
        m = MESSAGES.c
        values = {
            "provider": provider,
            "provider_message_id": provider_message_id,
            "sent_at": now,
        }
        detail = {"provider": provider, "providerMessageId": provider_message_id}
        async with self.engine.begin() as conn:
            changes = await self._change(
                conn,
                [m.id == message_id, _from([S.SENDING])],
                {"status": S.SENT.value, **values},
                "provider_accepted",
                detail,
                now,
            )
            if not changes:
                # A delivery receipt overtook the provider's answer: keep its status, still
                # record who carried the message.
                changes = await self._change(
                    conn, [m.id == message_id], values, "provider_accepted", detail, now
                )
        return changes[0] if changes else None

    async def record_retry(
        self,
        message_id: UUID,
        error: DeliveryError,
        next_attempt_at: datetime,
        now: datetime,
        *,
        detail: dict[str, Any] | None = None,
    ) -> Change | None:
        m = MESSAGES.c
        return await self._one(
            [m.id == message_id, _from([S.SENDING])],
            {"status": S.QUEUED.value, "next_attempt_at": next_attempt_at, **_error_columns(error)},
            "retry_scheduled",
            {"code": error.code, "nextAttemptAt": next_attempt_at.isoformat(), **(detail or {})},
            now,
        )

    async def release(
        self, message_id: UUID, next_attempt_at: datetime, reason: str, now: datetime
    ) -> Change | None:
        """Give a claimed message back untried (no provider could take it): the attempt the
        claim counted did not happen, so it is not counted."""
        m = MESSAGES.c
        return await self._one(
            [m.id == message_id, _from([S.SENDING])],
            {
                "status": S.QUEUED.value,
                "next_attempt_at": next_attempt_at,
                "attempts": m.attempts - 1,
            },
            "deferred",
            {"reason": reason, "nextAttemptAt": next_attempt_at.isoformat()},
            now,
        )

    async def record_failure(
        self,
        message_id: UUID,
        error: DeliveryError,
        now: datetime,
        *,
        detail: dict[str, Any] | None = None,
    ) -> Change | None:
        m = MESSAGES.c
        return await self._one(
            [m.id == message_id, _from([S.SENDING, S.QUEUED])],
            {"status": S.FAILED.value, **_error_columns(error)},
            "dead_lettered",
            {
                "code": error.code,
                "description": error.description,
                "permanent": error.permanent,
                **(detail or {}),
            },
            now,
        )

    async def dead_letter_unread(
        self, message_id: UUID, error: DeliveryError, now: datetime
    ) -> None:
        """FAILED without reading the row back (it may be what cannot be decoded)."""
        m = MESSAGES.c
        async with self.engine.begin() as conn:
            rows = await conn.execute(
                update(MESSAGES)
                .where(m.id == message_id, _from([S.SENDING, S.QUEUED]))
                .values(status=S.FAILED.value, updated_at=now, **_error_columns(error))
                .returning(m.id, m.account_id, m.conversation_id)
            )
            detail = {"code": error.code, "description": error.description, "permanent": False}
            await insert_events(
                conn,
                [
                    {
                        "account_id": account_id,
                        "message_id": mid,
                        "conversation_id": conversation_id,
                        "status": S.FAILED.value,
                        "kind": "dead_lettered",
                        "detail": detail,
                        "occurred_at": now,
                    }
                    for mid, account_id, conversation_id in rows.all()
                ],
            )

    async def apply_status(
        self,
        message_id: UUID,
        status: MessageStatus,
        *,
        kind: str,
        detail: dict[str, Any] | None,
        error: DeliveryError | None,
        now: datetime,
    ) -> Change | None:
        """Forward-only status change (provider callbacks). None for duplicates and stale ones."""
        values: dict[str, Any] = {"status": status.value}
        if error is not None:
            values.update(_error_columns(error))
        return await self._one(
            [MESSAGES.c.id == message_id, advancing_to(status)],
            values,
            kind,
            detail,
            now,
        )

    async def cancel(
        self, account_id: UUID, message_id: UUID, now: datetime
    ) -> tuple[Change | None, Message | None]:
        """(change, None): canceled; (None, current): not cancelable; (None, None): unknown."""
        return await self._operator_change(
            account_id,
            message_id,
            [s for s in MessageStatus if can_cancel(s)],
            {"status": S.CANCELED.value},
            "canceled",
            now,
        )

    async def retry(
        self, account_id: UUID, message_id: UUID, now: datetime
    ) -> tuple[Change | None, Message | None]:
        return await self._operator_change(
            account_id,
            message_id,
            [s for s in MessageStatus if can_retry(s)],
            {"status": S.QUEUED.value, "next_attempt_at": now, **_error_columns(None)},
            "retry_requested",
            now,
        )

    async def _operator_change(
        self,
        account_id: UUID,
        message_id: UUID,
        allowed: list[MessageStatus],
        values: dict[str, Any],
        kind: str,
        now: datetime,
    ) -> tuple[Change | None, Message | None]:
        m = MESSAGES.c
        scope = [m.id == message_id, m.account_id == account_id]
        async with self.engine.begin() as conn:
            changes = await self._change(conn, [*scope, _from(allowed)], values, kind, None, now)
            if changes:
                return changes[0], None
            row = (await conn.execute(select(MESSAGES).where(*scope))).first()
        return None, message_from_row(row) if row else None

    async def promote_scheduled(self, now: datetime, limit: int = 500) -> list[Change]:
        """SCHEDULED messages whose time has come -> QUEUED."""
        m = MESSAGES.c
        due = (
            select(m.id)
            .where(_from([S.SCHEDULED]), m.next_attempt_at <= now)
            .order_by(m.next_attempt_at)
            .limit(limit)
            .scalar_subquery()
        )
        async with self.engine.begin() as conn:
            return await self._change(
                conn,
                [m.id.in_(due), _from([S.SCHEDULED])],
                {"status": S.QUEUED.value},
                "enqueued",
                None,
                now,
            )

    async def requeue_stale(
        self, stale_before: datetime, now: datetime, *, max_attempts: int
    ) -> list[Change]:
        """SENDING for too long: the worker died mid-call. Back to QUEUED, marked ambiguous,
        because the provider may or may not have taken the message; dead-lettered instead
        once its attempts are used up (a message that kills its worker every time)."""
        m = MESSAGES.c
        stale = [_from([S.SENDING]), m.updated_at < stale_before]
        error = DeliveryError("ABANDONED", "the worker handling it stopped", permanent=False)
        async with self.engine.begin() as conn:
            failed = await self._change(
                conn,
                [*stale, m.attempts >= max_attempts],
                {"status": S.FAILED.value, **_error_columns(error)},
                "dead_lettered",
                {"code": error.code, "description": error.description, "ambiguous": True},
                now,
            )
            requeued = await self._change(
                conn,
                [*stale, m.attempts < max_attempts],
                {"status": S.QUEUED.value, "next_attempt_at": now},
                "attempt_abandoned",
                {"ambiguous": True},
                now,
            )
        return [*failed, *requeued]

    async def due_ids(self, due_before: datetime, limit: int = 500) -> list[UUID]:
        """QUEUED messages due before ``due_before``: what the sweeper hands to the broker."""
        m = MESSAGES.c
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(m.id)
                .where(_from([S.QUEUED]), m.next_attempt_at <= due_before)
                .order_by(m.next_attempt_at)
                .limit(limit)
            )
        return [r[0] for r in rows]

    async def touch_conversations(self, activity: dict[UUID, datetime]) -> None:
        """Move each conversation's last activity forward (never back).

        Run after the accept transaction committed, in its own short transaction, so that the
        conversation row is never locked for the length of an accept.
        """
        if not activity:
            return
        c = CONVERSATIONS.c
        statement = (
            update(CONVERSATIONS)
            .where(c.id == bindparam("cid"), c.last_message_at < bindparam("at"))
            .values(last_message_at=bindparam("at"))
        )
        async with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                # Derived data: losing it in a crash costs an ordering nudge, not a message,
                # so it need not wait for its own WAL flush.
                await conn.execute(text("SET LOCAL synchronous_commit = off"))
            await conn.execute(
                statement, [{"cid": cid, "at": at} for cid, at in sorted(activity.items())]
            )
