"""Use case: apply a provider's delivery receipt (status callback) to a message."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from gateway.domain.records import DeliveryError
from gateway.domain.results import Change
from gateway.domain.statuses import MessageStatus
from gateway.services.clock import utcnow
from gateway.services.ports import Broker, LifecycleStore


class ReceiptService:
    def __init__(self, lifecycle: LifecycleStore, broker: Broker) -> None:
        self._lifecycle = lifecycle
        self._broker = broker

    async def apply(
        self,
        message_id: UUID,
        status: MessageStatus,
        *,
        detail: dict[str, Any] | None = None,
        error: DeliveryError | None = None,
    ) -> Change | None:
        """Forward-only: a duplicate or out-of-order receipt changes nothing and returns None."""
        change = await self._lifecycle.apply_status(
            message_id, status, kind="delivery_receipt", detail=detail, error=error, now=utcnow()
        )
        if change is not None:
            await self._broker.publish([change.event])
        return change
