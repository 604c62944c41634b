"""PostgreSQL statements for batches of provider reports: whole batches as array parameters.

One statement text whatever the batch size (prepared once per connection, where a multi-row
VALUES list is a new statement for every size) and a handful of array parameters, run on the
driver's (asyncpg) connection: these run for every status callback, and SQLAlchemy's
per-statement work (compiling, caching, result processing) cost more than the statements'
own round trips. A batch is two statements: ``lock_and_claim`` (lock the messages the reports
name, then insert their dedupe keys) and ``record`` (the status changes and their
audit-trail events).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final, Protocol
from uuid import UUID

from gateway.domain.records import MessageEvent
from gateway.domain.statuses import MessageStatus
from gateway.domain.suppressions import NewSuppression
from persistence.base import json_text, stored_event
from persistence.suppressions import suppression_row

__all__ = ["lock_and_claim", "record", "suppress"]

# `locked`: the messages named by id or (without an id) by provider id, locked in id order so
# that two batches cannot deadlock. The receipts are inserted after the locks are held (the
# Append runs its branches in order, and `claimed` is only read by the second one), in key
# order, as before; a key's outcome says whether its message was found. A key claimed before
# for a message unknown then is claimed again once its message exists (a report replayed
# after the message was recorded): it applies then, once. The result: kind 0
# rows are the locked messages (in id order), kind 1 rows the keys that were new.
_LOCK_AND_CLAIM: Final = """
    WITH locked AS (
        SELECT m.id, m.account_id, m.conversation_id, m.status, m.provider_message_id,
               m.error_code, m.error_description, m.error_permanent,
               m.channel, m.sender, m.recipient, m.segments
        FROM messages AS m
        WHERE m.id = ANY($1::uuid[]) OR m.provider_message_id = ANY($2::varchar[])
        ORDER BY m.id
        FOR NO KEY UPDATE
    ),
    claimed AS (
        INSERT INTO webhook_receipts (source, dedupe_key, outcome, received_at)
        SELECT c.source, c.dedupe_key,
               CASE WHEN EXISTS (
                   SELECT 1 FROM locked AS l
                   WHERE l.id = c.message_id
                      OR (c.message_id IS NULL AND l.provider_message_id = c.provider_id)
               ) THEN 'applied' ELSE 'unmatched' END,
               $7::timestamptz
        FROM unnest($3::varchar[], $4::varchar[], $5::uuid[], $6::varchar[])
             AS c(source, dedupe_key, message_id, provider_id)
        ORDER BY c.dedupe_key
        ON CONFLICT (dedupe_key) DO UPDATE
            SET outcome = EXCLUDED.outcome, received_at = EXCLUDED.received_at
            WHERE webhook_receipts.outcome = 'unmatched' AND EXCLUDED.outcome = 'applied'
        RETURNING dedupe_key
    )
    SELECT 0 AS kind, l.id, l.account_id, l.conversation_id, l.status, l.provider_message_id,
           l.error_code, l.error_description, l.error_permanent, l.channel, l.sender,
           l.recipient, l.segments, NULL::varchar AS dedupe_key
    FROM (SELECT * FROM locked ORDER BY id) AS l
    UNION ALL
    SELECT 1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
           k.dedupe_key
    FROM claimed AS k
"""

# The UPDATE is guarded by the status read under lock, as the portable path's is. Events are
# inserted in batch order (ORDER BY the ordinality), so their cursors follow that order. An
# ``uncounted`` change (a throughput requeue) gives its attempt back and is due at once.
_RECORD: Final = """
    WITH changed AS (
        UPDATE messages AS m
        SET status = v.status, error_code = v.code, error_description = v.description,
            error_permanent = v.permanent, updated_at = $1::timestamptz,
            attempts = CASE WHEN v.uncounted THEN m.attempts - 1 ELSE m.attempts END,
            next_attempt_at = CASE WHEN v.uncounted THEN $1::timestamptz
                                   ELSE m.next_attempt_at END
        FROM unnest($2::uuid[], $3::varchar[], $4::varchar[], $5::varchar[], $6::text[],
                    $7::boolean[], $14::boolean[])
             AS v(id, was, status, code, description, permanent, uncounted)
        WHERE m.id = v.id AND m.status = v.was
        RETURNING m.id
    )
    INSERT INTO message_events
        (account_id, message_id, conversation_id, status, kind, detail, occurred_at)
    SELECT e.account_id, e.message_id, e.conversation_id, e.status, e.kind,
           CAST(e.detail AS jsonb), $1::timestamptz
    FROM unnest($8::uuid[], $9::uuid[], $10::uuid[], $11::varchar[], $12::varchar[],
                $13::text[])
         WITH ORDINALITY AS e(account_id, message_id, conversation_id, status, kind, detail, n)
    ORDER BY e.n
    RETURNING id, (SELECT count(*) FROM changed) AS changed
