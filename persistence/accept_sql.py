"""The accept transaction on PostgreSQL as ONE statement.

For items without idempotency keys (the common case), conversations, messages and their
first audit events are written by a single statement of data-modifying CTEs, run outside an
explicit transaction: it commits (with its WAL flush) when it returns, and either all of it
happens or none. That is one round trip instead of seven (BEGIN, pair lookup, pair insert,
messages, events, COMMIT, activity touch), which is most of an accept's latency, and one
prepared statement for every batch size (the rows travel as arrays).

Conversations are upserted: a new pair is inserted, an existing one gets its last activity
moved forward in the same statement (``ON CONFLICT DO UPDATE`` also sees pairs a concurrent
accept just committed, so there is no lost race to retry). Pairs are taken in sorted order so
concurrent accepts lock them in the same order.

Inputs whose recipient is suppressed (``blocked``) are left out of everything the statement
writes and come back as rows of their own, with the suppression's reason and time: the check
is one index probe per input inside the same statement, not a round trip of its own.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any
from uuid import UUID

from gateway.domain.channels import Direction
from gateway.domain.records import Message, MessageEvent
from gateway.domain.results import Suppressed
from gateway.domain.suppressions import SuppressionReason
from persistence.base import event_row, json_text, stored_event

ACCEPT = """
WITH input AS (
    SELECT * FROM unnest(
        CAST($1 AS uuid[]), CAST($2 AS uuid[]),
        CAST($3 AS varchar[]), CAST($4 AS varchar[]),
        CAST($5 AS uuid[]), CAST($6 AS varchar[]),
        CAST($7 AS varchar[]), CAST($8 AS varchar[]), CAST($9 AS text[]),
        CAST($10 AS text[]), CAST($11 AS varchar[]),
        CAST($12 AS integer[]), CAST($13 AS varchar[]),
        CAST($14 AS timestamptz[]), CAST($15 AS timestamptz[]),
        CAST($16 AS text[]), CAST($19 AS text[]), CAST($20 AS boolean[])
    ) WITH ORDINALITY AS t(
        id, account_id, participant_a, participant_b, new_conversation_id, channel, sender,
        recipient, body, attachments, status, segments, encoding, send_at, next_attempt_at,
        metadata, detail, bypass_quiet_hours, n
    )
),
blocked AS (
    SELECT DISTINCT ON (i.n) i.n, s.reason, s.created_at
    FROM input AS i
    JOIN suppressions AS s
        ON s.account_id = i.account_id AND s.address = i.recipient
        AND s.channel IN (i.channel, '*') AND s.sender IN (i.sender, '*')
    ORDER BY i.n, s.created_at
),
admitted AS (
    SELECT * FROM input AS i WHERE NOT EXISTS (SELECT FROM blocked AS b WHERE b.n = i.n)
),
pairs AS (
    INSERT INTO conversations AS c
        (id, account_id, participant_a, participant_b, created_at, last_message_at)
    SELECT DISTINCT ON (account_id, participant_a, participant_b)
        new_conversation_id, account_id, participant_a, participant_b,
        CAST($17 AS timestamptz), CAST($17 AS timestamptz)
    FROM admitted
    ORDER BY account_id, participant_a, participant_b
    ON CONFLICT (account_id, participant_a, participant_b)
    DO UPDATE SET last_message_at = GREATEST(c.last_message_at, EXCLUDED.last_message_at)
    RETURNING c.id, c.account_id, c.participant_a, c.participant_b
),
messages_in AS (
    INSERT INTO messages (
        id, account_id, conversation_id, channel, direction, sender, recipient, body,
        attachments, status, attempts, segments, encoding, send_at, next_attempt_at,
        metadata, created_at, updated_at, bypass_quiet_hours
    )
    SELECT i.id, i.account_id, p.id, i.channel, $18, i.sender, i.recipient, i.body,
        CAST(i.attachments AS jsonb), i.status, 0, i.segments, i.encoding, i.send_at,
        i.next_attempt_at, CAST(i.metadata AS jsonb), CAST($17 AS timestamptz),
        CAST($17 AS timestamptz), i.bypass_quiet_hours
    FROM admitted AS i
    JOIN pairs AS p USING (account_id, participant_a, participant_b)
    RETURNING id, conversation_id
),
events_in AS (
    INSERT INTO message_events
        (account_id, message_id, conversation_id, status, kind, detail, occurred_at)
    SELECT i.account_id, m.id, m.conversation_id, i.status, 'accepted',
        CAST(i.detail AS jsonb), CAST($17 AS timestamptz)
    FROM messages_in AS m
    JOIN admitted AS i ON i.id = m.id
    ORDER BY i.n
    RETURNING id, message_id, conversation_id
)
SELECT id, message_id, conversation_id,
    CAST(NULL AS bigint) AS n, CAST(NULL AS varchar) AS reason,
    CAST(NULL AS timestamptz) AS since
