"""SQLAlchemy models: the schema the Alembic migrations must match (a test checks the drift)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import (
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from persistence.types import BigIntPK, JSONType, UTCDateTime

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ADDRESS = 320  # longest valid e-mail address; E.164 numbers fit easily


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class AccountRow(Base):
    __tablename__ = "accounts"

    id: Mapped[UUID] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ApiKeyRow(Base):
    __tablename__ = "api_keys"

    id: Mapped[UUID] = mapped_column(primary_key=True)
    account_id: Mapped[UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (Index(None, "account_id"),)


class ConversationRow(Base):
    __tablename__ = "conversations"

    id: Mapped[UUID] = mapped_column(primary_key=True)
    account_id: Mapped[UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    participant_a: Mapped[str] = mapped_column(String(ADDRESS))
    participant_b: Mapped[str] = mapped_column(String(ADDRESS))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_message_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # The newest message the account has read (ids are time-ordered): inbound messages after
    # it are unread. NULL: none read yet.
    read_up_to: Mapped[UUID | None]

    __table_args__ = (
        # The unordered pair per account: participant_a < participant_b always. Creation races
        # resolve through this constraint (INSERT ... ON CONFLICT DO NOTHING).
        UniqueConstraint("account_id", "participant_a", "participant_b"),
        # "Most recently active first" listing, keyset on (last_message_at, id).
        Index(None, "account_id", "last_message_at", "id"),
        # participant filter; participant_a is covered by the unique constraint's prefix.
        # participant_a is appended so that this index, too, answers the pair lookup of an
        # accept with a full-key match (most pairs of an account share its sender).
        Index(None, "account_id", "participant_b", "participant_a"),
    )


_WORK = text("status IN ('QUEUED', 'SCHEDULED', 'SENDING')")
_FAILED = text("status = 'FAILED'")
_INBOUND = text("direction = 'INBOUND'")
_UNSETTLED = text("status IN ('SENT', 'SENDING') AND provider_message_id IS NOT NULL")


class MessageRow(Base):
    __tablename__ = "messages"

    id: Mapped[UUID] = mapped_column(primary_key=True)
    account_id: Mapped[UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    conversation_id: Mapped[UUID] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE")
    )
    channel: Mapped[str] = mapped_column(String(8))
    direction: Mapped[str] = mapped_column(String(8))
    sender: Mapped[str] = mapped_column(String(ADDRESS))
    recipient: Mapped[str] = mapped_column(String(ADDRESS))
    body: Mapped[str | None] = mapped_column(Text)
    attachments: Mapped[list[str]] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(String(12))
    provider: Mapped[str | None] = mapped_column(String(32))
    provider_message_id: Mapped[str | None] = mapped_column(String(128))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    # The worker whose claim made the message SENDING (its heartbeat says whether it lives).
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    segments: Mapped[int | None] = mapped_column(Integer)
    encoding: Mapped[str | None] = mapped_column(String(8))
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_description: Mapped[str | None] = mapped_column(Text)
    error_permanent: Mapped[bool | None] = mapped_column(Boolean)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    send_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONType)
    # When the message left for its recipient: the provider's acceptance for outbound, the
    # sender's own timestamp for inbound.
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # When reconciliation next looks the message up at its provider; unset until the first
    # lookup, which comes RECONCILE_AFTER_SECONDS after the message's last change.
    reconcile_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Sent inside its recipient's quiet hours too (a transactional message); NULL is false.
    bypass_quiet_hours: Mapped[bool | None] = mapped_column(Boolean)
    # An automatic answer to a recipient's keyword: sent even to a suppressed recipient (it
    # confirms their opt-out). Set by that answer only, never through the API; NULL is false.
    suppression_exempt: Mapped[bool | None] = mapped_column(Boolean)

    __table_args__ = (
        # Conversation timeline; ids are time-ordered UUIDv7, so (conversation_id, id) is the
        # keyset order.
        Index(None, "conversation_id", "id"),
        # Provider callbacks find their message by the provider's id.
        Index(None, "provider_message_id"),
        # The filtered listing (``messages``): each leads with what one filter pins down and
        # ends with the listing's order, so a page of any one filter is a range of one index.
        # Channel and direction have a few values each: they ride the plain order index.
        Index(None, "account_id", "created_at", "id"),
        Index(None, "account_id", "status", "created_at", "id"),
        Index(None, "account_id", "sender", "created_at", "id"),
        Index(None, "account_id", "recipient", "created_at", "id"),
        Index(None, "account_id", "provider", "created_at", "id"),
        Index(None, "conversation_id", "created_at", "id"),
        # Named: the dead-letter index below has the same columns, for FAILED messages only.
        Index("ix_messages_updated_order", "account_id", "updated_at", "id"),
        # Unread counts: a conversation's inbound messages after its read cursor.
        Index(
            "ix_messages_inbound",
            "conversation_id",
            "id",
            postgresql_where=_INBOUND,
            sqlite_where=_INBOUND,
        ),
        # The sweeper and scheduler look for due work by status and time. Partial, like the
        # dead-letter index below: a message's later moves (SENT, DELIVERED) touch neither.
        Index(None, "status", "next_attempt_at", postgresql_where=_WORK, sqlite_where=_WORK),
        # Dead letters of an account, newest first.
        Index(
            None, "account_id", "updated_at", "id", postgresql_where=_FAILED, sqlite_where=_FAILED
        ),
        # Reconciliation: messages the provider took and has not settled, first looked up by
        # age (reconcile_at unset, by updated_at), then again by reconcile_at. Settled ones
        # (DELIVERED, ...) leave it, so it stays as small as the unsettled messages are few.
        Index(
            None,
            "reconcile_at",
            "updated_at",
            postgresql_where=_UNSETTLED,
            sqlite_where=_UNSETTLED,
        ),
    )


class IdempotencyKeyRow(Base):
    __tablename__ = "idempotency_keys"

    account_id: Mapped[UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    # Deferred: the key is claimed before its message row is written, in the same transaction.
    message_id: Mapped[UUID] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE", deferrable=True, initially="DEFERRED")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index(None, "created_at"), Index(None, "message_id"))


class MessageEventRow(Base):
    __tablename__ = "message_events"

    # Monotonic: the event cursor of the subscription replay.
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    # The message's account and conversation, copied with the event: only the message is a
    # foreign key (it has the other two), so that an event insert locks no account row.
    account_id: Mapped[UUID] = mapped_column()
    message_id: Mapped[UUID] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    conversation_id: Mapped[UUID] = mapped_column()
    status: Mapped[str] = mapped_column(String(12))
    kind: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index(None, "account_id", "id"),
        Index(None, "message_id", "id"),
        Index(None, "conversation_id", "id"),
    )


class QuietHoursRow(Base):
    """An account's quiet hours: the daily window (minutes after local midnight) in which
    nothing is sent to a recipient, and the zone of recipients whose own is not known. No
    row, or no window: quiet hours off."""

    __tablename__ = "quiet_hours"

    account_id: Mapped[UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    start_minute: Mapped[int | None] = mapped_column(Integer)
    end_minute: Mapped[int | None] = mapped_column(Integer)
    default_time_zone: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RouteRow(Base):
    """An account's vendor order for a channel: for the numbers of one country (ISO 3166-1
    alpha-2), or for every destination (``country`` empty, so that it stays part of the key)."""

    __tablename__ = "routes"

    account_id: Mapped[UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    channel: Mapped[str] = mapped_column(String(8), primary_key=True)
    country: Mapped[str] = mapped_column(String(2), primary_key=True)
    providers: Mapped[list[str]] = mapped_column(JSONType)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AddressRow(Base):
    """A sender number or address an account owns; inbound traffic to it belongs to it."""

    __tablename__ = "addresses"

    id: Mapped[UUID] = mapped_column(primary_key=True)
    account_id: Mapped[UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(String(ADDRESS), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index(None, "account_id"),)


class SenderRateRow(Base):
    """A sender's own pacing rate: a phone number, or an e-mail domain as ``@domain``
    (gateway/domain/pacing.py). Senders without a row get their kind's default."""

    __tablename__ = "sender_rates"

    sender: Mapped[str] = mapped_column(String(ADDRESS), primary_key=True)
    segments_per_second: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class WebhookReceiptRow(Base):
    """Every webhook payload we could not apply (kept raw for replay), and the dedupe keys of
    those we did, so a duplicate delivery has no second effect."""

    __tablename__ = "webhook_receipts"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(32))
    dedupe_key: Mapped[str | None] = mapped_column(String(300), unique=True)
    outcome: Mapped[str] = mapped_column(String(16))
    content_type: Mapped[str | None] = mapped_column(String(200))
    payload: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # A kept payload's endpoint (ReceivedWebhook.route) and query string, recorded once its
    # signature was verified: what ``replay-receipts`` needs to apply it again. NULL on a
    # payload kept before it was verified, or before these were recorded.
    route: Mapped[str | None] = mapped_column(String(32))
    query: Mapped[str | None] = mapped_column(Text)
    # When a replay applied it (or found it applied already); the row stays as evidence.
    replayed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (Index(None, "outcome", "received_at"),)


