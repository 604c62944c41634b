"""Use case: deliver one queued message through its channel's provider.

The claim (QUEUED -> SENDING) is a conditional UPDATE, so of several workers handed the same id
only one calls the provider. Failures never sleep here: the next attempt time is written to the
database and the sweeper hands the message back when it is due.
"""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import structlog

from gateway.domain.records import DeliveryError
from gateway.observability.metrics import DELIVERY_ATTEMPTS
from gateway.services.clock import utcnow
from gateway.services.ports import (
    Broker,
    PermanentProviderError,
    ProviderRegistry,
    TransientProviderError,
)
from gateway.services.retry_policy import RetryPolicy
from persistence.lifecycle import Change, LifecycleRepository

log = structlog.get_logger(__name__)


class DeliveryService:
    def __init__(
        self,
        lifecycle: LifecycleRepository,
        providers: ProviderRegistry,
        broker: Broker,
        policy: RetryPolicy,
    ) -> None:
        self._lifecycle = lifecycle
        self._providers = providers
        self._broker = broker
        self._policy = policy

    async def deliver(self, message_id: UUID) -> None:
        claimed = await self._lifecycle.claim(message_id, utcnow())
        if claimed is None:
            return  # canceled, not yet due, or another worker has it
        await self.publish(claimed)
        message = claimed.message
        provider = self._providers.for_channel(message.channel)
        try:
            receipt = await provider.send(message)
        except TransientProviderError as exc:
            DELIVERY_ATTEMPTS.labels(provider.name, "transient_error").inc()
            error = DeliveryError(exc.code, exc.description, permanent=False)
            if self._policy.exhausted(message.attempts):
                change = await self._lifecycle.record_failure(message_id, error, utcnow())
            else:
                now = utcnow()
                delay = self._policy.delay(message.attempts, exc.retry_after)
                change = await self._lifecycle.record_retry(
                    message_id, error, now + timedelta(seconds=delay), now
                )
        except PermanentProviderError as exc:
            DELIVERY_ATTEMPTS.labels(provider.name, "permanent_error").inc()
            error = DeliveryError(exc.code, exc.description, permanent=True)
            change = await self._lifecycle.record_failure(message_id, error, utcnow())
        except Exception as exc:
            # An adapter bug must not strand the message in SENDING: treat it as transient.
            DELIVERY_ATTEMPTS.labels(provider.name, "crashed").inc()
            log.exception("provider_crashed", provider=provider.name, message_id=str(message_id))
            error = DeliveryError("PROVIDER_ERROR", type(exc).__name__, permanent=False)
            now = utcnow()
            change = await self._lifecycle.record_retry(
                message_id,
                error,
                now + timedelta(seconds=self._policy.delay(message.attempts)),
                now,
            )
        else:
            DELIVERY_ATTEMPTS.labels(provider.name, "sent").inc()
            change = await self._lifecycle.record_sent(
                message_id, receipt.provider, receipt.provider_message_id, utcnow()
            )
        await self.publish(change)

    async def publish(self, change: Change | None) -> None:
        if change is not None:
            await self._broker.publish([change.event])
