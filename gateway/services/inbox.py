"""Use cases of inbox state: marking a conversation read, and watching inbox changes live.

A read mark is one unit of work: the cursor moves in its transaction and the change is handed
to the broker once it committed, so that every process's watchers (other tabs) hear of it. An
inbound message's change is published by the unit that stores it (``WebhookService.receive``).

Watching: each change is followed by a read of its conversation's state (``InboxState``), so
what a watcher is told is never older than the change (see ``gateway.domain.inbox``). A
watcher that falls behind, or whose live source dropped, is cut off (``CutOff``) after what
it was given; it then resubscribes and reads the conversations it shows again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import UUID

from gateway.domain.inbox import InboxChange, InboxChangeKind, InboxState
from gateway.domain.records import Conversation
from gateway.services.ports import Broker, MessageQueries, UnitsOfWork


class InboxService:
    def __init__(self, queries: MessageQueries, broker: Broker, units: UnitsOfWork) -> None:
        self._queries = queries
        self._broker = broker
        self._units = units

    async def mark_read(
        self, account_id: UUID, conversation_id: UUID, up_to: UUID | None
    ) -> Conversation | None:
        """``MessageQueries.mark_read``, told to the account's watchers after the commit.

        A mark that moves nothing (a stale tab's) is told too: the state read for it is the
        current one, so it costs a watcher a read and never shows anything wrong."""
        async with self._units() as unit:
            read = await self._queries.mark_read(account_id, conversation_id, up_to)
            if read is not None and read.read_up_to is not None:
                unit.publish_inbox(
                    [InboxChange(account_id, read.id, InboxChangeKind.READ, read.read_up_to)]
                )
        return read

    async def changes(
        self, account_id: UUID, *, conversation_id: UUID | None = None
    ) -> AsyncIterator[InboxState]:
        """The account's inbox changes (of one conversation if given) from now on, each with
        the state of its conversation read after it."""
        async with self._broker.subscribe_inbox(account_id) as live:
            async for change in live:
                if conversation_id is not None and change.conversation_id != conversation_id:
                    continue
                state = await self._state(change)
                if state is not None:
                    yield state

    async def _state(self, change: InboxChange) -> InboxState | None:
        found = await self._queries.conversations(change.account_id, [change.conversation_id])
        conversation = found.get(change.conversation_id)
        if conversation is None:
            # Gone since (retention): nothing left to show.
            return None
        counts = await self._queries.unread_counts([conversation.id])
        return InboxState(change, counts.get(conversation.id, 0), conversation.read_up_to)
