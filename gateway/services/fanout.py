"""Live events rendered once for every local subscriber that would render them alike.

Subscribers of one account whose operations give identical output for the same event share a
*feed*, found by a key the caller derives (e.g. the GraphQL document and the variables that
shape the result). A feed holds ONE broker subscription and renders each event once, then
hands the same rendering to each member that wants the event: per member, the cost of an event
is an append to its mailbox, or, for an idle member whose transport can take it at once, the
write itself (no task to wake).

Guarantees, the same as a broker subscription of one's own:
- a member receives every event the broker dispatches after ``join`` returns, in order (it may
  also receive a few dispatched just before; the stream above removes duplicates by id, and
  ``wanted`` must reject them too, since an event delivered directly skips the stream);
- a member that falls behind is cut off after everything queued for it (no gap); when the
  feed itself falls behind its broker subscription, every member is cut off that way;
- an event whose rendering failed is handed over unrendered, so that each member renders it
  on its own and reports its own errors.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

import structlog

from gateway.domain.records import MessageEvent
from gateway.services.hub import CutOff, Mailbox

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Rendered:
    """A live event with the representation its feed computed once for all members."""

    event: MessageEvent
    payload: bytes


Render = Callable[[MessageEvent], Awaitable[bytes | None]]
Wanted = Callable[[MessageEvent], bool]
LiveItem = MessageEvent | Rendered


@dataclass(frozen=True, slots=True)
class SharedRendering:
    """How a subscriber's events are rendered, and the key of everyone rendering them alike.

    ``render`` returns ``None`` when the event cannot be rendered in common (an error, which
    every member must then meet and report on its own).
    """

    key: Hashable
    render: Render
    # The member's own synchronous delivery of a rendered payload, when its transport has one:
    # True if it was delivered. Used only while the member is idle (its mailbox empty and its
    # reader waiting), so that it cannot overtake anything; otherwise the item is queued.
    send_now: Callable[[bytes], bool] | None = None


class Subscribable(Protocol):
    def subscribe(
        self, account_id: UUID
    ) -> AbstractAsyncContextManager[AsyncIterator[MessageEvent]]: ...


class _Member:
    __slots__ = ("mailbox", "send_now", "stats", "wanted")

    def __init__(
        self,
        wanted: Wanted,
        size: int,
        send_now: Callable[[bytes], bool] | None,
        stats: list[int],
    ) -> None:
        self.wanted = wanted
        self.send_now = send_now
        self.stats = stats
        self.mailbox: Mailbox[LiveItem] = Mailbox(size)

    def deliver(self, item: LiveItem) -> None:
        send_now = self.send_now
        if send_now is not None and self.mailbox.idle and isinstance(item, Rendered):
            try:
                if send_now(item.payload):
                    self.stats[2] += 1
                    return
            except Exception:
                log.debug("direct_send_failed", exc_info=True)
        self.mailbox.offer(item)


class _Feed:
    def __init__(self, key: tuple[UUID, Hashable], render: Render, stats: list[int]) -> None:
        self.key = key
        self.stats = stats
        self.render = render
        # Insertion-ordered; a dict so that leaving is O(1) with a thousand members.
        self.members: dict[_Member, None] = {}
        self.task: asyncio.Task[None] | None = None
        self.subscription: AbstractAsyncContextManager[AsyncIterator[MessageEvent]] | None = None
        self.closed = False

    async def run(self, events: AsyncIterator[MessageEvent], forget: Callable[[], None]) -> None:
        cause: type[CutOff] | None = None
        try:
            async for event in events:
                members = [m for m in self.members if m.wanted(event)]
                if not members:
                    continue
                payload = await self._render(event)
                self.stats[payload is None] += 1
                item: LiveItem = event if payload is None else Rendered(event, payload)
                for member in members:
                    member.deliver(item)
        except CutOff as exc:
            cause = type(exc)
        except Exception:
            log.exception("shared_feed_failed")
        # The feed could not keep up with its broker subscription (or lost it): its members get
        # what was rendered so far and are then cut off, as if each had fallen behind. New
        # subscribers get a new feed.
        forget()
        for member in self.members:
            member.mailbox.cut_off(cause)

    async def _render(self, event: MessageEvent) -> bytes | None:
        try:
            return await self.render(event)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.debug("shared_render_failed", event_id=event.id, exc_info=True)
            return None


class SharedFeeds:
    """The feeds of one process, opened on first join and closed when the last member leaves."""

    def __init__(self, broker: Subscribable, member_queue_size: int = 1000) -> None:
        self._broker = broker
        self._size = member_queue_size
        self._feeds: dict[tuple[UUID, Hashable], _Feed] = {}
        # Opening a feed awaits the broker; one at a time, so two first members of the same
        # feed never open it twice. Joining an open feed takes no lock.
        self._opening = asyncio.Lock()
        # Over the process's lifetime: events [rendered in common, handed over unrendered],
        # and deliveries written at once by the feed.
        self._stats = [0, 0, 0]

    def __len__(self) -> int:
        return len(self._feeds)

    @property
    def rendered(self) -> int:
        """Events rendered once for their feed's members."""
        return self._stats[0]

    @property
    def unrendered(self) -> int:
        """Events whose rendering failed: every member rendered them on its own."""
        return self._stats[1]

    @property
    def sent_directly(self) -> int:
        """Deliveries the feed wrote itself, to idle members (no task woken)."""
        return self._stats[2]

    def members(self, account_id: UUID) -> int:
        """Members of the account's open feeds (they hold no broker subscription of their own)."""
        return sum(
            len(f.members) for (account, _), f in self._feeds.items() if account == account_id
        )

    @asynccontextmanager
    async def join(
        self, account_id: UUID, rendering: SharedRendering, wanted: Wanted
    ) -> AsyncIterator[AsyncIterator[LiveItem]]:
        """Live items of the account that ``wanted`` accepts, from the moment this returns."""
        key = (account_id, rendering.key)
        feed = self._feeds.get(key) or await self._open(key, account_id, rendering.render)
        member = _Member(wanted, self._size, rendering.send_now, self._stats)
        feed.members[member] = None
        try:
            yield member.mailbox
        finally:
            del feed.members[member]
            if not feed.members:
                await self._close(feed)

    async def _open(self, key: tuple[UUID, Hashable], account_id: UUID, render: Render) -> _Feed:
        async with self._opening:
            feed = self._feeds.get(key)
            if feed is not None:
                return feed
            feed = _Feed(key, render, self._stats)
            subscription = self._broker.subscribe(account_id)
            events = await subscription.__aenter__()
            feed.subscription = subscription
            feed.task = asyncio.create_task(
                feed.run(events, lambda: self._forget(feed)), name="shared-feed"
            )
            self._feeds[key] = feed
            return feed

    def _forget(self, feed: _Feed) -> None:
        if self._feeds.get(feed.key) is feed:
            del self._feeds[feed.key]

    async def _close(self, feed: _Feed) -> None:
        if feed.closed:
            return
        feed.closed = True
        self._forget(feed)
        if feed.task is not None:
            feed.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feed.task
        if feed.subscription is not None:
            await feed.subscription.__aexit__(None, None, None)
