"""How the sandbox POSTs its status callbacks: through the providers' HTTP stack.

Run alone (benchmarks, other gateways) the sandbox owns a session; mounted in the gateway it
borrows the gateway's, and tests may hand it one of their own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from providers.http import ProviderSession, TransportError

__all__ = ["CallbackError", "Callbacks"]

#: Connections kept to the webhook host. Callbacks beyond it wait for a free connection
#: (not counted against their timeout) instead of opening ever more sockets.
MAX_CONNECTIONS: Final = 64
TIMEOUT: Final = 10.0


class CallbackError(Exception):
    """The callback did not get an HTTP answer (refused, reset, timed out)."""


class Callbacks:
    """Callbacks go to our own (usually loopback) webhooks, never through a proxy; a gateway
    that hangs frees the connection after TIMEOUT. A borrowed session is not closed here."""

    def __init__(self, session: ProviderSession | None = None) -> None:
        self._owned = session is None
        self._session = session or ProviderSession(
            max_connections=MAX_CONNECTIONS,
            connect_timeout=TIMEOUT,
            read_timeout=TIMEOUT,
            wait_for_connections=True,
        )

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        """POST ``body``; the response's status code, or CallbackError without one."""
        try:
            response = await self._session.post(url, body=body, headers=headers)
        except TransportError as exc:
            raise CallbackError(exc.code) from exc
        return response.status_code

    async def aclose(self) -> None:
        if self._owned:
            await self._session.aclose()
