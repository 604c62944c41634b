"""The narrow interfaces the services depend on; the composition root wires real backends."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from ipaddress import IPv4Address, IPv6Address
from types import TracebackType
from typing import Any, Final, Protocol, Self
from uuid import UUID

from gateway.domain.channels import Channel
from gateway.domain.inbox import InboxChange
from gateway.domain.message_filters import MessageFilter, MessageSort
from gateway.domain.opt_outs import OptOutSettings
from gateway.domain.pacing import Queued
from gateway.domain.quiet_hours import QuietHours
from gateway.domain.records import (
    Account,
    Conversation,
    DeliveryError,
    Message,
    MessageEvent,
    Page,
)
from gateway.domain.reports import InboundMessage, KeptPayload, StatusReport
from gateway.domain.results import (
    AcceptResult,
    Change,
    Item,
    Outcome,
    ReportResult,
    Unsettled,
)
from gateway.domain.routing import Route
from gateway.domain.search import ConversationSearch, Term
from gateway.domain.statuses import MessageStatus
from gateway.domain.suppressions import NewSuppression, Suppression
from gateway.domain.webhook_endpoints import DeliveryState as WebhookDeliveryState
from gateway.domain.webhook_endpoints import (
    DisabledReason,
    EndpointEvent,
    EndpointEventKind,
    WebhookDelivery,
    WebhookEndpoint,
)

EventSubscription = AbstractAsyncContextManager[AsyncIterator[MessageEvent]]


class Broker(Protocol):
    """Work queue and event fan-out. In-process in embedded mode, Redis in production."""

    async def enqueue(self, work: Sequence[Queued]) -> None:
        """Queue messages for delivery, each in its account's and sender's lane."""
        ...

    async def publish(self, events: Sequence[MessageEvent]) -> None: ...

    def subscribe(
        self, account_id: UUID
    ) -> AbstractAsyncContextManager[AsyncIterator[MessageEvent]]:
        """Live events of one account from the moment the context is entered."""
        ...

    async def publish_inbox(self, changes: Sequence[InboxChange]) -> None:
        """Tell every process's inbox watchers of the account; best effort, never raises."""
        ...

    def subscribe_inbox(
        self, account_id: UUID
    ) -> AbstractAsyncContextManager[AsyncIterator[InboxChange]]:
        """Inbox changes of one account from the moment the context is entered; cut off
        (``gateway.services.hub.CutOff``) like ``subscribe`` when it falls behind."""
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
    """Retrying cannot help (invalid recipient, rejected content).

    ``recipient_unsubscribed`` is True when the provider refused the recipient because they
    unsubscribed from it (Twilio 21610, a carrier STOP): the failure then suppresses them.
    """

    def __init__(
        self, code: str, description: str, *, recipient_unsubscribed: bool = False
    ) -> None:
        super().__init__(code, description)
        self.recipient_unsubscribed = recipient_unsubscribed


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

    def named(self, name: str) -> tuple[Provider, Breaker] | None:
        """One provider by name, with its circuit breaker; None when it is not configured."""
        ...


#: The database side of one unit of work (``persistence/`` implements it). Entered before the
#: use case's store calls, which join it; a clean exit commits (raising if the commit fails),
#: an exit by an exception rolls back.
Transaction = AbstractAsyncContextManager[object]


class UnitOfWork(Protocol):
    """One use case: one transaction, plus what to hand to the broker once it committed.

    ``publish`` and ``enqueue`` only collect; see ``gateway.services.unit_of_work`` for when
    and how the collected work is handed over.
    """

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def publish(self, events: Iterable[MessageEvent]) -> None: ...

    def publish_inbox(self, changes: Iterable[InboxChange]) -> None: ...

    def enqueue(self, work: Iterable[Queued]) -> None: ...


#: A fresh unit of work per use case.
UnitsOfWork = Callable[[], UnitOfWork]


# Storage: what each use case needs of the database. ``persistence/`` implements them; a
# method called inside a unit of work joins its transaction, otherwise it is one of its own.


class AccountStore(Protocol):
    async def ensure_account(self, name: str, now: datetime) -> Account: ...

    async def add_key(
        self, account_id: UUID, prefix: str, key_hash: str, now: datetime
    ) -> None: ...

    async def account_for_key(self, key_hash: str) -> Account | None: ...

    async def live_key_hashes(self, key_hashes: Collection[str]) -> set[str]: ...


class AcceptStore(Protocol):
    async def accept(
        self, items: list[Item], *, now: datetime, retention: timedelta
    ) -> AcceptResult:
        """Store the messages, their conversations, idempotency keys and events, all at once."""
        ...


class QuietHoursStore(Protocol):
    async def quiet_hours(self, account_id: UUID) -> QuietHours:
        """The account's setting; quiet hours off when it never set any."""
        ...

    async def set_quiet_hours(self, account_id: UUID, hours: QuietHours, now: datetime) -> None: ...


