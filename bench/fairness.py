"""Fairness between accounts: one account's large backlog must not hold up another's message.

Account A enqueues a backlog (``sendMessages`` of 100 inputs over a few connections, as fast as
the API takes them), all from one sender; as soon as the last batch is accepted, account B
sends one message from a sender of its own. Measured: B's time from its send (just before its
request is written) to its message being ``SENT`` (polled through the API's ``message`` query
every few milliseconds), how many of A's messages were still waiting at that moment, and A's
drain rate (its backlog over the time from its first send to its last message leaving the
queue, read from PostgreSQL). Every sender's rate is high (``HIGH_SENDER_RATES``), so pacing
does not limit A: what B waits for is the queue alone.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import orjson

from bench.clients import SEND_MESSAGE, SEND_MESSAGES, HttpConnection, accepted_ids, endpoints, sms
from bench.clients import recipient as number_in
from bench.deploy import BenchError

#: B's sender: a number of its own (A sends from ``bench.clients.SENDER``).
LONE_SENDER = "+14155550111"
STATUS = "query S($id: ID!) { message(id: $id) { status } }"
#: Statuses of a message that has left the queue.
GONE = ("SENT", "DELIVERED", "UNDELIVERED", "FAILED", "CANCELED")


async def run_fairness(
    api_url: str,
    key_a: str,
    key_b: str,
    dsn: str,
    *,
    backlog: int,
    connections: int = 4,
    batch: int = 100,
    within: float = 600.0,
) -> dict[str, Any]:
    host, port, _ = endpoints(api_url)
    started = time.time()
    accepted = await _enqueue_backlog(host, port, key_a, backlog, connections, batch)
    enqueued = time.time()
    lone = HttpConnection(host, port, {"Authorization": f"Bearer {key_b}"})
    try:
        message = {**sms(number_in("646", 1)), "from": LONE_SENDER}
        body = orjson.dumps({"query": SEND_MESSAGE, "variables": {"input": message}})
        sent_at = time.time()
        status, reply = await lone.post("/graphql", body)
        ids = accepted_ids(reply) if status == 200 else []
        if not ids:
            raise BenchError(f"B's message was not accepted: HTTP {status} {reply[:300]!r}")
        lone_sent_s = await _until_gone(lone, ids[0], sent_at, within)
    finally:
        await lone.close()
    waiting_then = await _waiting(dsn)
    drained = await _drained(dsn, within - (time.time() - started))
    return {
        "backlog": backlog,
        "accepted": accepted,
        "enqueue_s": round(enqueued - started, 2),
        "b_send_to_sent_ms": round(lone_sent_s * 1000, 1),
        "a_waiting_when_b_sent": waiting_then,
        "a_drain_s": round(drained - started, 2),
        "a_drain_msgs_per_s": round(accepted / max(drained - started, 1e-6), 1),
    }


async def _enqueue_backlog(
    host: str, port: int, key: str, total: int, connections: int, batch: int
) -> int:
    calls = [list(range(start, min(total, start + batch))) for start in range(0, total, batch)]
    accepted = 0

    async def sender() -> None:
        nonlocal accepted
        conn = HttpConnection(host, port, {"Authorization": f"Bearer {key}"})
        try:
            while calls:
                numbers = calls.pop()
                inputs = [sms(number_in("310", n)) for n in numbers]
                body = orjson.dumps({"query": SEND_MESSAGES, "variables": {"inputs": inputs}})
                status, reply = await conn.post("/graphql", body, limit_s=60)
                if status != 200:
                    raise BenchError(f"backlog batch refused: HTTP {status} {reply[:300]!r}")
                accepted += len(accepted_ids(reply))
        finally:
            await conn.close()

    await asyncio.gather(*(sender() for _ in range(connections)))
    return accepted


async def _until_gone(conn: HttpConnection, message_id: str, since: float, within: float) -> float:
    body = orjson.dumps({"query": STATUS, "variables": {"id": message_id}})
    deadline = since + within
    while time.time() < deadline:
        status, reply = await conn.post("/graphql", body)
        found = orjson.loads(reply).get("data", {}).get("message") if status == 200 else None
        if found is not None and found["status"] in GONE:
            return time.time() - since
        await asyncio.sleep(0.005)
    raise BenchError(f"B's message did not leave the queue within {within:.0f}s")


async def _waiting(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        count = await conn.fetchval(
            "SELECT count(*) FROM messages WHERE sender <> $1 AND status IN ('QUEUED', 'SENDING')",
            LONE_SENDER,
        )
    finally:
        await conn.close()
    return int(count or 0)


async def _drained(dsn: str, within: float) -> float:
    """When A's last message left the queue (polled every 100 ms)."""
    deadline = time.time() + within
    while time.time() < deadline:
        if await _waiting(dsn) == 0:
            return time.time()
        await asyncio.sleep(0.1)
    raise BenchError(f"A's backlog did not drain within {within:.0f}s")
