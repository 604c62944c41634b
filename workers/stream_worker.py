"""Delivery worker over a Redis Stream consumer group.

At-least-once from Redis, exactly-once to the provider by our own doing: an entry is XACKed only
after its outcome is committed, and the conditional claim in the database makes a second
delivery of the same entry (after a crash, a reclaim or a sweep) a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any
from uuid import UUID

import structlog
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.domain.records import DeliveryError
from gateway.services.clock import utcnow
from gateway.services.coalescer import Coalescer
from gateway.services.delivery import DeliveryService
from persistence.lifecycle import LifecycleRepository
from workers.sweeper import Sweeper

log = structlog.get_logger(__name__)


class StreamWorker:
    def __init__(
        self,
        redis: Redis,
        *,
        stream: str,
        group: str,
        consumer: str,
        delivery: DeliveryService,
        lifecycle: LifecycleRepository,
        sweeper: Sweeper,
        concurrency: int,
        min_idle_ms: int,
        max_deliveries: int,
        sweep_interval: float,
    ) -> None:
        self.redis = redis
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self._delivery = delivery
        self._lifecycle = lifecycle
        self._sweeper = sweeper
        self._concurrency = concurrency
        self._slots = asyncio.Semaphore(concurrency)
        self._min_idle_ms = min_idle_ms
        self._max_deliveries = max_deliveries
        self._sweep_interval = sweep_interval
        self._inflight: set[asyncio.Task[None]] = set()
        # Entries finished at the same time are acknowledged together, in one XACK.
        self._acks: Coalescer[Any, None] = Coalescer(self._ack_batch, max_items=1000)
        self.last_progress = time.monotonic()

    async def ensure_group(self) -> None:
        try:
            # "0": entries added before the group existed are delivered too.
            await self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def run(self, stop: asyncio.Event) -> None:
        await self.ensure_group()
        chores = asyncio.create_task(self._chores(stop), name="worker-chores")
        try:
            while not stop.is_set():
                self.last_progress = time.monotonic()
                try:
                    await self._read_once()
                except (
                    ConnectionError,
                    OSError,
                    TimeoutError,
                    # redis-py's own classes are not subclasses of the built-in ones.
                    RedisConnectionError,
                    RedisTimeoutError,
                ) as exc:
                    log.warning("stream_read_failed", error=str(exc))
                    await asyncio.sleep(1.0)
                except ResponseError as exc:
                    if "NOGROUP" in str(exc):  # Redis lost its data: recreate, sweeper refills
                        await self.ensure_group()
                    else:
                        raise
        finally:
            # Graceful stop: in-flight deliveries finish and are acknowledged.
            if self._inflight:
                await asyncio.wait(self._inflight, timeout=30)
            chores.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await chores

    async def _read_once(self) -> None:
        free = max(1, self._concurrency - len(self._inflight))
        reply: Any = await self.redis.xreadgroup(
            self.group, self.consumer, {self.stream: ">"}, count=free, block=1000
        )
        for _, entries in reply or []:
            for entry_id, fields in entries:
                await self._start(entry_id, fields)

    async def _start(self, entry_id: Any, fields: dict[Any, Any]) -> None:
        await self._slots.acquire()
        task = asyncio.create_task(self._handle(entry_id, fields))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _handle(self, entry_id: Any, fields: dict[Any, Any]) -> None:
        try:
            raw = fields.get(b"id") or fields.get("id")
            message_id = UUID(hex=raw.decode() if isinstance(raw, bytes) else str(raw))
        except (ValueError, AttributeError, TypeError):
            log.error("stream_entry_malformed", entry=str(entry_id))
            try:
                await self._acks.submit([entry_id])
            except Exception:
                log.warning("stream_ack_failed", entry=str(entry_id), exc_info=True)
            finally:
                self._slots.release()
            return
        try:
            await self._delivery.deliver(message_id)
            # Only now: the outcome is committed.
            await self._acks.submit([entry_id])
        except Exception:
            # Not acknowledged: the entry stays pending and is reclaimed after min-idle.
            log.exception("delivery_failed", message_id=str(message_id))
        finally:
            self._slots.release()

    async def _ack_batch(self, entry_ids: list[Any]) -> list[None]:
        await self.redis.xack(self.stream, self.group, *entry_ids)
        return [None] * len(entry_ids)

    async def _chores(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            for chore in (self._reclaim, self._sweep, self._trim, self._heartbeat):
                try:
                    await chore()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.warning("worker_chore_failed", chore=chore.__name__, exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._sweep_interval)

    async def _reclaim(self) -> None:
        """Take over entries a crashed or stuck consumer left pending."""
        _, entries, *_ = await self.redis.xautoclaim(
            self.stream, self.group, self.consumer, self._min_idle_ms, "0-0", count=100
        )
        for entry_id, fields in entries:
            try:
                if fields is None:
                    await self.redis.xack(self.stream, self.group, entry_id)
                elif await self._times_delivered(entry_id) > self._max_deliveries:
                    await self._poison(entry_id, fields)
                else:
                    await self._start(entry_id, fields)
            except Exception:
                # One bad entry must not stop the others of the batch from being handled.
                log.exception("reclaim_entry_failed", entry=str(entry_id))

    async def _times_delivered(self, entry_id: Any) -> int:
        pending = await self.redis.xpending_range(
            self.stream, self.group, min=entry_id, max=entry_id, count=1
        )
        return int(pending[0]["times_delivered"]) if pending else 0

    async def _poison(self, entry_id: Any, fields: dict[Any, Any]) -> None:
        """An entry that keeps failing goes to the dead letters instead of blocking the stream."""
        raw = fields.get(b"id") or fields.get("id")
        try:
            message_id = UUID(hex=raw.decode() if isinstance(raw, bytes) else str(raw))
        except (ValueError, AttributeError, TypeError):
            message_id = None
        if message_id is not None:
            error = DeliveryError("POISON", "delivery crashed too often", permanent=False)
            try:
                change = await self._lifecycle.record_failure(message_id, error, utcnow())
                if change is not None:
                    await self._delivery.publish(change)
            except Exception:
                # The row itself may be what cannot be read: fail it without reading it.
                log.exception("poison_record_failed", message_id=str(message_id))
                await self._lifecycle.dead_letter_unread(message_id, error, utcnow())
        log.error("stream_entry_dead_lettered", entry=str(entry_id), message_id=str(message_id))
        await self.redis.xack(self.stream, self.group, entry_id)

    async def _sweep(self) -> None:
        # One sweeper per interval across all workers, elected by a short Redis lease.
        lease_ms = max(100, int(self._sweep_interval * 900))
        if await self.redis.set("mgw:sweeper", self.consumer, nx=True, px=lease_ms):
            await self._sweeper.sweep_once()

    async def _trim(self) -> None:
        """Drop acknowledged entries only: never trim past the oldest pending one."""
        summary = await self.redis.xpending(self.stream, self.group)
        if summary and summary.get("pending"):
            floor = summary["min"]
        else:
            groups = await self.redis.xinfo_groups(self.stream)
            mine = [g for g in groups if _text(g.get("name")) == self.group]
            if not mine:
                return
            floor = mine[0]["last-delivered-id"]
        # Exact: runs once per sweep interval, and an exact floor is easy to reason about.
        await self.redis.xtrim(self.stream, minid=floor, approximate=False)

    async def _heartbeat(self) -> None:
        await self.redis.set(f"mgw:worker:{self.consumer}", utcnow().isoformat(), ex=30)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