class OptOutStore(Protocol):
    """Opt-out keywords; called inside the unit of work that stores the inbound message."""

    async def opt_out_settings(self, account_id: UUID) -> OptOutSettings:
        """The account's setting; the defaults when it never set any."""
        ...

    async def set_opt_out_settings(
        self, account_id: UUID, settings: OptOutSettings, now: datetime
    ) -> None: ...

    async def keyword_suppressions(
        self, account_id: UUID, address: str, sender: str | None
    ) -> list[Suppression]:
        """The suppressions of ``address`` made by its own keyword, covering ``sender``
        (None: all of them)."""
        ...

    async def note(
        self, inbound: Message, entries: Sequence[tuple[str, dict[str, Any] | None]], now: datetime
    ) -> list[MessageEvent]:
        """Write audit-trail entries (kind, detail) of ``inbound``."""
        ...


class RouteStore(Protocol):
    async def routes(self, account_id: UUID) -> list[Route]:
        """The account's routes; none: every channel goes by its default order."""
        ...

    async def set_route(self, account_id: UUID, route: Route, now: datetime) -> None: ...

    async def remove_route(
        self, account_id: UUID, channel: Channel, country: str | None
    ) -> bool: ...


class LifecycleStore(Protocol):
    """Status changes of existing messages; each returns the committed change, if any."""

    async def claim_many(
        self, message_ids: Sequence[UUID], now: datetime, *, worker: str | None = None
    ) -> dict[UUID, Change]: ...

    async def record_outcomes(
        self, outcomes: Sequence[Outcome], now: datetime
    ) -> list[Change | None]: ...

    async def cancel(
        self, account_id: UUID, message_id: UUID, now: datetime
    ) -> tuple[Change | None, Message | None]: ...

    async def retry(
        self, account_id: UUID, message_id: UUID, now: datetime
    ) -> tuple[Change | None, Message | None]: ...

    async def touch_conversations(self, activity: dict[UUID, datetime]) -> None: ...


@dataclass(frozen=True, slots=True)
class RawPayload:
    """A webhook payload we did not apply, as it is kept for inspection and replay."""

    source: str
    #: Why it was not applied.
    outcome: str
    content_type: str | None
    #: The body as text, as it arrived or in base64 when it was no UTF-8.
    payload: str
    error: str | None
    #: Given once its signature was verified: what replaying it takes.
    route: str | None = None
    query: str | None = None


class WebhookStore(Protocol):
    async def owner_of(self, address: str) -> UUID | None: ...

    async def apply_reports(
        self, reports: Sequence[tuple[str, StatusReport]], now: datetime
    ) -> list[ReportResult]:
        """Apply (source, report) pairs in one transaction, each as ``decide_report`` rules;
        one result per pair, in order."""
        ...

    async def receive(
        self, account_id: UUID, message: InboundMessage, now: datetime
    ) -> Change | None:
        """Store an inbound message as the account's (RECEIVED); None for a duplicate."""
        ...

    async def keep_raw(self, raw: RawPayload, now: datetime) -> int:
        """Keep a payload we did not apply."""
        ...


class KeptPayloads(Protocol):
    """The payloads kept in webhook_receipts, as the replay reads and marks them."""

    async def kept(self, *, since: datetime | None, receipt_id: int | None) -> list[KeptPayload]:
        """Oldest first: the one with ``receipt_id`` (replayed before or not), else those not
        replayed yet, received at ``since`` or later."""
        ...

    async def mark_replayed(self, receipt_id: int, now: datetime) -> None: ...


@dataclass(frozen=True, slots=True)
class EventScope:
    """Which events of an account a reader wants: those of ``conversation_id`` and of
    ``message_id``, each where given (both None: all of them)."""

    conversation_id: UUID | None = None
    message_id: UUID | None = None

    def covers(self, event: MessageEvent) -> bool:
        return (self.conversation_id is None or event.conversation_id == self.conversation_id) and (
            self.message_id is None or event.message_id == self.message_id
        )


ALL_EVENTS: Final = EventScope()


class EventLog(Protocol):
    """The audit trail, read by cursor."""

    async def events_after(
        self, account_id: UUID, after: int, scope: EventScope = ALL_EVENTS, *, limit: int = 500
    ) -> list[MessageEvent]: ...


@dataclass(frozen=True, slots=True)
class PageRequest:
    """A keyset page: the ``first`` entries past the cursor ``after`` (the time and id of the
    entry the previous page ended with; None: from the start), newest first unless not
    ``descending``."""

    first: int
    after: tuple[datetime, UUID] | None = None
    descending: bool = True


