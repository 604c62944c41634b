"""Group commit: concurrent submissions share a batch, each gets exactly its own results."""

from __future__ import annotations

import asyncio

import pytest

from gateway.services.coalescer import Coalescer


class Runner:
    def __init__(self, fail_on: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.fail_on = fail_on
        self.gate = asyncio.Event()

    async def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        await self.gate.wait()
        if self.fail_on is not None and self.fail_on in items:
            raise ValueError(f"bad item {self.fail_on}")
        return [i * 10 for i in items]


async def test_a_lone_submission_runs_at_once() -> None:
    runner = Runner()
    runner.gate.set()
    assert await Coalescer(runner).submit([1, 2]) == [10, 20]
    assert runner.batches == [[1, 2]]


async def test_submissions_arriving_while_a_batch_runs_share_the_next_batch() -> None:
    runner = Runner()
    coalescer = Coalescer(runner, max_inflight=1)
    first = asyncio.create_task(coalescer.submit([1]))
    await asyncio.sleep(0)
    waiting = [asyncio.create_task(coalescer.submit([n, n + 100])) for n in (2, 3, 4)]
    await asyncio.sleep(0)
    runner.gate.set()
    assert await first == [10]
    assert [await w for w in waiting] == [[20, 1020], [30, 1030], [40, 1040]]
    assert runner.batches == [[1], [2, 102, 3, 103, 4, 104]]


async def test_a_failing_batch_is_retried_per_submission_so_only_the_bad_one_fails() -> None:
    runner = Runner(fail_on=3)
    coalescer = Coalescer(runner, max_inflight=1)
    blocker = asyncio.create_task(coalescer.submit([0]))
    await asyncio.sleep(0)
    good, bad, other = (asyncio.create_task(coalescer.submit([n])) for n in (2, 3, 4))
    await asyncio.sleep(0)
    runner.gate.set()
    await blocker
    assert await good == [20] and await other == [40]
    with pytest.raises(ValueError, match="bad item 3"):
        await bad


async def test_a_caller_going_away_does_not_cancel_the_shared_batch() -> None:
    runner = Runner()
    coalescer = Coalescer(runner, max_inflight=1)
    blocker = asyncio.create_task(coalescer.submit([0]))
    await asyncio.sleep(0)
    leaving = asyncio.create_task(coalescer.submit([5]))
    staying = asyncio.create_task(coalescer.submit([6]))
    await asyncio.sleep(0)
    leaving.cancel()
    runner.gate.set()
    await blocker
    assert await staying == [60]
    assert runner.batches[-1] == [5, 6], "the canceled caller's items were still processed"


async def test_batches_respect_max_items() -> None:
    runner = Runner()
    coalescer = Coalescer(runner, max_items=3, max_inflight=1)
    tasks = [asyncio.create_task(coalescer.submit([n, n])) for n in range(4)]
    await asyncio.sleep(0)
    runner.gate.set()
    await asyncio.gather(*tasks)
    assert all(len(b) <= 3 for b in runner.batches[1:])
