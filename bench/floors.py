"""Floors: what this machine does at the same moment without the gateway in the way.

(a) a plain Starlette JSON endpoint (bench/plain_app.py) under uvicorn with the gateway's
    options, one process, driven by the same wrk script, connections and duration as the
    single-accept benchmark: requests/s and latency at full speed, and latency at the same
    paced rate as the gateway's fixed-rate run;
(b) PostgreSQL: batches of 100 message-like rows (same columns, types and indexes as the
    ``messages`` table) inserted with asyncpg ``executemany``, one transaction per batch, from
    4 concurrent connections: rows/s and per-batch latency;
(c) Redis: pipelines of 100 ``XADD`` on one stream from 4 concurrent redis-py asyncio
    clients (the gateway's client library): XADD ops/s.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg
from redis.asyncio import Redis

from bench.accept import run_wrk
from bench.deploy import PlainApp
from bench.report import percentile
from harness.servers import PostgresServer

FLOOR_TABLE = """
CREATE TABLE floor_messages (
    id uuid PRIMARY KEY,
    account_id uuid NOT NULL,
    conversation_id uuid NOT NULL,
    channel varchar(8) NOT NULL,
    direction varchar(8) NOT NULL,
    sender varchar(320) NOT NULL,
    recipient varchar(320) NOT NULL,
    body text,
    attachments jsonb NOT NULL,
    status varchar(12) NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    segments integer,
    encoding varchar(8),
    next_attempt_at timestamptz,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX ON floor_messages (conversation_id, id);
CREATE INDEX ON floor_messages (status, next_attempt_at);
CREATE INDEX ON floor_messages (account_id, status, updated_at);
"""
INSERT = (
    "INSERT INTO floor_messages (id, account_id, conversation_id, channel, direction, sender, "
    "recipient, body, attachments, status, attempts, segments, encoding, next_attempt_at, "
    "created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, "
    "$14, $15, $16)"
)


def starlette_floor(
    workdir: Path,
    *,
    seconds: float,
    warmup_seconds: float,
    connections: int,
    threads: int,
    fixed_rate: float | None,
) -> dict[str, Any]:
    log = workdir / "logs" / "wrk-floor.log"
    args = {"path": "/plain", "expect": '"ok"'}
    with PlainApp(workdir) as app:
        wrk = partial(
            run_wrk, app.url + "/plain", threads=threads, connections=connections, log_path=log
        )
        if warmup_seconds > 0:
            wrk(seconds=warmup_seconds, args=args, require_accepted=False)
        full = wrk(seconds=seconds, args=args)
        result: dict[str, Any] = {"full": full.summary()}
        if fixed_rate:
            fixed = wrk(seconds=seconds, args={**args, "rate": round(fixed_rate, 1)})
            result["fixed"] = {**fixed.summary(), "offered_rate": round(fixed_rate, 1)}
        app.proc.check()
    return result


def _rows(account: uuid.UUID, area: int, start: int, batch: int) -> list[tuple[Any, ...]]:
    now = datetime.now(UTC)
    return [
        (
            uuid.uuid4(),
            account,
            uuid.uuid4(),
            "SMS",
            "OUTBOUND",
            "+14155550100",
            f"+1{area}{2_000_000 + (start + i) % 8_000_000:07d}",
            "Benchmark message: your code is 123456",
            "[]",
            "QUEUED",
            0,
            1,
            "GSM7",
            now,
            now,
            now,
        )
        for i in range(batch)
    ]


async def pg_floor(
    pg: PostgresServer, *, seconds: float, concurrency: int = 4, batch: int = 100
) -> dict[str, Any]:
    dbname = "bench_floor"
    pg.drop_database(dbname)
    pg.create_database(dbname)
    dsn = pg.url(dbname, driver="postgresql")
    try:
        setup = await asyncpg.connect(dsn)
        try:
            await setup.execute(FLOOR_TABLE)
        finally:
            await setup.close()
        account = uuid.uuid4()
        batch_ms: list[float] = []
        rows_done = 0

        async def writer(index: int, deadline: float) -> None:
            nonlocal rows_done
            conn = await asyncpg.connect(dsn)
            try:
                n = 0
                while time.monotonic() < deadline:
                    rows = _rows(account, 212 + index, n, batch)
                    start = time.monotonic()
                    async with conn.transaction():
                        await conn.executemany(INSERT, rows)
                    batch_ms.append((time.monotonic() - start) * 1000)
                    rows_done += batch
                    n += batch
            finally:
                await conn.close()

        # Short warm-up (connections, plan cache), then the measured run.
        await asyncio.gather(*(writer(i, time.monotonic() + 0.5) for i in range(concurrency)))
        batch_ms.clear()
        rows_done = 0
        started = time.monotonic()
        deadline = started + seconds
        await asyncio.gather(*(writer(i, deadline) for i in range(concurrency)))
        elapsed = time.monotonic() - started
    finally:
        pg.drop_database(dbname)
    return {
        "rows_per_s": round(rows_done / elapsed, 1),
        "batch": batch,
        "concurrency": concurrency,
        "batches": len(batch_ms),
        "batch_p50_ms": round(percentile(batch_ms, 50), 2),
        "batch_p99_ms": round(percentile(batch_ms, 99), 2),
    }


async def redis_floor(
    url: str, *, seconds: float, concurrency: int = 4, pipeline: int = 100
) -> dict[str, Any]:
    stream = "bench:floor"
    client = Redis.from_url(url)
    ops = 0
    pipe_ms: list[float] = []
    try:

        async def writer(deadline: float) -> None:
            nonlocal ops
            fields: dict[Any, Any] = {"id": uuid.uuid4().hex}
            while time.monotonic() < deadline:
                start = time.monotonic()
                async with client.pipeline(transaction=False) as pipe:
                    for _ in range(pipeline):
                        pipe.xadd(stream, fields)
                    await pipe.execute()
                pipe_ms.append((time.monotonic() - start) * 1000)
                ops += pipeline

        await asyncio.gather(*(writer(time.monotonic() + 0.5) for _ in range(concurrency)))
        ops = 0
        pipe_ms.clear()
        started = time.monotonic()
        await asyncio.gather(*(writer(started + seconds) for _ in range(concurrency)))
        elapsed = time.monotonic() - started
        await client.delete(stream)
    finally:
        await client.aclose()
    return {
        "ops_per_s": round(ops / elapsed, 1),
        "pipeline": pipeline,
        "concurrency": concurrency,
        "pipeline_p50_ms": round(percentile(pipe_ms, 50), 2),
        "pipeline_p99_ms": round(percentile(pipe_ms, 99), 2),
    }
