"""How the sandbox POSTs its status callbacks: one small interface, two HTTP clients.

Run alone (benchmarks, other gateways) the sandbox owns a minimal keep-alive client
(:mod:`providers.sandbox_app.keepalive`): at hundreds of callbacks a second httpx cost it ~1 to
2 ms of CPU per callback (its pool bookkeeping grows with the requests in flight), aiohttp
~0.1 ms, the minimal client a fraction of that. Mounted in the gateway it borrows the gateway's
httpx client instead, and tests may hand it one of their own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Protocol

import httpx

from providers.sandbox_app.keepalive import KeepAliveClient, TransportFailure

__all__ = ["CallbackClient", "CallbackError", "HttpxCallbacks", "KeepAliveCallbacks"]

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


class KeepAliveCallbacks:
    """The sandbox's own keep-alive client. Callbacks go to our own (usually loopback)
    webhooks, never through a proxy; a gateway that hangs frees the connection after TIMEOUT."""

    def __init__(self) -> None:
        self._client: KeepAliveClient | None = None

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        if self._client is None:  # made on first use, in the loop it belongs to
            self._client = KeepAliveClient(max_connections=MAX_CONNECTIONS, timeout=TIMEOUT)
        try:
            return await self._client.post(url, body, headers)
        except TransportFailure as exc:
            raise CallbackError(str(exc)) from exc

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