class SuppressionRow(Base):
    """A recipient an account must not send to (see gateway/domain/suppressions.py)."""

    __tablename__ = "suppressions"

    id: Mapped[UUID] = mapped_column(primary_key=True)
    account_id: Mapped[UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(String(ADDRESS))
    # '*': every channel / every sender of the account.
    channel: Mapped[str] = mapped_column(String(8))
    sender: Mapped[str] = mapped_column(String(ADDRESS))
    reason: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        # One entry per scope; its prefix (account_id, address) is the lookup of every accept
        # and every claim.
        UniqueConstraint("account_id", "address", "channel", "sender"),
        # The listing, newest first, keyset on (created_at, id).
        Index(None, "account_id", "created_at", "id"),
    )


class OptOutSettingsRow(Base):
    """An account's opt-out keywords, their scope and auto-replies (see
    gateway/domain/opt_outs.py). No row: the defaults. A reply of NULL is turned off."""

    __tablename__ = "opt_out_settings"

    account_id: Mapped[UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    stop_keywords: Mapped[list[str]] = mapped_column(JSONType)
    start_keywords: Mapped[list[str]] = mapped_column(JSONType)
    help_keywords: Mapped[list[str]] = mapped_column(JSONType)
    scope: Mapped[str] = mapped_column(String(16))
    stop_reply: Mapped[str | None] = mapped_column(Text)
    start_reply: Mapped[str | None] = mapped_column(Text)
    help_reply: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SuppressionRemovalRow(Base):
    """A suppression lifted, who it was for and why: the record a lifted opt-out leaves."""

    __tablename__ = "suppression_removals"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    account_id: Mapped[UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    suppression_id: Mapped[UUID]
    address: Mapped[str] = mapped_column(String(ADDRESS))
    channel: Mapped[str] = mapped_column(String(8))
    sender: Mapped[str] = mapped_column(String(ADDRESS))
    reason: Mapped[str] = mapped_column(String(32))
    suppressed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    removal_reason: Mapped[str | None] = mapped_column(Text)
    removed_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index(None, "account_id", "address"),)


_PENDING = text("state = 'PENDING'")
_LEASED = text("state = 'PENDING' AND leased_until IS NOT NULL")
_SETTLED = text("state <> 'PENDING'")


def _where(rows: Any) -> dict[str, Any]:
    """A partial index's condition, on both databases."""
    return {"postgresql_where": rows, "sqlite_where": rows}


class WebhookEndpointRow(Base):
    """An account's URL that audit-trail events are POSTed to (gateway/domain/webhook_endpoints.py).

    ``event_kinds`` and ``statuses`` are comma-wrapped lists (``,sent,failed,``; empty: every
    one), the form the trigger that writes deliveries matches with a plain substring test on
    both databases. Secrets are sealed (persistence/sealed.py), never stored as given.
    """

    __tablename__ = "webhook_endpoints"

    id: Mapped[UUID] = mapped_column(primary_key=True)
    account_id: Mapped[UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str | None] = mapped_column(Text)
    event_kinds: Mapped[str] = mapped_column(Text)
    statuses: Mapped[str] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean)
    disabled_reason: Mapped[str | None] = mapped_column(String(16))
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    secret: Mapped[str] = mapped_column(Text)
    previous_secret: Mapped[str | None] = mapped_column(Text)
    previous_secret_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        # The listing, newest first, keyset on (created_at, id); its prefix is the trigger's
        # lookup of an event's account.
        Index(None, "account_id", "created_at", "id"),
    )


