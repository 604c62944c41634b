"""A time limit on HTTP GraphQL operations: a runaway query answers 504, not forever."""

from __future__ import annotations

import asyncio

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.observability import current_request_id
from gateway.web.media_types import content_type, error_body, media_type_of


class ExecutionTimeout:
    """Pure ASGI (websockets pass through: subscriptions are meant to last).

    The limit is a timer that cancels the request's task, as ``asyncio.timeout`` does, without
    its context-manager machinery: this runs for every GraphQL request.
    """

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/graphql"):
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        task = asyncio.current_task()
        if task is None:  # not run by a task: nothing to cancel
            await self.app(scope, receive, send)
            return
        cancelling = task.cancelling()
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            task.cancel()

        handle = asyncio.get_running_loop().call_later(self.seconds, expire)
        try:
            await self.app(scope, receive, tracking_send)
        except asyncio.CancelledError:
            # Ours only if the timer fired and nobody else cancelled the task meanwhile.
            if not expired or task.uncancel() > cancelling:
                raise
        else:
            if expired:  # the app swallowed our cancellation: withdraw it all the same
                task.uncancel()
            return
        finally:
            handle.cancel()
        if started:
            raise TimeoutError
        media = media_type_of(scope)
        error = {
            "message": f"operation took longer than {self.seconds:g} s",
            # The id the log lines of this request carry, as every other error answer has.
            "extensions": {"code": "TIMEOUT", "requestId": current_request_id()},
        }
        body = orjson.dumps(error_body(media, [error]))
        await send(
            {
                "type": "http.response.start",
                "status": 504,
                "headers": [(b"content-type", content_type(media).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
