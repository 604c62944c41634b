"""The HTTP client the tests and the bench talk to the gateway's servers with."""

from __future__ import annotations

from typing import Any, Final

import httpx

#: Below uvicorn's keep-alive (5 s): a pooled connection idle about that long may be closing
#: on the server's side at the moment the client sends on it, and the request then fails
#: with ReadError, which httpx does not retry. Suites with a long-lived client (a module's or
#: the session's gateway) sit idle that long between tests on a busy machine.
KEEPALIVE_EXPIRY: Final = 2.0


def loopback_client(**options: Any) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` (``options`` as for it) that lets idle connections go before
    the server does, and ignores proxy settings of the environment (loopback only)."""
    options.setdefault("trust_env", False)
    options.setdefault("limits", httpx.Limits(keepalive_expiry=KEEPALIVE_EXPIRY))
    return httpx.AsyncClient(**options)
