"""What the roles share: the choice of queue backend, the provider registry, and the delivery
half that a worker runs (in its own process, or inside the API in embedded mode)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.domain.channels import Channel
from gateway.entry.bootstrap.event_webhooks import build_webhook_dispatch, build_webhook_retention
from gateway.services.delivery import DeliveryService
from gateway.services.opt_outs import OptOutService
from gateway.services.pacing import SenderRates
from gateway.services.ports import Broker, HeldOutcomes, Provider, SenderPacer, WorkerLiveness
from gateway.services.quiet_hours import QuietHoursService
from gateway.services.reconcile import Reconciler
from gateway.services.retry_policy import RetryPolicy
from gateway.services.routing import RoutingService
from gateway.services.sending import SendService
from gateway.services.unit_of_work import Units
from gateway.services.webhooks import WebhookService
from gateway.settings import Settings
from persistence.accept import AcceptRepository
from persistence.db import create_engine
from persistence.lifecycle import LifecycleRepository
from persistence.opt_outs import OptOutRepository
from persistence.pacing import SenderRateRepository
from persistence.quiet_hours import QuietHoursRepository
from persistence.reconcile import ReconcileRepository
from persistence.routes import RouteRepository
from persistence.suppressions import SuppressionRepository
from persistence.unit_of_work import SqlTransaction
from persistence.webhooks import WebhookRepository
from providers.attachments import AttachmentFetcher
from providers.http import ProviderSession
from providers.mailgun import US_API as MAILGUN_API
from providers.mailgun import MailgunProvider
from providers.registry import FailoverRegistry
from providers.sendgrid import SendGridProvider
from providers.telnyx import TelnyxProvider
from providers.twilio import TwilioProvider
from providers.webhooks import WebhookAdapter
from workers.background import BackgroundChore
from workers.chores import Chore
from workers.held_outcomes import MemoryHeldOutcomes, RedisHeldOutcomes
from workers.lease import RedisLease, leased
from workers.liveness import LocalLiveness, RedisLiveness
from workers.memory import MemoryBroker
from workers.pacing import MemoryPacer, RedisPacer
from workers.redis_broker import RedisBroker
from workers.sweeper import Sweeper
from workers.webhook_replay import WebhookReplay
from workers.webhook_spool import RedisWebhookSpool

TWILIO_API = "https://api.twilio.com"
SENDGRID_API = "https://api.sendgrid.com"
TELNYX_API = "https://api.telnyx.com"
SANDBOX_PATH = "/sandbox"
#: How long a worker may hold a chore's lease: a run takes a few round trips, and a worker that
#: died holding it keeps the others from the chore this long at most.
CHORE_LEASE_SECONDS = 60.0

Closer = Callable[[], Awaitable[None]]


class ConfigurationError(RuntimeError):
    """The settings cannot run a gateway; the message says what to change."""


@dataclass(frozen=True)
class Storage:
    """The database and the repositories both the API and the worker write through."""

    engine: AsyncEngine
    lifecycle: LifecycleRepository
    webhooks: WebhookRepository
    #: Read by sending and delivery alike; one cache, so that in the embedded mode a change
    #: made through the API holds for the worker in the same process at once.
    quiet_hours: QuietHoursService
    #: Each sender's pacing rate: set through the API, read by the workers (one cache too).
    sender_rates: SenderRates
    #: Likewise: set through the API, followed by delivery.
    routes: RoutingService

    @classmethod
    def open(cls, settings: Settings) -> Storage:
        engine = create_engine(settings)
        quiet_hours = QuietHoursService(
            QuietHoursRepository(engine), ttl=settings.quiet_hours_cache_seconds
        )
        webhooks = WebhookRepository(engine)
        sender_rates = SenderRates(
            SenderRateRepository(engine),
            settings.default_rates,
            ttl=settings.sender_rate_cache_seconds,
            owned_addresses=webhooks.addresses_of,
            region=settings.default_phone_region,
        )
        routes = RoutingService(
            RouteRepository(engine), carriers(settings), ttl=settings.routes_cache_seconds
        )
        return cls(engine, LifecycleRepository(engine), webhooks, quiet_hours, sender_rates, routes)


@dataclass(frozen=True)
class Queue:
    """The broker and what keeps a worker's state beside it: all in this process (embedded) or
    all in Redis (production). Built by ``in_process_queue`` or ``redis_queue``."""

    broker: Broker
    held: HeldOutcomes
    liveness: WorkerLiveness
    #: How long the sweeper leaves a due message to the queue before offering it again.
    sweep_grace: float
    #: Makes a periodic chore run in one worker at a time.
    exclusive: Callable[[Chore, str], Chore]
    close: Closer
    #: The per-sender limiter every worker of this queue shares.
    pacer: SenderPacer
    #: Where webhook payloads wait while the database is down (Redis only).
    spool: RedisWebhookSpool | None = None

    def units(self, storage: Storage) -> Units:
        """Units of work: one transaction each, what it publishes and enqueues handed to
        this queue after the commit."""
        return Units(self.broker, partial(SqlTransaction, storage.engine))


def in_process_queue(broker: MemoryBroker, worker: str, pacer: MemoryPacer | None = None) -> Queue:
    # The in-process queue drops duplicates itself, and there is one worker: no lease needed.
    return Queue(
        broker,
        MemoryHeldOutcomes(),
        LocalLiveness(worker),
        sweep_grace=0.0,
        exclusive=lambda chore, _: chore,
        close=broker.close,
        pacer=pacer or MemoryPacer(),
    )


def redis_queue(settings: Settings, broker: RedisBroker, liveness: RedisLiveness) -> Queue:
    def exclusive(chore: Chore, name: str) -> Chore:
        lease = RedisLease(broker.redis, f"mgw:lease:{name}", ttl=CHORE_LEASE_SECONDS)
        return leased(lease, chore)

    return Queue(
        broker,
        RedisHeldOutcomes(broker.redis),
        liveness,
        sweep_grace=settings.sweep_grace_seconds,
        exclusive=exclusive,
        close=broker.close,
        pacer=RedisPacer(broker.redis),
        spool=RedisWebhookSpool(broker.redis, max_entries=settings.webhook_spool_max_entries),
    )


def build_sending(settings: Settings, storage: Storage, queue: Queue, units: Units) -> SendService:
    return SendService(
        AcceptRepository(storage.engine),
        storage.lifecycle,
        queue.broker,
        default_region=settings.default_phone_region,
        retention=timedelta(hours=settings.idempotency_retention_hours),
        owned_addresses=(
            storage.webhooks.addresses_of if settings.require_sender_ownership else None
        ),
        units=units,
        quiet_hours=storage.quiet_hours,
    )


def build_webhooks(
    settings: Settings,
    storage: Storage,
    queue: Queue,
    units: Units,
    opt_outs: OptOutService,
    default_owner: Callable[[], UUID | None] = lambda: None,
) -> WebhookService:
    """The webhooks' use cases: inbound messages (the keywords among them acted on and
    answered) and provider reports. Workers need them too: they replay spooled payloads."""
    return WebhookService(
        storage.webhooks,
        queue.broker,
        default_owner=default_owner,
        units=units,
        opt_outs=opt_outs,
        pacer=queue.pacer,
        slowdown=settings.provider_slowdown_seconds,
    )


def build_opt_outs(storage: Storage, sending: SendService) -> OptOutService:
    return OptOutService(
        OptOutRepository(storage.engine), SuppressionRepository(storage.engine), sending
    )


@dataclass
class Deliveries:
    """The delivery half of a worker: what claims, sends and settles messages, the sweeper
    that keeps them moving, and the chores that run beside them."""

    delivery: DeliveryService
    sweeper: Sweeper
    registry: FailoverRegistry
    chores: list[BackgroundChore] = field(default_factory=list)
    #: Closed after the chores have stopped.
    closers: list[Closer] = field(default_factory=list)

    async def close(self) -> None:
        for chore in self.chores:
            await chore.stop()
        for close in self.closers:
            await close()
        await self.registry.aclose()


def build_deliveries(
    settings: Settings,
    storage: Storage,
    queue: Queue,
    units: Units,
    registry: FailoverRegistry,
    webhooks: WebhookService,
    adapters: Mapping[str, WebhookAdapter],
    *,
    worker: str,
) -> Deliveries:
    lifecycle = storage.lifecycle
    policy = RetryPolicy(settings.max_attempts, settings.retry_base_delay, settings.retry_max_delay)
    deliveries = Deliveries(
        delivery=DeliveryService(
            lifecycle,
            registry,
            queue.broker,
            policy,
            queue.held,
            worker=worker,
            units=units,
            quiet_hours=storage.quiet_hours,
            pacer=queue.pacer,
            slowdown=settings.provider_slowdown_seconds,
            ambiguous_grace=settings.ambiguous_grace_seconds,
            routes=storage.routes,
        ),
        sweeper=Sweeper(
            lifecycle,
            queue.broker,
            queue.held,
            queue.liveness,
            grace=queue.sweep_grace,
            stale_after=settings.stale_sending_seconds,
            max_attempts=settings.max_attempts,
        ),
        registry=registry,
    )
    # Periodic work every delivery worker runs beside the sweeper, each in the background and
    # in one worker at a time: reconciliation of messages whose final status never came back,
    # and (Redis) the replay of webhook payloads spooled while the database was down. Workers,
    # not API processes, replay them: any worker can (the spool is shared), they already take
    # turns by lease, and an API process that spooled a payload may be gone by the time the
    # database is back.
    providers = {
        provider.name: provider
        for channel in Channel
        for provider, _ in registry.candidates(channel)
    }
    reconciler = Reconciler(
        ReconcileRepository(storage.engine),
        providers,
        webhooks,
        after=settings.reconcile_after_seconds,
        batch=settings.reconcile_batch_size,
    )
    retention = build_webhook_retention(settings, storage.engine)
    chores: list[tuple[Chore, str]] = [
        (reconciler.run_once, "reconcile"),
        (retention.run_once, "webhook-retention"),
    ]
    if queue.spool is not None:
        replay = WebhookReplay(queue.spool, webhooks, adapters, storage.webhooks.reachable)
        chores.append((replay.run_once, "webhook-replay"))
    deliveries.chores = [BackgroundChore(queue.exclusive(run, name), name) for run, name in chores]
    # Event webhooks run in every worker (not by turns): claims share the work out.
    dispatch, session = build_webhook_dispatch(settings, storage.engine)
    deliveries.chores.append(dispatch)
    deliveries.closers.append(session.aclose)
    return deliveries


def uses_mounted_sandbox(settings: Settings) -> bool:
    """Single-process mode where a channel's provider has no base URL of its own: the sandbox
    stands in for it, mounted here. Without such a provider nothing is mounted (the sandbox's
    routes and control API do not exist)."""
    if settings.redis_url is not None:
        return False
    base_urls = {
        "twilio": settings.twilio_base_url,
        "sendgrid": settings.sendgrid_base_url,
        "mailgun": settings.mailgun_base_url,
        "telnyx": settings.telnyx_base_url,
    }
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


def _default_orders(settings: Settings) -> dict[Channel, tuple[str, list[str]]]:
    """Each channel's ``*_PROVIDERS`` setting, and the names it lists."""
    settings_of = {
        Channel.SMS: settings.sms_providers,
        Channel.MMS: settings.mms_providers,
        Channel.EMAIL: settings.email_providers,
    }
    return {
        channel: (names, [n.strip() for n in names.split(",") if n.strip()])
        for channel, names in settings_of.items()
    }


