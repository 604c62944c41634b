"""The CLI role: the account and key commands, which need the database and nothing else."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.services.auth import ApiKeys
from gateway.services.pacing import SenderRates
from gateway.settings import Settings
from persistence.accounts import AccountRepository
from persistence.db import create_engine
from persistence.pacing import SenderRateRepository
from persistence.webhooks import WebhookRepository


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
