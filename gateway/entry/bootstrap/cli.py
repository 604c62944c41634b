"""The CLI role: the account and key commands, which need the database and nothing else, and
the replay of kept webhook payloads, which also publishes what it applies."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.entry.bootstrap.shared import (
    Storage,
    build_opt_outs,
    build_sending,
    build_webhooks,
    in_process_queue,
    redis_queue,
)
from gateway.services.auth import ApiKeys
from gateway.services.pacing import SenderRates
from gateway.settings import Settings
from persistence.accounts import AccountRepository
from persistence.db import create_engine
from persistence.pacing import SenderRateRepository
from persistence.receipts import ReceiptRepository
from persistence.webhooks import WebhookRepository
from providers.webhooks import webhook_adapters
from workers.liveness import RedisLiveness
from workers.memory import MemoryBroker
from workers.receipt_replay import ReceiptReplay
from workers.redis_broker import RedisBroker


@dataclass(frozen=True)
class Cli:
    settings: Settings
    engine: AsyncEngine
    accounts: AccountRepository
    api_keys: ApiKeys
    #: Where an account's sender addresses are kept (``add-address``).
    addresses: WebhookRepository
    #: Sender rates (``add-address --rate``).
    rates: SenderRates

    async def close(self) -> None:
        await self.engine.dispose()


def bootstrap_cli(settings: Settings) -> Cli:
    engine = create_engine(settings)
    accounts = AccountRepository(engine)
    addresses = WebhookRepository(engine)
    return Cli(
        settings,
        engine,
        accounts,
        ApiKeys(accounts, settings.api_key_cache_seconds),
        addresses,
        SenderRates(
            SenderRateRepository(engine),
            settings.default_rates,
            ttl=0.0,
            owned_addresses=addresses.addresses_of,
            region=settings.default_phone_region,
        ),
    )


@dataclass(frozen=True)
class Replay:
    """``replay-receipts``: the kept payloads and the webhooks' own services to apply them."""

    receipts: ReceiptReplay
    close: Callable[[], Awaitable[None]]


def bootstrap_replay(settings: Settings) -> Replay:
    """The webhooks' use cases as a worker builds them (an inbound keyword replayed here is
    acted on and answered too), on the queue of the deployment: what a replay publishes and
    enqueues goes through Redis when there is one. Without it, this process's own queue hands
    nothing on: the audit trail has the events, and the sweeper of the serving process
    enqueues what is due."""
    storage = Storage.open(settings)
    if settings.redis_url:
        broker = RedisBroker(settings.redis_url)
        liveness = RedisLiveness(broker.redis, dead_after=settings.worker_dead_after_seconds)
        queue = redis_queue(settings, broker, liveness)
    else:
        queue = in_process_queue(MemoryBroker(), "replay-receipts")
    units = queue.units(storage)
    opt_outs = build_opt_outs(storage, build_sending(settings, storage, queue, units))
    receipts = ReceiptReplay(
        ReceiptRepository(storage.engine),
        build_webhooks(settings, storage, queue, units, opt_outs),
        webhook_adapters(settings, sendgrid_public_key=settings.sendgrid_webhook_public_key),
    )

    async def close() -> None:
        await queue.close()
        await storage.engine.dispose()

    return Replay(receipts, close)