@dataclass(frozen=True, slots=True)
class TwoWayPageRequest:
    """A page of an id-ordered list: the ``first`` entries after ``after``, or, given
    ``last`` and no ``first``, the ``last`` ones before ``before`` (or before the end)."""

    first: int | None = None
    after: UUID | None = None
    last: int | None = None
    before: UUID | None = None

    @property
    def backwards(self) -> bool:
        return self.last is not None and self.first is None

    @property
    def size(self) -> int:
        return (self.last if self.backwards else self.first) or 0


@dataclass(frozen=True, slots=True)
class ConversationFilter:
    """Which conversations a listing shows; None: no condition."""

    #: The other party, normalized as messages carry it.
    participant: str | None = None
    search: ConversationSearch | None = None


class MessageQueries(Protocol):
    """What the API reads outside any use case: records by id, batched (for DataLoaders), and
    keyset pages. Every lookup from a client-supplied id is scoped to the caller's account."""

    async def messages(self, account_id: UUID, ids: Sequence[UUID]) -> dict[UUID, Message]: ...

    async def conversations(
        self, account_id: UUID, ids: Sequence[UUID]
    ) -> dict[UUID, Conversation]: ...

    async def message_counts(self, conversation_ids: Sequence[UUID]) -> dict[UUID, int]: ...

    async def events_of_messages(
        self, message_ids: Sequence[UUID]
    ) -> dict[UUID, list[MessageEvent]]: ...

    async def conversations_page(
        self, account_id: UUID, where: ConversationFilter, request: PageRequest
    ) -> Page[Conversation]: ...

    async def unread_counts(self, conversation_ids: Sequence[UUID]) -> dict[UUID, int]: ...

    async def mark_read(
        self, account_id: UUID, conversation_id: UUID, up_to: UUID | None
    ) -> Conversation | None:
        """Move the conversation's read cursor forward to ``up_to`` (one of its messages; None:
        its newest); never back. None when there is no such conversation or message."""
        ...

    async def latest_matches(
        self, account_id: UUID, conversation_ids: Sequence[UUID], terms: tuple[Term, ...]
    ) -> dict[UUID, Message]: ...

    async def messages_page(
        self, account_id: UUID, conversation_id: UUID, request: TwoWayPageRequest
    ) -> Page[Message]: ...

    async def filtered_messages_page(
        self, account_id: UUID, where: MessageFilter, request: PageRequest, *, sort: MessageSort
    ) -> Page[Message]: ...

    async def dead_letters_page(self, account_id: UUID, request: PageRequest) -> Page[Message]: ...


class SuppressionStore(Protocol):
    """Suppressed recipients of each account. The accept and the claim consult them inside
    their own statements (``AcceptStore``, ``LifecycleStore.claim_many``), never through this."""

    async def add(self, new: NewSuppression, now: datetime) -> tuple[Suppression, bool]: ...

    async def get(self, account_id: UUID, suppression_id: UUID) -> Suppression | None: ...

    async def remove(
        self, suppression: Suppression, removal_reason: str | None, now: datetime
    ) -> bool: ...

    async def page(
        self, account_id: UUID, request: PageRequest, *, address: str | None
    ) -> Page[Suppression]: ...


class SenderRateStore(Protocol):
    """The rates senders were given, by pacing key (``gateway.domain.pacing.pacing_key``)."""

    async def rates(self, senders: Collection[str]) -> dict[str, float]: ...

    async def set_rate(self, sender: str, rate: float | None, now: datetime) -> None: ...


class SenderPacer(Protocol):
    """The per-sender limiter every worker shares (Redis; in process in the embedded mode).

    Keys are pacing keys; times are the limiter's own clock, handed out as seconds from now,
    so that the processes sharing it need no common clock. See ``gateway.domain.pacing``."""

    async def reserve(self, sender: str, rate: float, cost: int, *, within: float) -> float | None:
        """Take the sender's next slot for ``cost`` segments if it comes within ``within``
        seconds: seconds until that slot (0: now). None: nothing taken, the sender's next
        slot is further away than that."""
        ...

    async def slow_down(self, sender: str, seconds: float) -> None:
        """No slot of this sender starts before ``seconds`` from now (its provider asked us
        to slow down)."""
        ...


class ReconcileStore(Protocol):
    async def due(self, now: datetime, after: timedelta, limit: int) -> list[Unsettled]: ...

    async def look_again(self, when: Sequence[tuple[UUID, datetime]]) -> None: ...


class HeldOutcomes(Protocol):
    """Outcomes known but not yet written (the database was down); see workers.held_outcomes."""

    async def keep(self, outcomes: Sequence[Outcome]) -> None: ...

    async def held(self, limit: int = 500) -> list[Outcome]: ...

    async def message_ids(self) -> set[UUID]: ...

    async def forget(self, message_ids: Iterable[UUID]) -> None: ...


