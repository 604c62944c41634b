"""The API role: what ``create_app`` serves, and in embedded mode what runs beside it in the
same process (the delivery worker, the sandbox standing in for the providers)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from uuid import UUID

import redis.asyncio
from limits.aio.storage import MemoryStorage, RedisStorage
from starlette.applications import Starlette

from gateway.entry.bootstrap.event_webhooks import build_webhook_endpoints
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
    in_process_queue,
    redis_queue,
    uses_mounted_sandbox,
)
from gateway.observability import StatusCountsProvider
from gateway.services.auth import ApiKeys
from gateway.services.events import EventStream
from gateway.services.inbox import InboxService
from gateway.services.operator import OperatorService
from gateway.services.rate_limits import RateLimitConfigError, RateLimiter, parse_rate_limits
from gateway.services.suppressions import SuppressionService
from gateway.services.unit_of_work import Units
from gateway.services.webhooks import WebhookService
from gateway.settings import Settings
from gateway.web.webhooks import WebhookServices
from persistence.accounts import AccountRepository
from persistence.queries import QueryRepository
from persistence.suppressions import SuppressionRepository
from providers.http import ProviderSession
from providers.sandbox_app import Sandbox, SandboxConfig, create_sandbox_app
from providers.webhooks import WebhookAdapter, webhook_adapters
from schema.context import Services
from workers.embedded import EmbeddedWorker
from workers.liveness import RedisLiveness, worker_name
from workers.memory import MemoryBroker
from workers.pacing import MemoryPacer
from workers.redis_broker import RedisBroker


@dataclass
class Api:
    """What an API process runs. GraphQL gets ``graphql`` and the webhook routes get
    ``webhook_services``; the rest is for the app's own routes and lifespan."""

    settings: Settings
    storage: Storage
    queue: Queue
    accounts: AccountRepository
    api_keys: ApiKeys
    graphql: Services
    webhooks: WebhookService
    #: Shared by sending and (embedded mode) the delivery worker in this process.
    units: Units
    #: The messages by status, for the metrics.
    status_counts: StatusCountsProvider
    #: Each webhook route's vendor adapter, by route name.
    webhook_adapters: dict[str, WebhookAdapter] = field(default_factory=dict)
    #: Embedded mode: the sandbox mounted in the app, standing in for the providers.
    sandbox_app: Starlette | None = None
    sandbox_config: SandboxConfig | None = None
    #: Embedded mode: the delivery worker in this process (unless EMBEDDED_WORKER=false).
    worker: EmbeddedWorker | None = None
    deliveries: Deliveries | None = None
    #: Embedded mode: the development account, which owns inbound traffic to any address;
    #: known once the app has started.
    default_owner: UUID | None = None
    #: Run in this order on close: the later ones close what the earlier ones still use.
    closers: list[Closer] = field(default_factory=list)

    @property
    def sandbox(self) -> Sandbox | None:
        if self.sandbox_app is None:
            return None
        sandbox: Sandbox = self.sandbox_app.state.sandbox
        return sandbox

    @property
    def sendgrid_public_key(self) -> str | None:
        return self._key(self.settings.sendgrid_webhook_public_key, lambda c: c.public_key)

    @property
    def mailgun_signing_key(self) -> str | None:
        return self._key(self.settings.mailgun_webhook_signing_key, lambda c: c.mailgun_signing_key)

    @property
    def telnyx_public_key(self) -> str | None:
        return self._key(self.settings.telnyx_public_key, lambda c: c.telnyx_public_key)

    def _key(self, configured: str | None, sandboxed: Callable[[SandboxConfig], str]) -> str | None:
        """A vendor's webhook key: the configured one, else (embedded mode) the sandbox's."""
        if configured:
            return configured
        return sandboxed(self.sandbox_config) if self.sandbox_config else None

    @property
    def webhook_services(self) -> WebhookServices:
        return WebhookServices(self.webhooks, self.webhook_adapters, self.queue.spool)

    async def start(self) -> None:
        if self.worker is not None and self.deliveries is not None:
            self.worker.start()
            self.deliveries.registry.report_states()

    async def close(self) -> None:
        for close in self.closers:
            await close()


def bootstrap_api(settings: Settings) -> Api:
    if settings.redis_url is None:
        return _embedded(settings)
    broker = RedisBroker(settings.redis_url)
    liveness = RedisLiveness(broker.redis, dead_after=settings.worker_dead_after_seconds)
    return _api(settings, redis_queue(settings, broker, liveness))


