"""SocketKeyWatch: one check for every open socket, and only the revoked keys' sockets closed."""

from __future__ import annotations

import asyncio
from collections.abc import Collection

from gateway.web.socket_keys import MIN_INTERVAL, SocketKeyWatch


async def closes_done() -> None:
    """Let the close tasks a check started run (a fake socket closes in one step)."""
    await asyncio.sleep(0)


class FakeSocket:
    def __init__(self) -> None:
        self.closed = 0

    async def close_revoked(self) -> None:
        self.closed += 1


class Keys:
    """The database's answer, and the questions it was asked."""

    def __init__(self, live: set[str]) -> None:
        self.live = live
        self.asked: list[set[str]] = []
        self.during_query: list[tuple[str, FakeSocket]] = []
        self.watch: SocketKeyWatch | None = None

    async def still_live(self, digests: Collection[str]) -> set[str]:
        self.asked.append(set(digests))
        await asyncio.sleep(0)
        for key_hash, socket in self.during_query:  # sockets opened while the query runs
            assert self.watch is not None
            self.watch.watch(key_hash, socket)
        return self.live & set(digests)


async def test_one_query_for_all_sockets_closes_only_the_revoked_keys_sockets() -> None:
    keys = Keys({"kept"})
    watch = SocketKeyWatch(keys.still_live, 5.0)
    kept = [FakeSocket() for _ in range(3)]
    revoked = [FakeSocket() for _ in range(2)]
    for socket in kept:
        watch.watch("kept", socket)
    for socket in revoked:
        watch.watch("revoked", socket)

    assert await watch.check() == 2
    await closes_done()
    assert keys.asked == [{"kept", "revoked"}]
    assert [s.closed for s in revoked] == [1, 1]
    assert [s.closed for s in kept] == [0, 0, 0]
    assert watch.open_sockets == 3

    # Closed sockets are not checked again; a socket that ends is forgotten.
    assert await watch.check() == 0
    assert keys.asked[-1] == {"kept"}
    for socket in kept:
        watch.forget("kept", socket)
    assert watch.open_sockets == 0
    assert await watch.check() == 0
    assert len(keys.asked) == 2  # no socket, no query


async def test_a_socket_opened_during_the_query_waits_for_the_next_check() -> None:
    keys = Keys(set())
    watch = SocketKeyWatch(keys.still_live, 5.0)
    keys.watch = watch
    first, late = FakeSocket(), FakeSocket()
    watch.watch("a", first)
    keys.during_query = [("b", late)]

    assert await watch.check() == 1
    await closes_done()
    assert (first.closed, late.closed) == (1, 0)  # "b" was not asked about
    keys.during_query = []
    assert await watch.check() == 1
    await closes_done()
    assert late.closed == 1


async def test_a_zero_cache_time_still_checks_at_a_steady_pace() -> None:
    assert SocketKeyWatch(Keys(set()).still_live, 0.0).interval == MIN_INTERVAL


async def test_a_close_that_hangs_holds_up_neither_the_checks_nor_the_shutdown() -> None:
    class StuckSocket:
        async def close_revoked(self) -> None:
            await asyncio.Event().wait()  # a client that never reads its close frame

    keys = Keys({"other"})
    watch = SocketKeyWatch(keys.still_live, 5.0)
    watch.watch("revoked", StuckSocket())
    other = FakeSocket()
    watch.watch("other", other)
    # wait_for: a hang fails the test instead of stalling it; nothing here takes time.
    assert await asyncio.wait_for(watch.check(), 30) == 1
    keys.live = set()
    assert await asyncio.wait_for(watch.check(), 30) == 1
    await closes_done()
    assert other.closed == 1
    await asyncio.wait_for(watch.stop(), 30)
