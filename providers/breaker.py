"""Circuit breaker per provider.

Consecutive transient failures open the circuit: calls stop for ``cooldown`` seconds, then one
trial call is let through (half-open); its success closes the circuit, its failure opens it
again. Rate limiting (429) is the provider asking us to slow down, not a sign it is down: it is
honoured per message through Retry-After and never trips the breaker.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable

from prometheus_client import Gauge

from gateway.observability.metrics import NAMESPACE, REGISTRY

BREAKER_STATE = Gauge(
    "provider_circuit_state",
    "Circuit breaker state per provider: 0 closed, 1 half-open, 2 open.",
    ["provider"],
    namespace=NAMESPACE,
    registry=REGISTRY,
)


class State(enum.IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        threshold: int = 5,
        cooldown: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._threshold = threshold
        self._cooldown = cooldown
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_running = False
        BREAKER_STATE.labels(name).set(State.CLOSED)

    @property
    def state(self) -> State:
        if self._opened_at is None:
            return State.CLOSED
        if self._clock() - self._opened_at >= self._cooldown:
            return State.HALF_OPEN
        return State.OPEN

    def retry_in(self) -> float:
        """Seconds until an open circuit lets a trial call through."""
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._cooldown - (self._clock() - self._opened_at))

    def allow(self) -> bool:
        state = self.state
        if state is State.CLOSED:
            return True
        if state is State.HALF_OPEN and not self._trial_running:
            self._trial_running = True
            return True
        return False

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._trial_running = False
        BREAKER_STATE.labels(self.name).set(State.CLOSED)

    def record_failure(self) -> None:
        self._failures += 1
        if self._trial_running or self._failures >= self._threshold:
            self._opened_at = self._clock()
            self._trial_running = False
            BREAKER_STATE.labels(self.name).set(State.OPEN)

    def record_neutral(self) -> None:
        """An answer that says nothing about health (429, a permanent refusal)."""
        if self._trial_running:
            self.record_success()
