"""Request bodies read from the ASGI ``receive`` with a size limit, enforced while reading.

A declared ``Content-Length`` over the limit is refused before a byte is read; a body sent
without one (chunked) is refused as soon as what arrived passes the limit. Either way no
more than ``limit`` bytes are ever held, whatever the client claims or sends. Shared by the
webhooks and ``/graphql``.
"""

from __future__ import annotations

from starlette.requests import ClientDisconnect
from starlette.types import Message, Receive, Scope


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"request body larger than {limit} bytes")
        self.limit = limit


def declared_length(scope: Scope) -> int | None:
    # From the ASGI scope: Starlette's Headers cost more than the rest of reading a status
    # callback's few hundred bytes.
    for key, value in scope["headers"]:
        if key == b"content-length":
            return int(value) if value.isdigit() else None
    return None


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole body; ``BodyTooLarge`` past ``limit``, ``ClientDisconnect`` if the client left."""
    declared = declared_length(scope)
    if declared is not None and declared > limit:
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands an already read body over once, then defers to the server's
    own (which reports the disconnect)."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        if pending:
            return pending.pop()
        return await receive()

    return replayed
