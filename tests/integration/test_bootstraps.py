"""Each role's bootstrap builds what that role runs, and only that.

The API in embedded mode runs the delivery worker and the sandbox in its own process; in Redis
mode it runs neither and keeps webhook payloads in Redis while the database is down. A worker
needs Redis. A worker's claims carry the name its liveness vouches for, or the sweeper would
take its messages back from under it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.domain.channels import Channel
from gateway.entry.bootstrap.api import bootstrap_api
from gateway.entry.bootstrap.shared import ConfigurationError, verify_providers
from gateway.entry.bootstrap.worker import bootstrap_worker
from gateway.settings import Settings
from harness.servers import PostgresServer, RedisServer
from tests.conftest import fresh_postgres_url


def chore_names(chores: list[object]) -> set[str]:
    return {getattr(chore, "__qualname__", "") for chore in chores}


def redis_settings(postgres: PostgresServer, redis_server: RedisServer, tmp: Path) -> Settings:
    return Settings(
        database_url=fresh_postgres_url(postgres), redis_url=redis_server.url, data_dir=tmp
    )


async def test_the_embedded_api_runs_the_worker_and_the_sandbox_in_its_process(
    tmp_path: Path,
) -> None:
    api = bootstrap_api(Settings(data_dir=tmp_path))
    try:
        assert api.worker is not None and api.deliveries is not None
        assert api.sandbox_app is not None and api.sandbox is not None
        # The sweeper takes back the SENDING messages of workers it does not see alive.
        assert await api.queue.liveness.live() == {api.deliveries.delivery.worker}
        assert chore_names(api.deliveries.chores) == {
            "background(reconcile)",
            "background(webhook-retention)",
            "background(webhook-deliveries)",
        }
        assert api.queue.spool is None and api.webhook_services.spool is None
        # The sandbox signs SendGrid's events with its own key: the routes verify with it.
        assert api.sandbox_config is not None
        assert api.sendgrid_public_key == api.sandbox_config.public_key
    finally:
        await api.close()


async def test_telnyx_carries_sms_after_twilio_and_verifies_with_the_sandbox_key(
    tmp_path: Path,
) -> None:
    api = bootstrap_api(
        Settings(data_dir=tmp_path, sms_providers="twilio,telnyx", mms_providers="telnyx")
    )
    try:
        assert api.deliveries is not None
        registry = api.deliveries.registry
        assert [p.name for p, _ in registry.candidates(Channel.SMS)] == ["twilio", "telnyx"]
        assert [p.name for p, _ in registry.candidates(Channel.MMS)] == ["telnyx"]
        assert api.sandbox_config is not None
        assert api.telnyx_public_key == api.sandbox_config.telnyx_public_key
        assert api.webhook_adapters["telnyx_messaging"].source == "telnyx"
    finally:
        await api.close()


@pytest.mark.parametrize(
    ("setting", "vendor"),
    [("email_providers", "sendgrid"), ("email_providers", "mailgun"), ("sms_providers", "telnyx")],
)
def test_production_refuses_a_vendor_without_its_api_key(
    tmp_path: Path, setting: str, vendor: str
) -> None:
    # Every other vendor points at a stand-in: only this one's key can be missing.
    stand_ins = {
        f"{other}_base_url": "http://127.0.0.1:9"
        for other in ("twilio", "sendgrid", "mailgun", "telnyx")
        if other != vendor
    }
    production = Settings(
        data_dir=tmp_path, redis_url="redis://127.0.0.1:9/0", **{setting: vendor}, **stand_ins
    )
    with pytest.raises(ConfigurationError, match=f"{vendor.upper()}_API_KEY"):
        verify_providers(production)
    verify_providers(production.model_copy(update={f"{vendor}_api_key": "real-key"}))


async def test_the_embedded_worker_can_be_switched_off(tmp_path: Path) -> None:
    api = bootstrap_api(Settings(data_dir=tmp_path, embedded_worker=False))
    try:
        assert api.worker is None and api.deliveries is None
        assert api.sandbox_app is not None
    finally:
        await api.close()


async def test_an_api_over_redis_runs_no_worker_and_spools_webhooks_in_redis(
    postgres: PostgresServer, redis_server: RedisServer, tmp_path: Path
) -> None:
    api = bootstrap_api(redis_settings(postgres, redis_server, tmp_path))
    try:
        assert api.worker is None and api.deliveries is None
        assert api.sandbox_app is None
        assert await api.queue.broker.ping()
        assert api.queue.spool is not None
        assert api.webhook_services.spool is api.queue.spool
    finally:
        await api.close()


async def test_a_worker_needs_redis(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="REDIS_URL"):
        bootstrap_worker(Settings(data_dir=tmp_path))


async def test_a_worker_reads_the_stream_under_the_name_its_claims_carry(
    postgres: PostgresServer, redis_server: RedisServer, tmp_path: Path
) -> None:
    worker = bootstrap_worker(redis_settings(postgres, redis_server, tmp_path))
    try:
        assert worker.stream.consumer == worker.deliveries.delivery.worker
        assert chore_names(worker.deliveries.chores) == {
            "background(reconcile)",
            "background(webhook-retention)",
            "background(webhook-replay)",
            "background(webhook-deliveries)",
        }
    finally:
        await worker.close()
