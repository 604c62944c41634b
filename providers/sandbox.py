"""The sandbox provider: accepts every channel, answers like a provider, reports delivery later.

It stands in for Twilio (SMS/MMS) and SendGrid (e-mail) when nothing real is configured: the
send returns a provider id at once, and after ``delay`` seconds a delivery receipt is handed to
``report`` exactly as a status callback would be.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import structlog

from gateway.domain.channels import Channel
from gateway.domain.records import DeliveryError, Message
from gateway.domain.statuses import MessageStatus
from gateway.services.ports import PermanentProviderError, ProviderReceipt

log = structlog.get_logger(__name__)

Report = Callable[[UUID, MessageStatus, dict[str, Any], DeliveryError | None], Awaitable[object]]


@dataclass
class SandboxRules:
    """Recipients the sandbox always refuses (as an invalid number / bouncing address)."""

    invalid_recipients: set[str] = field(default_factory=set)
    undeliverable_recipients: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class SandboxRecord:
    message_id: UUID
    provider_message_id: str
    channel: Channel
    recipient: str


class SandboxProvider:
    name = "sandbox"

    def __init__(self, report: Report, delay: float, rules: SandboxRules | None = None) -> None:
        self._report = report
        self._delay = delay
        self.rules = rules or SandboxRules()
        self.sent: list[SandboxRecord] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def send(self, message: Message) -> ProviderReceipt:
        if message.recipient in self.rules.invalid_recipients:
            raise PermanentProviderError("21211", f"Invalid 'To' address: {message.recipient}")
        prefix = "SG" if message.channel == Channel.EMAIL else "SM"
        sid = prefix + secrets.token_hex(16)
        self.sent.append(SandboxRecord(message.id, sid, message.channel, message.recipient))
        task = asyncio.create_task(self._receipt_later(message, sid))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return ProviderReceipt(self.name, sid)

    async def _receipt_later(self, message: Message, sid: str) -> None:
        await asyncio.sleep(self._delay)
        detail: dict[str, Any] = {"provider": self.name, "providerMessageId": sid}
        try:
            if message.recipient in self.rules.undeliverable_recipients:
                error = DeliveryError("30003", "Unreachable destination handset", permanent=True)
                await self._report(message.id, MessageStatus.UNDELIVERED, detail, error)
            else:
                await self._report(message.id, MessageStatus.DELIVERED, detail, None)
        except Exception:
            log.exception("sandbox_receipt_failed", message_id=str(message.id))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
