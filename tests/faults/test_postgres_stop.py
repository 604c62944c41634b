"""PostgreSQL stopped for about five seconds under load, then started again.

While it is down, workers hold provider answers they cannot write, status callbacks cannot be
applied, and clients cannot be served. Once it is back, nothing may have been dropped: every
accepted message settles, none is sent to the provider a second time (the worker had the
provider's answer, so there is nothing ambiguous about it), and the callbacks the vendor gave
up on during the outage are made good (kept by the webhooks, or reconciled). Clients get a
GraphQL JSON answer with a code and a request id even while the database is down.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.faults.scenario import (
    FAST_RECONCILIATION,
    VENDOR_CALLBACK_ATTEMPTS,
    Answer,
    FaultReport,
    FaultStack,
    outage_under_load,
    prepare,
)

pytestmark = [pytest.mark.fault]

DOWN_FOR = 5.0
PROVIDER_LATENCY = 0.3


def unhelpful(answer: Answer) -> str | None:
    """Why an answer of /graphql during the outage is not a GraphQL answer a client can act
    on (None when it is one)."""
    if answer.status is None:
        return f"no HTTP answer ({answer.detail[:60]})"
    if "json" not in answer.content_type:
        return f"HTTP {answer.status} {answer.content_type or 'without content type'}"
    if answer.code is None:
        return f"HTTP {answer.status} JSON without errors[].extensions.code"
    if answer.request_id is None:
        return f"HTTP {answer.status} {answer.code} without a request id"
    return None


@pytest.mark.timeout(300)
async def test_postgres_stopped_under_load(
    fault_stack: FaultStack, fault_report: FaultReport
) -> None:
    pipe = fault_stack.pipe
    workers = FAST_RECONCILIATION
    account = await prepare(fault_stack, [workers, workers])
    assert pipe.sandbox is not None
    # A vendor retries a failed callback a few times, then gives up.
    pipe.sandbox.config.callback_attempts = VENDOR_CALLBACK_ATTEMPTS
    # A provider that takes a moment to answer, as real ones do: when the database goes away,
    # calls are under way whose answers the workers will not be able to write.
    await pipe.sandbox_configure(rate_timeout=1.0, timeout_seconds=PROVIDER_LATENCY)
    async with outage_under_load(fault_stack, account, "pg-stop", settle_within=120) as outage:
        await fault_stack.stop_postgres()
        await asyncio.sleep(DOWN_FOR)
        await fault_stack.start_postgres()
    load = outage.load
    during = [a for a in load.answers if outage.down <= a.started <= outage.back]
    refused = load.refused()
    lost_callbacks = [c for c in pipe.sandbox.callbacks if c.get("error")]
    outage.report(
        fault_report,
        pipe,
        "start",
        answers_during_outage=len(during),
        callbacks_given_up=len(lost_callbacks),
    )
    assert load.ids, f"nothing was accepted: {refused[:3]}"

    await fault_report.judge(pipe, load.ids, answers_may_be_lost=False)

    shapes: dict[str, int] = {}
    for answer in refused:
        reason = unhelpful(answer)
        if reason is not None:
            shapes[reason] = shapes.get(reason, 0) + 1
    fault_report.note(unhelpful_answers=shapes)
    for reason, count in shapes.items():
        fault_report.problem(f"{count} /graphql answer(s) while the database was down: {reason}")
    for process in [*pipe.apis, *pipe.workers]:
        if not process.alive:
            fault_report.problem(f"{process.name} exited during the outage")
    fault_report.check(pipe)
