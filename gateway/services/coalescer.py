"""Group commit: run concurrent submissions together in one batch.

While a batch is in flight, new submissions wait and go together into the next one, so under
load the per-transaction costs (round trips, BEGIN/COMMIT, the WAL flush) are paid once for
many requests, and at low load a lone submission runs at once. Each submission gets exactly its
own results back. If a combined batch fails, its submissions run again one by one, so one bad
submission cannot fail the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Coalescer(Generic[T, R]):
    def __init__(
        self,
        run: Callable[[list[T]], Awaitable[list[R]]],
        *,
        max_items: int = 2000,
        max_inflight: int = 2,
    ) -> None:
        self._run_batch = run
        self._max_items = max_items
        self._max_inflight = max_inflight
        self._pending: list[tuple[list[T], asyncio.Future[list[R]]]] = []
        self._inflight = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, items: list[T]) -> list[R]:
        future: asyncio.Future[list[R]] = asyncio.get_running_loop().create_future()
        self._pending.append((items, future))
        self._start()
        # Shielded: a client that goes away must not cancel work shared with others.
        return await asyncio.shield(future)

    def _start(self) -> None:
        while self._pending and self._inflight < self._max_inflight:
            batch = [self._pending.pop(0)]
            size = len(batch[0][0])
            while self._pending and size + len(self._pending[0][0]) <= self._max_items:
                size += len(self._pending[0][0])
                batch.append(self._pending.pop(0))
            self._inflight += 1
            task = asyncio.create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[tuple[list[T], asyncio.Future[list[R]]]]) -> None:
        try:
            if len(batch) == 1:
                await self._settle(*batch[0])
                return
            items = [item for submission, _ in batch for item in submission]
            try:
                results = await self._run_batch(items)
            except Exception:
                for submission, future in batch:
                    await self._settle(submission, future)
                return
            offset = 0
            for submission, future in batch:
                if not future.done():
                    future.set_result(results[offset : offset + len(submission)])
                offset += len(submission)
        finally:
            self._inflight -= 1
            self._start()

    async def _settle(self, items: list[T], future: asyncio.Future[list[R]]) -> None:
        try:
            result = await self._run_batch(items)
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
        else:
            if not future.done():
                future.set_result(result)
