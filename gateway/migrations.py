"""Run the Alembic migrations from inside the gateway (``migrate`` and embedded start-up)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

from gateway.settings import Settings
from persistence.db import create_engine

ROOT = Path(__file__).resolve().parents[1]


def alembic_config() -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "alembic"))
    return config


def upgrade_connection(connection: Connection, revision: str = "head") -> None:
    """Upgrade over an open connection (the caller owns the transaction)."""
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


async def upgrade_to_head(settings: Settings) -> None:
    engine = create_engine(settings)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(upgrade_connection)
    finally:
        await engine.dispose()