FROM events_in
UNION ALL
SELECT NULL, NULL, NULL, n, reason, created_at FROM blocked
"""


async def accept_new(
    conn: Any,
    messages: list[Message],
    details: list[dict[str, Any] | None],
    participants: list[tuple[str, str]],
    new_conversation_ids: list[UUID],
    now: datetime,
) -> tuple[list[Message], list[MessageEvent], dict[int, Suppressed]]:
    """Write ``messages`` (conversation ids still to be resolved) with their events.

    ``details``, ``participants`` and ``new_conversation_ids`` go with each message: what its
    ``accepted`` event says (None: nothing more), its sorted pair and the id its conversation
    gets if it is new. Returns the messages written with their conversation ids, and their
    events with cursor ids, in input order; and the messages refused because their recipient
    is suppressed, by input index.
    """
    # On the driver's connection (Repository.driver): the statement commits by itself.
    rows = await conn.fetch(
        ACCEPT,
        [m.id for m in messages],
        [m.account_id for m in messages],
        [a for a, _ in participants],
        [b for _, b in participants],
        new_conversation_ids,
        [m.channel.value for m in messages],
        [m.sender for m in messages],
        [m.recipient for m in messages],
        [m.body for m in messages],
        [json_text(list(m.attachments)) for m in messages],
        [m.status.value for m in messages],
        [m.segments for m in messages],
        [m.encoding for m in messages],
        [m.send_at for m in messages],
        [m.next_attempt_at for m in messages],
        [json_text(m.metadata) for m in messages],
        now,
        Direction.OUTBOUND.value,
        [json_text(d) if d is not None else None for d in details],
        [m.bypass_quiet_hours or None for m in messages],
    )
    refused = {
        r["n"] - 1: Suppressed(SuppressionReason(r["reason"]), r["since"])
        for r in rows
        if r["n"] is not None
    }
    by_message = {r["message_id"]: (r["id"], r["conversation_id"]) for r in rows if r["n"] is None}
    admitted = [m for i, m in enumerate(messages) if i not in refused]
    if len(by_message) != len(admitted):
        raise RuntimeError(f"accept wrote {len(by_message)} of {len(admitted)} messages")
    # Copied only when the pair already had a conversation (its placeholder id went unused):
    # copying a message is the costliest step of reading the statement's answer.
    stored = [_in_conversation(m, by_message[m.id][1]) for m in admitted]
    admitted_details = [d for i, d in enumerate(details) if i not in refused]
    events = [
        stored_event(by_message[m.id][0], event_row(m, m.status, "accepted", detail, now))
        for m, detail in zip(stored, admitted_details, strict=True)
    ]
    return stored, events, refused


def _in_conversation(message: Message, conversation_id: UUID) -> Message:
    if message.conversation_id == conversation_id:
        return message
    return replace(message, conversation_id=conversation_id)
