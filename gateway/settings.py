"""Runtime settings, read from environment variables (pydantic-settings).

Every field here is documented in the README's settings table; the environment variable is the
field name in upper case.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway.domain.pacing import DefaultRates


def _secret(description: str) -> Any:
    """An optional credential: unset by default, and never shown in the settings' repr."""
    return Field(default=None, repr=False, description=description)


def _vendor_base_url() -> Any:
    return Field(
        default=None, description="Unset: the sandbox mounted in the gateway (embedded mode)."
    )


def _cached_for(what: str) -> Any:
    """The cache lifetime of account settings every process reads and the API changes."""
    return Field(
        default=5.0,
        ge=0,
        description=f"How long a process trusts {what} before reading them again "
        "(a change reaches every process within it).",
    )


def _default_rate(default: float, description: str) -> Any:
    """The rate of a sender without one of its own; bounded as a rate set through the API is."""
    return Field(default=default, gt=0, le=10_000, description=description)


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
    require_production: bool = Field(
        default=False,
        description="Refuse the embedded mode: serve and worker need DATABASE_URL and "
        "REDIS_URL, the other database commands DATABASE_URL (the container image sets it).",
    )
    allow_embedded_on_network: bool = Field(
        default=False,
        description="Let the embedded mode's serve bind a non-loopback address.",
    )
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
    sweep_interval: float = Field(
        default=1.0, gt=0, description="Seconds between scans for due and scheduled messages."
    )
    max_attempts: int = Field(default=5, ge=1)
    retry_base_delay: float = Field(default=1.0, gt=0)
    retry_max_delay: float = Field(default=300.0, gt=0)
    worker_concurrency: int = Field(default=32, ge=1)
    worker_health_port: int | None = Field(
        default=None, description="Port of the worker's GET /health and /metrics; unset: none."
    )
    worker_health_host: str = Field(
        default="0.0.0.0", description="Address the worker's health and metrics port binds."
    )
    stale_sending_seconds: float = Field(
        default=120.0,
        gt=0,
        description="A SENDING message with no recorded worker is taken back after this long.",
    )
    worker_dead_after_seconds: float = Field(
        default=10.0,
        ge=1.0,
        description="A worker whose heartbeat is this old is dead; its messages are taken back.",
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
    ambiguous_grace_seconds: float = Field(
        default=30.0,
        ge=0,
        description=(
            "After an ambiguous attempt (the vendor may have taken the message), the least wait"
            " before it is retried, through that same vendor only."
        ),
    )
    reconcile_after_seconds: float = Field(
        default=600.0,
        gt=0,
        description="A message the provider took and has not settled this long is looked up.",
    )
    reconcile_batch_size: int = Field(
        default=100, ge=1, description="Messages reconciliation looks up per sweep interval."
    )

    # Providers and webhooks.
    public_base_url: str = Field(
        default="http://127.0.0.1:8080",
        description="The URL providers call back; webhook signatures are checked against it.",
    )
    sms_providers: str = Field(default="twilio", description="Failover order for SMS.")
    mms_providers: str = Field(default="twilio", description="Failover order for MMS.")
    email_providers: str = Field(default="sendgrid", description="Failover order for e-mail.")
    twilio_account_sid: str = "ACsandbox00000000000000000000000000"
    twilio_auth_token: str = Field(default="sandbox-auth-token", repr=False)
    twilio_base_url: str | None = _vendor_base_url()
    sendgrid_api_key: str = Field(default="SG.sandbox", repr=False)
    sendgrid_base_url: str | None = _vendor_base_url()
    sendgrid_webhook_public_key: str | None = Field(
        default=None, description="Base64 DER P-256 public key of the SendGrid Event Webhook."
    )
    telnyx_api_key: str = Field(default="KEYsandbox", repr=False)
    telnyx_public_key: str | None = Field(
        default=None, description="Base64 Ed25519 public key of the Telnyx account (webhooks)."
    )
    telnyx_base_url: str | None = _vendor_base_url()
    telnyx_messaging_profile_id: str | None = Field(
        default=None, description="Messaging profile sent with every Telnyx message; unset: none."
    )
    generic_webhook_secret: str | None = _secret("whsec_... secret of the generic JSON webhooks.")
    provider_connect_timeout: float = Field(default=3.0, gt=0)
    provider_read_timeout: float = Field(default=10.0, gt=0)
    provider_max_connections: int = Field(default=100, ge=1)
    breaker_threshold: int = Field(
        default=5, ge=1, description="Consecutive transient failures that open a circuit."
    )
    breaker_cooldown_seconds: float = Field(
        default=30.0, gt=0, description="How long an open circuit waits before a trial call."
    )
    webhook_spool_max_entries: int = Field(
        default=100_000,
        ge=1,
        description="Webhook payloads kept in Redis while the database is down, at most.",
    )
    sendgrid_inbound_token: str | None = _secret(
        "Password (basic auth) or ?token= of the SendGrid Inbound Parse URL."
    )
    mailgun_api_key: str = Field(default="key-sandbox", repr=False)
    mailgun_domain: str = Field(
        default="sandbox.mailgun.example", description="The Mailgun sending domain."
    )
    mailgun_base_url: str | None = Field(
        default=None,
        description="The Mailgun region (https://api.mailgun.net or https://api.eu.mailgun.net); "
        "unset: the sandbox mounted in the gateway (embedded mode), else the US region.",
    )
    mailgun_webhook_signing_key: str | None = _secret(
        "Mailgun's HTTP webhook signing key (event webhooks and Routes posts)."
    )
    require_sender_ownership: bool = Field(
        default=False, description="Refuse sends from addresses the account does not own."
    )

    # The sandbox: a stand-in for the vendors' APIs with failure injection.
    sandbox_callback_delay: float = Field(
        default=0.5, ge=0, description="Seconds before the sandbox sends status callbacks."
    )
    sandbox_rate_429: float = Field(default=0.0, ge=0, le=1)
    sandbox_rate_500: float = Field(default=0.0, ge=0, le=1)
    sandbox_rate_timeout: float = Field(default=0.0, ge=0, le=1)
    sandbox_retry_after: float = Field(default=1.0, ge=0)
    sandbox_timeout_seconds: float = Field(default=30.0, ge=0)
    sandbox_invalid_recipients: str = Field(
        default="", description="Comma-separated recipients the sandbox refuses as invalid."
    )
    sandbox_undeliverable_recipients: str = Field(
        default="", description="Comma-separated numbers reported UNDELIVERED."
    )
    sandbox_bounce_recipients: str = Field(
        default="", description="Comma-separated e-mail addresses that bounce."
    )
    sandbox_unsubscribed_recipients: str = Field(
        default="",
        description="Comma-separated recipients who unsubscribed at the vendor: Twilio "
        "refuses them (21610), SendGrid reports an unsubscribe after delivering.",
    )
    sandbox_queue_overflow_recipients: str = Field(
        default="",
        description="Comma-separated numbers whose messages Twilio takes (201) and then fails "
        "unsent with 30001 (queue overflow), once per message: the retry goes through.",
    )
    sandbox_outage: bool = Field(default=False, description="Every sandbox call fails (503).")
    sandbox_lose_callbacks: bool = Field(
        default=False, description="The sandbox's messages move along but no callback arrives."
    )
    sandbox_sendgrid_signing_key: str | None = _secret(
        "Base64 DER P-256 private key the sandbox signs SendGrid events with."
    )
    sandbox_telnyx_signing_key: str | None = _secret(
        "Base64 Ed25519 private key the sandbox signs Telnyx webhooks with."
    )
    sandbox_event_webhook_url: str | None = Field(
        default=None,
        description="Where the sandbox posts SendGrid events; unset: PUBLIC_BASE_URL's path.",
    )
    sandbox_mailgun_webhook_url: str | None = Field(
        default=None,
        description="Where the sandbox posts Mailgun events; unset: PUBLIC_BASE_URL's path.",
    )
    sandbox_control_token: str | None = _secret(
        "X-Sandbox-Control-Token value that opens the sandbox's control API to "
        "non-loopback clients; unset: loopback clients only."
    )

    rate_limits: str = Field(
        default="sendMessage=100/second;sendMessages=20000/minute;*=500/second",
        description="Per key and root field, `limits` notation; empty turns limits off.",
    )
    rate_limit_fail_open: bool = Field(
        default=True, description="Allow operations when the limiter storage is unreachable."
    )
    execution_timeout_seconds: float = Field(
        default=30.0, gt=0, description="Longest a query or mutation may run over HTTP."
    )
    max_query_depth: int = Field(default=12, ge=1)
    max_aliases: int = Field(default=30, ge=1)
    max_tokens: int = Field(default=5000, ge=10)
    # 1000 SMS inputs with every field at its limit take ~24 MB as compact UTF-8 JSON (body
    # 1600 characters x 4 bytes, 16 KiB metadata, 255-character key, two numbers, field
    # names: ~24 KB each); 32 MiB adds room for the query and attachment lists. Not more: an
    # oversized post may hold up to this much memory until it is refused.
    graphql_max_body_bytes: int = Field(
        default=32 << 20,
        ge=1024,
        description="Largest /graphql request body (HTTP) or websocket message, in bytes.",
    )
    cors_origins: str = Field(
        default="", description="Comma-separated browser origins allowed by CORS; empty: none."
    )
    ws_allowed_origins: str = Field(
        default="",
        description="Comma-separated origins allowed to open websockets cross-origin.",
    )
    ws_max_operations: int = Field(
        default=100,
        ge=1,
        description="Most operations in flight on one websocket (TOO_MANY_OPERATIONS beyond).",
    )

    fast_paths: bool = Field(
        default=True,
        description="Take the fast paths built on uvicorn's and Strawberry's internals; "
        "off: public APIs only (see gateway.fastpaths).",
    )

    graphiql: bool = True
    introspection: bool = True
    db_pool_size: int = Field(default=20, ge=1)
    api_key_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        description="How long a verified API key is trusted before re-checking; also how often "
        "the keys of open websockets are checked again.",
    )
    quiet_hours_cache_seconds: float = _cached_for("an account's quiet hours")
    routes_cache_seconds: float = _cached_for("an account's routes")

    # Per-sender pacing (gateway/domain/pacing.py): segments per second of a sender without a
    # rate of its own, by kind.
    sender_rate_long_code: float = _default_rate(1.0, "Segments per second of a long code.")
    sender_rate_toll_free: float = _default_rate(3.0, "Segments per second of a toll-free number.")
    sender_rate_short_code: float = _default_rate(100.0, "Segments per second of a short code.")
    email_domain_rate: float = _default_rate(
        100.0, "Messages per second of an e-mail sending domain without a rate of its own."
    )
    sender_rate_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        description="How long a process trusts a sender's rate before reading it again.",
    )
    provider_slowdown_seconds: float = Field(
        default=1.0,
        gt=0,
        description="How long a sender pauses after its provider's throughput error, when the "
        "provider gives no Retry-After.",
    )

    webhook_allow_private_urls: bool = Field(
        default=False,
        description="Let webhook endpoints use http and loopback or private addresses "
        "(development and tests only).",
    )
    webhook_secrets_key: str | None = _secret(
        "Fernet key that seals webhook signing secrets in the database; unset: "
        "they are stored as they are."
    )
    webhook_timeout_seconds: float = Field(
        default=10.0, gt=0, description="Read timeout of one webhook delivery try."
    )
    # A try in flight is an open socket waiting for an answer, not work: room for many, so
    # that it takes many endpoints that never answer (this over the per-endpoint cap) to
    # fill a worker's slots and make the others wait for their timeouts.
    webhook_concurrency: int = Field(
        default=64, ge=1, description="Webhook deliveries in flight per worker process."
    )
    webhook_endpoint_concurrency: int = Field(
        default=4, ge=1, description="Webhook deliveries in flight per endpoint, all workers."
    )
    webhook_max_attempts: int = Field(default=10, ge=1, description="Tries per webhook delivery.")
    webhook_retry_base_seconds: float = Field(
        default=5.0, gt=0, description="Pause after a delivery's first failed try (x4 each)."
    )
    webhook_retry_max_seconds: float = Field(
        default=8 * 3600.0, gt=0, description="Longest pause between two tries of a delivery."
    )
    webhook_delivery_retention_days: float = Field(
        default=30.0,
        gt=0,
        description="Delivered and failed webhook deliveries older than this are deleted.",
    )
    webhook_disable_after_seconds: float = Field(
        default=5 * 24 * 3600.0,
        gt=0,
        description="An endpoint whose deliveries all failed for this long is disabled.",
    )
    webhook_poll_interval: float = Field(
        default=1.0, gt=0, description="Seconds between looks for due webhook deliveries."
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
    def default_rates(self) -> DefaultRates:
        return DefaultRates(
            long_code=self.sender_rate_long_code,
            toll_free=self.sender_rate_toll_free,
            short_code=self.sender_rate_short_code,
            email_domain=self.email_domain_rate,
        )

    @property
    def is_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")

    @property
    def run_embedded_worker(self) -> bool:
        if self.embedded_worker is not None:
            return self.embedded_worker
        return self.redis_url is None
