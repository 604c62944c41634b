"""Use cases an account runs on its own messages: cancel and retry."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from gateway.domain.records import Message
from gateway.domain.results import Change
from gateway.domain.statuses import MessageStatus
from gateway.services.clock import utcnow
from gateway.services.ports import Broker, LifecycleStore


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
    def __init__(self, lifecycle: LifecycleStore, broker: Broker) -> None:
        self._lifecycle = lifecycle
        self._broker = broker

    async def cancel(self, account_id: UUID, message_id: UUID) -> OperatorOutcome:
        change, current = await self._lifecycle.cancel(account_id, message_id, utcnow())
        return await self._outcome(change, current)

    async def retry(self, account_id: UUID, message_id: UUID) -> OperatorOutcome:
        change, current = await self._lifecycle.retry(account_id, message_id, utcnow())
        outcome = await self._outcome(change, current)
        if isinstance(outcome, Changed) and outcome.message.status == MessageStatus.QUEUED:
            await self._broker.enqueue([message_id])
        return outcome

    async def _outcome(self, change: Change | None, current: Message | None) -> OperatorOutcome:
        if change is not None:
            await self._broker.publish([change.event])
            return Changed(change.message)
        if current is not None:
            return Refused(current)
        return Unknown()
