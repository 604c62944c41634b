"""Finding or creating the conversations of (account, participant, participant) triples."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from uuid import UUID

from sqlalchemy import select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.domain.ids import new_id
from persistence.base import Repository
from persistence.rows import CONVERSATIONS

Triple = tuple[UUID, str, str]
"""(account id, participant_a, participant_b) with the participants sorted."""


# One statement text whatever the number of triples: compiled and prepared once.
_PAIR_LOOKUP = text(
    "SELECT c.id, c.account_id, c.participant_a, c.participant_b FROM conversations AS c"
    " JOIN unnest(CAST(:accounts AS uuid[]), CAST(:firsts AS varchar[]),"
    " CAST(:seconds AS varchar[])) AS wanted (account_id, participant_a, participant_b)"
    " ON c.account_id = wanted.account_id AND c.participant_a = wanted.participant_a"
    " AND c.participant_b = wanted.participant_b"
)


async def _select(conn: AsyncConnection, triples: list[Triple]) -> dict[Triple, UUID]:
    # A join on the unnested arrays, not `(account, a, b) IN (...)`: PostgreSQL factors the columns
    # that all tuples share (the account and, usually, its sender number) into the index
    # condition and checks the rest as a filter, which walks every conversation of the
    # account, so accepts slow down as the account grows. The join probes the pair index once
    # per triple; tests/integration/test_query_plans.py checks the tuples it fetches.
    c = CONVERSATIONS.c
    columns = (c.id, c.account_id, c.participant_a, c.participant_b)
    if conn.dialect.name == "sqlite":
        # No arrays in SQLite; it probes the unique index once per tuple of the IN list.
        pair = tuple_(c.account_id, c.participant_a, c.participant_b)
        found = await conn.execute(select(*columns).where(pair.in_(triples)))
        return {(r.account_id, r.participant_a, r.participant_b): r.id for r in found}
    accounts, firsts, seconds = zip(*triples, strict=True)
    found = await conn.execute(
        _PAIR_LOOKUP, {"accounts": list(accounts), "firsts": list(firsts), "seconds": list(seconds)}
    )
    return {(r.account_id, r.participant_a, r.participant_b): r.id for r in found}


async def resolve_conversations(
    repo: Repository, conn: AsyncConnection, triples: Iterable[Triple], now: datetime
) -> tuple[dict[Triple, UUID], set[UUID]]:
    """Conversation id of each triple, creating the missing ones, race-free; and the ids of
    the conversations this call created.

    Existing conversations cost one SELECT. Missing ones are inserted with ON CONFLICT DO
    NOTHING: a concurrent first message for the same pair waits on the unique constraint, then
    its row is found by a second SELECT (a new statement, so it sees the winner's commit).
    Inserts are sorted so that concurrent transactions lock in the same order: no deadlocks.
    """
    wanted = sorted(set(triples), key=lambda t: (t[0].bytes, t[1], t[2]))
    if not wanted:
        return {}, set()
    found = await _select(conn, wanted)
    missing = [t for t in wanted if t not in found]
    if not missing:
        return found, set()
    rows = [
        {
            "id": new_id(),
            "account_id": account_id,
            "participant_a": a,
            "participant_b": b,
            "created_at": now,
            "last_message_at": now,
        }
        for account_id, a, b in missing
    ]
    c = CONVERSATIONS.c
    inserted = await conn.execute(
        repo.upsert(CONVERSATIONS)
        .on_conflict_do_nothing()
        .returning(c.id, c.account_id, c.participant_a, c.participant_b),
        rows,
    )
    created = set()
    for r in inserted:
        found[(r.account_id, r.participant_a, r.participant_b)] = r.id
        created.add(r.id)
    lost = [t for t in missing if t not in found]
    if lost:
        found.update(await _select(conn, lost))
    return found, created
