"""Runtime settings, read from environment variables (pydantic-settings).

Every field here is documented in the README's settings table; the environment variable is the
field name in upper case.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy async URL; unset means an embedded SQLite file in DATA_DIR.",
    )
    redis_url: str | None = Field(
        default=None, description="redis://...; unset means the in-process broker."
    )
    data_dir: Path = Field(default=Path("var"), description="Where embedded mode keeps its files.")
    log_level: str = "INFO"
    log_json: bool = True

    default_phone_region: str = Field(
        default="US", description="Region assumed for phone numbers written without +country."
    )
    max_batch_size: int = Field(default=1000, ge=1, le=1000)
    idempotency_retention_hours: int = Field(default=24, ge=1)

    embedded_worker: bool | None = Field(
        default=None,
        description="Run the delivery worker inside `serve`; default: only in embedded mode.",
    )
    sandbox_delivery_delay: float = Field(
        default=0.5, ge=0, description="Seconds before the sandbox reports a message delivered."
    )
    sweep_interval: float = Field(
        default=1.0, gt=0, description="Seconds between scans for due and scheduled messages."
    )
    max_attempts: int = Field(default=5, ge=1)
    retry_base_delay: float = Field(default=1.0, gt=0)
    retry_max_delay: float = Field(default=300.0, gt=0)
    worker_concurrency: int = Field(default=32, ge=1)
    stale_sending_seconds: float = Field(
        default=120.0,
        gt=0,
        description="A message SENDING this long is taken back from a worker presumed dead.",
    )
    reclaim_idle_ms: int = Field(
        default=60_000,
        ge=1000,
        description="Stream entries pending this long are reclaimed from their consumer.",
    )
    max_deliveries: int = Field(
        default=10, ge=1, description="Stream deliveries of one entry before it is poison."
    )
    sweep_grace_seconds: float = Field(
        default=5.0,
        ge=0,
        description="Age before the sweeper re-enqueues a QUEUED message (Redis mode).",
    )

    graphiql: bool = True
    introspection: bool = True
    db_pool_size: int = Field(default=10, ge=1)
    api_key_cache_seconds: float = Field(
        default=5.0, ge=0, description="How long a verified API key is trusted before re-checking."
    )

    @property
    def embedded(self) -> bool:
        """True when neither an external database nor an external broker is configured."""
        return self.database_url is None and self.redis_url is None

    @cached_property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'gateway.sqlite3').resolve()}"

    @property
    def is_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")

    @property
    def run_embedded_worker(self) -> bool:
        if self.embedded_worker is not None:
            return self.embedded_worker
        return self.redis_url is None
