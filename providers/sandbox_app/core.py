"""The sandbox's state: what it received, which failure to inject, callbacks still to send."""

from __future__ import annotations

import asyncio
import enum
import random
import time
from collections import deque
from collections.abc import Coroutine, Mapping
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

import structlog
from starlette.requests import Request

from providers.http import ProviderSession, loggable_url
from providers.sandbox_app.callbacks import CallbackError, Callbacks
from providers.sandbox_app.config import INJECTABLE_FIELDS, VENDORS, SandboxConfig

__all__ = ["Fault", "Sandbox", "mid_in"]

log = structlog.get_logger("providers.sandbox")

#: Records kept; a benchmark sends far more, and nobody inspects more than the latest ones.
MAX_RECORDS: Final = 10_000
#: Messages a lookup still finds; older ones are forgotten, as a vendor's retention ends.
MAX_MESSAGES: Final = 20_000
_DISCONNECT_POLL: Final = 0.05


def mid_in(url: str | None) -> str | None:
    """Our message id, carried as ``mid`` in the query string of the callback URL a message
    came with."""
    if not url or "?" not in url:
        return None
    values = parse_qs(urlsplit(url).query).get("mid")
    return values[0] if values else None


class Fault(enum.StrEnum):
    OUTAGE = "outage"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"


class Sandbox:
    """Shared by the vendors' stand-ins and the control API.

    ``requests`` holds one dict per API request received (vendor, to, from, body, media or
    attachments, message_id, provider_id, outcome, ...); ``callbacks`` one per callback POST.
    ``messages`` holds what the vendors' lookup APIs show, per vendor by the vendor's id
    (Twilio Message resources by sid, SendGrid Email Activity records by msg_id, Mailgun
    events by message id, Telnyx message records by id), updated as the messages move along.
    """

    def __init__(self, config: SandboxConfig, client: ProviderSession | None = None) -> None:
        self.config = config
        self._initial = config.snapshot()
        self.requests: deque[dict[str, Any]] = deque(maxlen=MAX_RECORDS)
        self.callbacks: deque[dict[str, Any]] = deque(maxlen=MAX_RECORDS)
        self.messages: dict[str, dict[str, dict[str, Any]]] = {vendor: {} for vendor in VENDORS}
        # The messages already failed once for queue overflow (their retry goes through).
        self._overflowed: dict[str, None] = {}
        self._client = Callbacks(client)
        self._rng = random.Random(config.seed)
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = asyncio.Event()

    # --- configuration --------------------------------------------------------------------

    def configure(self, changes: Mapping[str, Any]) -> None:
        """Apply control-API changes; a new ``seed`` restarts the fault sequence."""
        self.config.apply(changes)
        if "seed" in changes:
            self.reseed()

    def reseed(self) -> None:
        self._rng = random.Random(self.config.seed)

    def reset(self) -> None:
        """Forget every record and restore the failure injection the sandbox started with.

        Callbacks already scheduled still go out, and lookups still find the messages: they
        were accepted.
        """
        self.requests.clear()
        self.callbacks.clear()
        start = self._initial.snapshot()  # a copy: later changes must not edit the original
        for name in INJECTABLE_FIELDS:
            setattr(self.config, name, getattr(start, name))
        self.config.vendors = start.vendors
        self.reseed()

    # --- requests -------------------------------------------------------------------------

    def record(self, vendor: str, **fields: Any) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "vendor": vendor,
            "received_at": time.time(),
            "to": None,
            "from": None,
            "body": None,
            "message_id": None,
            "provider_id": None,
            "outcome": "received",
            **fields,
        }
        self.requests.append(entry)
        return entry

    def remember(self, vendor: str, vendor_id: str, resource: dict[str, Any]) -> None:
        """Keep what a lookup of ``vendor_id`` shows (the caller updates it in place)."""
        kept = self.messages[vendor]
        kept[vendor_id] = resource
        if len(kept) > MAX_MESSAGES:
            del kept[next(iter(kept))]  # the oldest: dicts keep their order

    def overflow_once(self, key: str) -> bool:
        """Whether the message ``key`` names is failed for queue overflow now: the first time
        it is sent, not again."""
        if key in self._overflowed:
            return False
        self._overflowed[key] = None
        if len(self._overflowed) > MAX_MESSAGES:
            del self._overflowed[next(iter(self._overflowed))]
        return True

    def draw_fault(self, config: SandboxConfig) -> Fault | None:
        """One random draw split among ``config``'s rates (the configuration a vendor answers
        by, :meth:`SandboxConfig.of`; outage is checked before)."""
        draw = self._rng.random()
        threshold = config.rate_429
        if draw < threshold:
            return Fault.RATE_LIMITED
        threshold += config.rate_500
        if draw < threshold:
            return Fault.SERVER_ERROR
        threshold += config.rate_timeout
        if draw < threshold:
            return Fault.TIMEOUT
        return None

    async def stall(self, request: Request, config: SandboxConfig) -> bool:
        """Hold the request ``config.timeout_seconds``; False when the client gave up meanwhile.

        A client that timed out has hung up: the stand-in then drops the request as if it had
        never been processed, and frees the server task instead of sleeping on for nothing.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + config.timeout_seconds
        while (remaining := deadline - loop.time()) > 0:
            if self._closed.is_set() or await request.is_disconnected():
                return False
            await asyncio.sleep(min(_DISCONNECT_POLL, remaining))
        return not await request.is_disconnected()

    # --- callbacks ------------------------------------------------------------------------

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        if self._closed.is_set():
            work.close()
            return
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def deliver(
        self,
        vendor: str,
        url: str,
        *,
        summary: Mapping[str, Any],
        content: bytes,
        headers: Mapping[str, str],
    ) -> bool:
        """POST one callback, retried with backoff on network errors, 429 and 5xx.

        Never raises: a gateway that is down or refusing must not take the sandbox with it.
        """
        entry: dict[str, Any] = {
            "vendor": vendor,
            "url": url,
            **summary,
            "attempts": 0,
            "http_status": None,
            "error": None,
        }
        self.callbacks.append(entry)
        if self.config.of(vendor).lose_callbacks:
            entry["error"] = "lost"
            return False
        attempts = max(1, self.config.callback_attempts)
        for attempt in range(1, attempts + 1):
            entry["attempts"] = attempt
            try:
                status = await self._client.post(url, content, headers)
            except CallbackError as exc:
                entry["error"] = str(exc)
            else:
                entry["http_status"] = status
                if 200 <= status < 300:
                    entry["error"] = None
                    return True
                entry["error"] = f"HTTP {status}"
                if status != 429 and status < 500:
                    break  # refused (bad signature, unknown message): repeating cannot help
            if attempt < attempts:
                await asyncio.sleep(self.config.callback_backoff * 2 ** (attempt - 1))
        log.warning(
            "sandbox_callback_failed",
            vendor=vendor,
            url=loggable_url(url),
            attempts=entry["attempts"],
            error=entry["error"],
        )
        return False

    async def drain(self) -> None:
        """Wait until every scheduled callback has been sent (or given up)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        """Cancel pending callbacks and close the client if the sandbox created it."""
        self._closed.set()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._client.aclose()
