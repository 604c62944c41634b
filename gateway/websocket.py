"""The graphql-transport-ws side of the GraphQL view: text frames and pre-rendered events.

- Every protocol message goes out as a *text* frame, as the protocol specifies (JSON text);
  the view's JSON encoder yields bytes, which Strawberry would otherwise send as binary frames,
  and browsers hand binary frames to the client library as a Blob, not a string.
- Each operation runs with a ``LiveSink``: subscription events rendered in common for many
  subscribers (``schema.live``) are sent through it as ready-made ``next`` frames.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.websockets import WebSocketDisconnect
from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)

from schema.context import Context
from schema.live import LiveSink, SendPayload, current_sink


class TextFrameAdapter(ASGIWebSocketAdapter):
    async def send_json(self, message: Mapping[str, object]) -> None:
        encoded = self.view.encode_json(message)
        text = encoded.decode() if isinstance(encoded, bytes) else encoded
        try:
            await self.ws.send_text(text)
        except WebSocketDisconnect as exc:
            raise WebSocketDisconnected from exc


class LiveTransportWSHandler(BaseGraphQLTransportWSHandler[Context, None]):
    async def run_operation(self, operation: Operation[Context, None]) -> None:
        # The operation's own task: the sink is seen by its resolvers only.
        current_sink.set(
            LiveSink(_next_sender(self, operation), operation.variables, operation.operation_name)
        )
        await super().run_operation(operation)


def _next_sender(
    handler: LiveTransportWSHandler, operation: Operation[Context, None]
) -> SendPayload:
    """Sends an encoded ``next`` payload of the operation: the frame Strawberry would build."""
    adapter: Any = handler.websocket
    ws = adapter.ws
    head = b'{"id":' + orjson.dumps(operation.id) + b',"type":"next","payload":'

    async def send(payload: bytes) -> None:
        if operation.completed:
            return
        try:
            await ws.send_text((head + payload + b"}").decode())
        except WebSocketDisconnect as exc:
            raise WebSocketDisconnected from exc

    return send
