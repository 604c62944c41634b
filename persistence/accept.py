"""The accept transaction: conversations, idempotency claims, messages and their first events.

One call is one transaction, whatever the number of messages (``sendMessages`` sends up to
1000). Conversations and idempotency keys are inserted in sorted order so that concurrent
batches always take their locks in the same order and cannot deadlock each other.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast
from uuid import UUID

from sqlalchemy import Table, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.domain.channels import Direction
from gateway.domain.ids import new_id
from gateway.domain.messages import NormalizedMessage
from gateway.domain.records import Message, MessageEvent
from gateway.domain.results import (
    Accepted,
    AcceptOutcome,
    AcceptResult,
    Conflict,
    Item,
    Suppressed,
)
from gateway.domain.statuses import MessageStatus
from persistence.accept_sql import accept_new
from persistence.base import Repository, event_row, insert_events
from persistence.conversations import resolve_conversations
from persistence.models import IdempotencyKeyRow
from persistence.rows import MESSAGES, message_from_row, message_to_row
from persistence.suppressions import suppressed_items

KEYS = cast(Table, IdempotencyKeyRow.__table__)


CONFLICT_REASON = "idempotencyKey was used before with a different input"


AccountKey = tuple[UUID, str]


class AcceptRepository(Repository):
    async def accept(
        self, items: list[Item], *, now: datetime, retention: timedelta
    ) -> AcceptResult:
        """Accept ``items`` (of one or several calls and accounts) in ONE transaction.

        Outcomes are in input order. Within the items, a repeated (account, key) behaves as if
        the requests had raced: the first claims the key, the others replay or conflict. An
        item whose recipient is suppressed is refused before anything else, its key unclaimed.
        """
        if (
            self.dialect == "postgresql"
            and self.may_commit_alone
            # An auto-reply (exempt from suppressions) always has a key; the statement does not
            # know the exemption.
            and all(d.idempotency_key is None and not d.suppression_exempt for _, d in items)
        ):
            return await self._accept_in_one_statement(items, now)
        async with self.transaction() as conn:
            refused = await suppressed_items(conn, items)
            admitted = [item for i, item in enumerate(items) if i not in refused]
            outcomes, created, events, new_conversations = await self._write(
                conn, admitted, now, retention
            )
        existing = {m.conversation_id for m in created} - new_conversations
        return AcceptResult(_merged(len(items), refused, outcomes), created, events, existing)

    async def _write(
        self, conn: AsyncConnection, items: list[Item], now: datetime, retention: timedelta
    ) -> tuple[list[Accepted | Conflict], list[Message], list[MessageEvent], set[UUID]]:
        """Conversations, key claims, messages and events of ``items``, in the accept's
        transaction: (outcomes in input order, created messages, their events, the
        conversations created)."""
        conversation_ids, new_conversations = await resolve_conversations(
            self, conn, {(a, *d.participants) for a, d in items}, now
        )
        first_of_key: dict[AccountKey, int] = {}
        for index, (account_id, draft) in enumerate(items):
            if draft.idempotency_key is not None:
                first_of_key.setdefault((account_id, draft.idempotency_key), index)
        ids = [new_id() for _ in items]
        claimed = await self._claim_keys(
            conn,
            {k: (items[i][1], ids[i]) for k, i in first_of_key.items()},
            now,
            now - retention,
        )
        earlier = await self._earlier(conn, set(first_of_key) - claimed)

        outcomes: list[Accepted | Conflict] = []
        created: list[Message] = []
        details: list[dict[str, Any] | None] = []
        fresh_by_key: dict[AccountKey, tuple[str, Message]] = {}
        for index, (account_id, draft) in enumerate(items):
            key = (account_id, draft.idempotency_key) if draft.idempotency_key else None
            if key is None or (key in claimed and first_of_key[key] == index):
                conversation_id = conversation_ids[(account_id, *draft.participants)]
                message = _new_message(ids[index], account_id, conversation_id, draft, now)
                created.append(message)
                details.append(accepted_detail(draft))
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
            conn,
            [
                event_row(m, m.status, "accepted", detail, now)
                for m, detail in zip(created, details, strict=True)
            ],
        )
        return outcomes, created, events, new_conversations

    async def _accept_in_one_statement(self, items: list[Item], now: datetime) -> AcceptResult:
        """Items without idempotency keys on PostgreSQL: see persistence/accept_sql.py."""
        pending: dict[tuple[UUID, str, str], UUID] = {}
        participants = [d.participants for _, d in items]
        new_conversations = [pending.setdefault((a, *d.participants), new_id()) for a, d in items]
        # The conversation id is a placeholder until the statement says which one it is.
        drafts = [
            _new_message(new_id(), a, n, d, now)
            for (a, d), n in zip(items, new_conversations, strict=True)
        ]
        details = [accepted_detail(d) for _, d in items]
        async with self.driver() as driver:
            created, events, refused = await accept_new(
                driver, drafts, details, participants, new_conversations, now
            )
        accepted: list[Accepted | Conflict] = [Accepted(m, replayed=False) for m in created]
        # Existing conversations already had their last activity moved by the statement.
        return AcceptResult(_merged(len(items), refused, accepted), created, events, set())

    async def _claim_keys(
        self,
        conn: AsyncConnection,
        drafts_by_key: dict[AccountKey, tuple[NormalizedMessage, UUID]],
        now: datetime,
        expired_before: datetime,
    ) -> set[AccountKey]:
        """Claim the keys not held by an earlier request; return the ones these items own."""
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
            # Sorted: concurrent transactions take their key locks in the same order.
            for (account_id, key), (draft, message_id) in sorted(
                drafts_by_key.items(), key=lambda kv: (kv[0][0].bytes, kv[0][1])
            )
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
        ).returning(KEYS.c.account_id, KEYS.c.key)
        result = await conn.execute(statement, rows)
        return {(row[0], row[1]) for row in result}

    async def _earlier(
        self, conn: AsyncConnection, keys: set[AccountKey]
    ) -> dict[AccountKey, tuple[str, Message | None]]:
        """Request hash and message of each key claimed by an earlier request."""
        if not keys:
            return {}
        k = KEYS.c
        found = await conn.execute(
            select(k.account_id, k.key, k.request_hash, k.message_id).where(
                tuple_(k.account_id, k.key).in_(sorted(keys, key=lambda x: (x[0].bytes, x[1])))
            )
        )
        hashes = {(r.account_id, r.key): (r.request_hash, r.message_id) for r in found}
        messages: dict[UUID, Message] = {}
        if hashes:
            rows = await conn.execute(
                select(MESSAGES).where(MESSAGES.c.id.in_([mid for _, mid in hashes.values()]))
            )
            messages = {m.id: m for m in map(message_from_row, rows)}
        return {key: (h, messages.get(mid)) for key, (h, mid) in hashes.items()}


def _merged(
    size: int, refused: dict[int, Suppressed], admitted: list[Accepted | Conflict]
) -> list[AcceptOutcome]:
    """The outcomes of all ``size`` inputs in order: the refused ones by index, the admitted
    ones (in order) in the places left."""
    rest = iter(admitted)
    return [refused[i] if i in refused else next(rest) for i in range(size)]


def _new_message(
    message_id: UUID,
    account_id: UUID,
    conversation_id: UUID,
    draft: NormalizedMessage,
    now: datetime,
) -> Message:
    # Held for quiet hours: scheduled for their end, as a message sent for later is.
    due = draft.deferral.until if draft.deferral is not None else draft.send_at
    return Message(
        id=message_id,
        account_id=account_id,
        conversation_id=conversation_id,
        channel=draft.channel,
        direction=Direction.OUTBOUND,
        sender=draft.sender,
        recipient=draft.recipient,
        body=draft.body,
        attachments=draft.attachments,
        status=MessageStatus.SCHEDULED if due else MessageStatus.QUEUED,
        attempts=0,
        segments=draft.segments,
        encoding=draft.encoding,
        idempotency_key=draft.idempotency_key,
        send_at=draft.send_at,
        next_attempt_at=due or now,
        metadata=draft.metadata,
        created_at=now,
        updated_at=now,
        bypass_quiet_hours=draft.bypass_quiet_hours,
        suppression_exempt=draft.suppression_exempt,
    )


def accepted_detail(draft: NormalizedMessage) -> dict[str, Any] | None:
    """What the ``accepted`` event says beyond the status: why and until when a message due
    inside its recipient's quiet hours waits; which inbound keyword an auto-reply answers."""
    detail: dict[str, Any] = {}
    if draft.deferral is not None:
        detail |= draft.deferral.detail()
    if draft.auto_reply is not None:
        detail |= draft.auto_reply.detail()
    return detail or None
