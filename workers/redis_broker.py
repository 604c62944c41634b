"""Redis backend of the broker: fair, paced lanes of Redis Streams for work
(``workers.lanes``), pub/sub for live events.

Each process holds ONE pub/sub connection (``workers.pubsub.Subscriber``), whose events are
fanned out to the local subscribers through the ``EventHub``. A Redis channel per account is
subscribed when the first local subscriber of that account arrives and unsubscribed when the
last one leaves, so a process only receives the events somebody on it is waiting for.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from uuid import UUID

import structlog
from redis.asyncio import Redis
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.domain.pacing import Queued
from gateway.domain.records import MessageEvent
from gateway.observability.metrics import EVENTS_PUBLISHED
from gateway.services.hub import EventHub
from workers.codec import decode_event, encode_event
from workers.lanes import Lanes
from workers.pubsub import Subscriber
from workers.redis_scripts import BatchWriter

log = structlog.get_logger(__name__)

#: The prefix of the delivery lanes and their keys.
STREAM = "mgw:deliveries"
GROUP = "delivery"
EVENTS_CHANNEL = "mgw:events:"


def channel_of(account_id: UUID) -> str:
    return EVENTS_CHANNEL + account_id.hex


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
        self.hub = EventHub()
        self._subscriber = _subscriber_for(self.redis, self._dispatch, self.hub.interrupt)
        self._channels: dict[str, int] = {}
        self._lock = asyncio.Lock()

    async def enqueue(self, work: Sequence[Queued]) -> None:
        await self.lanes.enqueue(work)

    async def publish(self, events: Sequence[MessageEvent]) -> None:
        if not events:
            return
        try:
            await self._batch.publish([(channel_of(e.account_id), encode_event(e)) for e in events])
        except Exception:
            # Live events are best effort: they are committed in the audit trail already, and
            # a subscriber resumes from its cursor. A failed publish must not fail the
            # delivery or webhook that produced it.
            log.warning("publish_failed", events=len(events), exc_info=True)
            return
        EVENTS_PUBLISHED.inc(len(events))

    @asynccontextmanager
    async def subscribe(self, account_id: UUID) -> AsyncIterator[AsyncIterator[MessageEvent]]:
        channel = channel_of(account_id)
        async with self.hub.subscribe(account_id) as events:
            await self._retain(channel)
            try:
                yield events
            finally:
                await self._release(channel)

    def _dispatch(self, payloads: list[bytes]) -> None:
        events = []
        for payload in payloads:
            try:
                events.append(decode_event(payload))
            except Exception:
                log.exception("pubsub_event_undecodable")
        self.hub.dispatch(events)

    async def _retain(self, channel: str) -> None:
        async with self._lock:
            count = self._channels.get(channel, 0)
            self._channels[channel] = count + 1
            if count == 0:
                try:
                    await self._subscriber.subscribe(channel)
                except BaseException:  # cancelled: this subscriber never arrived
                    self._channels.pop(channel, None)
                    await self._subscriber.unsubscribe(channel)
                    raise

    async def _release(self, channel: str) -> None:
        async with self._lock:
            count = self._channels.get(channel, 0) - 1
            if count <= 0:
                self._channels.pop(channel, None)
                await self._subscriber.unsubscribe(channel)
            else:
                self._channels[channel] = count

    async def ping(self) -> bool:
        return bool(await self.redis.ping())

    async def close(self) -> None:
        await self._subscriber.close()
        await self.redis.aclose()


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
