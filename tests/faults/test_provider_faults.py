"""The provider misbehaves: 429s with Retry-After, 500s and timeouts, then an outage that ends.

Every message still ends DELIVERED (or dead-lettered once its attempts are spent), a timed-out
call is the only reason the provider may see a message twice, and once the provider is back
everything held back goes out. How late retries and scheduled sends go out is measured and
reported: a due retry or scheduled message should leave within about a sweep interval of its
time, a 429's retry no earlier than its Retry-After.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from harness.pipeline import Pipeline, Sent
from tests.faults.scenario import (
    FaultReport,
    FaultStack,
    first_call_after,
    percentile,
    prepare,
    product_defaults,
    settle,
    wall,
)
from tests.integration.traffic import mixed, sms

pytestmark = [pytest.mark.fault]

OUTAGE_FOR = 3.0
RETRY_AFTER = 1.0


async def send_batches(
    pipe: Pipeline, key: Any, tag: str, count: int, batch: int = 10
) -> list[Sent]:
    sent: list[Sent] = []
    for start in range(0, count, batch):
        inputs = [mixed(i, tag) for i in range(start, min(count, start + batch))]
        sent += await pipe.send_many((start // batch) % 2, key, inputs)
    return sent


async def lateness(pipe: Pipeline, ids: Sequence[uuid.UUID]) -> tuple[dict[str, list[float]], int]:
    """Seconds between a retry's due time and the provider call that followed it, by what the
    call before it got (rate_limited, server_error, timeout, outage); and how many calls came
    before their due time."""
    trails = await pipe.trails(ids, timed=True)
    calls = pipe.provider_calls(ids)
    late: dict[str, list[float]] = {}
    early = 0
    for message_id in ids:
        made = calls[message_id]
        for event in trails[message_id]:
            due_at = event["detail"].get("nextAttemptAt")
            if event["kind"] != "retry_scheduled" or not due_at:
                continue
            before = [c for c in made if c["received_at"] <= event["at"]]
            after = [c for c in made if c["received_at"] > event["at"]]
            if not before or not after:
                continue
            delay = after[0]["received_at"] - wall(due_at)
            late.setdefault(before[-1]["outcome"], []).append(delay)
            early += delay < -0.05
    return late, early


def summary(values: list[float]) -> dict[str, float | int | None]:
    return {
        "n": len(values),
        "p50_s": round(percentile(values, 50) or 0, 2) if values else None,
        "max_s": round(max(values), 2) if values else None,
    }


@pytest.mark.timeout(180)
async def test_provider_faults_then_outage_and_recovery(
    fault_stack: FaultStack, fault_report: FaultReport
) -> None:
    pipe = fault_stack.pipe
    # The sweeper at its default pace, so that late retries and scheduled sends show as late as
    # they are in production; the backoff short, so that the scenario stays quick.
    defaults = product_defaults()
    workers = {
        "SWEEP_INTERVAL": defaults["SWEEP_INTERVAL"],
        "SWEEP_GRACE_SECONDS": defaults["SWEEP_GRACE_SECONDS"],
        "RETRY_BASE_DELAY": "0.5",
    }
    account = await prepare(fault_stack, [workers, workers])

    # Phase 1: every kind of transient failure at once.
    await pipe.sandbox_configure(
        rate_429=0.15, retry_after=RETRY_AFTER, rate_500=0.15, rate_timeout=0.05, seed=10
    )
    began = time.monotonic()
    faulty = await send_batches(pipe, account, "faulty", 60)
    send_at = datetime.now(UTC) + timedelta(seconds=2)
    scheduled = [
        await pipe.send_one(i % 2, account, sms(i, "scheduled") | {"sendAt": send_at.isoformat()})
        for i in range(4)
    ]
    first_ids = [s.id for s in [*faulty, *scheduled]]
    faulty_settled = await settle(pipe, first_ids, within=90)

    # Phase 2: the provider is down, then comes back.
    await pipe.sandbox_configure(rate_429=0.0, rate_500=0.0, rate_timeout=0.0, outage=True)
    down_wall = time.time()
    held = await send_batches(pipe, account, "outage", 30)
    await asyncio.sleep(OUTAGE_FOR)
    await pipe.sandbox_configure(outage=False)
    back, back_wall = time.monotonic(), time.time()
    held_settled = await settle(pipe, [s.id for s in held], within=90)

    fault_report.took("faulty_all_terminal", began, faulty_settled)
    fault_report.took(
        "first_accepted_call_after_outage", back_wall, first_call_after(pipe, back_wall)
    )
    fault_report.took("all_terminal_after_outage", back, held_settled)

    late, early = await lateness(pipe, [s.id for s in faulty])
    calls = pipe.provider_calls([s.id for s in [*faulty, *scheduled, *held]])
    scheduled_late = [
        calls[s.id][0]["received_at"] - send_at.timestamp() for s in scheduled if calls[s.id]
    ]
    outage_calls = sum(
        1
        for made in calls.values()
        for c in made
        if c["outcome"] == "outage" and down_wall <= c["received_at"] <= back_wall
    )
    fault_report.note(
        retry_lateness={outcome: summary(values) for outcome, values in sorted(late.items())},
        retries_before_due=early,
        scheduled_lateness=summary(scheduled_late),
        calls_during_outage=outage_calls,
        outage_s=round(back_wall - down_wall, 1),
    )

    await fault_report.judge(pipe, [*first_ids, *[s.id for s in held]], answers_may_be_lost=True)
    for worker in pipe.workers:
        if not worker.alive:
            fault_report.problem(f"{worker.name} exited")
    fault_report.check(pipe)
