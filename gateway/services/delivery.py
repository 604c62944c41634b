"""Use case: deliver one queued message through its channel's providers.

The claim (QUEUED -> SENDING) is a conditional UPDATE, so of several workers handed the same id
only one calls a provider. Providers are tried in the channel's failover order, skipping those
whose circuit is open. Failures never sleep here: the next attempt time is written to the
database and the sweeper hands the message back when it is due.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

import structlog

from gateway.domain.records import DeliveryError, Message
from gateway.observability.metrics import DELIVERY_ATTEMPTS
from gateway.services.clock import utcnow
from gateway.services.ports import (
    Breaker,
    Broker,
    PermanentProviderError,
    Provider,
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
        chosen = self._choose(message)
        if chosen is None:
            await self.publish(await self._no_provider(message))
            return
        provider, breaker = chosen
        await self.publish(await self._attempt(message, provider, breaker))

    def _choose(self, message: Message) -> tuple[Provider, Breaker] | None:
        for provider, breaker in self._providers.candidates(message.channel):
            if breaker.allow():
                return provider, breaker
        return None

    async def _no_provider(self, message: Message) -> Change | None:
        candidates = self._providers.candidates(message.channel)
        wait = min((b.retry_in() for _, b in candidates), default=self._policy.max_delay)
        wait = max(wait, self._policy.base_delay)
        now = utcnow()
        return await self._lifecycle.release(
            message.id, now + timedelta(seconds=wait), "every provider's circuit is open", now
        )

    async def _attempt(
        self, message: Message, provider: Provider, breaker: Breaker
    ) -> Change | None:
        detail: dict[str, Any] = {"provider": provider.name}
        try:
            receipt = await provider.send(message)
        except TransientProviderError as exc:
            DELIVERY_ATTEMPTS.labels(provider.name, "transient_error").inc()
            if exc.rate_limited:
                breaker.record_neutral()
            else:
                breaker.record_failure()
            error = DeliveryError(exc.code, exc.description, permanent=False)
            if exc.ambiguous:
                # The provider may have taken it: say so in the audit trail.
                detail["ambiguous"] = True
            return await self._transient(message, error, exc.retry_after, detail)
        except PermanentProviderError as exc:
            DELIVERY_ATTEMPTS.labels(provider.name, "permanent_error").inc()
            breaker.record_neutral()
            error = DeliveryError(exc.code, exc.description, permanent=True)
            return await self._lifecycle.record_failure(message.id, error, utcnow(), detail=detail)
        except Exception as exc:
            # An adapter bug must not strand the message in SENDING: treat it as transient.
            DELIVERY_ATTEMPTS.labels(provider.name, "crashed").inc()
            breaker.record_failure()
            log.exception("provider_crashed", provider=provider.name, message_id=str(message.id))
            error = DeliveryError("PROVIDER_ERROR", type(exc).__name__, permanent=False)
            return await self._transient(message, error, None, detail)
        DELIVERY_ATTEMPTS.labels(provider.name, "sent").inc()
        breaker.record_success()
        return await self._lifecycle.record_sent(
            message.id, receipt.provider, receipt.provider_message_id, utcnow()
        )

    async def _transient(
        self,
        message: Message,
        error: DeliveryError,
        retry_after: float | None,
        detail: dict[str, Any],
    ) -> Change | None:
        now = utcnow()
        if self._policy.exhausted(message.attempts):
            return await self._lifecycle.record_failure(message.id, error, now, detail=detail)
        delay = self._policy.delay(message.attempts, retry_after)
        return await self._lifecycle.record_retry(
            message.id, error, now + timedelta(seconds=delay), now, detail=detail
        )

    async def publish(self, change: Change | None) -> None:
        if change is not None:
            await self._broker.publish([change.event])
