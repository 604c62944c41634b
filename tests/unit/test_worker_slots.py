"""A paced call that starts too late for its slot takes its sender's next slot, whether its
claim took too long or its process woke late from the wait for the slot: otherwise it goes out
just before the call of the next slot, and the provider sees two calls closer than the rate."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from types import SimpleNamespace
from typing import Any

import pytest

from gateway.domain.pacing import pacing_key
from tests.unit.test_breaker_and_failover import message
from workers import stream_worker
from workers.stream_worker import LATE, StreamWorker

RATE = 5.0  # a slot every 200 ms: far enough apart for a late call to take the next one


class Slots:
    """The sender's limiter: records each slot taken again."""

    def __init__(self) -> None:
        self.taken: list[str] = []

    async def reserve(self, sender: str, rate: float, cost: int, *, within: float) -> float:
        self.taken.append(sender)
        return 0.0


class Delivery:
    def __init__(self) -> None:
        self.attempts = 0

    async def attempt(self, _message: Any) -> str:
        self.attempts += 1
        return "sent"


async def rates(senders: Collection[str]) -> dict[str, float]:
    return {pacing_key(s): RATE for s in senders}


def worker(slots: Slots, delivery: Delivery) -> Any:
    # Only what sending one claimed entry touches; the outcome stays in ``_finished``.
    w: Any = StreamWorker.__new__(StreamWorker)
    w._rates, w._pacer, w._delivery, w._finished = rates, slots, delivery, []
    w._recorder = asyncio.get_running_loop().create_future()  # a recording already running
    return w


class Clock:
    """The worker's monotonic clock and its sleep: a sleep lasts what it was asked for plus
    ``overslept`` (a busy process waking late)."""

    def __init__(self, overslept: float) -> None:
        self.now = 1000.0
        self.overslept = overslept

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.now += max(0.0, delay) + self.overslept


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Clock:
    fake = Clock(getattr(request, "param", 0.0))
    monkeypatch.setattr(stream_worker, "time", SimpleNamespace(monotonic=fake.monotonic))
    monkeypatch.setattr(stream_worker, "asyncio", SimpleNamespace(sleep=fake.sleep))
    return fake


async def send(w: Any, clock: Clock, start_in: float) -> None:
    entry = SimpleNamespace(id="1-0")
    await w._send(entry, SimpleNamespace(message=message()), clock.now + start_in)
    w._recorder.cancel()


@pytest.mark.parametrize(
    ("clock", "start_in", "slot_again"),
    [
        # Woken from the wait for the slot: on time, a little late, too late.
        (0.0, 0.02, False),
        (LATE / 2, 0.02, False),
        (3 * LATE, 0.02, True),
        # Claimed after the slot had come: a little late, too late.
        (0.0, -LATE / 2, False),
        (0.0, -3 * LATE, True),
    ],
    indirect=["clock"],
)
async def test_a_call_late_for_its_slot_takes_the_next_one(
    clock: Clock, start_in: float, slot_again: bool
) -> None:
    slots, delivery = Slots(), Delivery()
    await send(worker(slots, delivery), clock, start_in=start_in)
    assert delivery.attempts == 1
    assert slots.taken == ([message().sender] if slot_again else [])