def carriers(settings: Settings) -> dict[str, frozenset[Channel]]:
    """The channels each configured vendor carries: those whose setting lists it."""
    orders = _default_orders(settings)
    names = {name for _, chosen in orders.values() for name in chosen}
    return {
        name: frozenset(c for c, (_, chosen) in orders.items() if name in chosen) for name in names
    }


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
        "mailgun": MailgunProvider(
            http,
            base_url=_base_url(settings, settings.mailgun_base_url, MAILGUN_API),
            domain=settings.mailgun_domain,
            api_key=settings.mailgun_api_key,
            # Only the local stand-in serves attachments from loopback addresses.
            attachments=AttachmentFetcher(http, allow_private_hosts=settings.redis_url is None),
        ),
        "telnyx": TelnyxProvider(
            session,
            base_url=_base_url(settings, settings.telnyx_base_url, TELNYX_API),
            api_key=settings.telnyx_api_key,
            webhook_url=f"{public}/webhooks/telnyx",
            messaging_profile_id=settings.telnyx_messaging_profile_id,
        ),
    }
    by_channel: dict[Channel, list[Provider]] = {}
    for channel, (setting, chosen) in _default_orders(settings).items():
        unknown = [n for n in chosen if n not in available]
        if unknown or not chosen:
            raise ConfigurationError(
                f"{channel.value}_PROVIDERS={setting!r}: choose from {', '.join(available)}"
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
    if name not in _KEYED:
        return
    base_url, key = _KEYED[name]
    if getattr(settings, base_url) is None and getattr(settings, key) == defaults[key].default:
        raise ConfigurationError(
            f"{name} is a configured provider but {key.upper()} is not set (or set "
            f"{base_url.upper()} to a sandbox started with `messaging-gateway sandbox`)"
        )


#: The vendors whose one credential is an API key: the settings of their base URL and key.
_KEYED: dict[str, tuple[str, str]] = {
    vendor: (f"{vendor}_base_url", f"{vendor}_api_key")
    for vendor in ("sendgrid", "mailgun", "telnyx")
}
