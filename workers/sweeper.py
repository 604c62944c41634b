"""Hands due work to the broker: scheduled messages whose time came, retries that are due,
anything accepted whose enqueue was lost (the process died between commit and enqueue), and
messages left SENDING by a worker that died mid-delivery."""

from __future__ import annotations

from datetime import timedelta

import structlog

from gateway.services.clock import utcnow
from gateway.services.ports import Broker
from persistence.lifecycle import LifecycleRepository

log = structlog.get_logger(__name__)


class Sweeper:
    def __init__(
        self,
        lifecycle: LifecycleRepository,
        broker: Broker,
        *,
        grace: float,
        stale_after: float,
        max_attempts: int,
    ) -> None:
        self._max_attempts = max_attempts
        self._lifecycle = lifecycle
        self._broker = broker
        # Messages younger than this are still on their normal way to the broker.
        self._grace = timedelta(seconds=grace)
        # SENDING for longer than this means the worker handling it is gone.
        self._stale_after = timedelta(seconds=stale_after)

    async def sweep_once(self) -> int:
        now = utcnow()
        promoted = await self._lifecycle.promote_scheduled(now)
        abandoned = await self._lifecycle.requeue_stale(
            now - self._stale_after, now, max_attempts=self._max_attempts
        )
        if promoted or abandoned:
            await self._broker.publish([c.event for c in [*promoted, *abandoned]])
        due = await self._lifecycle.due_ids(now - self._grace)
        if due:
            await self._broker.enqueue(due)
        return len(due)
