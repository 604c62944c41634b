"""Redis backend of the broker: fair, paced lanes of Redis Streams for work
(``workers.lanes``), pub/sub for live events and inbox changes.

Each process holds ONE pub/sub connection (``workers.pubsub.Subscriber``) for live events,
whose events are fanned out to the local subscribers through the ``EventHub``. A Redis channel
per account is subscribed when the first local subscriber of that account arrives and
unsubscribed when the last one leaves, so a process only receives the events somebody on it is
waiting for. Inbox changes go the same way on a connection of their own, opened by the
process's first inbox watcher: the events' busy connection parses nothing else.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TypeVar
from uuid import UUID

import structlog
from redis.asyncio import Redis
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.domain.inbox import InboxChange
from gateway.domain.pacing import Queued
from gateway.domain.records import MessageEvent
from gateway.observability.metrics import EVENTS_PUBLISHED
from gateway.services.hub import AccountScoped, EventHub
from workers.codec import decode_event, decode_inbox_change, encode_event, encode_inbox_change
from workers.lanes import Lanes
from workers.pubsub import Subscriber
from workers.redis_scripts import BatchWriter

log = structlog.get_logger(__name__)

#: The prefix of the delivery lanes and their keys.
STREAM = "mgw:deliveries"
GROUP = "delivery"
EVENTS_CHANNEL = "mgw:events:"
INBOX_CHANNEL = "mgw:inbox:"

T = TypeVar("T")
Live = TypeVar("Live", bound=AccountScoped)


def channel_of(account_id: UUID) -> str:
    return EVENTS_CHANNEL + account_id.hex


def inbox_channel_of(account_id: UUID) -> str:
    return INBOX_CHANNEL + account_id.hex


class RedisBroker:
    def __init__(self, url: str, *, stream: str = STREAM) -> None:
        # Retried: after a Redis restart every pooled connection fails once on first use;
        # without a retry that first XADD or PUBLISH (a live event) would be lost.
        self.redis: Redis = Redis.from_url(
            url,
            health_check_interval=15,
            retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.5), 3),
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
        )
        self.stream = stream
        self.lanes = Lanes(self.redis, stream, GROUP)
        self._batch = BatchWriter(self.redis)
        self.hub = EventHub[MessageEvent]()
        self._subscriber = _subscriber_for(self.redis, self._dispatch, self.hub.interrupt)
        self._channels = _Channels(self._subscriber)
        self.inbox_hub = EventHub[InboxChange]()
        self._inbox_subscriber = _subscriber_for(
            self.redis, self._dispatch_inbox, self.inbox_hub.interrupt
        )
        self._inbox_channels = _Channels(self._inbox_subscriber)

    async def enqueue(self, work: Sequence[Queued]) -> None:
        await self.lanes.enqueue(work)

    async def publish(self, events: Sequence[MessageEvent]) -> None:
        if events and await self._publish(
            [(channel_of(e.account_id), encode_event(e)) for e in events], "publish_failed"
        ):
            EVENTS_PUBLISHED.inc(len(events))

    async def publish_inbox(self, changes: Sequence[InboxChange]) -> None:
        if changes:
            await self._publish(
                [(inbox_channel_of(c.account_id), encode_inbox_change(c)) for c in changes],
                "inbox_publish_failed",
            )

    async def _publish(self, messages: list[tuple[str, bytes]], failure: str) -> bool:
        try:
            await self._batch.publish(messages)
        except Exception:
            # Live items are best effort: what they tell of is committed already (events in
            # the audit trail, from which a subscriber resumes by its cursor; inbox state in
            # its conversation). A failed publish must not fail the delivery or webhook that
            # produced it.
            log.warning(failure, messages=len(messages), exc_info=True)
            return False
        return True

    def subscribe(
        self, account_id: UUID
    ) -> AbstractAsyncContextManager[AsyncIterator[MessageEvent]]:
        return _subscribed(self.hub, self._channels, channel_of(account_id), account_id)

    def subscribe_inbox(
        self, account_id: UUID
    ) -> AbstractAsyncContextManager[AsyncIterator[InboxChange]]:
        return _subscribed(
            self.inbox_hub, self._inbox_channels, inbox_channel_of(account_id), account_id
        )

    def _dispatch(self, payloads: list[bytes]) -> None:
        self.hub.dispatch(_decoded(payloads, decode_event, "pubsub_event_undecodable"))

    def _dispatch_inbox(self, payloads: list[bytes]) -> None:
        self.inbox_hub.dispatch(
            _decoded(payloads, decode_inbox_change, "pubsub_inbox_change_undecodable")
        )

    async def ping(self) -> bool:
        return bool(await self.redis.ping())

    async def close(self) -> None:
        await self._subscriber.close()
        await self._inbox_subscriber.close()
        await self.redis.aclose()


@asynccontextmanager
async def _subscribed(
    hub: EventHub[Live], channels: _Channels, channel: str, account_id: UUID
) -> AsyncIterator[AsyncIterator[Live]]:
    """The account's items from ``hub``, its Redis ``channel`` subscribed meanwhile."""
    async with hub.subscribe(account_id) as items, channels.held(channel):
        yield items


