"""Redis killed (SIGKILL) under load and started again without its data.

Redis runs without persistence, as the gateway's Redis may: the stream, the consumer group,
the heartbeats and every pending entry are gone when it comes back. Nothing accepted may be
lost with them: what the stream lost is in the database, and the workers and APIs must find
their way back to the new, empty Redis on their own.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.faults.invariants import check
from tests.faults.scenario import (
    FaultReport,
    FaultStack,
    HealthWatch,
    Load,
    first_call_after,
    prepare,
    settle,
)

pytestmark = [pytest.mark.fault]

DOWN_FOR = 2.0


@pytest.mark.timeout(150)
async def test_redis_killed_and_restarted_empty(
    fault_stack: FaultStack, fault_report: FaultReport
) -> None:
    pipe = fault_stack.pipe
    account = await prepare(fault_stack)
    health = {f"api{i + 1}": pipe.api_url(i) + "/health" for i in range(2)}
    async with HealthWatch(pipe.http, health) as watch:
        async with Load(pipe, account, "redis-kill") as load:
            await asyncio.sleep(2.0)
            killed = time.monotonic()
            await fault_stack.kill_redis()
            await asyncio.sleep(DOWN_FOR)
            await fault_stack.start_redis()
            back, back_wall = time.monotonic(), time.time()
            await asyncio.sleep(3.0)
        settled = await settle(pipe, load.ids, within=90)

    fault_report.took("first_accept_after_restart", back, load.first_accept_after(back))
    fault_report.took(
        "first_provider_call_after_restart", back_wall, first_call_after(pipe, back_wall)
    )
    fault_report.took("all_terminal_after_restart", back, settled)
    refused = load.refused()
    fault_report.note(
        down_s=round(back - killed, 1),
        accepted=len(load.ids),
        refused=len(refused),
        api_health_failures=len(watch.failures),
    )
    assert load.ids, f"nothing was accepted: {refused[:3]}"

    verdict = await check(pipe, load.ids, answers_may_be_lost=False)
    fault_report.note(statuses=dict(verdict.statuses), **verdict.counts)
    fault_report.problems.extend(verdict.lines())
    for worker in pipe.workers:
        if not worker.alive:
            fault_report.problem(f"{worker.name} exited when Redis went away")
    for api in pipe.apis:
        if not api.alive:
            fault_report.problem(f"{api.name} exited when Redis went away")
    if load.first_accept_after(back) is None:
        fault_report.problem("no message was accepted after Redis came back")
    fault_report.check(pipe)
