"""Use cases an account runs on its own messages: cancel and retry, one unit of work each."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from gateway.domain.pacing import Queued
from gateway.domain.records import Message
from gateway.domain.results import Change
from gateway.domain.statuses import MessageStatus
from gateway.services.clock import utcnow
from gateway.services.ports import Broker, LifecycleStore, UnitOfWork, UnitsOfWork
from gateway.services.unit_of_work import Units


@dataclass(frozen=True, slots=True)
class Changed:
    message: Message


@dataclass(frozen=True, slots=True)
class Refused:
    current: Message


@dataclass(frozen=True, slots=True)
class Unknown:
    pass


OperatorOutcome = Changed | Refused | Unknown


class OperatorService:
    def __init__(
        self, lifecycle: LifecycleStore, broker: Broker, *, units: UnitsOfWork | None = None
    ) -> None:
        self._lifecycle = lifecycle
        self._units = units or Units(broker)

    async def cancel(self, account_id: UUID, message_id: UUID) -> OperatorOutcome:
        async with self._units() as work:
            change, current = await self._lifecycle.cancel(account_id, message_id, utcnow())
            return _outcome(work, change, current)

    async def retry(self, account_id: UUID, message_id: UUID) -> OperatorOutcome:
        async with self._units() as work:
            change, current = await self._lifecycle.retry(account_id, message_id, utcnow())
            outcome = _outcome(work, change, current)
            if isinstance(outcome, Changed) and outcome.message.status == MessageStatus.QUEUED:
                # Lost with a failed enqueue, it is still due: the sweeper enqueues it.
                work.enqueue([Queued.of(outcome.message)])
        return outcome


def _outcome(work: UnitOfWork, change: Change | None, current: Message | None) -> OperatorOutcome:
    if change is not None:
        work.publish([change.event])
        return Changed(change.message)
    if current is not None:
        return Refused(current)
    return Unknown()
