"""A chore that runs beside the worker's chores loop instead of inside it.

The loop runs its chores one after the other once per sweep interval; a chore that waits on
a provider (lookups) or on a backlog (replays) would hold up the sweeper's hand-backs and
retries behind it. Wrapped here, the loop only starts a run when none is going, and moves on.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from workers.chores import Chore

log = structlog.get_logger(__name__)


class BackgroundChore:
    def __init__(self, chore: Chore, name: str) -> None:
        self._chore = chore
        self._name = name
        self._task: asyncio.Task[None] | None = None
        self.__qualname__ = f"background({name})"

    async def __call__(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=self._name)

    async def _run(self) -> None:
        try:
            await self._chore()
        except Exception:
            log.warning("worker_chore_failed", chore=self._name, exc_info=True)

    async def stop(self) -> None:
        """Cancel a run in progress (at shutdown): whatever it had not applied stays where it
        was kept, for the next run of any worker."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
