"""Search latency over a million stored messages: the full-text queries of the ``messages``
and ``conversations`` searches, run by the gateway's own read side against PostgreSQL.

Seeding is one ``INSERT ... SELECT`` over ``generate_series`` (bodies drawn from a small
vocabulary by arithmetic on the row number), so a million rows take the time of one statement
plus the search document and GIN work the messages' insert trigger does for every message.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text

from bench.report import percentile
from gateway.domain.message_filters import MessageFilter, MessageSort
from gateway.domain.search import conversation_search, parse
from gateway.entry.migrations import upgrade_to_head
from gateway.services.ports import ConversationFilter, PageRequest
from gateway.settings import Settings
from harness.servers import PostgresServer
from persistence.db import create_engine
from persistence.queries import QueryRepository

DBNAME = "bench_search"
CONVERSATIONS = 10_000
# Common words in most bodies, rarer ones in a few: searches of each kind.
WORDS = [
    "order",
    "parcel",
    "invoice",
    "meeting",
    "reminder",
    "delivery",
    "payment",
    "account",
    "update",
    "confirm",
    "tomorrow",
    "today",
    "weekend",
    "appointment",
    "dentist",
    "pickup",
    "refund",
    "voucher",
    "ticket",
    "flight",
]
SEARCHES = (
    "parcel",
    "invoice tomorrow",
    '"payment confirm"',
    "refu*",
    "dentist appointment weekend",
    "n48213",
    '"flight ticket" vouch*',
)


async def run_search(pg: PostgresServer, *, messages: int, searches: int) -> dict[str, Any]:
    pg.drop_database(DBNAME)
    pg.create_database(DBNAME)
    settings = Settings(database_url=pg.url(DBNAME))
    await upgrade_to_head(settings)
    engine = create_engine(settings)
    try:
        account = uuid.uuid4()
        seeded_at = time.monotonic()
        conversations = await _seed(engine, account, messages)
        seed_s = time.monotonic() - seeded_at
        queries = QueryRepository(engine)
        message_ms: list[float] = []
        conversation_ms: list[float] = []
        found = 0
        for n in range(searches):
            query = SEARCHES[n % len(SEARCHES)]
            started = time.monotonic()
            page = await queries.filtered_messages_page(
                account,
                MessageFilter(search=parse(query)),
                PageRequest(50),
                sort=MessageSort.CREATED_AT,
            )
            message_ms.append((time.monotonic() - started) * 1000)
            found += len(page.items)
            wanted = conversation_search(query)
            started = time.monotonic()
            listed = await queries.conversations_page(
                account, ConversationFilter(search=wanted), PageRequest(50)
            )
            await queries.latest_matches(account, [c.id for c in listed.items], wanted.terms)
            conversation_ms.append((time.monotonic() - started) * 1000)
    finally:
        await engine.dispose()
        pg.drop_database(DBNAME)
    return {
        "messages": messages,
        "conversations": conversations,
        "seed_s": seed_s,
        "searches": searches,
        "found": found,
        "p50_ms": percentile(message_ms, 50),
        "p99_ms": percentile(message_ms, 99),
        "conversations_p50_ms": percentile(conversation_ms, 50),
        "conversations_p99_ms": percentile(conversation_ms, 99),
    }


async def _seed(engine: Any, account: uuid.UUID, messages: int) -> int:
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO accounts (id, name, created_at) VALUES (:id, 'search', :now)"),
            {"id": account, "now": now},
        )
        await conn.execute(
            text(
                "INSERT INTO conversations (id, account_id, participant_a, participant_b,"
                " created_at, last_message_at)"
                " SELECT gen_random_uuid(), :account, '+1415' || (3000000 + g), '+14155550100',"
                " :now, CAST(:now AS timestamptz) - g * interval '1 second'"
                " FROM generate_series(1, :n) g"
            ),
            {"account": account, "now": now, "n": CONVERSATIONS},
        )
        await conn.execute(
            text(
                "INSERT INTO messages (id, account_id, conversation_id, channel, direction,"
                " sender, recipient, body, attachments, status, attempts, created_at,"
                " updated_at)"
                " SELECT gen_random_uuid(), :account, c.ids[g % :conversations + 1], 'SMS',"
                " 'OUTBOUND', '+14155550100', '+1415' || (3000000 + g % :conversations),"
                " w.words[g % 7 + 1] || ' ' || w.words[g % 11 + 8] || ' ' || w.words[g % 13 + 1]"
                " || ' ' || w.words[(g / 7) % 20 + 1] || ' n' || g, '[]', 'DELIVERED', 1,"
                " CAST(:now AS timestamptz) - g * interval '1 second',"
                " CAST(:now AS timestamptz) - g * interval '1 second'"
                " FROM generate_series(1, :n) g,"
                " (SELECT array_agg(id) AS ids FROM conversations"
                "  WHERE account_id = :account) c,"
                " (SELECT CAST(:words AS text[]) AS words) w"
            ),
            {
                "account": account,
                "now": now,
                "n": messages,
                "conversations": CONVERSATIONS,
                "words": list(WORDS),
            },
        )
        for table in ("messages", "message_search", "conversations"):
            await conn.execute(text(f"ANALYZE {table}"))
    return CONVERSATIONS
