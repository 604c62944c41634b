"""``messaging-gateway worker``: a delivery worker process over Redis Streams."""

from __future__ import annotations

import asyncio
import signal

import structlog

from gateway.entry.container import Container
from gateway.heap import freeze_startup_heap
from gateway.settings import Settings
from workers.health import HealthServer
from workers.liveness import RedisLiveness
from workers.redis_broker import GROUP, RedisBroker
from workers.stream_worker import StreamWorker

log = structlog.get_logger(__name__)


async def run_worker(settings: Settings) -> int:
    container = Container.build(settings)
    broker = container.broker
    if not isinstance(broker, RedisBroker) or not isinstance(container.liveness, RedisLiveness):
        raise RuntimeError("the worker process needs REDIS_URL")
    worker = StreamWorker(
        broker.redis,
        stream=broker.stream,
        group=GROUP,
        consumer=container.delivery.worker,
        delivery=container.delivery,
        lifecycle=container.lifecycle,
        sweeper=container.sweeper,
        concurrency=settings.worker_concurrency,
        min_idle_ms=settings.reclaim_idle_ms,
        max_deliveries=settings.max_deliveries,
        sweep_interval=settings.sweep_interval,
        liveness=container.liveness,
        chores=container.worker_chores(),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    container.registry.report_states()  # this process's breakers guard its deliveries
    health = HealthServer(lambda: worker.last_progress)
    if settings.worker_health_port is not None:
        await health.start(settings.worker_health_host, settings.worker_health_port)
    freeze_startup_heap()
    log.info("worker_started", consumer=worker.consumer, concurrency=settings.worker_concurrency)
    try:
        await worker.run(stop)
    finally:
        await health.close()
        await container.close()
        log.info("worker_stopped", consumer=worker.consumer)
    return 0
