"""The delivery worker running inside the API process (embedded mode)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import structlog

from gateway.services.delivery import DeliveryService
from workers.chores import Chore
from workers.memory import MemoryBroker
from workers.sweeper import Sweeper

log = structlog.get_logger(__name__)


class EmbeddedWorker:
    def __init__(
        self,
        broker: MemoryBroker,
        delivery: DeliveryService,
        sweeper: Sweeper,
        *,
        concurrency: int,
        sweep_interval: float,
        chores: Sequence[Chore] = (),
    ) -> None:
        self._broker = broker
        self._delivery = delivery
        self._sweeper = sweeper
        self._concurrency = concurrency
        self._interval = sweep_interval
        self._chores = tuple(chores)
        self._tasks: list[asyncio.Task[None]] = []
        self._busy: set[asyncio.Task[None] | None] = set()

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._consume(), name=f"delivery-{i}")
            for i in range(self._concurrency)
        ]
        self._tasks.append(asyncio.create_task(self._sweep(), name="sweeper"))

    async def _consume(self) -> None:
        while True:
            message_id = await self._broker.next_message()
            task = asyncio.current_task()
            self._busy.add(task)
            try:
                await self._delivery.deliver(message_id)
            except Exception:
                # The message stays QUEUED or SENDING in the database; the sweeper brings
                # QUEUED ones back. Keep the consumer alive.
                log.exception("delivery_failed", message_id=str(message_id))
            finally:
                self._busy.discard(task)

    async def _sweep(self) -> None:
        while True:
            for chore in (self._sweeper.sweep_once, *self._chores):
                try:
                    await chore()
                except Exception:
                    log.exception("sweep_failed", chore=getattr(chore, "__qualname__", None))
            await asyncio.sleep(self._interval)

    async def stop(self, grace: float = 10.0) -> None:
        """Let deliveries in progress finish (up to ``grace`` seconds), then stop."""
        idle = [t for t in self._tasks if t not in self._busy]
        for task in idle:
            task.cancel()
        busy = [t for t in self._tasks if t in self._busy]
        if busy:
            await asyncio.wait(busy, timeout=grace)
        for task in busy:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
