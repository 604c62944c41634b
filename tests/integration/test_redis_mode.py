"""Production shape: PostgreSQL + Redis, the API in one process and a worker in another.

Invariants checked: every accepted message reaches DELIVERED through the Redis Stream and a
separate worker process; a subscriber on the API process sees the worker's status changes
(published over Redis pub/sub); after the run no stream entry is left pending.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from gateway.settings import Settings
from harness.asgi import run_uvicorn
from harness.http import loopback_client
from harness.processes import HIGH_SENDER_RATES, Process, worker_command
from harness.servers import PostgresServer, RedisServer, free_port
from providers.sandbox_app import SandboxConfig, create_sandbox_app
from tests.conftest import GraphQLClient, RunningGateway, fresh_postgres_url, serve_on
from workers.lanes import Lanes
from workers.redis_broker import GROUP, STREAM

SEND = """
mutation Send($input: SendMessageInput!) {
  sendMessage(input: $input) { ... on MessageAccepted { message { id conversation { id } } } }
}
"""
STATUS = "query One($id: ID!) { message(id: $id) { status } }"


@pytest.fixture(scope="module")
async def redis_gateway(
    postgres: PostgresServer, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[RunningGateway, Process]]:
    tmp = tmp_path_factory.mktemp("redis-mode")
    api_port = free_port()
    api_url = f"http://127.0.0.1:{api_port}"
    sandbox_config = SandboxConfig.from_settings(
        Settings(public_base_url=api_url, sandbox_callback_delay=0.05)
    )
    sandbox = create_sandbox_app(sandbox_config)
    async with run_uvicorn(sandbox) as sandbox_url:
        env = {
            **os.environ,
            "DATABASE_URL": fresh_postgres_url(postgres),
            "REDIS_URL": redis_server.url,
            "DATA_DIR": str(tmp),
            "PUBLIC_BASE_URL": api_url,
            "TWILIO_BASE_URL": sandbox_url,
            "SENDGRID_BASE_URL": sandbox_url,
            "SENDGRID_WEBHOOK_PUBLIC_KEY": sandbox_config.public_key,
            "SWEEP_INTERVAL": "0.2",
            "API_KEY_CACHE_SECONDS": "0.5",
            **HIGH_SENDER_RATES,
        }
        settings = Settings(
            database_url=env["DATABASE_URL"],
            redis_url=redis_server.url,
            data_dir=tmp,
            twilio_base_url=sandbox_url,
            sendgrid_base_url=sandbox_url,
            sendgrid_webhook_public_key=sandbox_config.public_key,
            api_key_cache_seconds=0.5,
        )
        async with serve_on(settings, api_port) as (base_url, container):
            worker = Process("worker", worker_command(), env, tmp / "worker.log")
            try:
                async with loopback_client(timeout=30) as http:
                    yield RunningGateway("redis", base_url, container, http), worker
            finally:
                await worker.stop()


async def wait_for_status(client: GraphQLClient, message_id: str, status: str) -> str:
    current = ""
    for _ in range(200):
        current = (await client.execute(STATUS, {"id": message_id}))["message"]["status"]
        if current == status:
            break
        await asyncio.sleep(0.05)
    return current


async def test_worker_process_delivers_and_api_subscribers_see_it(
    redis_gateway: tuple[RunningGateway, Process], redis_server: RedisServer
) -> None:
    gateway, worker = redis_gateway
    client = await gateway.new_client()
    query = "subscription { messageEvents { status message { id } } }"
    async with client.subscription(query) as subscription:
        sent = await client.execute(
            SEND,
            {
                "input": {
                    "channel": "SMS",
                    "from": "+14155550100",
                    "to": "+14155550101",
                    "body": "x",
                }
            },
        )
        message_id = sent["sendMessage"]["message"]["id"]
        statuses = []
        while not statuses or statuses[-1] != "DELIVERED":
            event = (await subscription.next(within=15))["data"]["messageEvents"]
            assert event["message"]["id"] == message_id
            statuses.append(event["status"])
    assert statuses == ["QUEUED", "SENDING", "SENT", "DELIVERED"]
    assert worker.alive

    redis = Redis.from_url(redis_server.url)
    try:
        assert await Lanes(redis, STREAM, GROUP).pending() == 0
    finally:
        await redis.aclose()


async def test_many_messages_each_delivered_once(
    redis_gateway: tuple[RunningGateway, Process],
) -> None:
    gateway, _ = redis_gateway
    client = await gateway.new_client()
    inputs = [
        {"channel": "SMS", "from": "+14155550100", "to": f"+1415555{1000 + i:04d}", "body": "b"}
        for i in range(200)
    ]
    mutation = """mutation Many($inputs: [SendMessageInput!]!) {
      sendMessages(inputs: $inputs) { ... on MessageAccepted { message { id } } } }"""
    data = await client.execute(mutation, {"inputs": inputs})
    ids = [r["message"]["id"] for r in data["sendMessages"]]
    assert len(set(ids)) == 200
    for message_id in ids:
        assert await wait_for_status(client, message_id, "DELIVERED") == "DELIVERED"
    attempts = "query One($id: ID!) { message(id: $id) { attempts } }"
    for message_id in ids[:20]:
        assert (await client.execute(attempts, {"id": message_id}))["message"]["attempts"] == 1
