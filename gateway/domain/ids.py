"""Time-ordered identifiers (UUIDv7, RFC 9562) so primary keys sort by creation time, and the
public form of an id (``msg_…``, ``sup_…``): what the API shows of it."""

from __future__ import annotations

import os
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from typing import Final

_COUNTER_BITS = 12
_COUNTER_MAX = (1 << _COUNTER_BITS) - 1
# Starting each millisecond at a random value below half the range keeps ids hard to guess
# while leaving at least 2048 increments before the counter has to borrow the next millisecond.
_COUNTER_SEED_MAX = 1 << (_COUNTER_BITS - 1)
_TIMESTAMP_MASK = (1 << 48) - 1


def _unix_ms() -> int:
    return time.time_ns() // 1_000_000


class UUIDv7Generator:
    """Strictly increasing UUIDv7s: RFC 9562 method 1, a 12-bit counter in ``rand_a``."""

    def __init__(self, clock: Callable[[], int] = _unix_ms) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._last_ms = -1
        self._counter = 0

    def reset_lock(self) -> None:
        # A lock held by another thread at fork() stays locked forever in the child.
        self._lock = threading.Lock()

    def __call__(self) -> uuid.UUID:
        with self._lock:
            now = self._clock()
            if now > self._last_ms:
                self._last_ms = now
                self._counter = secrets.randbelow(_COUNTER_SEED_MAX)
            else:
                # Same millisecond, or the wall clock stepped back: order wins over accuracy.
                self._counter += 1
                if self._counter > _COUNTER_MAX:
                    self._last_ms += 1
                    self._counter = 0
            ms, counter = self._last_ms, self._counter
        value = (
            (ms & _TIMESTAMP_MASK) << 80
            | 0x7 << 76
            | counter << 64
            | 0b10 << 62
            | secrets.randbits(62)
        )
        return uuid.UUID(int=value)


_default = UUIDv7Generator()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_default.reset_lock)


def new_id() -> uuid.UUID:
    return _default()


#: Public ids are typed, so ``node(id:)`` knows what to look up. An id the core writes into an
#: event's or a suppression's ``detail`` takes this form too: the one form a client ever sees,
#: and can look up as it is.
PREFIXES: Final = {
    "Message": "msg_",
    "Conversation": "conv_",
    "Suppression": "sup_",
    "WebhookEndpoint": "whe_",
}


def encode_id(kind: str, value: uuid.UUID) -> str:
    """The public id of the record ``value`` of ``kind`` (a key of :data:`PREFIXES`)."""
    return PREFIXES[kind] + value.hex
