"""The delivery worker running inside the API process (embedded mode)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass, field

import structlog

from gateway.services.delivery import DeliveryService
from workers.chores import Chore
from workers.memory import MemoryBroker
from workers.sweeper import Sweeper

log = structlog.get_logger(__name__)


@dataclass(eq=False, slots=True)
class EmbeddedWorker:
    broker: MemoryBroker
    delivery: DeliveryService
    sweeper: Sweeper
    _: KW_ONLY
    concurrency: int
    sweep_interval: float
    chores: Sequence[Chore] = ()
    _tasks: list[asyncio.Task[None]] = field(default_factory=list, init=False, repr=False)
    _busy: set[asyncio.Task[None] | None] = field(default_factory=set, init=False, repr=False)

    def __post_init__(self) -> None:
        self.chores = tuple(self.chores)

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._consume(), name=f"delivery-{i}")
            for i in range(self.concurrency)
        ]
        self._tasks.append(asyncio.create_task(self._sweep(), name="sweeper"))

    async def _consume(self) -> None:
        while True:
            message_id = await self.broker.next_message()
            task = asyncio.current_task()
            self._busy.add(task)
            try:
                await self.delivery.deliver(message_id)
            except Exception:
                # The message stays QUEUED or SENDING in the database; the sweeper brings
                # QUEUED ones back. Keep the consumer alive.
                log.exception("delivery_failed", message_id=str(message_id))
            finally:
                self._busy.discard(task)

    async def _sweep(self) -> None:
        while True:
            for chore in (self.sweeper.sweep_once, *self.chores):
                try:
                    await chore()
                except Exception:
                    log.exception("sweep_failed", chore=getattr(chore, "__qualname__", None))
            await asyncio.sleep(self.sweep_interval)

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
