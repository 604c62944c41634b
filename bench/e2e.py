"""End to end: a steady rate of messages from send to the DELIVERED event on a subscription.

Path: ``sendMessage`` on an API process -> Redis Stream -> worker -> sandbox (Twilio API) ->
signed status callback to the API -> DELIVERED event over Redis pub/sub -> the
``messageEvents`` subscription of this client.

The sender is paced by an absolute schedule (slot i at t0 + i/rate) over a few keep-alive
HTTP connections (``batch=1``: one ``sendMessage`` per request; ``batch=k``: one
``sendMessages`` of k inputs per slot at rate/k calls per second). The send time of a message
is taken just before its request is written; the receive time of its DELIVERED event as soon
as the websocket frame is read. Both are this process's ``time.time()``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from bench.clients import (
    SEND_MESSAGE,
    SEND_MESSAGES,
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

QUERY = "subscription { messageEvents { messageId status } }"


@dataclass
class Tracker:
    """What the subscription saw: receive time of each message's DELIVERED event."""

    delivered: dict[str, float] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)

    def on_next(self, text: str, received_at: float) -> None:
        event = event_of(text)
        status = event["status"]
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if status == "DELIVERED":
            self.delivered.setdefault(event["messageId"], received_at)


@dataclass
class SendLog:
    sent: dict[str, float] = field(default_factory=dict)
    accept_ms: list[float] = field(default_factory=list)
    late_ms: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""
    started: float = 0.0
    finished: float = 0.0

    @property
    def rate(self) -> float:
        span = self.finished - self.started
        return len(self.sent) / span if span > 0 else 0.0


def _payload(area: str, first: int, batch: int) -> bytes:
    if batch == 1:
        return orjson.dumps(
            {"query": SEND_MESSAGE, "variables": {"input": sms(recipient(area, first))}}
        )
    inputs = [sms(recipient(area, first + i)) for i in range(batch)]
    return orjson.dumps({"query": SEND_MESSAGES, "variables": {"inputs": inputs}})


async def paced_send(
    conns: list[HttpConnection],
    *,
    rate: float,
    seconds: float,
    batch: int,
    area: str,
    offset: int,
) -> SendLog:
    """Send ``rate`` messages/s for ``seconds``. Slots not started by the planned end (plus
    2 s) are dropped: a gateway that cannot keep up shows as an achieved rate below ``rate``."""
    log = SendLog()
    slots = max(1, int(rate * seconds / batch))
    interval = batch / rate
    t0 = time.time() + 0.05
    hard_stop = t0 + seconds + 2
    next_slot = 0
    log.started = t0

    async def sender(conn: HttpConnection) -> None:
        nonlocal next_slot
        while next_slot < slots and time.time() < hard_stop:
            slot = next_slot
            next_slot += 1
            due = t0 + slot * interval
            wait = due - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
            body = _payload(area, offset + slot * batch, batch)
            start = time.time()
            log.late_ms.append(max(0.0, (start - due) * 1000))
            try:
                status, answer = await conn.post("/graphql", body)
                if status != 200:
                    raise BenchError(f"HTTP {status}: {answer[:300]!r}")
                ids = accepted_ids(answer)
            except Exception as exc:
                log.errors += 1
                log.first_error = log.first_error or f"{type(exc).__name__}: {exc}"
                continue
            log.accept_ms.append((time.time() - start) * 1000)
            for message_id in ids:
                log.sent[message_id] = start

    await asyncio.gather(*(sender(c) for c in conns))
    log.finished = time.time()
    return log


async def wait_delivered(tracker: Tracker, ids: set[str], limit_s: float) -> set[str]:
    """Wait (bounded) until every id has its DELIVERED event; return the ids still missing."""
    deadline = time.monotonic() + limit_s
    missing = ids - tracker.delivered.keys()
    while missing and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        missing = {m for m in missing if m not in tracker.delivered}
    return missing


def _latencies(log: SendLog, tracker: Tracker) -> list[float]:
    return [
        (tracker.delivered[m] - sent) * 1000
        for m, sent in log.sent.items()
        if m in tracker.delivered
    ]


async def run_e2e(
    api_url: str,
    key: str,
    *,
    rate: float,
    seconds: float,
    warmup_seconds: float,
    connections: int,
    batch: int,
    drain_timeout: float,
    area: str,
    compression: str | None,
    meter: CpuMeter | None = None,
    settle: Callable[[], Awaitable[None]] | None = None,
) -> dict[str, Any]:
    """One end-to-end measurement (probe, warm-up, then the measured run); ``settle``, if
    given, runs after the warm-up has drained and before the measured run starts."""
    host, port, ws_url = endpoints(api_url)
    tracker = Tracker()
    subscription = Subscription(ws_url, key, QUERY, tracker.on_next, compression=compression)
    auth = {"Authorization": f"Bearer {key}"}
    conns = [HttpConnection(host, port, auth) for _ in range(connections)]
    offset = 0
    await subscription.open()
    try:
        # The subscription has no "subscribed" acknowledgement: a probe message whose
        # DELIVERED event arrives proves the whole path works (and nothing is lost before).
        probe = await paced_send(conns[:1], rate=1, seconds=1, batch=1, area=area, offset=offset)
        offset += 1
        if not probe.sent:
            raise BenchError(f"the probe message was not accepted: {probe.first_error}")
        if await wait_delivered(tracker, set(probe.sent), 30):
            raise BenchError(
                "the probe message never reached DELIVERED on the subscription within 30 s "
                f"(statuses seen: {tracker.statuses}; subscription: {subscription.closed_reason})"
            )
        if warmup_seconds > 0:
            warm = await paced_send(
                conns, rate=rate, seconds=warmup_seconds, batch=batch, area=area, offset=offset
            )
            offset += int(rate * warmup_seconds) + batch
            await wait_delivered(tracker, set(warm.sent), drain_timeout)
        if settle is not None:
            await settle()
        with steady_heap(), LoopLag() as lag:
            if meter is not None:
                meter.start()
            log = await paced_send(
                conns, rate=rate, seconds=seconds, batch=batch, area=area, offset=offset
            )
            missing = await wait_delivered(tracker, set(log.sent), drain_timeout)
            if meter is not None:
                meter.stop()
    finally:
        for conn in conns:
            await conn.close()
        await subscription.close()
    latencies = _latencies(log, tracker)
    if not latencies:
        raise BenchError(
            f"no message of the measured phase reached DELIVERED (sent {len(log.sent)}, "
            f"errors {log.errors}: {log.first_error}; subscription: {subscription.closed_reason})"
        )
    return {
        "offered_rate": rate,
        "achieved_send_rate": round(log.rate, 1),
        "batch": batch,
        "connections": connections,
        "sent": len(log.sent),
        "delivered": len(latencies),
        "missing": len(missing),
        "send_errors": log.errors,
        "first_send_error": log.first_error,
        "p50_ms": round(percentile(latencies, 50), 2),
        "p90_ms": round(percentile(latencies, 90), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "max_ms": round(max(latencies), 2),
        "accept_p50_ms": round(percentile(log.accept_ms, 50), 2),
        "accept_p99_ms": round(percentile(log.accept_ms, 99), 2),
        "sender_late_p99_ms": round(percentile(log.late_ms, 99), 2),
        "client_loop_lag_p99_ms": round(lag.p99_ms(), 2),
        "client_loop_lag_max_ms": round(lag.worst * 1000, 2),
        "statuses_seen": tracker.statuses,
    }
