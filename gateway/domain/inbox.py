"""Live inbox state: what changed in a conversation's read state, and what a watcher is told.

A change is a notice, not a state: it says which conversation changed and why, and is published
once the change committed. Watchers read the conversation's state (its unread count and read
cursor) when they are handed the notice, so that however concurrent changes are ordered on
their way (two tabs, several API processes, arrivals racing a read mark), the last state a
watcher is told is read after the last change it was told of: it never ends on a stale count.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from uuid import UUID


class InboxChangeKind(StrEnum):
    #: The read cursor was set (``markConversationRead``), by any tab or process.
    READ = "READ"
    #: An inbound message arrived: it is unread until a read mark covers it.
    RECEIVED = "RECEIVED"


@dataclass(frozen=True, slots=True)
class InboxChange:
    account_id: UUID
    conversation_id: UUID
    kind: InboxChangeKind
    #: The message read up to (READ), or the message that arrived (RECEIVED).
    message_id: UUID


@dataclass(frozen=True, slots=True)
class InboxState:
    """A conversation's inbox state as read after ``change`` committed."""

    change: InboxChange
    unread_count: int
    #: The newest message read; None: nothing read yet.
    read_up_to: UUID | None
