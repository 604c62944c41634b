"""Redis killed (SIGKILL) under load and started again without its data.

Redis runs without persistence, as the gateway's Redis may: the stream, the consumer group,
the heartbeats and every pending entry are gone when it comes back. Nothing accepted may be
lost with them: what the stream lost is in the database, and the workers and APIs must find
their way back to the new, empty Redis on their own.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.faults.scenario import (
    FaultReport,
    FaultStack,
    outage_under_load,
    prepare,
)

pytestmark = [pytest.mark.fault]

DOWN_FOR = 2.0


@pytest.mark.timeout(150)
async def test_redis_killed_and_restarted_empty(
    fault_stack: FaultStack, fault_report: FaultReport
) -> None:
    pipe = fault_stack.pipe
    account = await prepare(fault_stack)
    async with outage_under_load(fault_stack, account, "redis-kill", settle_within=90) as outage:
        await fault_stack.kill_redis()
        await asyncio.sleep(DOWN_FOR)
        await fault_stack.start_redis()
    load = outage.load
    refused = load.refused()
    outage.report(fault_report, pipe, "restart")
    assert load.ids, f"nothing was accepted: {refused[:3]}"

    await fault_report.judge(pipe, load.ids, answers_may_be_lost=False)
    for worker in pipe.workers:
        if not worker.alive:
            fault_report.problem(f"{worker.name} exited when Redis went away")
    for api in pipe.apis:
        if not api.alive:
            fault_report.problem(f"{api.name} exited when Redis went away")
    if load.first_accept_after(outage.back) is None:
        fault_report.problem("no message was accepted after Redis came back")
    fault_report.check(pipe)
