"""The graphql-transport-ws side of the GraphQL view: text frames and pre-rendered events.

- Every protocol message goes out as a *text* frame, as the protocol specifies (JSON text);
  the view's JSON encoder yields bytes, which Strawberry would otherwise send as binary frames,
  and browsers hand binary frames to the client library as a Blob, not a string.
- While the ``shared_rendering`` fast path is on (``gateway.fastpaths``), each operation runs
  with a ``LiveSink``: subscription events rendered in common for many subscribers
  (``schema.live``) are sent through it as ready-made ``next`` frames, written at once when
  the ``direct_frames`` fast path gave the socket a writer (``gateway.web.frames``). Without a
  sink, graphql-core executes every event for every operation, as Strawberry does.
- A ``connection_init`` whose API-key lookup finds the database down closes the socket with
  1013 (try again later) instead of failing the connection with an error.
- Once acknowledged, a socket's API key is checked again periodically (``SocketKeyWatch``);
  when it has been revoked, the socket's operations end and it is closed with 4403.
- The operations in flight on one socket are capped (``WS_MAX_OPERATIONS``); one more is
  refused with the code ``TOO_MANY_OPERATIONS`` and the socket stays open.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import orjson
import structlog
from graphql import GraphQLError
from starlette.websockets import WebSocketDisconnect
from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ConnectionInitMessage,
    Message,
    SubscribeMessage,
)

from gateway.fastpaths import FastPaths
from gateway.outages import UNAVAILABLE_MESSAGE, describe, is_unavailable
from gateway.web.frames import frame_writer
from gateway.web.socket_keys import KEY_REVOKED_CODE, KEY_REVOKED_REASON, SocketKeyWatch
from schema.context import Context
from schema.live import LiveSink, SendPayload, SendPayloadNow, current_sink

log = structlog.get_logger(__name__)


class TextFrameAdapter(ASGIWebSocketAdapter):
    async def send_json(self, message: Mapping[str, object]) -> None:
        encoded = self.view.encode_json(message)
        text = encoded.decode() if isinstance(encoded, bytes) else encoded
        try:
            await self.ws.send_text(text)
        except WebSocketDisconnect as exc:
            raise WebSocketDisconnected from exc


#: "Try Again Later": graphql-ws clients reconnect (with backoff) after it, where they give up
#: after 4500 and other 44xx codes.
TRY_AGAIN_LATER = 1013


class LiveTransportWSHandler(BaseGraphQLTransportWSHandler[Context, None]):
    #: Where this socket's key is checked again; set once the connection is acknowledged.
    _key_watch: SocketKeyWatch | None = None
    _revoked = False

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        # The API-key lookup in on_ws_connect needs the database; an outage must close the
        # socket with a code clients retry on, not end the connection handler with a traceback.
        try:
            await super().handle_connection_init(message)
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            log.warning(
                "backing_service_unavailable", error=describe(exc), during="connection_init"
            )
            await self.websocket.close(code=TRY_AGAIN_LATER, reason=UNAVAILABLE_MESSAGE)
            return
        watch: SocketKeyWatch | None = getattr(self.view, "key_watch", None)
        if self.connection_acknowledged and self._key_watch is None and watch is not None:
            self._key_watch = watch
            watch.watch(self.context.key_hash, self)

    async def handle_message(self, message: Message) -> None:
        # Whatever the client sent before it saw the close runs nothing.
        if not self._revoked:
            await super().handle_message(message)

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        # Strawberry's own cap (the same number) answers without an error code; this one comes
        # first, after the protocol checks that close the socket instead.
        cap = self.max_subscriptions_per_connection
        if (
            cap is not None
            and self.connection_acknowledged
            and message["id"] not in self.operations
            and len(self.operations) >= cap
        ):
            error = GraphQLError(
                f"too many operations in flight on this socket (at most {cap})",
                extensions={"code": "TOO_MANY_OPERATIONS", "maxOperations": cap},
            )
            await self.send_message(
                {"id": message["id"], "type": "error", "payload": [error.formatted]}
            )
            return
        await super().handle_subscribe(message)

    async def close_revoked(self) -> None:
        """The socket's API key was revoked: end its operations, then close it with 4403."""
        if self._revoked:
            return
        self._revoked = True
        for operation in list(self.operations.values()):
            # Nothing more of it is sent, not even its ``complete``.
            operation.completed = True
            await self.cleanup_operation(operation.id)
        with contextlib.suppress(Exception):  # the client may have gone meanwhile
            await self.websocket.close(code=KEY_REVOKED_CODE, reason=KEY_REVOKED_REASON)

    async def shutdown(self) -> None:
        if self._key_watch is not None:
            self._key_watch.forget(self.context.key_hash, self)
        await super().shutdown()

    async def run_operation(self, operation: Operation[Context, None]) -> None:
        paths: FastPaths | None = getattr(self.view, "fast_paths", None)
        if paths is not None and paths.shared_rendering.enabled:
            # The operation's own task: the sink is seen by its resolvers only.
            current_sink.set(
                LiveSink(
                    _next_sender(self, operation),
                    operation.variables,
                    operation.operation_name,
                    paths.shared_rendering,
                    send_now=_next_writer(self, operation),
                )
            )
        await super().run_operation(operation)


def _head(operation: Operation[Context, None]) -> bytes:
    return b'{"id":' + orjson.dumps(operation.id) + b',"type":"next","payload":'


def _next_sender(
    handler: LiveTransportWSHandler, operation: Operation[Context, None]
) -> SendPayload:
    """Sends an encoded ``next`` payload of the operation: the frame Strawberry would build."""
    adapter: Any = handler.websocket
    ws = adapter.ws
    head = _head(operation)

    operations = handler.operations

    async def send(payload: bytes) -> None:
        if operations.get(operation.id) is not operation or operation.completed:
            return
        try:
            await ws.send_text((head + payload + b"}").decode())
        except WebSocketDisconnect as exc:
            raise WebSocketDisconnected from exc

    return send


def _next_writer(
    handler: LiveTransportWSHandler, operation: Operation[Context, None]
) -> SendPayloadNow | None:
    """Writes an encoded ``next`` payload now if the socket takes it (``gateway.web.frames``)."""
    adapter: Any = handler.websocket
    writer = frame_writer(adapter.ws.scope)
    if writer is None:
        return None
    head = _head(operation)
    send_text: Callable[[bytes], bool] = writer.send_text

    operations = handler.operations

    def send_now(payload: bytes) -> bool:
        # A completed (or client-cancelled) operation gets nothing more, even before its task
        # has run its cancellation.
        if operations.get(operation.id) is not operation or operation.completed:
            return True
        return send_text(head + payload + b"}")

    return send_now
