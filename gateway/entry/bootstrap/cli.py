"""The CLI role: the account and key commands, which need the database and nothing else."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.services.auth import ApiKeys
from gateway.settings import Settings
from persistence.accounts import AccountRepository
from persistence.db import create_engine
from persistence.webhooks import WebhookRepository


@dataclass(frozen=True)
class Cli:
    settings: Settings
    engine: AsyncEngine
    accounts: AccountRepository
    api_keys: ApiKeys
    #: Where an account's sender addresses are kept (``add-address``).
    addresses: WebhookRepository

    async def close(self) -> None:
        await self.engine.dispose()


def bootstrap_cli(settings: Settings) -> Cli:
    engine = create_engine(settings)
    accounts = AccountRepository(engine)
    return Cli(
        settings,
        engine,
        accounts,
        ApiKeys(accounts, settings.api_key_cache_seconds),
        WebhookRepository(engine),
    )
