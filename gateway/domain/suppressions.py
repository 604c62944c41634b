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


def stored_scope(channel: Channel | None, sender: str | None) -> tuple[str, str]:
    """How a scope is stored: (channel, sender), :data:`EVERY` for "all"."""
    return (channel.value if channel is not None else EVERY, sender or EVERY)


def scope_of(channel: str, sender: str) -> tuple[Channel | None, str | None]:
    """The inverse of :func:`stored_scope`."""
    return (None if channel == EVERY else Channel(channel), None if sender == EVERY else sender)
