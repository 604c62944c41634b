"""PostgreSQL statements for batches of provider reports: whole batches as array parameters.

One statement text whatever the batch size (prepared once per connection, where a multi-row
VALUES list is a new statement for every size) and a handful of array parameters encoded by
the driver, instead of SQLAlchemy processing every value of every row. The status changes and
their audit-trail events go in one statement, so a batch costs one round trip less.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final, Protocol
from uuid import UUID

import orjson
from sqlalchemy import TextClause, bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.domain.records import MessageEvent
from gateway.domain.statuses import MessageStatus
from persistence.types import UTCDateTime

__all__ = ["claim", "record"]

_AT: Final = bindparam("at", type_=UTCDateTime())

_CLAIM: Final[TextClause] = text(
    """
    INSERT INTO webhook_receipts (source, dedupe_key, outcome, received_at)
    SELECT c.source, c.dedupe_key, c.outcome, :at
    FROM unnest(CAST(:sources AS varchar[]), CAST(:keys AS varchar[]),
                CAST(:outcomes AS varchar[])) AS c(source, dedupe_key, outcome)
    ORDER BY c.dedupe_key
    ON CONFLICT DO NOTHING
    RETURNING dedupe_key
    """
).bindparams(_AT)

# The UPDATE is guarded by the status read under lock, as the portable path's is. Events are
# inserted in batch order (ORDER BY the ordinality), so their cursors follow that order.
_RECORD: Final[TextClause] = text(
    """
    WITH changed AS (
        UPDATE messages AS m
        SET status = v.status, error_code = v.code, error_description = v.description,
            error_permanent = v.permanent, updated_at = :at
        FROM unnest(CAST(:ids AS uuid[]), CAST(:was AS varchar[]), CAST(:statuses AS varchar[]),
                    CAST(:codes AS varchar[]), CAST(:descriptions AS text[]),
                    CAST(:permanents AS boolean[]))
             AS v(id, was, status, code, description, permanent)
        WHERE m.id = v.id AND m.status = v.was
        RETURNING m.id
    )
    INSERT INTO message_events
        (account_id, message_id, conversation_id, status, kind, detail, occurred_at)
    SELECT e.account_id, e.message_id, e.conversation_id, e.status, e.kind,
           CAST(e.detail AS jsonb), :at
    FROM unnest(CAST(:e_accounts AS uuid[]), CAST(:e_messages AS uuid[]),
                CAST(:e_conversations AS uuid[]), CAST(:e_statuses AS varchar[]),
                CAST(:e_kinds AS varchar[]), CAST(:e_details AS text[]))
         WITH ORDINALITY AS e(account_id, message_id, conversation_id, status, kind, detail, n)
    ORDER BY e.n
    RETURNING id, (SELECT count(*) FROM changed) AS changed
    """
).bindparams(_AT)


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


async def claim(
    conn: AsyncConnection, claims: Sequence[tuple[str, str, str]], now: datetime
) -> set[str]:
    """Insert (source, dedupe_key, outcome) receipts; the keys that were new."""
    result = await conn.execute(
        _CLAIM,
        {
            "sources": [c[0] for c in claims],
            "keys": [c[1] for c in claims],
            "outcomes": [c[2] for c in claims],
            "at": now,
        },
    )
    return {row[0] for row in result}


async def record(
    conn: AsyncConnection,
    changes: Sequence[Change],
    events: Sequence[dict[str, Any]],
    now: datetime,
) -> list[MessageEvent]:
    """Apply the status changes and insert their events (rows as ``event_row`` makes them,
    all occurring at ``now``); the events with their cursors, in input order."""
    if not events:
        return []
    result = await conn.execute(
        _RECORD,
        {
            "ids": [c.id for c in changes],
            "was": [c.locked_status.value for c in changes],
            "statuses": [c.status.value for c in changes],
            "codes": [c.error_code for c in changes],
            "descriptions": [c.error_description for c in changes],
            "permanents": [c.error_permanent for c in changes],
            "e_accounts": [e["account_id"] for e in events],
            "e_messages": [e["message_id"] for e in events],
            "e_conversations": [e["conversation_id"] for e in events],
            "e_statuses": [e["status"] for e in events],
            "e_kinds": [e["kind"] for e in events],
            # JSON null for no detail, as the column type stores None.
            "e_details": [orjson.dumps(e["detail"]).decode() for e in events],
            "at": now,
        },
    )
    rows = result.all()
    # Under the row locks every guarded change applies; anything else is a bug, and raising
    # rolls the whole batch back.
    if len(rows) != len(events) or rows[0][1] != len(changes):
        raise RuntimeError(
            f"recorded {len(rows)} of {len(events)} events and "
            f"{rows[0][1] if rows else 0} of {len(changes)} changes"
        )
    # Ids come from the sequence in insertion order, which is the ORDER BY above.
    ids = sorted(row[0] for row in rows)
    return [
        MessageEvent(
            id=event_id,
            account_id=row["account_id"],
            message_id=row["message_id"],
            conversation_id=row["conversation_id"],
            status=MessageStatus(row["status"]),
            kind=row["kind"],
            detail=row["detail"],
            occurred_at=now,
        )
        for event_id, row in zip(ids, events, strict=True)
    ]
