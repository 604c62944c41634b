"""What the webhook parsers hand to the services: provider payloads reduced to our own terms."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from uuid import UUID

from gateway.domain.channels import Channel
from gateway.domain.records import DeliveryError
from gateway.domain.statuses import MessageStatus

# Values of StatusReport.kind. They are stored as message event kinds, so they stay short and
# stable: renaming one would split the audit trail of older messages from newer ones.
KIND_DELIVERY_RECEIPT: Final = "delivery_receipt"
KIND_DEFERRED: Final = "deferred"
KIND_ENGAGEMENT: Final = "engagement"
KIND_PROVIDER_STATUS: Final = "provider_status"
#: A status learnt by looking the message up at its provider, not from a callback.
KIND_RECONCILED: Final = "reconciled"


class PayloadError(ValueError):
    """A payload we cannot use. ``str(error)`` names the bad field and is safe to return in the
    body of a 400 response: it never echoes field values, which may be personal data."""


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


@dataclass(frozen=True, slots=True)
class ReceivedWebhook:
    """A webhook request whose signature was verified, as it arrived: all it takes to parse
    and apply it again, later or in another process (the spool while the database is down).

    ``route`` names the endpoint (see ``gateway.webhook_payloads.ROUTES``); ``query`` is the
    raw query string (a Twilio status callback carries our message id there).
    """

    route: str
    content_type: str | None
    query: str
    body: bytes