class WorkerLiveness(Protocol):
    async def live(self) -> frozenset[str] | None:
        """The workers alive now; None while that cannot be known."""
        ...


class WebhookEndpointStore(Protocol):
    """An account's webhook endpoints and their deliveries. The plain signing secret crosses
    this interface only on its way in; how it rests is the store's business."""

    async def create(self, endpoint: WebhookEndpoint, secret: str) -> None: ...

    async def get(self, account_id: UUID, endpoint_id: UUID) -> WebhookEndpoint | None: ...

    async def update(
        self, endpoint: WebhookEndpoint, event: EndpointEventKind, *, secret: str | None = None
    ) -> WebhookEndpoint | None:
        """Store ``endpoint``'s fields (and a rotated ``secret``, the current one then kept
        until ``previous_secret_until``) and log ``event`` in its event log, at its
        ``updated_at``; None when it is gone."""
        ...

    async def delete(self, account_id: UUID, endpoint_id: UUID) -> bool: ...

    async def page(
        self, account_id: UUID, *, first: int, after: tuple[datetime, UUID] | None
    ) -> Page[WebhookEndpoint]: ...

    async def deliveries_page(
        self, account_id: UUID, endpoint_id: UUID, *, first: int, after: int | None
    ) -> Page[WebhookDelivery]: ...

    async def events_page(
        self, account_id: UUID, endpoint_id: UUID, *, first: int, after: int | None
    ) -> Page[EndpointEvent]: ...

    async def redeliver(
        self, account_id: UUID, delivery_id: int, now: datetime
    ) -> WebhookDelivery | None:
        """Make one delivery due again, with a fresh set of tries."""
        ...

    async def redeliver_failed(
        self, account_id: UUID, endpoint_id: UUID, since: datetime, now: datetime
    ) -> int:
        """Make every FAILED delivery of the endpoint created since ``since`` due again."""
        ...


@dataclass(frozen=True, slots=True)
class DueDelivery:
    """A delivery a worker has claimed: the event, where it goes and the secrets to sign with
    (the current one first)."""

    delivery: WebhookDelivery
    endpoint: WebhookEndpoint
    #: Kept out of repr: a logged traceback or record must not carry them.
    secrets: tuple[str, ...] = field(repr=False)
    #: Until when the claim holds; after that another worker may take the delivery again.
    leased_until: datetime


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """How one try of a delivery went, and what follows from it."""

    delivery_id: int
    endpoint_id: UUID
    status_code: int | None
    error: str | None
    response: str | None
    state: WebhookDeliveryState
    next_attempt_at: datetime | None
    succeeded: bool
    #: Disable the endpoint, for this reason.
    disable: DisabledReason | None


class WebhookDeliveryStore(Protocol):
    async def claim(
        self, now: datetime, held: Collection[int], *, limit: int, batch: int, lease: timedelta
    ) -> list[DueDelivery]:
        """Take up to ``limit`` due deliveries of enabled endpoints, earliest first, leased
        until ``now + lease``, each claim counted as a try: at most ``batch`` leased per
        endpoint, and none of an endpoint with leased deliveries outside ``held`` (those the
        caller holds): one worker at a time sends to an endpoint."""
        ...

    async def renew(self, ids: Collection[int], now: datetime, until: datetime) -> set[int]:
        """Extend to ``until`` the leases of ``ids`` that still hold at ``now`` and whose
        endpoint is enabled; which were extended."""
        ...

    async def release(self, ids: Collection[int], now: datetime) -> None:
        """Give back leased deliveries that were not tried: due again, their try uncounted."""
        ...

    async def record_all(self, attempts: Sequence[AttemptRecord], now: datetime) -> None:
        """Record tries, in the order they ended, in one transaction; each ends its lease."""
        ...


class SettledDeliveryStore(Protocol):
    async def delete_settled(self, before: datetime, *, limit: int) -> int:
        """Delete up to ``limit`` delivered or failed deliveries created before ``before``;
        how many went."""
        ...


class WebhookSender(Protocol):
    """Sends one event to an endpoint, signed with each of ``secrets`` and identified by
    ``webhook_id`` (the same on every try). Raises ``UnsafeUrl`` when the URL, or what its
    host resolves to at this moment, may not be called; returns the outcome otherwise."""

    async def send(
        self, url: str, *, webhook_id: str, secrets: Sequence[str], event: MessageEvent
    ) -> SentWebhook: ...


@dataclass(frozen=True, slots=True)
class SentWebhook:
    #: None: no answer (refused, timed out, reset).
    status_code: int | None
    #: The start of the answer's body, or what went wrong without an answer.
    text: str


class HostResolver(Protocol):
    """The addresses a host name resolves to (empty when it does not)."""

    async def resolve(self, host: str) -> list[IPv4Address | IPv6Address]: ...