def _embedded(settings: Settings) -> Api:
    """The queue in this process; the sandbox standing in for any provider without a base URL
    of its own; and, unless switched off, the delivery worker in this process too."""
    broker = MemoryBroker()
    # One name for the claims of the worker in this process and for the liveness that
    # vouches for them, or the sweeper would take its messages back.
    worker = worker_name()
    http = ProviderSession.from_settings(settings)
    sandbox = SandboxConfig.from_settings(settings) if uses_mounted_sandbox(settings) else None
    pacer = MemoryPacer()
    api = _api(settings, in_process_queue(broker, worker, pacer), sandbox)
    if sandbox is not None:
        api.sandbox_app = create_sandbox_app(sandbox, http)
    first: list[Closer] = []
    if settings.run_embedded_worker:
        deliveries = build_deliveries(
            settings,
            api.storage,
            api.queue,
            api.units,
            build_registry(settings, http),
            api.webhooks,
            api.webhook_adapters,
            worker=worker,
        )
        api.deliveries = deliveries
        broker.pace(pacer, api.storage.sender_rates.rates_of)
        api.worker = EmbeddedWorker(
            broker,
            deliveries.delivery,
            deliveries.sweeper,
            concurrency=settings.worker_concurrency,
            sweep_interval=settings.sweep_interval,
            chores=deliveries.chores,
        )
        first += [api.worker.stop, deliveries.close]
    if api.sandbox is not None:
        first.append(api.sandbox.aclose)
    api.closers[:0] = [*first, http.aclose]
    return api


def _api(settings: Settings, queue: Queue, sandbox: SandboxConfig | None = None) -> Api:
    storage = Storage.open(settings)
    accounts = AccountRepository(storage.engine)
    queries = QueryRepository(storage.engine)
    rate_limiter = build_rate_limiter(settings)
    units = queue.units(storage)
    sending = build_sending(settings, storage, queue, units)
    opt_outs = build_opt_outs(storage, sending)
    api = Api(
        settings=settings,
        storage=storage,
        queue=queue,
        accounts=accounts,
        api_keys=ApiKeys(accounts, settings.api_key_cache_seconds),
        graphql=Services(
            sending=sending,
            operator=OperatorService(storage.lifecycle, queue.broker, units=units),
            events=EventStream(queries, queue.broker),
            inbox=InboxService(queries, queue.broker, units),
            queries=queries,
            quiet_hours=storage.quiet_hours,
            opt_outs=opt_outs,
            routes=storage.routes,
            suppressions=SuppressionService(
                SuppressionRepository(storage.engine),
                units,
                region=settings.default_phone_region,
            ),
            webhook_endpoints=build_webhook_endpoints(settings, storage.engine),
            sender_rates=storage.sender_rates,
            rate_limiter=rate_limiter,
            default_phone_region=settings.default_phone_region,
            max_batch_size=settings.max_batch_size,
        ),
        # Read at call time: the development account exists only once the app has started.
        webhooks=build_webhooks(
            settings, storage, queue, units, opt_outs, default_owner=lambda: api.default_owner
        ),
        units=units,
        status_counts=queries.status_counts,
        sandbox_config=sandbox,
        closers=[rate_limiter.close, queue.close, storage.engine.dispose],
    )
    api.webhook_adapters = webhook_adapters(
        settings,
        sendgrid_public_key=api.sendgrid_public_key,
        mailgun_signing_key=api.mailgun_signing_key,
        telnyx_public_key=api.telnyx_public_key,
    )
    return api


def build_rate_limiter(settings: Settings) -> RateLimiter:
    try:
        rules = parse_rate_limits(settings.rate_limits)
    except RateLimitConfigError as exc:
        raise ConfigurationError(str(exc)) from exc
    if settings.redis_url is None:
        return RateLimiter(rules, MemoryStorage(), fail_open=settings.rate_limit_fail_open)
    # All API processes share the windows through Redis; our own pool, so close() can end it.
    pool = redis.asyncio.ConnectionPool.from_url(settings.redis_url)
    storage = RedisStorage(
        "async+" + settings.redis_url,
        implementation="redispy",
        connection_pool=pool,  # type: ignore[arg-type]  # passed through to redis-py
    )
    return RateLimiter(
        rules, storage, fail_open=settings.rate_limit_fail_open, on_close=pool.aclose
    )
