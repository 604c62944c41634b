"""Lean asyncio clients for the end-to-end and fan-out benchmarks.

``HttpConnection`` is a minimal HTTP/1.1 keep-alive client (POST JSON, read one response):
far cheaper per request than a general-purpose client, which matters on a 2-core machine where
the client shares the CPU with the system under test. ``Subscription`` speaks
graphql-transport-ws over the ``websockets`` library's sans-I/O protocol (connection_init with
``connectionParams.authorization``, then one ``subscribe``) and hands every raw ``next``
frame with its receive time to a callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Callable, Iterator
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, cast
from urllib.parse import urlsplit

import orjson
from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

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


def endpoints(api_url: str) -> tuple[str, int, str]:
    """The host and port of the gateway at ``api_url``, and its GraphQL websocket URL."""
    parts = urlsplit(api_url)
    ws_url = api_url.replace("http://", "ws://") + "/graphql"
    return parts.hostname or "127.0.0.1", parts.port or 80, ws_url


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


class _Connection(asyncio.Protocol):
    """One client websocket on the sans-I/O ``websockets`` protocol, driven by asyncio callbacks.

    No task per socket: a frame is handed over in ``data_received`` with the time the bytes were
    read, so the receive time does not include waiting for a reader task to be scheduled behind
    a thousand others (which the ``websockets`` asyncio client's ``recv`` adds).
    """

    def __init__(self, protocol: ClientProtocol, on_message: Callable[[bytes, float], None]):
        self.protocol = protocol
        self.on_message = on_message
        self.transport: asyncio.Transport | None = None
        self.handshake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._fragments: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.protocol.send_request(self.protocol.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        now = time.time()
        self.protocol.receive_data(data)
        for event in self.protocol.events_received():
            if isinstance(event, Frame):
                self._frame(event, now)
            elif not self.handshake.done():  # the handshake's Response
                if self.protocol.handshake_exc is not None:
                    self.handshake.set_exception(self.protocol.handshake_exc)
                else:
                    self.handshake.set_result(None)
        self._flush()  # pongs, the close handshake

    def _frame(self, frame: Frame, now: float) -> None:
        if frame.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
            if not frame.fin:
                self._fragments.append(bytes(frame.data))
                return
            data = bytes(frame.data)
            if self._fragments:
                data, self._fragments = b"".join([*self._fragments, data]), []
            self.on_message(data, now)

    def send_text(self, text: bytes) -> None:
        self.protocol.send_text(text)
        self._flush()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.protocol.send_close(1000)
            self._flush()

    def _flush(self) -> None:
        if self.transport is None:
            return
        for chunk in self.protocol.data_to_send():
            if chunk:
                self.transport.write(chunk)
            else:  # the protocol is done with the connection
                self.transport.close()

    def eof_received(self) -> bool | None:
        self.protocol.receive_eof()
        self._flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.handshake.done():
            self.handshake.set_exception(exc or ConnectionError("closed during the handshake"))
        if not self.lost.done():
            self.lost.set_result(None)


@dataclass(eq=False, slots=True)
class Subscription:
    """One websocket with one graphql-transport-ws subscription.

    ``on_next(raw_text, received_at)`` runs for every ``next`` frame, in the connection's
    ``data_received`` callback, with ``time.time()`` taken when the bytes were read; it must be
    cheap. The client offers permessage-deflate like a browser (``compression="deflate"``);
    the server decides whether it is used.
    """

    ws_url: str
    key: str = field(repr=False)
    query: str = field(repr=False)
    on_next: Callable[[str, float], None] = field(repr=False)
    _: KW_ONLY
    compression: str | None = "deflate"
    ws: _Connection | None = field(default=None, init=False, repr=False)
    received: int = field(default=0, init=False)
    closed_reason: str | None = field(default=None, init=False)
    _ack: asyncio.Future[None] | None = field(default=None, init=False, repr=False)
    _closing: bool = field(default=False, init=False, repr=False)

    async def open(self, limit_s: float = 30.0) -> None:
        uri = parse_uri(self.ws_url)
        protocol = ClientProtocol(
            uri,
            subprotocols=[Subprotocol("graphql-transport-ws")],
            extensions=[ClientPerMessageDeflateFactory()]
            if self.compression == "deflate"
            else None,
            max_size=None,
        )
        loop = asyncio.get_running_loop()
        self._ack = loop.create_future()
        async with asyncio.timeout(limit_s):
            _, conn = await loop.create_connection(
                lambda: _Connection(protocol, self._on_message), uri.host, uri.port
            )
            try:
                await conn.handshake
                conn.send_text(
                    orjson.dumps(
                        {
                            "type": "connection_init",
                            "payload": {"authorization": f"Bearer {self.key}"},
                        }
                    )
                )
                await self._ack
            except BaseException:
                if conn.transport is not None:
                    conn.transport.abort()
                raise
            conn.send_text(
                orjson.dumps({"id": "1", "type": "subscribe", "payload": {"query": self.query}})
            )
        self.ws = conn
        conn.lost.add_done_callback(self._on_lost)

    def _on_message(self, data: bytes, now: float) -> None:
        if data.startswith(b'{"id":"1","type":"next"') or b'"type":"next"' in data:
            self.received += 1
            self.on_next(data.decode(), now)
        elif b'"type":"ping"' in data:
            if self.ws is not None:
                self.ws.send_text(b'{"type":"pong"}')
        elif b'"type":"connection_ack"' in data:
            if self._ack is not None and not self._ack.done():
                self._ack.set_result(None)
        elif self._ack is not None and not self._ack.done():
            self._ack.set_exception(HttpError(f"websocket not acknowledged: {data[:400]!r}"))
        elif b'"type":"error"' in data or b'"type":"complete"' in data:
            self.closed_reason = data[:400].decode(errors="replace")

    def _on_lost(self, _: object) -> None:
        if self.closed_reason is None and not self._closing:
            protocol = self.ws.protocol if self.ws is not None else None
            code = protocol.close_code if protocol is not None else None
            reason = protocol.close_reason if protocol is not None else None
            self.closed_reason = f"closed: {code} {reason}"

    async def close(self) -> None:
        conn = self.ws
        if conn is None:
            return
        self._closing = True
        conn.close()
        try:
            async with asyncio.timeout(5):
                await conn.lost
        except TimeoutError:
            if conn.transport is not None:
                conn.transport.abort()


def event_of(text: str) -> dict[str, Any]:
    """The ``messageEvents`` object of a raw ``next`` frame."""
    frame = orjson.loads(text)
    event: dict[str, Any] = frame["payload"]["data"]["messageEvents"]
    return event


@contextlib.contextmanager
def steady_heap() -> Iterator[None]:
    """This process's own garbage collector kept off what it held before the measured window.

    The measuring client is a big process (the suite, the harness, a thousand open
    subscriptions): a full collection walks all of it and stops the client's event loop for
    tens of milliseconds, and frames that arrive meanwhile are read late, which the figures
    would count as the gateway's latency (``LoopLag`` shows it). Frozen, the startup objects
    are no longer walked; what the window itself allocates is still collected."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


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
