"""Suppressions: recipients an account must not send to, and why.

A suppression names a recipient address of one account, narrowed to one channel and to one of
the account's sender addresses, or to every channel and every sender (``None`` in the record,
:data:`EVERY` where it is stored). Sending to a suppressed recipient is refused at accept, and
a message accepted before the recipient was suppressed is canceled instead of sent.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from gateway.domain.channels import Channel
from gateway.domain.ids import encode_id
from gateway.domain.records import DeliveryError, Message

#: Stored for "every channel" and "every sender": NULL would make the unique key useless
#: (NULLs are never equal), and the match is then two plain equalities.
EVERY = "*"

#: The code and description of a message canceled because its recipient was suppressed.
SUPPRESSED_CODE = "RECIPIENT_SUPPRESSED"


class SuppressionReason(enum.StrEnum):
    #: The recipient answered with an opt-out keyword (STOP, ...).
    STOP_KEYWORD = "STOP_KEYWORD"
    HARD_BOUNCE = "HARD_BOUNCE"
    SPAM_REPORT = "SPAM_REPORT"
    UNSUBSCRIBE = "UNSUBSCRIBE"
    #: The provider refused the send because the recipient unsubscribed there.
    PROVIDER_UNSUBSCRIBED = "PROVIDER_UNSUBSCRIBED"
    #: Added by the account through the API.
    API = "API"


def removal_needs_reason(reason: SuppressionReason) -> bool:
    """The recipient's own opt-out is their revocation of consent: lifting it on their behalf
    must say why (and is recorded either way)."""
    return reason is SuppressionReason.STOP_KEYWORD


@dataclass(frozen=True, slots=True)
class Suppression:
    id: UUID
    account_id: UUID
    address: str
    #: None: every channel.
    channel: Channel | None
    #: None: every sender address of the account.
    sender: str | None
    reason: SuppressionReason
    #: Where it came from (the provider event, the inbound message, the note given with it).
    detail: dict[str, Any] | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class NewSuppression:
    """A suppression to record; an existing one of the same scope is kept as it is."""

    account_id: UUID
    address: str
    channel: Channel | None
    sender: str | None
    reason: SuppressionReason
    detail: dict[str, Any] | None = None


def provider_suppression(
    account_id: UUID,
    channel: Channel,
    sender: str,
    recipient: str,
    reason: SuppressionReason,
    detail: dict[str, Any] | None,
) -> NewSuppression:
    """What a provider's word about the recipient of a message (sent on ``channel`` from
    ``sender``) suppresses for the message's account.

    A phone number's opt-out at the carrier (STOP) holds between that number and the one
    sender number it answered, for SMS and MMS alike: the scope is that sender, every channel.
    An e-mail address that hard-bounced, reported spam or unsubscribed is gone for every
    sender address of the account.
    """
    if channel is Channel.EMAIL:
        return NewSuppression(account_id, recipient, Channel.EMAIL, None, reason, detail)
    return NewSuppression(account_id, recipient, None, sender, reason, detail)


def suppression_after_failure(
    message: Message, error: DeliveryError, provider: str | None
) -> NewSuppression | None:
    """The suppression a failed send leaves: one for a provider that refused the recipient as
    unsubscribed (its adapter says so, whatever the vendor's code), None for any other
    failure."""
    if not error.recipient_unsubscribed:
        return None
    detail = {
        "provider": provider,
        "code": error.code,
        "messageId": encode_id("Message", message.id),
    }
    return provider_suppression(
        message.account_id,
        message.channel,
        message.sender,
        message.recipient,
        SuppressionReason.PROVIDER_UNSUBSCRIBED,
        {k: v for k, v in detail.items() if v is not None},
    )


def stored_scope(channel: Channel | None, sender: str | None) -> tuple[str, str]:
    """How a scope is stored: (channel, sender), :data:`EVERY` for "all"."""
    return (channel.value if channel is not None else EVERY, sender or EVERY)


def scope_of(channel: str, sender: str) -> tuple[Channel | None, str | None]:
    """The inverse of :func:`stored_scope`."""
    return (None if channel == EVERY else Channel(channel), None if sender == EVERY else sender)
