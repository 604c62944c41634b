"""Which messages a listing asks for, and in which order: a typed filter with its own checks.

Every field narrows the list (they combine with AND); an empty filter is every message of the
account. Time ranges are half-open, ``since <= t < until``, so consecutive ranges never count a
message twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from uuid import UUID

from gateway.domain.channels import Channel, Direction
from gateway.domain.search import Term
from gateway.domain.statuses import MessageStatus


class MessageSort(StrEnum):
    """The time a listing is ordered by; the id breaks ties."""

    CREATED_AT = "CREATED_AT"
    UPDATED_AT = "UPDATED_AT"


@dataclass(frozen=True, slots=True)
class TimeRange:
    since: datetime | None = None
    until: datetime | None = None

    @property
    def inverted(self) -> bool:
        return self.since is not None and self.until is not None and self.since >= self.until


@dataclass(frozen=True, slots=True)
class MessageFilter:
    statuses: frozenset[MessageStatus] = frozenset()
    channel: Channel | None = None
    direction: Direction | None = None
    sender: str | None = None
    recipient: str | None = None
    conversation_id: UUID | None = None
    provider: str | None = None
    created: TimeRange = TimeRange()
    updated: TimeRange = TimeRange()
    #: Every term must be in the body (gateway/domain/search.py); empty: no text condition.
    search: tuple[Term, ...] = ()

    def problems(self) -> list[tuple[str, str]]:
        """(field, problem) for what cannot match anything because it contradicts itself."""
        found = []
        for name, window in (("createdAt", self.created), ("updatedAt", self.updated)):
            if window.inverted:
                found.append((name, "`since` must be earlier than `until`"))
        return found
