"""A message's search document is written with the message and left alone by its status
changes, on both databases: PostgreSQL's row in ``message_search``, SQLite's FTS5 index.

Status changes are the messages table's most frequent writes; a document rewritten by each
of them would cost every one of them the full-text index's work.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, insert, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.domain.message_filters import MessageFilter, MessageSort
from gateway.domain.records import Message, Page
from gateway.domain.search import conversation_search, parse
from gateway.services.ports import ConversationFilter, PageRequest
from gateway.settings import Settings
from persistence.queries import QueryRepository
from persistence.rows import CONVERSATIONS, MESSAGES
from tests.conftest import fresh_postgres_url, migrated_engine
from tests.integration.test_webhook_claims import account_with_conversation


@pytest.fixture(params=["postgresql", "sqlite"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    if request.param == "postgresql":
        settings = Settings(database_url=fresh_postgres_url(request.getfixturevalue("postgres")))
    else:
        settings = Settings(database_url=None, redis_url=None, data_dir=tmp_path / "data")
    async with migrated_engine(settings) as engine:
        yield engine


async def _store(
    engine: AsyncEngine, bodies: list[str | None]
) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """An account with one conversation and a QUEUED message of each body, stored by one
    statement as the accept stores them; (the account, the message ids)."""
    now = datetime.now(UTC)
    ids = [uuid.uuid4() for _ in bodies]
    async with engine.begin() as conn:
        account, conversation = await account_with_conversation(conn, now)
        await conn.execute(
            insert(MESSAGES),
            [
                _message(id_, account, conversation, body, now + timedelta(seconds=n))
                for n, (id_, body) in enumerate(zip(ids, bodies, strict=True))
            ],
        )
    return account, ids


def _message(
    id_: uuid.UUID, account: uuid.UUID, conversation: uuid.UUID, body: str | None, at: datetime
) -> dict[str, Any]:
    """The columns of a QUEUED outbound SMS."""
    return {
        "id": id_,
        "account_id": account,
        "conversation_id": conversation,
        "channel": "SMS",
        "direction": "OUTBOUND",
        "sender": "a",
        "recipient": "b",
        "body": body,
        "attachments": [],
        "status": "QUEUED",
        "attempts": 0,
        "created_at": at,
        "updated_at": at,
    }


async def _documents(engine: AsyncEngine) -> list[Any]:
    """Everything the database keeps of the search documents, with PostgreSQL's row versions:
    a rewrite shows even when it writes the same words."""
    query = (
        "SELECT message_id, xmin::text, ctid::text, document::text FROM message_search"
        " ORDER BY message_id"
        if engine.dialect.name == "postgresql"
        else "SELECT 'data', id, block FROM messages_fts_data"
        " UNION ALL SELECT 'size', id, sz FROM messages_fts_docsize ORDER BY 1, 2"
    )
    async with engine.connect() as conn:
        return [tuple(r) for r in await conn.execute(text(query))]


async def _page(
    engine: AsyncEngine,
    account: uuid.UUID,
    search: str,
    descending: bool = True,
    after: tuple[datetime, uuid.UUID] | None = None,
) -> Page[Message]:
    where = MessageFilter(search=parse(search))
    return await QueryRepository(engine).filtered_messages_page(
        account, where, PageRequest(50, after, descending), sort=MessageSort.CREATED_AT
    )


async def _found(engine: AsyncEngine, account: uuid.UUID, search: str) -> list[uuid.UUID]:
    return [m.id for m in (await _page(engine, account, search)).items]


async def test_status_changes_leave_the_search_document_alone(engine: AsyncEngine) -> None:
    account, [parcel, invoice] = await _store(engine, ["your parcel ships", "invoice attached"])
    before = await _documents(engine)
    assert before
    async with engine.begin() as conn:
        for status in ("SENDING", "SENT", "DELIVERED"):
            await conn.execute(
                update(MESSAGES)
                .where(MESSAGES.c.id == parcel)
                .values(status=status, attempts=1, updated_at=datetime.now(UTC))
            )
    assert await _documents(engine) == before
    assert await _found(engine, account, "parcel") == [parcel]
    assert await _found(engine, account, "invoice") == [invoice]


async def test_the_document_follows_a_changed_body_and_goes_with_its_message(
    engine: AsyncEngine,
) -> None:
    account, [parcel, invoice] = await _store(engine, ["your parcel ships", "invoice attached"])
    before = await _documents(engine)
    async with engine.begin() as conn:
        await conn.execute(
            update(MESSAGES).where(MESSAGES.c.id == parcel).values(body="your refund is due")
        )
    assert await _documents(engine) != before
    assert await _found(engine, account, "parcel") == []
    assert await _found(engine, account, "refund") == [parcel]
    async with engine.begin() as conn:
        await conn.execute(delete(MESSAGES).where(MESSAGES.c.id == invoice))
    assert await _found(engine, account, "invoice") == []
    if engine.dialect.name == "postgresql":
        assert [row[0] for row in await _documents(engine)] == [parcel]


async def test_postgresql_keeps_no_document_for_a_body_without_words(
    postgres: Any, tmp_path: Path
) -> None:
    settings = Settings(database_url=fresh_postgres_url(postgres))
    async with migrated_engine(settings) as engine:
        _, [_, _, worded] = await _store(engine, [None, "?! ...", "a word"])
        assert [row[0] for row in await _documents(engine)] == [worded]


async def test_search_pages_walk_every_match_once_in_both_orders(engine: AsyncEngine) -> None:
    # 130 messages, every one with "common", every tenth with "rare": on PostgreSQL a page of
    # "common" is found along the order, one of "rare" from the full-text index.
    bodies = [f"common {n}" + (" rare" if n % 10 == 0 else "") for n in range(130)]
    account, ids = await _store(engine, list(bodies))
    for search, expected in (("common", ids), ("rare", ids[::10])):
        for descending in (True, False):
            walked: list[uuid.UUID] = []
            after = None
            while True:
                page = await _page(engine, account, search, descending, after)
                walked += [m.id for m in page.items]
                assert len(walked) <= len(expected), (search, descending)
                if not page.has_next:
                    break
                after = (page.items[-1].created_at, page.items[-1].id)
            assert walked == (expected[::-1] if descending else expected), (search, descending)


async def test_conversation_search_pages_walk_every_match_once(engine: AsyncEngine) -> None:
    # 130 conversations of one message each, every one with "common", every tenth with "rare":
    # on PostgreSQL "common" is found conversation by conversation, "rare" from the index.
    now, ids, said = datetime.now(UTC), [], {}
    async with engine.begin() as conn:
        account, _ = await account_with_conversation(conn, now)
        for n in range(130):
            conversation, message = uuid.uuid4(), uuid.uuid4()
            at = now + timedelta(seconds=n)
            await conn.execute(
                insert(CONVERSATIONS).values(
                    id=conversation,
                    account_id=account,
                    participant_a="+14155550100",
                    participant_b=f"+1415556{n:04d}",
                    created_at=at,
                    last_message_at=at,
                )
            )
            body = f"common {n}" + (" rare" if n % 10 == 0 else "")
            await conn.execute(
                insert(MESSAGES).values(_message(message, account, conversation, body, at))
            )
            ids.append(conversation)
            said[conversation] = message
    queries = QueryRepository(engine)
    for words, expected in (("common", ids[::-1]), ("rare", ids[120::-10])):
        search = conversation_search(words)
        walked: list[uuid.UUID] = []
        after = None
        while True:
            page = await queries.conversations_page(
                account, ConversationFilter(search=search), PageRequest(50, after)
            )
            walked += [c.id for c in page.items]
            assert len(walked) <= len(expected), words
            latest = await queries.latest_matches(account, [c.id for c in page.items], search.terms)
            assert {c: m.id for c, m in latest.items()} == {c.id: said[c.id] for c in page.items}
            if not page.has_next:
                break
            after = (page.items[-1].last_message_at, page.items[-1].id)
        assert walked == expected, words