"""


# Rare (a bounce, a spam report, an unsubscribe), so one row at a time is enough.
_SUPPRESS: Final = """
    INSERT INTO suppressions (id, account_id, address, channel, sender, reason, detail, created_at)
    VALUES ($1, $2, $3, $4, $5, $6, CAST($7 AS jsonb), $8)
    ON CONFLICT (account_id, address, channel, sender) DO NOTHING
"""


class Change(Protocol):
    """A message whose status the batch moves (``locked_status`` -> ``status``)."""

    @property
    def id(self) -> UUID: ...
    @property
    def locked_status(self) -> MessageStatus: ...
    @property
    def status(self) -> MessageStatus: ...
    @property
    def error_code(self) -> str | None: ...
    @property
    def error_description(self) -> str | None: ...
    @property
    def error_permanent(self) -> bool | None: ...
    @property
    def uncounted(self) -> bool: ...


async def lock_and_claim(
    conn: Any,
    ids: Sequence[UUID],
    provider_ids: Sequence[str],
    claims: Sequence[tuple[str, str, UUID | None, str | None]],
    now: datetime,
) -> tuple[list[Any], set[str]]:
    """Lock the messages with these ids or provider ids, then insert the (source, dedupe_key,
    message_id, provider_message_id) receipts; the locked rows (target columns, id order) and
    the keys that were new. ``conn`` is an asyncpg connection inside a transaction."""
    rows = await conn.fetch(
        _LOCK_AND_CLAIM,
        ids,
        provider_ids,
        [c[0] for c in claims],
        [c[1] for c in claims],
        [c[2] for c in claims],
        [c[3] for c in claims],
        now,
    )
    locked = [row[1:13] for row in rows if row[0] == 0]
    return locked, {row[13] for row in rows if row[0] == 1}


async def record(
    conn: Any,
    changes: Sequence[Change],
    events: Sequence[dict[str, Any]],
    now: datetime,
) -> list[MessageEvent]:
    """Apply the status changes and insert their events (rows as ``event_row`` makes them,
    all occurring at ``now``); the events with their cursors, in input order. ``conn`` is an
    asyncpg connection inside the transaction that locked the changed messages."""
    if not events:
        return []
    rows = await conn.fetch(
        _RECORD,
        now,
        [c.id for c in changes],
        [c.locked_status.value for c in changes],
        [c.status.value for c in changes],
        [c.error_code for c in changes],
        [c.error_description for c in changes],
        [c.error_permanent for c in changes],
        [e["account_id"] for e in events],
        [e["message_id"] for e in events],
        [e["conversation_id"] for e in events],
        [e["status"] for e in events],
        [e["kind"] for e in events],
        [json_text(e["detail"]) for e in events],
        [c.uncounted for c in changes],
    )
    # Under the row locks every guarded change applies; anything else is a bug, and raising
    # rolls the whole batch back.
    if len(rows) != len(events) or rows[0][1] != len(changes):
        raise RuntimeError(
            f"recorded {len(rows)} of {len(events)} events and "
            f"{rows[0][1] if rows else 0} of {len(changes)} changes"
        )
    # Ids come from the sequence in insertion order, which is the ORDER BY above.
    ids = sorted(row[0] for row in rows)
    return [stored_event(event_id, row) for event_id, row in zip(ids, events, strict=True)]


async def suppress(conn: Any, suppressions: Sequence[NewSuppression], now: datetime) -> None:
    """Record the suppressions the batch's reports leave; an entry of the same scope stays as
    it is (see ``persistence.suppressions.adding``). ``conn``: as for :func:`record`."""
    if not suppressions:
        return
    rows = [suppression_row(new, now) for new in suppressions]
    await conn.executemany(
        _SUPPRESS,
        [
            (
                r["id"],
                r["account_id"],
                r["address"],
                r["channel"],
                r["sender"],
                r["reason"],
                json_text(r["detail"]),
                r["created_at"],
            )
            for r in rows
        ],
    )
