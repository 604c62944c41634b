"""The accept transaction: conversations, idempotency claims, messages and their first events.

One call is one transaction, whatever the number of messages (``sendMessages`` sends up to
1000). Conversations and idempotency keys are inserted in sorted order so that concurrent
batches always take their locks in the same order and cannot deadlock each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast
from uuid import UUID

from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.domain.channels import Direction
from gateway.domain.ids import new_id
from gateway.domain.messages import NormalizedMessage
from gateway.domain.records import Message, MessageEvent
from gateway.domain.statuses import MessageStatus
from persistence.base import Repository, event_row, insert_events
from persistence.conversations import resolve_conversations
from persistence.models import IdempotencyKeyRow
from persistence.rows import MESSAGES, message_from_row, message_to_row

KEYS = cast(Table, IdempotencyKeyRow.__table__)


@dataclass(frozen=True, slots=True)
class Accepted:
    message: Message
    replayed: bool


@dataclass(frozen=True, slots=True)
class Conflict:
    reason: str
    original: Message | None


@dataclass(frozen=True, slots=True)
class AcceptResult:
    outcomes: list[Accepted | Conflict]
    """New messages only (replays excluded): what must be enqueued after commit."""
    created: list[Message]
    events: list[MessageEvent]


CONFLICT_REASON = "idempotencyKey was used before with a different input"


class AcceptRepository(Repository):
    async def accept(
        self,
        account_id: UUID,
        drafts: list[NormalizedMessage],
        *,
        now: datetime,
        retention: timedelta,
    ) -> AcceptResult:
        async with self.engine.begin() as conn:
            conversation_ids = await resolve_conversations(
                self, conn, account_id, {d.participants for d in drafts}, now
            )
            first_of_key: dict[str, int] = {}
            for index, draft in enumerate(drafts):
                if draft.idempotency_key is not None:
                    first_of_key.setdefault(draft.idempotency_key, index)
            ids = [new_id() for _ in drafts]
            claimed = await self._claim_keys(
                conn,
                account_id,
                {k: (drafts[i], ids[i]) for k, i in first_of_key.items()},
                now,
                now - retention,
            )
            earlier = await self._earlier(conn, account_id, set(first_of_key) - claimed)

            outcomes: list[Accepted | Conflict] = []
            created: list[Message] = []
            fresh_by_key: dict[str, tuple[str, Message]] = {}
            for index, draft in enumerate(drafts):
                key = draft.idempotency_key
                if key is None or (key in claimed and first_of_key[key] == index):
                    message = _new_message(ids[index], account_id, conversation_ids, draft, now)
                    created.append(message)
                    outcomes.append(Accepted(message, replayed=False))
                    if key is not None:
                        fresh_by_key[key] = (draft.fingerprint(), message)
                    continue
                fingerprint, original = fresh_by_key.get(key) or earlier.get(key, ("", None))
                if original is not None and fingerprint == draft.fingerprint():
                    outcomes.append(Accepted(original, replayed=True))
                else:
                    outcomes.append(Conflict(CONFLICT_REASON, original))

            if created:
                await conn.execute(MESSAGES.insert(), [message_to_row(m) for m in created])
            events = await insert_events(
                conn, [event_row(m, m.status, "accepted", None, now) for m in created]
            )
        return AcceptResult(outcomes, created, events)

    async def _claim_keys(
        self,
        conn: AsyncConnection,
        account_id: UUID,
        drafts_by_key: dict[str, tuple[NormalizedMessage, UUID]],
        now: datetime,
        expired_before: datetime,
    ) -> set[str]:
        """Claim the keys not held by an earlier request; return the ones this call now owns."""
        if not drafts_by_key:
            return set()
        rows = [
            {
                "account_id": account_id,
                "key": key,
                "request_hash": draft.fingerprint(),
                "message_id": message_id,
                "created_at": now,
            }
            for key, (draft, message_id) in sorted(drafts_by_key.items())
        ]
        insert: Any = self.upsert(KEYS)
        # A key past its retention window is free again: take it over in place.
        statement = insert.on_conflict_do_update(
            index_elements=[KEYS.c.account_id, KEYS.c.key],
            set_={
                "request_hash": insert.excluded.request_hash,
                "message_id": insert.excluded.message_id,
                "created_at": insert.excluded.created_at,
            },
            where=KEYS.c.created_at < expired_before,
        ).returning(KEYS.c.key)
        result = await conn.execute(statement, rows)
        return {row[0] for row in result}

    async def _earlier(
        self, conn: AsyncConnection, account_id: UUID, keys: set[str]
    ) -> dict[str, tuple[str, Message | None]]:
        """Request hash and message of each key claimed by an earlier request."""
        if not keys:
            return {}
        found = await conn.execute(
            select(KEYS.c.key, KEYS.c.request_hash, KEYS.c.message_id).where(
                KEYS.c.account_id == account_id, KEYS.c.key.in_(sorted(keys))
            )
        )
        hashes = {r.key: (r.request_hash, r.message_id) for r in found}
        messages: dict[UUID, Message] = {}
        if hashes:
            rows = await conn.execute(
                select(MESSAGES).where(MESSAGES.c.id.in_([mid for _, mid in hashes.values()]))
            )
            messages = {m.id: m for m in map(message_from_row, rows)}
        return {key: (h, messages.get(mid)) for key, (h, mid) in hashes.items()}


def _new_message(
    message_id: UUID,
    account_id: UUID,
    conversation_ids: dict[tuple[str, str], UUID],
    draft: NormalizedMessage,
    now: datetime,
) -> Message:
    return Message(
        id=message_id,
        account_id=account_id,
        conversation_id=conversation_ids[draft.participants],
        channel=draft.channel,
        direction=Direction.OUTBOUND,
        sender=draft.sender,
        recipient=draft.recipient,
        body=draft.body,
        attachments=draft.attachments,
        status=MessageStatus.SCHEDULED if draft.send_at else MessageStatus.QUEUED,
        provider=None,
        provider_message_id=None,
        attempts=0,
        segments=draft.segments,
        encoding=draft.encoding,
        error=None,
        idempotency_key=draft.idempotency_key,
        send_at=draft.send_at,
        next_attempt_at=draft.send_at or now,
        metadata=draft.metadata,
        created_at=now,
        updated_at=now,
    )
