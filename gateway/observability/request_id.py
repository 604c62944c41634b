"""Request id propagation: a pure-ASGI middleware plus a context accessor.

Every HTTP request and WebSocket connection gets an id, taken from a sane incoming
``X-Request-ID`` header or freshly generated. The id is stored in
``scope["state"]["request_id"]`` (so ``request.state.request_id`` works), bound into
structlog's contextvars for the lifetime of the request, and echoed as an
``X-Request-ID`` response header (on the WebSocket handshake too).
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Mapping
from contextvars import ContextVar, Token
from typing import Any, Final

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER: Final = "X-Request-ID"
REQUEST_ID_LOG_KEY: Final = "request_id"

_HEADER_KEY: Final = REQUEST_ID_HEADER.lower().encode("latin-1")
_SANE_ID: Final = re.compile(r"[A-Za-z0-9._-]{1,128}")

_current_request_id: ContextVar[str | None] = ContextVar("gateway_request_id", default=None)


def current_request_id() -> str | None:
    """The id of the request (or WebSocket connection) being handled, if any."""
    return _current_request_id.get()


class _Ids:
    """32 hex digits: 64 random bits per process, then a counter. Unique like a uuid4's hex
    (processes differ by their random half), without a system call for every request."""

    def __init__(self) -> None:
        self.reseed()

    def reseed(self) -> None:
        self.prefix = os.urandom(8).hex()
        self.counter = itertools.count(int.from_bytes(os.urandom(4), "big"))

    def __call__(self) -> str:
        return f"{self.prefix}{next(self.counter) & 0xFFFFFFFFFFFFFFFF:016x}"


_ids = _Ids()
# A forked child must not repeat its parent's ids.
os.register_at_fork(after_in_child=_ids.reseed)


def new_request_id() -> str:
    return _ids()


def is_sane_request_id(value: str) -> bool:
    """At most 128 characters of ``[A-Za-z0-9._-]``: safe to log and to echo back."""
    return _SANE_ID.fullmatch(value) is not None


def _incoming_request_id(scope: Scope) -> str | None:
    for key, value in scope.get("headers", ()):
        # ASGI servers lower-case header names; the comparison keeps it cheap for the rest.
        if key == _HEADER_KEY or (len(key) == len(_HEADER_KEY) and key.lower() == _HEADER_KEY):
            candidate = value.decode("latin-1")
            return candidate if is_sane_request_id(candidate) else None
    return None


class RequestIdMiddleware:
    """Assign a request id to each ``http`` / ``websocket`` scope; pass others through."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return

        request_id = _incoming_request_id(scope) or new_request_id()
        state = scope.get("state")
        if state is None:
            state = scope["state"] = {}
        state[REQUEST_ID_LOG_KEY] = request_id

        header_message = "http.response.start" if scope["type"] == "http" else "websocket.accept"

        header = (_HEADER_KEY, request_id.encode("latin-1"))

        async def send_with_request_id(message: Message) -> None:
            if message["type"] == header_message:
                # Replaces any X-Request-ID of the app's own (as MutableHeaders would).
                headers = [h for h in message.get("headers", ()) if h[0].lower() != _HEADER_KEY]
                headers.append(header)
                message = {**message, "headers": headers}
            await send(message)

        var_token = _current_request_id.set(request_id)
        log_tokens = structlog.contextvars.bind_contextvars(**{REQUEST_ID_LOG_KEY: request_id})
        try:
            await self.app(scope, receive, send_with_request_id)
        finally:
            _reset(var_token, log_tokens)


def _reset(var_token: Token[str | None], log_tokens: Mapping[str, Token[Any]]) -> None:
    """Restore the previous context; fall back to clearing if the tokens cannot be used."""
    try:
        _current_request_id.reset(var_token)
    except ValueError:  # token created in another Context
        _current_request_id.set(None)
    try:
        structlog.contextvars.reset_contextvars(**log_tokens)
    except ValueError:
        structlog.contextvars.unbind_contextvars(REQUEST_ID_LOG_KEY)
