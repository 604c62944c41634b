"""How the sandbox POSTs its status callbacks: one small interface, two HTTP clients.

Run alone (benchmarks, other gateways) the sandbox owns an aiohttp session: at hundreds of
callbacks a second httpx cost it ~1 to 2 ms of CPU per callback (its pool bookkeeping grows
with the requests in flight), aiohttp ~0.1 ms. Mounted in the gateway it borrows the gateway's
httpx client instead, and tests may hand it one of their own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Protocol

import aiohttp
import httpx

__all__ = ["AiohttpCallbacks", "CallbackClient", "CallbackError", "HttpxCallbacks"]

#: Connections kept to the webhook host. Callbacks beyond it wait for a free connection
#: (not counted against their timeout) instead of opening ever more sockets.
MAX_CONNECTIONS: Final = 64
TIMEOUT: Final = 10.0


class CallbackError(Exception):
    """The callback did not get an HTTP answer (refused, reset, timed out)."""


class CallbackClient(Protocol):
    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        """POST ``body``; the response's status code, or CallbackError without one."""
        ...

    async def aclose(self) -> None: ...


class HttpxCallbacks:
    """Callbacks through somebody else's httpx client (not closed here)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        try:
            response = await self._client.post(url, content=body, headers=dict(headers))
        except httpx.HTTPError as exc:
            raise CallbackError(type(exc).__name__) from exc
        return response.status_code

    async def aclose(self) -> None:
        return None


class AiohttpCallbacks:
    """The sandbox's own keep-alive client; the session is made on first use, in the loop."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                # No proxy from the environment: callbacks go to our own (usually loopback)
                # webhooks. A gateway that hangs frees the connection after TIMEOUT.
                trust_env=False,
                connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS, limit_per_host=0),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=TIMEOUT, sock_read=TIMEOUT),
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        try:
            async with self._open().post(url, data=body, headers=headers) as response:
                await response.read()
                return response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise CallbackError(type(exc).__name__) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
