"""Failover between two SMS vendors with real processes: two API processes, two workers,
PostgreSQL, Redis and the standalone sandbox standing in for Twilio and Telnyx.

Twilio goes down in the middle of the load (the sandbox's per-vendor outage). Every message is
still delivered; once Twilio's circuit is open its messages go straight to Telnyx, and the ones
that met Twilio's refusal went on to Telnyx in the same attempt. The sandbox's own request log
shows no message accepted by both vendors (unless an attempt was recorded as ambiguous). When
Twilio is back, its trial call closes the circuit and traffic returns to it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from typing import Any

import pytest
from sqlalchemy import text

from harness.pipeline import Account, Pipeline, Sent
from tests.integration.traffic import ambiguous_marker, sms

#: Both vendors in the default order; a circuit opened by the outage stays open long enough
#: for the load to meet it, and lets a trial call through soon after the outage ends.
WORKERS = {"SMS_PROVIDERS": "twilio,telnyx", "BREAKER_COOLDOWN_SECONDS": "2"}
BATCH = 10


@pytest.fixture
async def pipe(pipeline: Pipeline) -> AsyncIterator[Pipeline]:
    """Both workers with both vendors, fresh circuits and a sandbox without faults."""
    await pipeline.restart_workers([WORKERS, WORKERS])
    await pipeline.sandbox_reset()
    yield pipeline


async def carriers(pipe: Pipeline, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str | None]:
    """Each message's vendor, as the database records it."""
    async with pipe.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT id, provider FROM messages WHERE id = ANY(:ids)"), {"ids": list(ids)}
        )
    return {r[0]: r[1] for r in rows}


async def send(pipe: Pipeline, account: Account, tag: str, start: int, count: int) -> list[Sent]:
    sent: list[Sent] = []
    for first in range(start, start + count, BATCH):
        inputs = [sms(i, tag) for i in range(first, min(start + count, first + BATCH))]
        sent += await pipe.send_many((first // BATCH) % 2, account, inputs)
    return sent


def ids_of(sent: Iterable[Sent]) -> list[uuid.UUID]:
    return [s.id for s in sent]


async def until_twilio_carries(
    pipe: Pipeline, account: Account, tag: str, start: int
) -> list[uuid.UUID]:
    """Send batches until one goes through Twilio alone: each worker's open circuit lets a
    trial call through after its cooldown, and the trial's success closes it."""
    sent: list[uuid.UUID] = []
    deadline = time.monotonic() + 60
    while True:
        assert time.monotonic() < deadline, f"traffic never returned to Twilio{pipe.diagnostics()}"
        batch = ids_of(await send(pipe, account, tag, start + len(sent), BATCH))
        await pipe.wait_delivered(batch, within=60)
        sent += batch
        if set((await carriers(pipe, batch)).values()) == {"twilio"}:
            return sent


def accepted_by(calls: list[dict[str, Any]]) -> list[str]:
    return [c["vendor"] for c in calls if c.get("outcome") == "accepted"]


async def test_an_outage_of_the_first_vendor_fails_over_and_traffic_returns(
    pipe: Pipeline,
) -> None:
    account = await pipe.new_account()

    healthy = ids_of(await send(pipe, account, "healthy", 0, 20))
    await pipe.wait_delivered(healthy, within=60)
    assert set((await carriers(pipe, healthy)).values()) == {"twilio"}, "the default order"

    # Mid-load: the first batches go out while Twilio answers, the rest meet its outage.
    before = ids_of(await send(pipe, account, "before", 100, 2 * BATCH))
    await pipe.sandbox_configure(vendor="twilio", outage=True)
    during = ids_of(await send(pipe, account, "during", 200, 6 * BATCH))
    await pipe.wait_delivered([*before, *during], within=90)

    during_carriers = await carriers(pipe, during)
    assert set(during_carriers.values()) == {"telnyx"}, "Twilio took nothing while down"
    # Which messages meet the outage depends on how far the workers got with the first
    # batches when it began: on a busy machine the "before" messages meet it and open both
    # circuits, so every "during" message skips Twilio. Either way some message met it.
    mid_load = [*before, *during]
    calls = pipe.provider_calls(mid_load)
    trails = await pipe.trails(mid_load)
    met_twilio = [
        i
        for i in mid_load
        if any(c["vendor"] == "twilio" and c.get("outcome") != "accepted" for c in calls[i])
    ]
    skipped = [i for i in during if not any(c["vendor"] == "twilio" for c in calls[i])]
    assert met_twilio, "the outage was met"
    assert skipped, "an open circuit sends the messages straight to the next vendor"
    for message_id in met_twilio:
        # Refused by Twilio and taken by Telnyx in one and the same attempt: no retry.
        kinds = [e["kind"] for e in trails[message_id]]
        assert "retry_scheduled" not in kinds, trails[message_id]
        [accepted] = [e for e in trails[message_id] if e["kind"] == "provider_accepted"]
        failed_over = accepted["detail"].get("failedOver") or []
        assert [f["provider"] for f in failed_over] == ["twilio"], trails[message_id]
    for message_id in skipped:
        [accepted] = [e for e in trails[message_id] if e["kind"] == "provider_accepted"]
        assert "failedOver" not in accepted["detail"], trails[message_id]

    await pipe.sandbox_configure(vendor="twilio", outage=None)
    after = await until_twilio_carries(pipe, account, "after", 300)

    everything = [*healthy, *before, *during, *after]
    all_calls = pipe.provider_calls(everything)
    all_trails = await pipe.trails(everything)
    for message_id in everything:
        vendors = accepted_by(all_calls[message_id])
        assert vendors, f"no vendor accepted {message_id}"
        if len(vendors) > 1:
            assert ambiguous_marker(all_trails[message_id]), (vendors, all_trails[message_id])
        if len(set(vendors)) > 1:
            raise AssertionError(f"accepted by two vendors: {vendors} {all_trails[message_id]}")


async def test_a_message_twilio_may_have_taken_is_never_sent_through_telnyx(
    pipe: Pipeline,
) -> None:
    """Twilio's answers time out (after the request was sent: ambiguous). Those messages stay
    with Twilio, held and retried through it alone once it answers, never handed to Telnyx,
    although Telnyx answers all along."""
    account = await pipe.new_account()
    await until_twilio_carries(pipe, account, "warm", 500)  # both circuits closed
    await pipe.sandbox_configure(vendor="twilio", rate_timeout=1.0)
    try:
        unsure = ids_of(await send(pipe, account, "unsure", 400, BATCH))
        deadline = time.monotonic() + 60
        while True:
            trails = await pipe.trails(unsure)
            if all(ambiguous_marker(t) for t in trails.values()):
                break
            assert time.monotonic() < deadline, f"no ambiguous attempts: {trails}"
            await asyncio.sleep(0.25)
        assert set((await carriers(pipe, unsure)).values()) == {"twilio"}, "kept to Twilio"
    finally:
        await pipe.sandbox_configure(vendor="twilio", rate_timeout=None)
    await pipe.wait_delivered(unsure, within=90)

    calls = pipe.provider_calls(unsure)
    trails = await pipe.trails(unsure)
    for message_id in unsure:
        vendors = [c["vendor"] for c in calls[message_id]]
        assert "telnyx" not in vendors, (vendors, trails[message_id])
        assert accepted_by(calls[message_id]) == ["twilio"], (calls[message_id], trails[message_id])
        held = [e for e in trails[message_id] if e["detail"].get("ambiguous") is True]
        assert held and all(e["detail"].get("provider") == "twilio" for e in held), held
    assert set((await carriers(pipe, unsure)).values()) == {"twilio"}
