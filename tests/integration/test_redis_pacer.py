"""The shared per-sender limiter in Redis: the schedule of ``gateway.domain.pacing`` on Redis's
own clock, shared by every client, and a pause that holds for all of them."""

from __future__ import annotations

import asyncio
import itertools
import uuid

import pytest
from redis.asyncio import Redis

from harness.servers import RedisServer
from workers.pacing import RedisPacer, pace_key


async def test_two_clients_share_one_schedule_per_sender(redis_server: RedisServer) -> None:
    one, two = Redis.from_url(redis_server.url), Redis.from_url(redis_server.url)
    sender, other = "+1415" + uuid.uuid4().hex[:7], "+1415" + uuid.uuid4().hex[:7]
    try:
        first, second = RedisPacer(one), RedisPacer(two)
        # 10 segments a second: one slot every 100 ms, taken alternately by two workers.
        delays = [
            await (first if i % 2 else second).reserve(sender, 10.0, 1, within=0.45)
            for i in range(5)
        ]
        assert all(d is not None for d in delays), delays
        spaced = [d for d in delays if d is not None]
        for earlier, later in itertools.pairwise(spaced):
            assert later - earlier == pytest.approx(0.1, abs=0.02), spaced
        # The sixth slot lies beyond the horizon: refused, nothing taken.
        assert await first.reserve(sender, 10.0, 1, within=0.45) is None
        assert await second.reserve(sender, 10.0, 1, within=1.0) is not None
        # Another sender is free at once.
        assert await first.reserve(other, 10.0, 1, within=0.0) == pytest.approx(0.0, abs=0.01)
        # A message of several segments moves the schedule on by all of them.
        heavy = "+1415" + uuid.uuid4().hex[:7]
        assert await first.reserve(heavy, 10.0, 4, within=0.0) is not None
        after = await first.reserve(heavy, 10.0, 1, within=1.0)
        assert after == pytest.approx(0.4, abs=0.02)
    finally:
        await one.delete(pace_key(sender), pace_key(other))
        await one.aclose()
        await two.aclose()


async def test_a_pause_holds_for_every_client_and_ends(redis_server: RedisServer) -> None:
    one, two = Redis.from_url(redis_server.url), Redis.from_url(redis_server.url)
    sender = "+1415" + uuid.uuid4().hex[:7]
    try:
        await RedisPacer(one).slow_down(sender, 0.3)
        assert await RedisPacer(two).reserve(sender, 1000.0, 1, within=0.1) is None
        # A restarted Redis has no scripts cached: the pacer loads them again.
        await two.script_flush()
        waited = await RedisPacer(two).reserve(sender, 1000.0, 1, within=1.0)
        assert waited is not None and 0.1 < waited <= 0.3
        await asyncio.sleep(0.35)
        assert await RedisPacer(one).reserve(sender, 1000.0, 1, within=0.0) is not None
        # The key does not outlive its use by much: an idle sender costs nothing.
        assert 0 < await one.pttl(pace_key(sender)) <= 61_000
    finally:
        await one.delete(pace_key(sender))
        await one.aclose()
        await two.aclose()
