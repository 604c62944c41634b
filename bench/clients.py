"""Lean asyncio clients for the end-to-end and fan-out benchmarks.

``HttpConnection`` is a minimal HTTP/1.1 keep-alive client (POST JSON, read one response):
far cheaper per request than a general-purpose client, which matters on a 2-core machine where
the client shares the CPU with the system under test. ``Subscription`` speaks
graphql-transport-ws over the ``websockets`` library (connection_init with
``connectionParams.authorization``, then one ``subscribe``) and hands every raw ``next``
frame with its receive time to a callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

SEND_MESSAGE = (
    "mutation S($input: SendMessageInput!) { sendMessage(input: $input) "
    "{ __typename ... on MessageAccepted { message { id } } } }"
)
SEND_MESSAGES = (
    "mutation B($inputs: [SendMessageInput!]!) { sendMessages(inputs: $inputs) "
    "{ __typename ... on MessageAccepted { message { id } } } }"
)
SENDER = "+14155550100"
BODY = "Benchmark message: your code is 123456"


def sms(to: str) -> dict[str, str]:
    return {"channel": "SMS", "from": SENDER, "to": to, "body": BODY}


def recipient(area: str, n: int) -> str:
    return f"+1{area}{2_000_000 + n % 8_000_000:07d}"


class HttpError(RuntimeError):
    pass


class HttpConnection:
    """One keep-alive HTTP/1.1 connection; one request at a time."""

    def __init__(self, host: str, port: int, headers: dict[str, str] | None = None) -> None:
        self.host = host
        self.port = port
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self._head = (f"Host: {host}:{port}\r\nContent-Type: application/json\r\n{extra}").encode()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _connect(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)

    async def post(self, path: str, body: bytes, limit_s: float = 30.0) -> tuple[int, bytes]:
        request = b"POST %s HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n%s" % (
            path.encode(),
            self._head,
            len(body),
            body,
        )
        async with asyncio.timeout(limit_s):
            for attempt in range(2):
                reused = self._writer is not None and not self._writer.is_closing()
                if not reused:
                    await self._connect()
                assert self._reader is not None and self._writer is not None
                try:
                    self._writer.write(request)
                    return await self._read_response()
                except (asyncio.IncompleteReadError, ConnectionError) as exc:
                    await self.close()
                    # A kept-alive connection the server closed while idle: it never read the
                    # request, so sending it again on a new connection is safe (once).
                    stale = isinstance(exc, ConnectionError) or not exc.partial
                    if not (reused and stale and attempt == 0):
                        raise
                except BaseException:
                    await self.close()
                    raise
        raise HttpError("unreachable")

    async def _read_response(self) -> tuple[int, bytes]:
        assert self._reader is not None
        head = await self._reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            body = await self._reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int((await self._reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await self._reader.readuntil(b"\r\n")
                    break
                parts.append(await self._reader.readexactly(size))
                await self._reader.readexactly(2)
            body = b"".join(parts)
        else:
            raise HttpError(f"response without length: {headers}")
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, body

    async def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def accepted_ids(body: bytes) -> list[str]:
    """Message ids of a sendMessage / sendMessages response (raises if none accepted)."""
    data = orjson.loads(body)
    result = (data.get("data") or {}) if isinstance(data, dict) else {}
    items = result.get("sendMessage") or result.get("sendMessages")
    if isinstance(items, dict):
        items = [items]
    ids = [
        item["message"]["id"]
        for item in items or []
        if item and item.get("__typename") == "MessageAccepted"
    ]
    if not ids:
        raise HttpError(f"nothing accepted: {body[:400]!r}")
    return ids


class Subscription:
    """One websocket with one graphql-transport-ws subscription.

    ``on_next(raw_text, received_at)`` runs for every ``next`` frame, in the reader task, with
    ``time.time()`` taken as soon as the frame was read; it must be cheap.
    """

    def __init__(
        self,
        ws_url: str,
        key: str,
        query: str,
        on_next: Callable[[str, float], None],
        *,
        compression: str | None = "deflate",
    ) -> None:
        self.ws_url = ws_url
        self.key = key
        self.query = query
        self.on_next = on_next
        self.compression = compression
        self.ws: ClientConnection | None = None
        self.received = 0
        self.closed_reason: str | None = None
        self._task: asyncio.Task[None] | None = None

    async def open(self, limit_s: float = 30.0) -> None:
        async with asyncio.timeout(limit_s):
            self.ws = await connect(
                self.ws_url,
                subprotocols=[Subprotocol("graphql-transport-ws")],
                compression=self.compression,
                ping_interval=None,  # the server pings; the library answers on its own
                max_queue=None,
                open_timeout=limit_s,
            )
            await self.ws.send(
                orjson.dumps(
                    {"type": "connection_init", "payload": {"authorization": f"Bearer {self.key}"}}
                ).decode()
            )
            ack = orjson.loads(await self.ws.recv())
            if ack.get("type") != "connection_ack":
                raise HttpError(f"websocket not acknowledged: {ack}")
            await self.ws.send(
                orjson.dumps(
                    {"id": "1", "type": "subscribe", "payload": {"query": self.query}}
                ).decode()
            )
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.ws is not None
        ws = self.ws
        on_next = self.on_next
        try:
            async for raw in ws:
                now = time.time()
                text = raw if isinstance(raw, str) else raw.decode()
                if text.startswith('{"type":"next"') or '"type":"next"' in text:
                    self.received += 1
                    on_next(text, now)
                elif '"type":"ping"' in text:
                    await ws.send('{"type":"pong"}')
                elif '"type":"error"' in text or '"type":"complete"' in text:
                    self.closed_reason = text[:400]
                    return
        except Exception as exc:
            self.closed_reason = f"{type(exc).__name__}: {exc}"
        else:
            if self.closed_reason is None:
                self.closed_reason = f"closed: {ws.close_code} {ws.close_reason}"

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        if self.ws is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await self.ws.close()


def event_of(text: str) -> dict[str, Any]:
    """The ``messageEvents`` object of a raw ``next`` frame."""
    frame = orjson.loads(text)
    event: dict[str, Any] = frame["payload"]["data"]["messageEvents"]
    return event


class LoopLag:
    """Measures how late this process's event loop runs timers (client-side bias check)."""

    def __init__(self, interval: float = 0.01, max_seconds: float = 900.0) -> None:
        self.interval = interval
        self.max_seconds = max_seconds
        self.worst = 0.0
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        stop_at = loop.time() + self.max_seconds
        while loop.time() < stop_at:
            start = loop.time()
            await asyncio.sleep(self.interval)
            lag = loop.time() - start - self.interval
            self.samples.append(lag)
            self.worst = max(self.worst, lag)

    def __enter__(self) -> LoopLag:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()

    def p99_ms(self) -> float:
        if not self.samples:
            return 0.0
        ordered = sorted(self.samples)
        return 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
