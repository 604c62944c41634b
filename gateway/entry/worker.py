"""``messaging-gateway worker``: a delivery worker process over Redis Streams."""

from __future__ import annotations

import asyncio
import signal

import structlog

from gateway.entry.bootstrap.worker import bootstrap_worker
from gateway.heap import freeze_startup_heap
from gateway.settings import Settings
from workers.health import HealthServer

log = structlog.get_logger(__name__)


async def run_worker(settings: Settings) -> int:
    role = bootstrap_worker(settings)
    worker = role.stream
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    role.deliveries.registry.report_states()  # this process's breakers guard its deliveries
    health = HealthServer(lambda: worker.last_progress)
    if settings.worker_health_port is not None:
        await health.start(settings.worker_health_host, settings.worker_health_port)
    freeze_startup_heap()
    log.info("worker_started", consumer=worker.consumer, concurrency=settings.worker_concurrency)
    try:
        await worker.run(stop)
    finally:
        await health.close()
        await role.close()
        log.info("worker_stopped", consumer=worker.consumer)
    return 0
