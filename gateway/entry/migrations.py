"""Run the Alembic migrations from inside the gateway (``migrate`` and embedded start-up).

The migrations ship inside the installed package (``persistence/migrations``, package data),
so that an installed wheel migrates from any directory: nothing is looked up relative to a
source checkout or to the current directory.
"""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

from gateway.settings import Settings
from persistence.db import create_engine

#: Alembic's package-resource notation: found wherever ``persistence`` is installed.
SCRIPT_LOCATION = "persistence:migrations"


def alembic_config() -> Config:
    # No alembic.ini: the URL comes from the settings and the logging from the gateway's own
    # configuration; the repository's alembic.ini (same script location) is for developers
    # running ``alembic revision``.
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
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
