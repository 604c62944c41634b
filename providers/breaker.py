"""Circuit breaker per provider.

Consecutive transient failures open the circuit: calls stop for ``cooldown`` seconds, then one
trial call is let through (half-open); its success closes the circuit, its failure opens it
again. Rate limiting (429) is the provider asking us to slow down, not a sign it is down: it is
honoured per message through Retry-After and never trips the breaker.

``provider_circuit_state`` is read from the breakers at scrape time, and only from those that
guard deliveries in this process (:meth:`BreakerStates.show`). A process that sends nothing
(an API process in Redis mode) has breakers nobody uses; reporting them would claim "closed"
throughout an outage that the workers' breakers see, so such a process shows no state at all.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import KW_ONLY, dataclass, field

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.observability.metrics import NAMESPACE, REGISTRY


class State(enum.IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


@dataclass(eq=False, slots=True)
class CircuitBreaker:
    name: str
    _: KW_ONLY
    threshold: int = 5
    cooldown: float = 30.0
    clock: Callable[[], float] = time.monotonic
    _failures: int = field(default=0, init=False)
    _opened_at: float | None = field(default=None, init=False)
    _trial_running: bool = field(default=False, init=False)

    @property
    def state(self) -> State:
        if self._opened_at is None:
            return State.CLOSED
        if self.clock() - self._opened_at >= self.cooldown:
            return State.HALF_OPEN
        return State.OPEN

    def retry_in(self) -> float:
        """Seconds until an open circuit lets a trial call through."""
        if self._opened_at is None:
            return 0.0
        return max(0.0, self.cooldown - (self.clock() - self._opened_at))

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

    def record_failure(self) -> None:
        self._failures += 1
        if self._trial_running or self._failures >= self.threshold:
            self._opened_at = self.clock()
            self._trial_running = False

    def record_neutral(self) -> None:
        """An answer that says nothing about health (429, a permanent refusal)."""
        if self._trial_running:
            self.record_success()


class BreakerStates(Collector):
    """``provider_circuit_state`` of the breakers shown, read when scraped.

    Read at scrape time rather than set on transitions: an open circuit turns half-open by the
    clock alone, with no call to record it.
    """

    NAME = f"{NAMESPACE}_provider_circuit_state"
    DOC = "Circuit breaker state per provider: 0 closed, 1 half-open, 2 open."

    def __init__(self) -> None:
        self._shown: dict[str, CircuitBreaker] = {}

    def show(self, breakers: Iterable[CircuitBreaker]) -> None:
        for breaker in breakers:
            self._shown[breaker.name] = breaker

    def hide(self, breakers: Iterable[CircuitBreaker]) -> None:
        for breaker in breakers:
            # Only this very breaker: another one may have been shown under its name since.
            if self._shown.get(breaker.name) is breaker:
                del self._shown[breaker.name]

    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily(self.NAME, self.DOC, labels=["provider"])]

    def collect(self) -> Iterator[Metric]:
        if not self._shown:
            return  # no family at all: no HELP line suggesting a state this process knows
        family = GaugeMetricFamily(self.NAME, self.DOC, labels=["provider"])
        for name, breaker in sorted(self._shown.items()):
            family.add_metric([name], int(breaker.state))
        yield family


BREAKER_STATES = BreakerStates()
REGISTRY.register(BREAKER_STATES)
