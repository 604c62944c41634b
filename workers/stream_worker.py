"""Delivery worker over a Redis Stream consumer group.

At-least-once from Redis, exactly-once to the provider by our own doing: an entry is XACKed only
after its outcome is committed, and the conditional claim in the database makes a second
delivery of the same entry (after a crash, a reclaim or a sweep) a no-op.

The entries of one read are claimed together (one unit of work); each claimed message then
goes to its provider on its own, so a slow call holds up nobody else; the outcomes that come in
while a batch is being recorded are recorded together next. The delivery service's units of
work publish the events of claims and outcomes through the broker once they are committed;
the entries are acknowledged after that, one XACK per batch. Per message that leaves the HTTP
call as the only round trip of its own.

A worker never takes more entries than it has free slots, neither reading nor reclaiming, so
that what it holds it can start at once: nothing it takes waits behind its own work. An
outcome it cannot record (the database is down) is handed to the held outcomes before its
entry is acknowledged, and recorded by the sweeper once the database answers. Its heartbeat
runs on its own, so that a busy or slow chore never makes a live worker look dead.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from typing import Any, Final
from uuid import UUID

import structlog
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.domain.records import DeliveryError
from gateway.domain.results import Change, Failure, Outcome
from gateway.outages import describe, is_unavailable
from gateway.services.clock import utcnow
from gateway.services.delivery import DeliveryService
from persistence.lifecycle import LifecycleRepository
from workers.chores import Chore
from workers.codec import redis_text
from workers.liveness import RedisLiveness
from workers.sweeper import Sweeper

log = structlog.get_logger(__name__)

#: How long a busy worker lets work gather before a read or a record: a few milliseconds on a
#: send-to-delivered path of tens, for several messages per round trip.
LINGER: Final = 0.004


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
        liveness: RedisLiveness,
        chores: Sequence[Chore] = (),
        linger: float = LINGER,
    ) -> None:
        self.redis = redis
        self._linger = linger
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self._delivery = delivery
        self._lifecycle = lifecycle
        self._sweeper = sweeper
        self._concurrency = concurrency
        self._held = 0  # slots taken: one per entry from its read until its outcome is done
        self._room = asyncio.Event()
        self._room.set()
        self._liveness = liveness
        self._min_idle_ms = min_idle_ms
        self._max_deliveries = max_deliveries
        self._sweep_interval = sweep_interval
        self._extra_chores = tuple(chores)
        self._inflight: set[asyncio.Task[None]] = set()
        # Outcomes waiting to be recorded, and the task recording them (one batch at a time).
        self._finished: list[tuple[Any, Outcome]] = []
        # Outcomes neither recorded nor handed over (Redis was down too), with their entries.
        self._unkept: list[tuple[Any, Outcome]] = []
        self._recorder: asyncio.Task[None] | None = None
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
        # Alive before holding anything: a claim by a worker with no heartbeat is taken back.
        await self._liveness.beat(self.consumer)
        beating = asyncio.create_task(
            self._liveness.keep_beating(self.consumer, stop), name="worker-heartbeat"
        )
        chores = asyncio.create_task(self._chores(stop), name="worker-chores")
        next_reclaim = time.monotonic()
        try:
            while not stop.is_set():
                self.last_progress = time.monotonic()
                if self.last_progress >= next_reclaim:
                    # In this loop, between reads: a read holds its free slots while it
                    # blocks, so a reclaim beside it would never find room.
                    next_reclaim = self.last_progress + self._sweep_interval
                    await self._reclaim_quietly()
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
            # Graceful stop: in-flight deliveries finish, are recorded and acknowledged.
            await self._drain(within=30)
            for task in (chores, beating):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._flush_unkept()
            if not self._inflight and not self._unkept:
                # Nothing left in our hands: nobody need wait for our heartbeat to lapse.
                with contextlib.suppress(Exception):
                    await self._liveness.forget(self.consumer)

    async def _drain(self, within: float) -> None:
        deadline = time.monotonic() + within
        while (left := deadline - time.monotonic()) > 0:
            busy: set[asyncio.Task[None]] = set(self._inflight)
            if self._recorder is not None and not self._recorder.done():
                busy.add(self._recorder)
            if not busy:
                return
            await asyncio.wait(busy, timeout=left)

    async def _read_once(self) -> None:
        if not await self._wait_for_room(within=1.0):
            return
        free = self._reserve(self._concurrency)
        try:
            reply: Any = await self.redis.xreadgroup(
                self.group, self.consumer, {self.stream: ">"}, count=free, block=1000
            )
        except BaseException:
            self._release(free)
            raise
        entries = [entry for _, stream_entries in reply or [] for entry in stream_entries]
        self._release(free - len(entries))
        if entries:
            await self._dispatch(entries)
            if len(entries) < free:
                # Busy but not full: let a few more entries arrive before the next read, so
                # that a claim, a record and an acknowledgement serve several messages. When
                # idle the blocking read returns at once, so a lone message never waits.
                await asyncio.sleep(self._linger)

    async def _dispatch(self, entries: list[tuple[Any, dict[Any, Any]]]) -> None:
        """Claim the messages of these entries together and start each claimed one's call.
        The caller has taken one slot per entry; each is given back when its entry is done."""
        jobs: list[tuple[Any, UUID]] = []
        settled: list[Any] = []  # entries with nothing (more) to do: acknowledged at once
        for entry_id, fields in entries:
            message_id = _message_id(fields)
            if message_id is None:
                log.error("stream_entry_malformed", entry=str(entry_id))
                settled.append(entry_id)
                self._release()
            else:
                jobs.append((entry_id, message_id))
        try:
            claimed, failed = await self._claim([message_id for _, message_id in jobs])
        except BaseException:
            self._release(len(jobs))
            raise
        for entry_id, message_id in jobs:
            # pop: the same id twice in one read (two stream entries): only one may send it.
            change = claimed.pop(message_id, None)
            if change is None:
                self._release()
                if message_id not in failed:
                    # Canceled, not yet due, or another worker has it. A failed claim is not
                    # acknowledged: the entry stays pending and is reclaimed after min-idle.
                    settled.append(entry_id)
                continue
            task = asyncio.create_task(self._send(entry_id, change))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
        await self._acknowledge(settled)

    async def _claim(self, message_ids: list[UUID]) -> tuple[dict[UUID, Change], set[UUID]]:
        """(claimed, failed). A combined claim that fails is retried message by message, so
        one bad message (a row that cannot be read, a counter at its limit) fails alone."""
        if not message_ids:
            return {}, set()
        try:
            return await self._delivery.claim(message_ids), set()
        except Exception:
            if len(message_ids) == 1:
                log.exception("delivery_failed", message_id=str(message_ids[0]))
                return {}, set(message_ids)
        claimed: dict[UUID, Change] = {}
        failed: set[UUID] = set()
        for message_id in dict.fromkeys(message_ids):
            try:
                claimed.update(await self._delivery.claim([message_id]))
            except Exception:
                log.exception("delivery_failed", message_id=str(message_id))
                failed.add(message_id)
        return claimed, failed

    async def _send(self, entry_id: Any, change: Change) -> None:
        try:
            outcome = await self._delivery.attempt(change.message)
        except Exception as exc:
            # A live worker's message is never taken back from it: say what happened.
            log.exception("delivery_failed", message_id=str(change.message.id))
            outcome = self._delivery.crashed(change.message, exc)
        self._finished.append((entry_id, outcome))
        if self._recorder is None or self._recorder.done():
            self._recorder = asyncio.create_task(self._record_finished(), name="worker-record")

    async def _record_finished(self) -> None:
        """Record what finished, batch after batch, until nothing is left waiting."""
        while self._finished:
            # The same for outcomes: those finishing within the linger share one record.
            await asyncio.sleep(self._linger)
            batch, self._finished = self._finished, []
            try:
                await self._record(batch)
            except Exception:
                log.exception("record_batch_failed", outcomes=len(batch))
            finally:
                for _ in batch:
                    self._release()

    async def _record(self, batch: list[tuple[Any, Outcome]]) -> None:
        recorded: list[Any] = []
        unwritten: list[tuple[Any, Outcome]] = []
        try:
            await self._delivery.record([outcome for _, outcome in batch])
            recorded = [entry_id for entry_id, _ in batch]
        except Exception as exc:
            if len(batch) == 1 or is_unavailable(exc):
                log.warning("record_failed", outcomes=len(batch), error=describe(exc))
                unwritten = batch
            else:
                # One by one, so that one outcome that cannot be written fails alone.
                for entry_id, outcome in batch:
                    try:
                        await self._delivery.record([outcome])
                    except Exception:
                        log.exception("record_failed", message_id=str(outcome.message_id))
                        unwritten.append((entry_id, outcome))
                    else:
                        recorded.append(entry_id)
        if unwritten:
            recorded += await self._hand_over(unwritten)
        # Only now: the outcomes are committed (or held where the sweeper records them).
        await self._acknowledge(recorded)

    async def _hand_over(self, unwritten: list[tuple[Any, Outcome]]) -> list[Any]:
        """Hand outcomes that could not be written to the held outcomes; the entries of
        those handed over are done. Kept here (and handed over later) when Redis is down too."""
        try:
            await self._delivery.hold([outcome for _, outcome in unwritten])
        except Exception as exc:
            log.warning("outcome_hold_failed", outcomes=len(unwritten), error=describe(exc))
            self._unkept += unwritten
            return []
        log.warning("outcomes_held", outcomes=len(unwritten))
        return [entry_id for entry_id, _ in unwritten]

    async def _flush_unkept(self) -> None:
        if self._unkept:
            batch, self._unkept = self._unkept, []
            done = await self._hand_over(batch)
            await self._acknowledge(done)

    async def _acknowledge(self, entry_ids: list[Any]) -> None:
        """XACK entries whose work is committed (their events are published by then). An
        entry whose XACK is lost stays pending and is reclaimed; its second delivery is a
        no-op."""
        if not entry_ids:
            return
        try:
            await self.redis.xack(self.stream, self.group, *entry_ids)
        except Exception:
            log.warning("ack_failed", entries=len(entry_ids), exc_info=True)

    def _reserve(self, wanted: int) -> int:
        """Take up to ``wanted`` free slots at once, never waiting; how many were taken."""
        taken = max(0, min(wanted, self._concurrency - self._held))
        self._held += taken
        if self._held >= self._concurrency:
            self._room.clear()
        return taken

    def _release(self, count: int = 1) -> None:
        if count > 0:
            self._held -= count
            self._room.set()

    async def _wait_for_room(self, within: float) -> bool:
        if self._held < self._concurrency:
            return True
        self._room.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._room.wait(), within)
        return self._held < self._concurrency

    async def _chores(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            for chore in (
                self._flush_unkept,
                self._sweep,
                self._trim,
                *self._extra_chores,
            ):
                try:
                    await chore()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.warning("worker_chore_failed", chore=_name(chore), exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._sweep_interval)

    async def _reclaim_quietly(self) -> None:
        try:
            await self._reclaim()
        except Exception:
            log.warning("reclaim_failed", exc_info=True)

    async def _reclaim(self) -> None:
        """Take over entries a crashed or stuck consumer left pending, as many as there is
        room for now; the rest wait for a later round."""
        room = self._reserve(100)
        if room == 0:
            return
        retry: list[tuple[Any, dict[Any, Any]]] = []
        try:
            _, entries, *_ = await self.redis.xautoclaim(
                self.stream, self.group, self.consumer, self._min_idle_ms, "0-0", count=room
            )
            for entry_id, fields in entries:
                try:
                    if fields is None:
                        await self.redis.xack(self.stream, self.group, entry_id)
                    elif await self._times_delivered(entry_id) > self._max_deliveries:
                        await self._poison(entry_id, fields)
                    else:
                        retry.append((entry_id, fields))
                except Exception:
                    # One bad entry must not stop the others of the batch from being handled.
                    log.exception("reclaim_entry_failed", entry=str(entry_id))
        finally:
            self._release(room - len(retry))
        if retry:
            await self._dispatch(retry)

    async def _times_delivered(self, entry_id: Any) -> int:
        pending = await self.redis.xpending_range(
            self.stream, self.group, min=entry_id, max=entry_id, count=1
        )
        return int(pending[0]["times_delivered"]) if pending else 0

    async def _poison(self, entry_id: Any, fields: dict[Any, Any]) -> None:
        """An entry that keeps failing goes to the dead letters instead of blocking the stream."""
        message_id = _message_id(fields)
        if message_id is not None:
            error = DeliveryError("POISON", "delivery crashed too often", permanent=False)
            try:
                await self._delivery.record([Failure(message_id, error, None)])
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
            mine = [g for g in groups if redis_text(g.get("name") or "") == self.group]
            if not mine:
                return
            floor = mine[0]["last-delivered-id"]
        # Exact: runs once per sweep interval, and an exact floor is easy to reason about.
        await self.redis.xtrim(self.stream, minid=floor, approximate=False)


def _name(chore: Chore) -> str:
    return getattr(chore, "__qualname__", None) or repr(chore)


def _message_id(fields: dict[Any, Any]) -> UUID | None:
    """The message a stream entry names; None for a malformed entry."""
    raw = fields.get(b"id") or fields.get("id")
    try:
        return UUID(hex=raw.decode() if isinstance(raw, bytes) else str(raw))
    except (ValueError, AttributeError, TypeError):
        return None
