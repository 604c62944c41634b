"""The worker role: a delivery worker over Redis Streams, and the chores it runs beside."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.entry.bootstrap.shared import (
    Closer,
    ConfigurationError,
    Deliveries,
    Queue,
    Storage,
    build_deliveries,
    build_opt_outs,
    build_registry,
    build_sending,
    build_webhooks,
    redis_queue,
)
from gateway.settings import Settings
from providers.http import ProviderSession
from providers.webhooks import webhook_adapters
from workers.liveness import RedisLiveness, worker_name
from workers.redis_broker import GROUP, RedisBroker
from workers.stream_worker import StreamWorker


@dataclass
class Worker:
    """What a worker process runs: ``stream`` reads the queue; ``deliveries`` send."""

    stream: StreamWorker
    deliveries: Deliveries
    storage: Storage
    queue: Queue
    close_http: Closer

    async def close(self) -> None:
        await self.deliveries.close()
        await self.close_http()
        await self.queue.close()
        await self.storage.engine.dispose()


def bootstrap_worker(settings: Settings) -> Worker:
    if settings.redis_url is None:
        # Without Redis the delivery worker runs inside the API process (embedded mode).
        raise ConfigurationError("the worker process needs REDIS_URL")
    storage = Storage.open(settings)
    broker = RedisBroker(settings.redis_url)
    liveness = RedisLiveness(broker.redis, dead_after=settings.worker_dead_after_seconds)
    queue = redis_queue(settings, broker, liveness)
    http = ProviderSession.from_settings(settings)
    units = queue.units(storage)
    # Spooled inbound keywords are acted on and answered when replayed here.
    opt_outs = build_opt_outs(storage, build_sending(settings, storage, queue, units))
    deliveries = build_deliveries(
        settings,
        storage,
        queue,
        units,
        build_registry(settings, http),
        build_webhooks(settings, storage, queue, units, opt_outs),
        webhook_adapters(settings, sendgrid_public_key=settings.sendgrid_webhook_public_key),
        worker=worker_name(),
    )
    stream = StreamWorker(
        broker.redis,
        stream=broker.stream,
        group=GROUP,
        consumer=deliveries.delivery.worker,
        delivery=deliveries.delivery,
        lifecycle=storage.lifecycle,
        sweeper=deliveries.sweeper,
        concurrency=settings.worker_concurrency,
        min_idle_ms=settings.reclaim_idle_ms,
        max_deliveries=settings.max_deliveries,
        sweep_interval=settings.sweep_interval,
        liveness=liveness,
        chores=deliveries.chores,
        rates=storage.sender_rates.rates_of,
    )
    return Worker(stream, deliveries, storage, queue, http.aclose)
