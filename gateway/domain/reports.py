"""What providers tell us, reduced to our own terms: status reports and inbound messages.

The webhook parsers and reconciliation produce these; the services apply them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from uuid import UUID

from gateway.domain.channels import Channel
from gateway.domain.records import DeliveryError
from gateway.domain.statuses import MessageStatus
from gateway.domain.suppressions import SuppressionReason

# Values of StatusReport.kind. They are stored as message event kinds, so they stay short and
# stable: renaming one would split the audit trail of older messages from newer ones.
KIND_DELIVERY_RECEIPT: Final = "delivery_receipt"
KIND_DEFERRED: Final = "deferred"
KIND_ENGAGEMENT: Final = "engagement"
KIND_PROVIDER_STATUS: Final = "provider_status"
#: A SENT message back to QUEUED: its provider failed it unsent for the sender's throughput.
KIND_THROUGHPUT_REQUEUED: Final = "throughput_requeued"
#: A status learnt by looking the message up at its provider, not from a callback.
KIND_RECONCILED: Final = "reconciled"


@dataclass(frozen=True)
class InboundMessage:
    channel: Channel
    sender: str
    recipient: str
    body: str | None
    attachments: tuple[str, ...]
    provider: str
    provider_message_id: str
    sent_at: datetime | None
    subject: str | None = None

    @property
    def dedupe_key(self) -> str:
        # Per recipient: one e-mail to two of our addresses is two inbound messages.
        return f"{self.provider}:inbound:{self.recipient}:{self.provider_message_id}"

    @property
    def metadata(self) -> dict[str, Any] | None:
        """What the message keeps beside its body (an e-mail's subject)."""
        return {"subject": self.subject} if self.subject else None


@dataclass(frozen=True)
class StatusReport:
    provider: str
    provider_message_id: str | None
    # Our own message id, when the payload carries it back (callback URL or custom argument):
    # it finds the message without trusting that the provider id was recorded in time.
    message_id: UUID | None
    # None: the report is worth recording (audit, engagement) but changes no status.
    status: MessageStatus | None
    kind: str
    # Unique per distinct report and equal for redeliveries of the same one, so the services
    # can apply each report at most once.
    dedupe_key: str
    error: DeliveryError | None
    # JSON-safe scalars only, already bounded in size and free of secrets.
    detail: dict[str, Any]
    # What the report says of the message's recipient, when that means the account must not
    # write to it again (a hard bounce, a spam report, an unsubscribe): applying the report
    # suppresses the recipient (``provider_suppression``), in the same transaction.
    suppression: SuppressionReason | None = None
    # The provider says it failed the message without sending it, because the sender went
    # faster than the provider's throughput (Twilio 30001): classified by the vendor adapter,
    # decided by ``decide_report``.
    throughput_refusal: bool = False


@dataclass(frozen=True, slots=True)
class KeptPayload:
    """A provider's webhook payload we could not apply, kept raw in webhook_receipts."""

    id: int
    source: str
    #: The endpoint whose adapter parses it; None when it was kept before its signature was
    #: verified (or before endpoints were recorded): such a payload is never replayed.
    route: str | None
    content_type: str | None
    query: str | None
    #: The body as ``raw_text`` stores it.
    payload: str
    #: Why it was kept: "failed" (we could not apply it) or "unowned" (an inbound message
    #: to an address nobody owned).
    outcome: str
    error: str | None
    received_at: datetime
    #: When a replay applied it, or found it applied already.
    replayed_at: datetime | None
