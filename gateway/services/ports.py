"""The narrow interfaces the services depend on; the composition root wires real backends."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

from gateway.domain.channels import Channel
from gateway.domain.records import DeliveryError, Message, MessageEvent
from gateway.domain.statuses import MessageStatus

EventSubscription = AbstractAsyncContextManager[AsyncIterator[MessageEvent]]


class Broker(Protocol):
    """Work queue and event fan-out. In-process in embedded mode, Redis in production."""

    async def enqueue(self, message_ids: Sequence[UUID]) -> None: ...

    async def publish(self, events: Sequence[MessageEvent]) -> None: ...

    def subscribe(
        self, account_id: UUID
    ) -> AbstractAsyncContextManager[AsyncIterator[MessageEvent]]:
        """Live events of one account from the moment the context is entered."""
        ...

    async def ping(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class ProviderReceipt:
    provider: str
    provider_message_id: str


class ProviderError(Exception):
    """A provider refused or failed a send. Adapters decide which subclass applies."""

    def __init__(self, code: str, description: str) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description


class TransientProviderError(ProviderError):
    """Retrying later may succeed (timeouts, 5xx, 429). ``retry_after`` in seconds if known.

    ``ambiguous`` is True when the request may have reached the provider (e.g. a read timeout
    after sending): a retry could then deliver the message twice.
    """

    def __init__(
        self,
        code: str,
        description: str,
        retry_after: float | None = None,
        *,
        ambiguous: bool = False,
        rate_limited: bool = False,
    ) -> None:
        super().__init__(code, description)
        self.retry_after = retry_after
        self.ambiguous = ambiguous
        # The provider asked us to slow down (429): not a sign that it is down.
        self.rate_limited = rate_limited


class PermanentProviderError(ProviderError):
    """Retrying cannot help (invalid recipient, rejected content)."""


@dataclass(frozen=True, slots=True)
class ProviderLookup:
    """What a provider says, when asked, about a message it took (reconciliation).

    ``found`` is False when the provider does not know the id (Twilio 20404). ``status`` is
    the status of ours that the provider's own ``provider_status`` stands for, None while the
    message is still on its way (or the provider's word moves no status of ours).
    ``report_key`` is the dedupe key of the status report the answer amounts to: the key of
    the callback that reports the same, where the provider's callbacks have one, so that the
    callback arriving after all is a duplicate.
    """

    provider: str
    provider_message_id: str
    found: bool
    provider_status: str | None = None
    status: MessageStatus | None = None
    error: DeliveryError | None = None
    report_key: str | None = None


class Provider(Protocol):
    name: str

    async def send(self, message: Message) -> ProviderReceipt: ...

    async def lookup(self, provider_message_id: str) -> ProviderLookup:
        """Ask the provider what became of a message it took; raises ProviderError like
        ``send`` when it cannot answer."""
        ...


class Breaker(Protocol):
    def allow(self) -> bool: ...

    def retry_in(self) -> float: ...

    def record_success(self) -> None: ...

    def record_failure(self) -> None: ...

    def record_neutral(self) -> None: ...


class ProviderRegistry(Protocol):
    def candidates(self, channel: Channel) -> Sequence[tuple[Provider, Breaker]]:
        """The channel's providers in failover order, each with its circuit breaker."""
        ...
