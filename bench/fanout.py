"""Fan-out: many open ``messageEvents`` subscriptions on ONE API process.

Every subscriber belongs to the same account and has no filter, so every event of the
account goes to every subscriber. Events are produced by sending messages through the real
pipeline (each one yields QUEUED, SENDING, SENT and DELIVERED events, published by the API
and the worker). For each delivery (event x subscriber) the latency is the client's receive
time minus the event's ``occurredAt`` (same machine, same clock). ``occurredAt`` is stamped
when the change is made, a little before its transaction commits and the event is published,
so this slightly over-states publish-to-client. A delivery is missing when some subscriber
got an event of a measured message and another subscriber did not.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import orjson

from bench.clients import (
    SEND_MESSAGE,
    HttpConnection,
    LoopLag,
    Subscription,
    accepted_ids,
    endpoints,
    event_of,
    recipient,
    sms,
    steady_heap,
)
from bench.cpu import CpuMeter
from bench.deploy import BenchError
from bench.report import percentile

QUERY = "subscription { messageEvents { id messageId status occurredAt } }"


class Recorder:
    """Raw frames with their receive times; parsed only after the measurement."""

    def __init__(self) -> None:
        self.frames: list[tuple[str, float]] = []

    def on_next(self, text: str, received_at: float) -> None:
        self.frames.append((text, received_at))


async def _open_all(subs: list[Subscription], concurrency: int, limit_s: float) -> tuple[int, str]:
    gate = asyncio.Semaphore(concurrency)
    failures = 0
    first = ""

    async def one(sub: Subscription) -> None:
        nonlocal failures, first
        async with gate:
            try:
                await sub.open(limit_s=30)
            except Exception as exc:
                failures += 1
                first = first or f"{type(exc).__name__}: {exc}"

    async with asyncio.timeout(limit_s):
        await asyncio.gather(*(one(s) for s in subs))
    return failures, first


async def _send_one(conn: HttpConnection, area: str, n: int) -> str:
    body = orjson.dumps({"query": SEND_MESSAGE, "variables": {"input": sms(recipient(area, n))}})
    status, answer = await conn.post("/graphql", body)
    if status != 200:
        raise BenchError(f"sendMessage answered HTTP {status}: {answer[:300]!r}")
    return accepted_ids(answer)[0]


async def _settle(subs: list[Subscription], at_least: int, limit_s: float) -> bool:
    """Wait (bounded) until every open subscriber has received the same number of frames,
    at least ``at_least`` more than before, and that number stopped growing for 0.5 s."""
    deadline = time.monotonic() + limit_s
    last_total, stable_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        counts = [s.received for s in subs if s.ws is not None]
        total = sum(counts)
        if total != last_total:
            last_total, stable_since = total, time.monotonic()
        elif (
            counts
            and min(counts) == max(counts) >= at_least
            and time.monotonic() - stable_since > 0.5
        ):
            return True
        await asyncio.sleep(0.1)
    return False


async def run_fanout(
    api_url: str,
    key: str,
    *,
    subscribers: int,
    messages: int,
    interval: float,
    connect_concurrency: int,
    settle_timeout: float,
    area: str,
    compression: str | None,
    meter: CpuMeter | None = None,
) -> dict[str, Any]:
    host, port, ws_url = endpoints(api_url)
    recorders = [Recorder() for _ in range(subscribers)]
    subs = [Subscription(ws_url, key, QUERY, r.on_next, compression=compression) for r in recorders]
    conn = HttpConnection(host, port, {"Authorization": f"Bearer {key}"})
    started = time.monotonic()
    try:
        failures, first_failure = await _open_all(subs, connect_concurrency, limit_s=300)
        connect_seconds = time.monotonic() - started
        if failures == subscribers:
            raise BenchError(f"no subscription could be opened: {first_failure}")
        # Probe: one message; every subscriber must see its events before we measure.
        await _send_one(conn, area, 0)
        if not await _settle(subs, 4, 60):
            counts = sorted(s.received for s in subs if s.ws is not None)
            raise BenchError(
                "subscribers did not all receive the probe's events within 60 s "
                f"(frames per subscriber: min {counts[0] if counts else 0}, "
                f"max {counts[-1] if counts else 0})"
            )
        before = max(s.received for s in subs if s.ws is not None)
        sent: list[str] = []
        errors: list[str] = []
        with steady_heap(), LoopLag() as lag:
            if meter is not None:
                meter.start()
            t0 = time.monotonic()
            for i in range(messages):
                wait = t0 + i * interval - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                try:
                    sent.append(await _send_one(conn, area, i + 1))
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
            settled = await _settle(subs, before + 4 * len(sent), settle_timeout)
            if meter is not None:
                meter.stop()
    finally:
        await conn.close()
        closing = time.monotonic()
        await asyncio.gather(*(s.close() for s in subs))
        close_seconds = time.monotonic() - closing
    return _analyse(
        subs,
        recorders,
        set(sent),
        failures=failures,
        first_failure=first_failure,
        send_errors=errors,
        settled=settled,
        extra={
            "subscribers": subscribers,
            "messages": len(sent),
            "interval_s": interval,
            "connect_seconds": round(connect_seconds, 2),
            "close_seconds": round(close_seconds, 2),
            "client_loop_lag_p99_ms": round(lag.p99_ms(), 2),
            "client_loop_lag_max_ms": round(lag.worst * 1000, 2),
        },
    )


def _analyse(
    subs: list[Subscription],
    recorders: list[Recorder],
    measured: set[str],
    *,
    failures: int,
    first_failure: str,
    send_errors: list[str],
    settled: bool,
    extra: dict[str, Any],
) -> dict[str, Any]:
    expected: set[str] = set()
    seen_by: list[set[str]] = []
    latencies: list[float] = []
    duplicates = 0
    by_status: dict[str, int] = {}
    by_event: dict[str, list[float]] = {}
    status_of: dict[str, str] = {}
    for recorder in recorders:
        seen: set[str] = set()
        for text, received_at in recorder.frames:
            event = event_of(text)
            if event["messageId"] not in measured:
                continue
            if event["id"] in seen:
                duplicates += 1
                continue
            seen.add(event["id"])
            occurred = datetime.fromisoformat(event["occurredAt"]).timestamp()
            latency = (received_at - occurred) * 1000
            latencies.append(latency)
            by_event.setdefault(event["id"], []).append(latency)
            status_of[event["id"]] = event["status"]
            by_status[event["status"]] = by_status.get(event["status"], 0) + 1
        expected |= seen
        seen_by.append(seen)
    missing = sum(len(expected - seen) for seen in seen_by)
    closed_early = [s.closed_reason for s in subs if s.closed_reason]
    return {
        **extra,
        "connected": len(subs) - failures,
        "connect_failures": failures,
        "first_connect_failure": first_failure,
        "send_errors": len(send_errors),
        "first_send_error": send_errors[0] if send_errors else "",
        "events": len(expected),
        "deliveries": len(latencies),
        "expected_deliveries": len(expected) * len(subs),
        "missing": missing,
        "duplicates": duplicates,
        "settled": settled,
        "closed_early": len(closed_early),
        "first_closed_reason": closed_early[0] if closed_early else "",
        "deliveries_by_status": by_status,
        "p50_ms": round(percentile(latencies, 50), 2) if latencies else None,
        "p90_ms": round(percentile(latencies, 90), 2) if latencies else None,
        "p99_ms": round(percentile(latencies, 99), 2) if latencies else None,
        "max_ms": round(max(latencies), 2) if latencies else None,
        # Per event: how long until its first subscriber had it (the pipeline: commit, publish,
        # pub/sub, rendering) and how much longer until the last one did (the fan-out itself).
        "first_delivery_p50_ms": _median([min(v) for v in by_event.values()]),
        "first_delivery_max_ms": _rounded(max((min(v) for v in by_event.values()), default=None)),
        "spread_p50_ms": _median([max(v) - min(v) for v in by_event.values()]),
        "spread_max_ms": _rounded(max((max(v) - min(v) for v in by_event.values()), default=None)),
        "first_delivery_p50_ms_by_status": {
            status: _median([min(v) for e, v in by_event.items() if status_of[e] == status])
            for status in sorted(set(status_of.values()))
        },
    }


def _median(values: list[float]) -> float | None:
    return round(percentile(values, 50), 2) if values else None


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
