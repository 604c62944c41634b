"""Per-sender pacing: how many segments per second each sender may hand to its provider.

Carriers throttle by the sending number, not by the account: a US long code takes about one
segment a second, a toll-free number about three, a short code about a hundred, and a
provider sent faster answers with queue-overflow errors (or the carrier filters the number).
E-mail is paced per sending domain, the unit mailbox providers judge a sender by.

The number-type rule (:func:`sender_kind`):

- an e-mail address (it has an ``@``) is paced by its domain (``EMAIL_DOMAIN``);
- a NANP number (``+1``) whose area code is one of 800, 833, 844, 855, 866, 877 or 888 is
  ``TOLL_FREE``;
- five or six digits without a ``+`` (not E.164) are a ``SHORT_CODE``;
- every other number is a ``LONG_CODE``.

The rate a sender gets is its own (set per address) or else its kind's default (settings).

The limiter is a GCRA (generic cell rate algorithm) in its "virtual scheduling" form: each
sender has a theoretical arrival time (TAT), the earliest moment its next segment may go. A
message of ``cost`` segments takes the slot ``max(TAT, now)`` and moves the TAT on by ``cost``
emission intervals (``1 / rate`` seconds each). Slots are therefore spaced so that no window of
one second holds more than ``rate`` segments (a message's segments go together: one message of
more segments than that still goes, and the sender then waits for its cost to pass). The same
arithmetic runs in Redis (one Lua script shared by every worker) and in process; this module is
its reference.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Final
from uuid import UUID

from gateway.domain.messages import FieldProblem
from gateway.domain.records import Message

#: NANP toll-free area codes (the 8XX series in service).
TOLL_FREE_AREA_CODES: Final = frozenset({"800", "833", "844", "855", "866", "877", "888"})
#: The most segments per second a sender may be given: above it pacing means nothing.
MAX_RATE: Final = 10_000.0


class SenderKind(enum.StrEnum):
    LONG_CODE = "LONG_CODE"
    TOLL_FREE = "TOLL_FREE"
    SHORT_CODE = "SHORT_CODE"
    EMAIL_DOMAIN = "EMAIL_DOMAIN"


def sender_kind(sender: str) -> SenderKind:
    """The kind of a normalized sender address (see the module docstring for the rule)."""
    if "@" in sender:
        return SenderKind.EMAIL_DOMAIN
    if sender.startswith("+1") and sender[2:5] in TOLL_FREE_AREA_CODES and len(sender) == 12:
        return SenderKind.TOLL_FREE
    if sender.isdigit() and 5 <= len(sender) <= 6:
        return SenderKind.SHORT_CODE
    return SenderKind.LONG_CODE


def pacing_key(sender: str) -> str:
    """What a sender is paced by: the number itself, or ``@domain`` for an e-mail address
    (every address of a domain shares the domain's rate)."""
    if "@" in sender:
        return "@" + sender.rsplit("@", 1)[1].lower()
    return sender


@dataclass(frozen=True, slots=True)
class DefaultRates:
    """Segments (e-mail: messages) per second of a sender with no rate of its own."""

    long_code: float = 1.0
    toll_free: float = 3.0
    short_code: float = 100.0
    email_domain: float = 100.0

    def of(self, kind: SenderKind) -> float:
        return {
            SenderKind.LONG_CODE: self.long_code,
            SenderKind.TOLL_FREE: self.toll_free,
            SenderKind.SHORT_CODE: self.short_code,
            SenderKind.EMAIL_DOMAIN: self.email_domain,
        }[kind]


@dataclass(frozen=True, slots=True)
class SenderRate:
    """A sender's rate as the API shows it: its own, or its kind's default."""

    address: str
    kind: SenderKind
    segments_per_second: float
    is_default: bool


def check_rate(value: float | None, field: str = "segmentsPerSecond") -> list[FieldProblem]:
    """Problems with a rate to set; None (back to the default) is fine."""
    if value is None:
        return []
    if not math.isfinite(value) or value <= 0:
        return [FieldProblem(field, "must be a number of segments per second above 0")]
    if value > MAX_RATE:
        return [FieldProblem(field, f"must be at most {MAX_RATE:g} segments per second")]
    return []


def emission_interval(rate: float) -> float:
    """Seconds one segment takes at ``rate`` segments per second."""
    return 1.0 / rate


def gcra_slot(tat: float, now: float, rate: float, cost: int) -> tuple[float, float]:
    """(slot, new TAT): when a message of ``cost`` segments may go, and the sender's next
    theoretical arrival time once it has taken that slot. Times in seconds on one clock."""
    slot = max(tat, now)
    return slot, slot + max(1, cost) * emission_interval(rate)


@dataclass(frozen=True, slots=True)
class Queued:
    """A message handed to the broker, with what its queue needs to place and pace it: the
    account and sender whose lane it joins, and the segments its send costs the sender."""

    message_id: UUID
    account_id: UUID
    sender: str
    segments: int = 1

    @classmethod
    def of(cls, message: Message) -> Queued:
        return cls(message.id, message.account_id, message.sender, max(1, message.segments or 1))
