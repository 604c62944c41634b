"""DataLoaders: one query per kind of lookup per tick, however many fields ask."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from uuid import UUID

from strawberry.dataloader import DataLoader

from gateway.domain.records import Conversation, Message, MessageEvent
from gateway.services.ports import MessageQueries


class Loaders:
    """Per-request loaders scoped to one account.

    Over a websocket the context lives as long as the connection, so there the loaders batch
    but do not cache: a subscription must see each message as it is now, not as first loaded.
    """

    def __init__(self, queries: MessageQueries, account_id: UUID, *, cache: bool = True) -> None:
        self._queries = queries
        self._account_id = account_id
        self._cache = cache

    # Built on first use: most operations (every send) use none of them.
    @cached_property
    def message(self) -> DataLoader[UUID, Message | None]:
        return DataLoader(self._messages, cache=self._cache)

    @cached_property
    def conversation(self) -> DataLoader[UUID, Conversation | None]:
        return DataLoader(self._conversations, cache=self._cache)

    @cached_property
    def message_count(self) -> DataLoader[UUID, int]:
        return DataLoader(self._counts, cache=self._cache)

    @cached_property
    def unread_count(self) -> DataLoader[UUID, int]:
        return DataLoader(self._unread, cache=self._cache)

    @cached_property
    def events(self) -> DataLoader[UUID, list[MessageEvent]]:
        return DataLoader(self._events, cache=self._cache)

    async def _messages(self, ids: Sequence[UUID]) -> list[Message | None]:
        found = await self._queries.messages(self._account_id, list(ids))
        return [found.get(i) for i in ids]

    async def _conversations(self, ids: Sequence[UUID]) -> list[Conversation | None]:
        found = await self._queries.conversations(self._account_id, list(ids))
        return [found.get(i) for i in ids]

    async def _counts(self, ids: Sequence[UUID]) -> list[int]:
        found = await self._queries.message_counts(list(ids))
        return [found.get(i, 0) for i in ids]

    async def _unread(self, ids: Sequence[UUID]) -> list[int]:
        found = await self._queries.unread_counts(list(ids))
        return [found.get(i, 0) for i in ids]

    async def _events(self, ids: Sequence[UUID]) -> list[list[MessageEvent]]:
        found = await self._queries.events_of_messages(list(ids))
        return [found.get(i, []) for i in ids]
