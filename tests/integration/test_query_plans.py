"""Lookups on the accept path touch rows in proportion to their input, not to the table.

Measured with PostgreSQL's own per-transaction counter of tuples fetched, so the check is
exact and independent of machine speed.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.migrations import upgrade_to_head
from gateway.settings import Settings
from persistence.conversations import _select
from persistence.db import create_engine
from tests.conftest import fresh_postgres_url
from tests.servers import PostgresServer

SENDER = "+14155550100"
EXISTING = 3000


@pytest.fixture
async def engine(postgres: PostgresServer, tmp_path: object) -> AsyncIterator[AsyncEngine]:
    settings = Settings(database_url=fresh_postgres_url(postgres))
    await upgrade_to_head(settings)
    engine = create_engine(settings)
    try:
        yield engine
    finally:
        await engine.dispose()


def _recipient(n: int) -> str:
    return f"+1415{2000000 + n:07d}"


async def test_pair_lookup_fetches_only_the_pairs_asked_for(engine: AsyncEngine) -> None:
    account = uuid.uuid4()
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO accounts (id, name, created_at) VALUES (:id, 'a', :now)"),
            {"id": account, "now": now},
        )
        # One account, one sender, many recipients: every row shares account and sender.
        await conn.execute(
            text(
                "INSERT INTO conversations"
                " (id, account_id, participant_a, participant_b, created_at, last_message_at)"
                " VALUES (:id, :account, :a, :b, :now, :now)"
            ),
            [
                {
                    "id": uuid.uuid4(),
                    "account": account,
                    "a": _recipient(n),
                    "b": SENDER,
                    "now": now,
                }
                for n in range(EXISTING)
            ],
        )
    asked = [(account, _recipient(n), SENDER) for n in range(0, EXISTING, 30)]
    missing = [(account, _recipient(EXISTING + n), SENDER) for n in range(10)]
    async with engine.begin() as conn:
        # Without bitmap scans the planner shows what it does with stale statistics: an
        # IN list of pairs became one scan of the prefix the pairs share (account, sender).
        await conn.execute(text("SET LOCAL enable_bitmapscan = off"))
        found = await _select(conn, asked + missing)
        fetched = (
            await conn.execute(
                text(
                    "SELECT pg_stat_get_xact_tuples_fetched('conversations'::regclass)"
                    " + sum(pg_stat_get_xact_tuples_fetched(indexrelid))"
                    " FROM pg_index WHERE indrelid = 'conversations'::regclass"
                )
            )
        ).scalar_one()
    assert set(found) == set(asked)
    # Each pair is one index probe: a scan over the account's conversations would fetch
    # thousands.
    assert int(fetched) <= 2 * len(asked + missing), f"{fetched} tuples fetched"
