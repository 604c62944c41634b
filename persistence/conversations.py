"""Finding or creating the conversation of a pair of participants, race-free."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from uuid import UUID

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.domain.ids import new_id
from persistence.base import Repository
from persistence.rows import CONVERSATIONS


async def resolve_conversations(
    repo: Repository,
    conn: AsyncConnection,
    account_id: UUID,
    participant_pairs: Iterable[tuple[str, str]],
    now: datetime,
) -> dict[tuple[str, str], UUID]:
    """Conversation id of each (sorted) participant pair, creating the missing ones.

    A concurrent first message for the same pair waits on the unique constraint, then finds
    the winner's row in the SELECT. Pairs are inserted sorted so that concurrent batches lock
    in the same order and cannot deadlock.
    """
    pairs = sorted(set(participant_pairs))
    if not pairs:
        return {}
    rows = [
        {
            "id": new_id(),
            "account_id": account_id,
            "participant_a": a,
            "participant_b": b,
            "created_at": now,
            "last_message_at": now,
        }
        for a, b in pairs
    ]
    await conn.execute(repo.upsert(CONVERSATIONS).on_conflict_do_nothing(), rows)
    c = CONVERSATIONS.c
    found = await conn.execute(
        select(c.id, c.participant_a, c.participant_b)
        .where(c.account_id == account_id)
        .where(tuple_(c.participant_a, c.participant_b).in_(pairs))
    )
    return {(r.participant_a, r.participant_b): r.id for r in found}
