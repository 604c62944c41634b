"""Event webhooks: the endpoints' management (API) and the dispatcher that delivers to them
(every delivery worker, in its own slots apart from message delivery)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.domain.webhook_endpoints import RetrySchedule, check_addresses
from gateway.services.webhook_deliveries import DeliveryRetention, WebhookDispatcher
from gateway.services.webhook_endpoints import UrlGuard, WebhookEndpointService
from gateway.settings import Settings
from persistence.sealed import SecretBox
from persistence.webhook_endpoints import WebhookEndpointRepository
from providers.http import ProviderSession
from providers.outbound_webhooks import SystemResolver, WebhookPoster
from workers.background import BackgroundChore

NAME = "webhook-deliveries"
#: Deliveries one retention batch deletes, and batches a run: a short transaction each.
RETENTION_BATCH = 1000
RETENTION_BATCHES = 20
#: Deliveries of one endpoint a worker claims at once: enough that a busy endpoint's sends
#: rarely wait for the next claim, few enough that a slow endpoint's stay within their lease.
CLAIM_BATCH = 128
#: How long a lease outlasts the longest try: renewed three times in that room.
LEASE_ROOM_SECONDS = 30


def _repository(settings: Settings, engine: AsyncEngine) -> WebhookEndpointRepository:
    return WebhookEndpointRepository(engine, SecretBox(settings.webhook_secrets_key))


def build_webhook_endpoints(settings: Settings, engine: AsyncEngine) -> WebhookEndpointService:
    guard = UrlGuard(SystemResolver(), allow_private=settings.webhook_allow_private_urls)
    return WebhookEndpointService(_repository(settings, engine), guard)


def build_webhook_dispatch(
    settings: Settings, engine: AsyncEngine
) -> tuple[BackgroundChore, ProviderSession]:
    """The dispatcher, as a chore that keeps it running (restarted at the next sweep if it
    ever stops), and the HTTP client to close after it."""
    allow_private = settings.webhook_allow_private_urls
    session = ProviderSession(
        max_connections=settings.webhook_concurrency,
        connect_timeout=settings.provider_connect_timeout,
        read_timeout=settings.webhook_timeout_seconds,
        # What the connection is made to is what was checked: no window for rebinding.
        check_addresses=None if allow_private else check_addresses,
    )
    poster = WebhookPoster(session, allow_private=allow_private)
    # A try lasts at most connect + 2 x read (the session's backstop). The lease outlasts it
    # with room for renewals (a third of that room apart), so that only a dead worker's
    # claims run out.
    longest_try = settings.provider_connect_timeout + 2 * settings.webhook_timeout_seconds
    dispatcher = WebhookDispatcher(
        _repository(settings, engine),
        poster,
        RetrySchedule(
            base_seconds=settings.webhook_retry_base_seconds,
            cap_seconds=settings.webhook_retry_max_seconds,
            max_attempts=settings.webhook_max_attempts,
        ),
        disable_after=timedelta(seconds=settings.webhook_disable_after_seconds),
        slots=settings.webhook_concurrency,
        per_endpoint=settings.webhook_endpoint_concurrency,
        batch=CLAIM_BATCH,
        lease=timedelta(seconds=longest_try + LEASE_ROOM_SECONDS),
        longest_try=timedelta(seconds=longest_try),
        poll_interval=settings.webhook_poll_interval,
    )
    return BackgroundChore(dispatcher.run_forever, NAME), session


def build_webhook_retention(settings: Settings, engine: AsyncEngine) -> DeliveryRetention:
    return DeliveryRetention(
        _repository(settings, engine),
        keep=timedelta(days=settings.webhook_delivery_retention_days),
        batch=RETENTION_BATCH,
        batches=RETENTION_BATCHES,
    )