def _decoded(payloads: list[bytes], decode: Callable[[bytes], T], failure: str) -> list[T]:
    items = []
    for payload in payloads:
        try:
            items.append(decode(payload))
        except Exception:
            log.exception(failure)
    return items


class _Channels:
    """The channels of one subscriber connection, each subscribed while a local subscriber
    holds it (counted)."""

    def __init__(self, subscriber: Subscriber) -> None:
        self._subscriber = subscriber
        self._counts: dict[str, int] = {}
        self._lock = asyncio.Lock()

    @asynccontextmanager
    async def held(self, channel: str) -> AsyncIterator[None]:
        await self._retain(channel)
        try:
            yield
        finally:
            await self._release(channel)

    async def _retain(self, channel: str) -> None:
        async with self._lock:
            count = self._counts.get(channel, 0)
            self._counts[channel] = count + 1
            if count == 0:
                try:
                    await self._subscriber.subscribe(channel)
                except BaseException:  # cancelled: this subscriber never arrived
                    self._counts.pop(channel, None)
                    await self._subscriber.unsubscribe(channel)
                    raise

    async def _release(self, channel: str) -> None:
        async with self._lock:
            count = self._counts.get(channel, 0) - 1
            if count <= 0:
                self._counts.pop(channel, None)
                await self._subscriber.unsubscribe(channel)
            else:
                self._counts[channel] = count


def _subscriber_for(
    redis: Redis, on_payloads: Callable[[list[bytes]], None], on_interrupted: Callable[[], None]
) -> Subscriber:
    """The subscriber connection, made as the client's own connections are (address,
    credentials, TLS settings from the URL)."""
    pool = redis.connection_pool
    kwargs = pool.connection_kwargs
    username, password = kwargs.get("username"), kwargs.get("password")
    connection_class = pool.connection_class
    if issubclass(connection_class, UnixDomainSocketConnection):
        return Subscriber(
            on_payloads,
            on_interrupted=on_interrupted,
            path=kwargs["path"],
            username=username,
            password=password,
        )
    if issubclass(connection_class, Connection):
        tls = None
        if issubclass(connection_class, SSLConnection):
            # redis-py's own TLS context for these settings (CA, client certificate, checks).
            tls = connection_class(**kwargs).ssl_context.get()
        return Subscriber(
            on_payloads,
            on_interrupted=on_interrupted,
            host=kwargs.get("host") or "localhost",
            port=int(kwargs.get("port") or 6379),
            username=username,
            password=password,
            tls=tls,
        )
    raise ValueError(f"live events cannot be read over {connection_class.__name__}")
