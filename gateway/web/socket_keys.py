"""The API keys of open websockets, checked again while the sockets stay open.

A websocket presents its key once, in ``connection_init``, and may then stay open for days. So
that a revoked key stops working on it as it does over HTTP (within ``API_KEY_CACHE_SECONDS``),
each API process keeps the key hashes of its open sockets and checks them all in the database
every ``API_KEY_CACHE_SECONDS``: one query per interval for the whole process, however many
sockets it holds, and none while it holds none. A socket whose key is gone is closed with 4403.
A key revoked anywhere (another API process, the command line, the database itself) is seen
by every process this way, with nothing sent between them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Collection
from typing import Final, Protocol

import structlog

from gateway.outages import describe, is_unavailable

log = structlog.get_logger(__name__)

#: Close code and reason of a socket whose key was revoked: the code graphql-ws clients treat
#: as "forbidden" and do not retry, as for a key refused at ``connection_init``.
KEY_REVOKED_CODE: Final = 4403
KEY_REVOKED_REASON: Final = "API key revoked"
#: With ``API_KEY_CACHE_SECONDS=0`` (every HTTP request checks its key), open sockets are
#: checked this often rather than in a busy loop.
MIN_INTERVAL: Final = 0.5


class KeyedSocket(Protocol):
    async def close_revoked(self) -> None:
        """End every operation of the socket, send nothing more, and close it with 4403."""


StillLive = Callable[[Collection[str]], Awaitable[set[str]]]


class SocketKeyWatch:
    def __init__(self, still_live: StillLive, interval: float) -> None:
        self._still_live = still_live
        self.interval = max(interval, MIN_INTERVAL)
        self._sockets: dict[str, set[KeyedSocket]] = {}
        self._task: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()

    def watch(self, key_hash: str, socket: KeyedSocket) -> None:
        self._sockets.setdefault(key_hash, set()).add(socket)

    def forget(self, key_hash: str, socket: KeyedSocket) -> None:
        sockets = self._sockets.get(key_hash)
        if sockets is not None:
            sockets.discard(socket)
            if not sockets:
                del self._sockets[key_hash]

    @property
    def open_sockets(self) -> int:
        return sum(len(s) for s in self._sockets.values())

    async def check(self) -> int:
        """Start closing the sockets whose key is no longer live; how many there are."""
        if not self._sockets:
            return 0
        checked = list(self._sockets)
        live = await self._still_live(checked)
        # Sockets opened during the query with a key it did not cover wait for the next check.
        closing: list[KeyedSocket] = []
        for key_hash in checked:
            if key_hash not in live:
                closing += self._sockets.pop(key_hash, ())
        if closing:
            log.info("websockets_closed_key_revoked", sockets=len(closing))
        for socket in closing:
            # Each on its own: a client that does not read can hold up its close frame (until
            # the server's ping timeout drops it), and must not hold up the next checks.
            task = asyncio.create_task(self._close(socket), name="close revoked websocket")
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        return len(closing)

    async def _close(self, socket: KeyedSocket) -> None:
        try:
            await socket.close_revoked()
        except Exception as exc:
            log.warning("websocket_close_failed", error=describe(exc))

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="websocket key checks")

    async def stop(self) -> None:
        tasks = [*self._closing, *([self._task] if self._task is not None else [])]
        self._task = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except Exception as exc:
                # The keys stay trusted until a check succeeds: over HTTP they cannot be
                # checked either while the database is down.
                if is_unavailable(exc):
                    log.warning("websocket_key_check_unavailable", error=describe(exc))
                else:
                    log.exception("websocket_key_check_failed")
