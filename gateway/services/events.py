"""Use case: a live stream of audit-trail events with replay from a cursor.

Order of operations is what makes it gap-free: subscribe to live events FIRST (buffering them),
then replay from storage, then drain live events. Anything committed during the replay is in the
buffer; anything both replayed and buffered is dropped by id, so nothing is missed or repeated.
Ids seen are remembered rather than compared with a high-water mark because concurrent
transactions can commit events in a different order than their ids were allotted.

With a ``SharedRendering`` the live part comes from a feed shared with every local subscriber
that renders events alike (``gateway.services.fanout``): live events then arrive as
``Rendered`` items, rendered once for all of them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from uuid import UUID

from gateway.domain.records import MessageEvent
from gateway.services.fanout import LiveItem, Rendered, SharedFeeds, SharedRendering
from gateway.services.ports import Broker, EventLog, EventScope

REPLAY_PAGE = 500


class EventStream:
    def __init__(self, queries: EventLog, broker: Broker) -> None:
        self._queries = queries
        self._broker = broker
        self.feeds = SharedFeeds(broker)

    async def stream(
        self,
        account_id: UUID,
        *,
        after: int | None,
        conversation_id: UUID | None = None,
        message_id: UUID | None = None,
        shared: SharedRendering | None = None,
    ) -> AsyncIterator[LiveItem]:
        """Replayed events, then live ones (``Rendered`` when ``shared`` is given)."""
        scope = EventScope(conversation_id, message_id)
        seen: set[int] = set()
        floor = after

        def new_and_wanted(event: MessageEvent) -> bool:
            # What a feed may deliver without passing through the loop below (once the replay
            # is over `seen` no longer changes, and this is the loop's own test).
            return (
                event.id not in seen and (floor is None or event.id > floor) and scope.covers(event)
            )

        live_items: AbstractAsyncContextManager[AsyncIterator[LiveItem]] = (
            self._broker.subscribe(account_id)
            if shared is None
            else self.feeds.join(account_id, shared, new_and_wanted)
        )
        async with live_items as live:
            if after is not None:
                cursor = after
                while True:
                    page = await self._queries.events_after(
                        account_id, cursor, scope, limit=REPLAY_PAGE
                    )
                    for event in page:
                        seen.add(event.id)
                        yield event
                    if len(page) < REPLAY_PAGE:
                        break
                    cursor = page[-1].id
            # Only replayed ids need remembering: the broker never delivers one live event twice,
            # so the set stays as large as the replay, not as long as the subscription.
            async for item in live:
                if new_and_wanted(item.event if isinstance(item, Rendered) else item):
                    yield item
