"""Composition root: the only place that picks concrete backends for the services."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property, partial
from uuid import UUID

import redis.asyncio
from limits.aio.storage import MemoryStorage, RedisStorage
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from gateway.domain.channels import Channel
from gateway.services.auth import ApiKeys
from gateway.services.delivery import DeliveryService
from gateway.services.events import EventStream
from gateway.services.operator import OperatorService
from gateway.services.ports import Provider
from gateway.services.rate_limits import RateLimitConfigError, RateLimiter, parse_rate_limits
from gateway.services.reconcile import Reconciler
from gateway.services.retry_policy import RetryPolicy
from gateway.services.sending import SendService
from gateway.services.unit_of_work import Units
from gateway.services.webhooks import WebhookService
from gateway.settings import Settings
from gateway.web.webhook_replay import WebhookReplay
from persistence.accept import AcceptRepository
from persistence.accounts import AccountRepository
from persistence.db import create_engine
from persistence.lifecycle import LifecycleRepository
from persistence.queries import QueryRepository
from persistence.reconcile import ReconcileRepository
from persistence.unit_of_work import SqlTransaction
from persistence.webhooks import WebhookRepository
from providers.http import ProviderSession
from providers.registry import FailoverRegistry
from providers.sandbox_app import Sandbox, SandboxConfig, create_sandbox_app
from providers.sendgrid import SendGridProvider
from providers.twilio import TwilioProvider
from providers.webhooks import WebhookAdapter, webhook_adapters
from workers.background import BackgroundChore
from workers.chores import Chore
from workers.embedded import EmbeddedWorker
from workers.held_outcomes import MemoryHeldOutcomes, RedisHeldOutcomes
from workers.lease import RedisLease, leased
from workers.liveness import LocalLiveness, RedisLiveness, worker_name
from workers.memory import MemoryBroker
from workers.redis_broker import RedisBroker
from workers.sweeper import Sweeper
from workers.webhook_spool import RedisWebhookSpool

TWILIO_API = "https://api.twilio.com"
SENDGRID_API = "https://api.sendgrid.com"
SANDBOX_PATH = "/sandbox"
#: How long a worker may hold a chore's lease: a run takes a few round trips, and a worker that
#: died holding it keeps the others from the chore this long at most.
CHORE_LEASE_SECONDS = 60.0


class ConfigurationError(RuntimeError):
    """The settings cannot run a gateway; the message says what to change."""


@dataclass
class Container:
    settings: Settings
    engine: AsyncEngine
    broker: MemoryBroker | RedisBroker
    http: ProviderSession
    queries: QueryRepository
    accounts: AccountRepository
    lifecycle: LifecycleRepository
    api_keys: ApiKeys
    sending: SendService
    delivery: DeliveryService
    operator: OperatorService
    events: EventStream
    webhook_repo: WebhookRepository
    registry: FailoverRegistry
    sweeper: Sweeper
    liveness: RedisLiveness | LocalLiveness
    sandbox_app: Starlette | None
    sandbox_config: SandboxConfig | None
    rate_limiter: RateLimiter
    worker: EmbeddedWorker | None = None
    default_owner: UUID | None = None
    #: Where webhook payloads wait while the database is down (Redis mode only).
    webhook_spool: RedisWebhookSpool | None = None
    #: Chores running beside a worker's loop; stopped on close.
    background: list[BackgroundChore] = field(default_factory=list)

    @property
    def sandbox(self) -> Sandbox | None:
        if self.sandbox_app is None:
            return None
        sandbox: Sandbox = self.sandbox_app.state.sandbox
        return sandbox

    @property
    def sendgrid_public_key(self) -> str | None:
        if self.settings.sendgrid_webhook_public_key:
            return self.settings.sendgrid_webhook_public_key
        return self.sandbox_config.public_key if self.sandbox_config else None

    @classmethod
    def build(cls, settings: Settings) -> Container:
        engine = create_engine(settings)
        broker: MemoryBroker | RedisBroker = (
            MemoryBroker() if settings.redis_url is None else RedisBroker(settings.redis_url)
        )
        http = ProviderSession.from_settings(settings)
        sandbox_config = sandbox_app = None
        if uses_mounted_sandbox(settings):
            sandbox_config = SandboxConfig.from_settings(settings)
            sandbox_app = create_sandbox_app(sandbox_config, http)
        registry = build_registry(settings, http)
        lifecycle = LifecycleRepository(engine)
        queries = QueryRepository(engine)
        accounts = AccountRepository(engine)
        webhook_repo = WebhookRepository(engine)
        policy = RetryPolicy(
            settings.max_attempts, settings.retry_base_delay, settings.retry_max_delay
        )
        worker = worker_name()
        units = Units(broker, partial(SqlTransaction, engine))
        held: MemoryHeldOutcomes | RedisHeldOutcomes
        liveness: LocalLiveness | RedisLiveness
        if isinstance(broker, RedisBroker):
            held = RedisHeldOutcomes(broker.redis)
            liveness = RedisLiveness(broker.redis, dead_after=settings.worker_dead_after_seconds)
        else:
            held, liveness = MemoryHeldOutcomes(), LocalLiveness(worker)
        container = cls(
            settings=settings,
            engine=engine,
            broker=broker,
            http=http,
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
                owned_addresses=(
                    webhook_repo.addresses_of if settings.require_sender_ownership else None
                ),
                units=units,
            ),
            delivery=DeliveryService(
                lifecycle, registry, broker, policy, held, worker=worker, units=units
            ),
            operator=OperatorService(lifecycle, broker),
            events=EventStream(queries, broker),
            webhook_repo=webhook_repo,
            registry=registry,
            sweeper=Sweeper(
                lifecycle,
                broker,
                held,
                liveness,
                # The in-process queue drops duplicates itself; the stream does not.
                grace=0.0 if isinstance(broker, MemoryBroker) else settings.sweep_grace_seconds,
                stale_after=settings.stale_sending_seconds,
                max_attempts=settings.max_attempts,
            ),
            liveness=liveness,
            sandbox_app=sandbox_app,
            sandbox_config=sandbox_config,
            rate_limiter=build_rate_limiter(settings),
        )
        if isinstance(broker, RedisBroker):
            container.webhook_spool = RedisWebhookSpool(
                broker.redis, max_entries=settings.webhook_spool_max_entries
            )
        return container

    @cached_property
    def webhooks(self) -> WebhookService:
        # Embedded mode: inbound traffic to any address belongs to the development account,
        # which is only known once the app has started; hence read at call time.
        return WebhookService(
            self.webhook_repo, self.broker, default_owner=lambda: self.default_owner
        )

    @cached_property
    def webhook_adapters(self) -> dict[str, WebhookAdapter]:
        return webhook_adapters(self.settings, sendgrid_public_key=self.sendgrid_public_key)

    def worker_chores(self) -> list[Chore]:
        """Periodic work every delivery worker runs beside the sweeper, each in the
        background and in one worker at a time: reconciliation of messages whose final status
        never came back, and (Redis mode) the replay of webhook payloads spooled while the
        database was down. Workers, not API processes, replay them: any worker can (the spool
        is shared), they already take turns by lease, and an API process that spooled a
        payload may be gone by the time the database is back."""
        providers = {
            provider.name: provider
            for channel in Channel
            for provider, _ in self.registry.candidates(channel)
        }
        reconciler = Reconciler(
            ReconcileRepository(self.engine),
            providers,
            self.webhooks,
            after=self.settings.reconcile_after_seconds,
            batch=self.settings.reconcile_batch_size,
        )
        chores = [self._chore(reconciler.run_once, "reconcile")]
        if self.webhook_spool is not None:
            replay = WebhookReplay(
                self.webhook_spool,
                self.webhooks,
                self.webhook_adapters,
                self.webhook_repo.reachable,
            )
            chores.append(self._chore(replay.run_once, "webhook-replay"))
        return chores

    def _chore(self, run: Chore, name: str) -> Chore:
        if isinstance(self.broker, RedisBroker):
            lease = RedisLease(self.broker.redis, f"mgw:lease:{name}", ttl=CHORE_LEASE_SECONDS)
            run = leased(lease, run)
        chore = BackgroundChore(run, name)
        self.background.append(chore)
        return chore

    async def start(self) -> None:
        if self.settings.run_embedded_worker and isinstance(self.broker, MemoryBroker):
            self.worker = EmbeddedWorker(
                self.broker,
                self.delivery,
                self.sweeper,
                concurrency=self.settings.worker_concurrency,
                sweep_interval=self.settings.sweep_interval,
                chores=self.worker_chores(),
            )
            self.worker.start()
            self.registry.report_states()

    async def close(self) -> None:
        if self.worker is not None:
            await self.worker.stop()
        for chore in self.background:
            await chore.stop()
        if self.sandbox is not None:
            await self.sandbox.aclose()
        await self.http.aclose()
        await self.registry.aclose()
        await self.rate_limiter.close()
        await self.broker.close()
        await self.engine.dispose()


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


def uses_mounted_sandbox(settings: Settings) -> bool:
    """Single-process mode where a channel's provider has no base URL of its own: the sandbox
    stands in for it, mounted here. Without such a provider nothing is mounted (the sandbox's
    routes and control API do not exist)."""
    if settings.redis_url is not None:
        return False
    base_urls = {"twilio": settings.twilio_base_url, "sendgrid": settings.sendgrid_base_url}
    chosen = {
        name.strip()
        for names in (settings.sms_providers, settings.mms_providers, settings.email_providers)
        for name in names.split(",")
    }
    return any(name in base_urls and base_urls[name] is None for name in chosen)


def _base_url(settings: Settings, configured: str | None, vendor: str) -> str:
    if configured:
        return configured.rstrip("/")
    if uses_mounted_sandbox(settings):
        return settings.public_base_url.rstrip("/") + SANDBOX_PATH
    return vendor


def build_registry(settings: Settings, http: ProviderSession) -> FailoverRegistry:
    public = settings.public_base_url.rstrip("/")
    session = ProviderSession.from_settings(settings)
    available: dict[str, Provider] = {
        "twilio": TwilioProvider(
            session,
            base_url=_base_url(settings, settings.twilio_base_url, TWILIO_API),
            account_sid=settings.twilio_account_sid,
            auth_token=settings.twilio_auth_token,
            status_callback_url=f"{public}/webhooks/twilio/status",
        ),
        "sendgrid": SendGridProvider(
            http,
            base_url=_base_url(settings, settings.sendgrid_base_url, SENDGRID_API),
            api_key=settings.sendgrid_api_key,
            # Only the local stand-in serves attachments from loopback addresses.
            allow_private_attachment_hosts=settings.redis_url is None,
        ),
    }
    order = {
        Channel.SMS: settings.sms_providers,
        Channel.MMS: settings.mms_providers,
        Channel.EMAIL: settings.email_providers,
    }
    by_channel: dict[Channel, list[Provider]] = {}
    for channel, names in order.items():
        chosen = [n.strip() for n in names.split(",") if n.strip()]
        unknown = [n for n in chosen if n not in available]
        if unknown or not chosen:
            raise ConfigurationError(
                f"{channel.value}_PROVIDERS={names!r}: choose from {', '.join(available)}"
            )
        by_channel[channel] = [available[n] for n in chosen]
    return FailoverRegistry(
        by_channel,
        threshold=settings.breaker_threshold,
        cooldown=settings.breaker_cooldown_seconds,
        on_close=[session.aclose],
    )


def verify_providers(settings: Settings) -> None:
    """Production (Redis mode) refuses to start with a channel whose provider cannot work."""
    if settings.redis_url is None:
        return
    for names in (settings.sms_providers, settings.mms_providers, settings.email_providers):
        for name in (n.strip() for n in names.split(",")):
            _require_credentials(settings, name)


def _require_credentials(settings: Settings, name: str) -> None:
    defaults = Settings.model_fields
    if (
        name == "twilio"
        and settings.twilio_base_url is None
        and (
            settings.twilio_auth_token == defaults["twilio_auth_token"].default
            or settings.twilio_account_sid == defaults["twilio_account_sid"].default
        )
    ):
        raise ConfigurationError(
            "twilio is a configured provider but TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN are "
            "not set (or set TWILIO_BASE_URL to a sandbox started with `messaging-gateway "
            "sandbox`)"
        )
    if (
        name == "sendgrid"
        and settings.sendgrid_base_url is None
        and (settings.sendgrid_api_key == defaults["sendgrid_api_key"].default)
    ):
        raise ConfigurationError(
            "sendgrid is a configured provider but SENDGRID_API_KEY is not set (or set "
            "SENDGRID_BASE_URL to a sandbox started with `messaging-gateway sandbox`)"
        )