class WebhookEndpointEventRow(Base):
    """One entry of an endpoint's event log (gateway/domain/webhook_endpoints.py), written in
    the transaction of the change it records."""

    __tablename__ = "webhook_endpoint_events"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    endpoint_id: Mapped[UUID] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE")
    )
    account_id: Mapped[UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(16))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())

    # An endpoint's log newest first (keyset on id).
    __table_args__ = (Index(None, "endpoint_id", "id"),)


class WebhookDeliveryRow(Base):
    """One audit-trail event on its way to one endpoint; written by a trigger on
    message_events, in the event's own transaction."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    endpoint_id: Mapped[UUID] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE")
    )
    account_id: Mapped[UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(ForeignKey("message_events.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(12))
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # A worker's claim holds until then; a worker that died leaves it to run out.
    leased_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_response: Mapped[str | None] = mapped_column(Text)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        # An endpoint's deliveries newest first (keyset on id); its prefix serves the
        # cascade of an endpoint's deletion.
        Index(None, "endpoint_id", "id"),
        Index(None, "event_id"),
        # The claim on SQLite: due deliveries by time. Partial: settled ones leave it.
        Index(None, "next_attempt_at", postgresql_where=_PENDING, sqlite_where=_PENDING),
        # The claim on PostgreSQL: an endpoint's earliest due deliveries, and its deliveries
        # in flight (leased pending rows only), read per endpoint whatever the backlog.
        Index(None, "endpoint_id", "next_attempt_at", "id", **_where(_PENDING)),
        Index(None, "endpoint_id", "leased_until", **_where(_LEASED)),
        # Retention: settled deliveries by age.
        Index(None, "created_at", **_where(_SETTLED)),
    )
