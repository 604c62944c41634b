"""Delivery worker over the Redis Stream lanes (``workers.lanes``), one consumer group each.

At-least-once from Redis, exactly-once to the provider by our own doing: an entry is XACKed only
after its outcome is committed, and the conditional claim in the database makes a second
delivery of the same entry (after a crash, a reclaim or a sweep) a no-op.

The entries of one read are claimed together (one unit of work); each claimed message then
goes to its provider on its own, so a slow call holds up nobody else; the outcomes that come in
while a batch is being recorded are recorded together next. The delivery service's units of
work publish the events of claims and outcomes through the broker once they are committed;
the entries are acknowledged after that, one XACK per batch. Per message that leaves the HTTP
call as the only round trip of its own.

Each read takes a few entries from every lane in turn, starting at a different lane each time,
and only as many as the lane's sender may send now (pacing; see ``workers.lanes``): an entry
comes with its sender's slot, at most ``horizon`` away, and its provider call starts at that
slot. Lanes whose sender is paced further than that are not read until their time comes; when
nothing can be read the worker blocks on the wake stream until something is enqueued or a
paced lane's time comes.

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
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any, Final
from uuid import UUID

import structlog
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.domain.pacing import pacing_key
from gateway.domain.records import DeliveryError, Message
from gateway.domain.results import Change, Failure, Outcome
from gateway.outages import describe, is_unavailable
from gateway.services.clock import utcnow
from gateway.services.delivery import DeliveryService
from persistence.lifecycle import LifecycleRepository
from workers.chores import Chore
from workers.codec import redis_text
from workers.lanes import Entry, Lanes
from workers.liveness import RedisLiveness
from workers.pacing import RedisPacer
from workers.sweeper import Sweeper

log = structlog.get_logger(__name__)

#: How long a busy worker lets work gather before a read or a record: a few milliseconds on a
#: send-to-delivered path of tens, for several messages per round trip.
LINGER: Final = 0.004
#: How far ahead a read takes a paced sender's slots: its entries wait this long at most, in
#: their slot, for their call to start.
HORIZON: Final = 0.1
#: How far ahead an idle paced sender's first slot is set (at most one interval): time for
#: the claim, so that the call starts at its slot rather than late, nearer the next one.
LEAD: Final = 0.05
#: A call this late for its slot takes its sender's next slot instead.
LATE: Final = 0.025
#: Most lanes one read looks at; the next read starts where this one stopped.
LANES_PER_READ: Final = 256
#: Longest a worker with nothing to read blocks before it looks at the lanes again.
IDLE_WAIT: Final = 1.0

#: Each sender's rate by pacing key (``SenderRates.rates_of``).
Rates = Callable[[Collection[str]], Awaitable[dict[str, float]]]


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
        rates: Rates | None = None,
        horizon: float = HORIZON,
    ) -> None:
        self.redis = redis
        self._linger = linger
        self.stream = stream
        self.group = group
        self.lanes = Lanes(redis, stream, group)
        self._pacer = RedisPacer(redis)
        self._rates = rates
        self._horizon = horizon
        # Lanes whose sender is paced, and when each may be read again (monotonic).
        self._paced: dict[str, float] = {}
        # Where the next read starts among the lanes, so each gets the first turn in turn.
        self._turn = 0
        # The lanes the next read looks at: the lane set as of the last read, and the lanes
        # enqueued to since, as the wake entries name them.
        self._lanes: list[str] = []
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
        self._finished: list[tuple[Entry, Outcome]] = []
        # Outcomes neither recorded nor handed over (Redis was down too), with their entries.
        self._unkept: list[tuple[Entry, Outcome]] = []
        self._recorder: asyncio.Task[None] | None = None
        self.last_progress = time.monotonic()

    async def run(self, stop: asyncio.Event) -> None:
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
                    # Redis lost its data or a lane vanished under a read: the lanes are read
                    # again, the sweeper refills them.
                    log.warning("stream_read_failed", error=str(exc))
                    await asyncio.sleep(0.1)
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
        now = time.monotonic()
        # Every read returns the lane set: listing the lanes costs no round trip of its own.
        known = self._lanes
        self._paced = {lane: t for lane, t in self._paced.items() if t > now}
        ready = [lane for lane in known if lane not in self._paced]
        start = self._turn % len(ready) if ready else 0
        ready = (ready[start:] + ready[:start])[:LANES_PER_READ]
        free = self._reserve(self._concurrency)
        try:
            rates = await self._rates_of(ready)
            reading = await self.lanes.take(
                self.consumer,
                [(lane, rates.get(lane, 0.0)) for lane in ready],
                budget=free,
                # A few from each lane, so that every lane of this read gets its turn.
                per_lane=max(1, -(-free // max(1, len(ready)))),
                horizon=self._horizon,
                lead=LEAD,
            )
        except BaseException:
            self._release(free)
            raise
        read_at = time.monotonic()
        self._lanes = reading.lanes
        # The next read starts after the lanes this one served (with little room, only the
        # first few of them were).
        self._turn = start + max(1, len(reading.taken))
        self._release(free - len(reading.taken))
        for lane, ready_in in reading.paced.items():
            self._paced[lane] = read_at + ready_in
        if reading.taken:
            await self._dispatch(
                [(t.entry, _parse_id(t.message_id), read_at + t.delay) for t in reading.taken]
            )
            if len(reading.taken) < free:
                # Busy but not full: let a few more entries arrive before the next read, so
                # that a claim, a record and an acknowledgement serve several messages.
                await asyncio.sleep(self._linger)
            return
        if not set(reading.lanes).issubset(known):
            # Lanes this read did not know of yet (and so could not read): read them now.
            return
        # Nothing to read now: sleep until something is enqueued after this read, or the
        # first paced lane may be read again.
        until = min(self._paced.values(), default=read_at + IDLE_WAIT)
        named = await self.lanes.wait_for_work(reading.wake, min(IDLE_WAIT, until - read_at))
        self._lanes = sorted({*self._lanes, *named})

    async def _rates_of(self, lanes: list[str]) -> dict[str, float]:
        """Each lane's sender's rate (0: not paced)."""
        if self._rates is None or not lanes:
            return {}
        senders = {lane: self.lanes.sender_of(lane) for lane in lanes}
        rates = await self._rates(set(senders.values()))
        return {lane: rates.get(pacing_key(sender), 0.0) for lane, sender in senders.items()}

    async def _dispatch(self, entries: list[tuple[Entry, UUID | None, float]]) -> None:
        """Claim the messages of these entries (entry, message id, when its call may start)
        together and start each claimed one's call. The caller has taken one slot per
        entry; each is given back when its entry is done."""
        jobs: list[tuple[Entry, UUID, float]] = []
        settled: list[Entry] = []  # entries with nothing (more) to do: acknowledged at once
        for entry, message_id, start_at in entries:
            if message_id is None:
                log.error("stream_entry_malformed", entry=str(entry))
                settled.append(entry)
                self._release()
            else:
                jobs.append((entry, message_id, start_at))
        try:
            claimed, failed = await self._claim([message_id for _, message_id, _ in jobs])
        except BaseException:
            self._release(len(jobs))
            raise
        for entry, message_id, start_at in jobs:
            # pop: the same id twice in one read (two stream entries): only one may send it.
            change = claimed.pop(message_id, None)
            if change is None:
                self._release()
                if message_id not in failed:
                    # Canceled, not yet due, or another worker has it. A failed claim is not
                    # acknowledged: the entry stays pending and is reclaimed after min-idle.
                    settled.append(entry)
                continue
            task = asyncio.create_task(self._send(entry, change, start_at))
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

    async def _send(self, entry: Entry, change: Change, start_at: float = 0.0) -> None:
        wait = start_at - time.monotonic()
        if wait > 0:
            # The slot its sender took for it: at most the horizon away.
            await asyncio.sleep(wait)
            # A busy process wakes late: a call that overslept its slot is late like one
            # whose claim took too long.
            wait = start_at - time.monotonic()
        if start_at and -wait > LATE:
            await self._slot_again(change.message)
        try:
            outcome = await self._delivery.attempt(change.message)
        except Exception as exc:
            # A live worker's message is never taken back from it: say what happened.
            log.exception("delivery_failed", message_id=str(change.message.id))
            outcome = self._delivery.crashed(change.message, exc)
        self._finished.append((entry, outcome))
        if self._recorder is None or self._recorder.done():
            self._recorder = asyncio.create_task(self._record_finished(), name="worker-record")

    async def _slot_again(self, message: Message) -> None:
        """A call that missed its slot (its claim took longer) takes its sender's next one
        instead, so that it does not crowd the calls at the slots after the one it missed.
        Only for a sender whose slots are at least ``LATE`` apart: a faster one's call that
        late lands among the next few slots anyway, not worth a round trip per message."""
        if self._rates is None:
            return
        key = pacing_key(message.sender)
        try:
            rate = (await self._rates([message.sender])).get(key, 0.0)
            if rate <= 0 or 1.0 / rate < LATE:
                return
            cost = max(1, message.segments or 1)
            delay = await self._pacer.reserve(key, rate, cost, within=3600.0) or 0.0
        except Exception:
            # Sent late rather than not at all: the limiter is what is down.
            log.warning("sender_slot_unavailable", sender=message.sender, exc_info=True)
            return
        if delay > 0:
            await asyncio.sleep(delay)

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

    async def _record(self, batch: list[tuple[Entry, Outcome]]) -> None:
        recorded: list[Entry] = []
        unwritten: list[tuple[Entry, Outcome]] = []
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

    async def _hand_over(self, unwritten: list[tuple[Entry, Outcome]]) -> list[Entry]:
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

    async def _acknowledge(self, entries: list[Entry]) -> None:
        """XACK (and drop) entries whose work is committed (their events are published by
        then). An entry whose XACK is lost stays pending and is reclaimed; its second
        delivery is a no-op."""
        if not entries:
            return
        try:
            await self.lanes.acknowledge(entries)
        except Exception:
            log.warning("ack_failed", entries=len(entries), exc_info=True)

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
            for chore in (self._flush_unkept, self._sweep, *self._extra_chores):
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
        """Take over entries a crashed or stuck consumer left pending, lane by lane, as many
        as there is room for now; the rest wait for a later round."""
        room = self._reserve(100)
        if room == 0:
            return
        retry: list[tuple[Entry, UUID | None, float]] = []
        try:
            for lane in await self.lanes.members():
                if len(retry) >= room:
                    break
                try:
                    _, entries, *_ = await self.redis.xautoclaim(
                        lane,
                        self.group,
                        self.consumer,
                        self._min_idle_ms,
                        "0-0",
                        count=room - len(retry),
                    )
                except ResponseError:
                    continue  # the lane went away (emptied, or Redis lost it) meanwhile
                for entry_id, fields in entries:
                    entry = (lane, redis_text(entry_id))
                    try:
                        if fields is None:
                            await self.lanes.acknowledge([entry])
                        elif await self._times_delivered(entry) > self._max_deliveries:
                            await self._poison(entry, fields)
                        else:
                            # Paced when first read: its slot is spent, it goes at once.
                            retry.append((entry, _message_id(fields), 0.0))
                    except Exception:
                        # One bad entry must not stop the others of the batch from being
                        # handled.
                        log.exception("reclaim_entry_failed", entry=str(entry))
        finally:
            self._release(room - len(retry))
        if retry:
            await self._dispatch(retry)

    async def _times_delivered(self, entry: Entry) -> int:
        lane, entry_id = entry
        pending = await self.redis.xpending_range(
            lane, self.group, min=entry_id, max=entry_id, count=1
        )
        return int(pending[0]["times_delivered"]) if pending else 0

    async def _poison(self, entry: Entry, fields: dict[Any, Any]) -> None:
        """An entry that keeps failing goes to the dead letters instead of blocking its lane."""
        message_id = _message_id(fields)
        if message_id is not None:
            error = DeliveryError("POISON", "delivery crashed too often", permanent=False)
            try:
                await self._delivery.record([Failure(message_id, error, None)])
            except Exception:
                # The row itself may be what cannot be read: fail it without reading it.
                log.exception("poison_record_failed", message_id=str(message_id))
                await self._lifecycle.dead_letter_unread(message_id, error, utcnow())
        log.error("stream_entry_dead_lettered", entry=str(entry), message_id=str(message_id))
        await self.lanes.acknowledge([entry])

    async def _sweep(self) -> None:
        # One sweeper per interval across all workers, elected by a short Redis lease.
        lease_ms = max(100, int(self._sweep_interval * 900))
        if await self.redis.set("mgw:sweeper", self.consumer, nx=True, px=lease_ms):
            await self._sweeper.sweep_once()


def _name(chore: Chore) -> str:
    return getattr(chore, "__qualname__", None) or repr(chore)


def _message_id(fields: dict[Any, Any]) -> UUID | None:
    """The message a stream entry names; None for a malformed entry."""
    raw = fields.get(b"id") or fields.get("id")
    return _parse_id(raw.decode() if isinstance(raw, bytes) else raw)


def _parse_id(raw: object) -> UUID | None:
    try:
        return UUID(hex=str(raw)) if raw else None
    except (ValueError, AttributeError, TypeError):
        return None
