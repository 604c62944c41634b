"""Composition root: the only place that picks concrete backends for the services."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.domain.channels import Channel
from gateway.domain.records import DeliveryError
from gateway.domain.statuses import MessageStatus
from gateway.services.auth import ApiKeys
from gateway.services.delivery import DeliveryService
from gateway.services.events import EventStream
from gateway.services.operator import OperatorService
from gateway.services.receipts import ReceiptService
from gateway.services.retry_policy import RetryPolicy
from gateway.services.sending import SendService
from gateway.settings import Settings
from persistence.accept import AcceptRepository
from persistence.accounts import AccountRepository
from persistence.db import create_engine
from persistence.lifecycle import LifecycleRepository
from persistence.queries import QueryRepository
from providers.registry import StaticRegistry
from providers.sandbox import SandboxProvider
from workers.embedded import EmbeddedWorker
from workers.memory import MemoryBroker
from workers.redis_broker import RedisBroker
from workers.sweeper import Sweeper


@dataclass
class Container:
    settings: Settings
    engine: AsyncEngine
    broker: MemoryBroker | RedisBroker
    queries: QueryRepository
    accounts: AccountRepository
    lifecycle: LifecycleRepository
    api_keys: ApiKeys
    sending: SendService
    delivery: DeliveryService
    receipts: ReceiptService
    operator: OperatorService
    events: EventStream
    sandbox: SandboxProvider
    sweeper: Sweeper
    worker: EmbeddedWorker | None = None

    @classmethod
    def build(cls, settings: Settings) -> Container:
        engine = create_engine(settings)
        broker: MemoryBroker | RedisBroker = (
            MemoryBroker() if settings.redis_url is None else RedisBroker(settings.redis_url)
        )
        lifecycle = LifecycleRepository(engine)
        queries = QueryRepository(engine)
        accounts = AccountRepository(engine)
        receipts = ReceiptService(lifecycle, broker)

        async def report(
            message_id: UUID,
            status: MessageStatus,
            detail: dict[str, Any],
            error: DeliveryError | None,
        ) -> object:
            return await receipts.apply(message_id, status, detail=detail, error=error)

        sandbox = SandboxProvider(report, settings.sandbox_callback_delay)
        registry = StaticRegistry({channel: sandbox for channel in Channel})
        policy = RetryPolicy(
            settings.max_attempts, settings.retry_base_delay, settings.retry_max_delay
        )
        delivery = DeliveryService(lifecycle, registry, broker, policy)
        sweeper = Sweeper(
            lifecycle,
            broker,
            # The in-process queue drops duplicates itself; the stream does not.
            grace=0.0 if isinstance(broker, MemoryBroker) else settings.sweep_grace_seconds,
            stale_after=settings.stale_sending_seconds,
        )
        return cls(
            settings=settings,
            engine=engine,
            broker=broker,
            queries=queries,
            accounts=accounts,
            lifecycle=lifecycle,
            api_keys=ApiKeys(accounts, settings.api_key_cache_seconds),
            sending=SendService(
                AcceptRepository(engine),
                lifecycle,
                broker,
                default_region=settings.default_phone_region,
                retention=timedelta(hours=settings.idempotency_retention_hours),
            ),
            delivery=delivery,
            receipts=receipts,
            operator=OperatorService(lifecycle, broker),
            events=EventStream(queries, broker),
            sandbox=sandbox,
            sweeper=sweeper,
        )

    async def start(self) -> None:
        if self.settings.run_embedded_worker and isinstance(self.broker, MemoryBroker):
            self.worker = EmbeddedWorker(
                self.broker,
                self.delivery,
                self.sweeper,
                concurrency=self.settings.worker_concurrency,
                sweep_interval=self.settings.sweep_interval,
            )
            self.worker.start()

    async def close(self) -> None:
        if self.worker is not None:
            await self.worker.stop()
        await self.sandbox.close()
        await self.broker.close()
        await self.engine.dispose()
