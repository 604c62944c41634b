"""The documented cut-offs of a live subscription, over real websockets on real servers.

A subscriber that falls behind, and every subscriber of a process whose pub/sub connection to
Redis dropped, gets what was queued for it and then an error with its own code (not a masked
``INTERNAL``), and the server notes it at info, not as an error with a traceback. The same
holds for ``inboxChanges``, whose message tells how to resume without a cursor.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import structlog
import websockets

from gateway.domain.inbox import InboxChange, InboxChangeKind
from gateway.settings import Settings
from harness.servers import PostgresServer, RedisServer
from tests.conftest import GatewayParts, RunningGateway, fresh_postgres_url, serve
from tests.events import accepted_event

EVENTS = "subscription { messageEvents { cursor kind status } }"
INBOX = "subscription { inboxChanges { conversationId unreadCount } }"
INBOX_FELL_BEHIND = "subscriber fell behind; resubscribe, then read the conversations again"
INBOX_INTERRUPTED = "live events were interrupted; resubscribe, then read the conversations again"


@contextlib.asynccontextmanager
async def subscribed(base_url: str, key: str, query: str = EVENTS) -> AsyncIterator[Any]:
    url = base_url.replace("http://", "ws://") + "/graphql"
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "connection_init", "payload": {"authorization": key}}))
        ack = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert ack["type"] == "connection_ack", ack
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query}}))
        yield ws


async def until_error(ws: Any) -> tuple[int, list[dict[str, Any]]]:
    """Events received before the subscription's error, and that error; then its complete."""
    events = 0
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), 30))
        if message["type"] == "ping":
            await ws.send(json.dumps({"type": "pong"}))
            continue
        assert message["type"] == "next", message
        payload = message["payload"]
        if "errors" in payload:
            done = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert done == {"id": "1", "type": "complete"}, done
            errors: list[dict[str, Any]] = payload["errors"]
            return events, errors
        events += 1


async def wait_for_member(container: GatewayParts, account: uuid.UUID) -> None:
    await _registered(lambda: container.events.feeds.members(account) >= 1)


async def wait_for_inbox_watcher(container: GatewayParts, account: uuid.UUID) -> None:
    await _registered(lambda: container.broker.inbox_hub.subscribers(account) >= 1)


async def _registered(done: Callable[[], bool]) -> None:
    # White-box: graphql-transport-ws never acknowledges a subscribe.
    for _ in range(500):
        if done():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the subscription never registered")


def cut_off_notes(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == "subscription_cut_off"]


def strawberry_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.name.startswith("strawberry") and r.levelno >= logging.ERROR
    ]


async def test_a_subscriber_that_falls_behind_gets_subscriber_too_slow(
    gateway: RunningGateway, caplog: pytest.LogCaptureFixture
) -> None:
    account, key = await gateway.container.api_keys.create("slow-" + uuid.uuid4().hex[:8])
    with structlog.testing.capture_logs() as logs, caplog.at_level(logging.WARNING):
        async with subscribed(gateway.base_url, f"Bearer {key}") as ws:
            await wait_for_member(gateway.container, account.id)
            # A burst larger than the subscription's queue, published at once: more than it
            # (or its shared feed) can take before reading any of it.
            base = 1 << 40
            burst = [accepted_event(account.id, base + i) for i in range(1500)]
            await gateway.container.broker.publish(burst)
            received, errors = await until_error(ws)

    assert 0 < received < len(burst), received
    assert errors == [
        {
            "message": "subscriber fell behind; resubscribe with `after`",
            "extensions": {"code": "SUBSCRIBER_TOO_SLOW"},
        }
    ]
    notes = cut_off_notes(logs)
    assert [(n["log_level"], n["code"]) for n in notes] == [("info", "SUBSCRIBER_TOO_SLOW")]
    assert not strawberry_errors(caplog)


async def test_an_inbox_watcher_that_falls_behind_gets_subscriber_too_slow(
    gateway: RunningGateway, caplog: pytest.LogCaptureFixture
) -> None:
    account, key = await gateway.container.api_keys.create("slow-" + uuid.uuid4().hex[:8])
    with structlog.testing.capture_logs() as logs, caplog.at_level(logging.WARNING):
        async with subscribed(gateway.base_url, f"Bearer {key}", INBOX) as ws:
            await wait_for_inbox_watcher(gateway.container, account.id)
            # More changes at once than its queue takes; of conversations that do not exist,
            # which it skips, so the cut-off is all it sends.
            burst = [
                InboxChange(account.id, uuid.uuid4(), InboxChangeKind.RECEIVED, uuid.uuid4())
                for _ in range(1500)
            ]
            await gateway.container.broker.publish_inbox(burst)
            received, errors = await until_error(ws)

    assert received == 0
    assert errors == [{"message": INBOX_FELL_BEHIND, "extensions": {"code": "SUBSCRIBER_TOO_SLOW"}}]
    notes = cut_off_notes(logs)
    assert [(n["log_level"], n["code"]) for n in notes] == [("info", "SUBSCRIBER_TOO_SLOW")]
    assert not strawberry_errors(caplog)


async def test_a_redis_restart_cuts_subscribers_off_with_live_events_interrupted(
    postgres: PostgresServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    redis = RedisServer.start(tmp_path / "redis")
    try:
        settings = Settings(
            database_url=fresh_postgres_url(postgres),
            redis_url=redis.url,
            data_dir=tmp_path,
            log_json=True,
        )
        async with serve(settings) as (base_url, container):
            account, key = await container.api_keys.create("cut-" + uuid.uuid4().hex[:8])
            with structlog.testing.capture_logs() as logs, caplog.at_level(logging.WARNING):
                async with (
                    subscribed(base_url, f"Bearer {key}") as ws,
                    subscribed(base_url, f"Bearer {key}", INBOX) as inbox_ws,
                ):
                    await wait_for_member(container, account.id)
                    await wait_for_inbox_watcher(container, account.id)
                    # Restarted without its data: the process's pub/sub connections (events,
                    # inbox changes) drop, and whatever is published until they are back never
                    # arrives.
                    await asyncio.to_thread(redis.restart)
                    received, errors = await until_error(ws)
                    inbox_received, inbox_errors = await until_error(inbox_ws)
    finally:
        redis.stop()

    assert received == inbox_received == 0
    assert errors == [
        {
            "message": "live events were interrupted; resubscribe with `after`",
            "extensions": {"code": "LIVE_EVENTS_INTERRUPTED"},
        }
    ]
    assert inbox_errors == [
        {"message": INBOX_INTERRUPTED, "extensions": {"code": "LIVE_EVENTS_INTERRUPTED"}}
    ]
    notes = cut_off_notes(logs)
    assert [(n["log_level"], n["code"]) for n in notes] == [("info", "LIVE_EVENTS_INTERRUPTED")] * 2
    interrupted = [e for e in logs if e["event"] == "live_subscribers_interrupted"]
    assert [(e["log_level"], e["subscribers"]) for e in interrupted] == [("warning", 1)] * 2
    assert not strawberry_errors(caplog)
