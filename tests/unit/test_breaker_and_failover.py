"""Circuit breaker states and provider failover (pure logic: fake clock, fake providers)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from gateway.domain.channels import Channel
from gateway.domain.records import Message, MessageEvent
from gateway.domain.results import Change, Failure, Outcome, Release, Retry, Sent
from gateway.domain.statuses import MessageStatus
from gateway.observability.metrics import REGISTRY
from gateway.services.delivery import DeliveryService
from gateway.services.ports import (
    PermanentProviderError,
    ProviderReceipt,
    TransientProviderError,
)
from gateway.services.retry_policy import RetryPolicy
from providers.breaker import BREAKER_STATES, CircuitBreaker, State
from providers.registry import FailoverRegistry
from tests.unit.messages import outbound_message
from workers.held_outcomes import MemoryHeldOutcomes, decode_outcome, encode_outcome


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_consecutive_failures_and_half_opens_after_cooldown() -> None:
    clock = Clock()
    breaker = CircuitBreaker("p", threshold=3, cooldown=10, clock=clock)
    for _ in range(2):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state is State.CLOSED
    breaker.record_failure()
    assert breaker.state is State.OPEN and not breaker.allow()
    clock.now += 10
    assert breaker.state is State.HALF_OPEN
    assert breaker.allow(), "one trial call"
    assert not breaker.allow(), "only one trial call at a time"
    breaker.record_failure()
    assert breaker.state is State.OPEN, "a failed trial opens it again"
    clock.now += 10
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is State.CLOSED and breaker.allow()


def test_success_resets_the_failure_count_and_neutral_answers_do_not_trip() -> None:
    breaker = CircuitBreaker("q", threshold=2, cooldown=10, clock=Clock())
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state is State.CLOSED
    for _ in range(10):
        breaker.record_neutral()  # 429s and permanent refusals
    assert breaker.state is State.CLOSED


def circuit_state(provider: str) -> float | None:
    return REGISTRY.get_sample_value("gateway_provider_circuit_state", {"provider": provider})


def test_the_circuit_state_metric_is_read_when_scraped() -> None:
    clock = Clock()
    breaker = CircuitBreaker("scraped", threshold=1, cooldown=10, clock=clock)
    BREAKER_STATES.show([breaker])
    try:
        assert circuit_state("scraped") == State.CLOSED
        breaker.record_failure()
        assert circuit_state("scraped") == State.OPEN
        clock.now += 10
        assert circuit_state("scraped") == State.HALF_OPEN, "half-open by the clock alone"
        assert breaker.allow()
        breaker.record_success()
        assert circuit_state("scraped") == State.CLOSED
    finally:
        BREAKER_STATES.hide([breaker])
    assert circuit_state("scraped") is None


async def test_only_registries_that_deliver_report_their_breakers() -> None:
    idle = FailoverRegistry({Channel.SMS: [FakeProvider("reported")]})
    assert circuit_state("reported") is None, "a breaker nobody uses must not claim closed"
    idle.report_states()
    assert circuit_state("reported") == State.CLOSED
    newer = FailoverRegistry({Channel.SMS: [FakeProvider("reported")]})
    newer.report_states()
    for _ in range(5):  # the default threshold
        newer.breakers["reported"].record_failure()
    assert circuit_state("reported") == State.OPEN, "the one shown last"
    await idle.aclose()
    assert circuit_state("reported") == State.OPEN, "closing another leaves it shown"
    await newer.aclose()
    assert circuit_state("reported") is None


class FakeProvider:
    def __init__(self, name: str, fail: Exception | None = None) -> None:
        self.name = name
        self.fail = fail
        self.calls = 0

    async def send(self, message: Message) -> ProviderReceipt:
        self.calls += 1
        if self.fail is not None:
            raise self.fail
        return ProviderReceipt(self.name, f"{self.name}-id")


def message() -> Message:
    return outbound_message(next_attempt_at=datetime.now(UTC))


class FakeLifecycle:
    """Records what the delivery service decided; the SQL is tested against real databases."""

    def __init__(self, claimed: Message) -> None:
        self.claimed = claimed
        self.calls: list[tuple[str, Any]] = []

    def _change(self, status: MessageStatus) -> Change:
        event = MessageEvent(
            1, self.claimed.account_id, self.claimed.id, self.claimed.conversation_id,
            status, "x", None, datetime.now(UTC),
        )  # fmt: skip
        return Change(replace(self.claimed, status=status), event)

    async def claim_many(
        self, message_ids: Any, now: Any, *, worker: Any = None
    ) -> dict[Any, Change]:
        return {self.claimed.id: self._change(MessageStatus.SENDING)}

    async def record_outcomes(self, outcomes: Any, now: Any) -> list[Change]:
        return [self._record(o) for o in outcomes]

    def _record(self, outcome: Outcome) -> Change:
        if isinstance(outcome, Sent):
            self.calls.append(("sent", outcome.provider))
            return self._change(MessageStatus.SENT)
        if isinstance(outcome, Retry):
            self.calls.append(("retry", outcome.detail))
            return self._change(MessageStatus.QUEUED)
        if isinstance(outcome, Failure):
            self.calls.append(("failed", outcome.error.code))
            return self._change(MessageStatus.FAILED)
        assert isinstance(outcome, Release)
        self.calls.append(("released", outcome.reason))
        return self._change(MessageStatus.QUEUED)


class FakeBroker:
    def __init__(self) -> None:
        self.published: list[MessageEvent] = []

    async def publish(self, events: Any) -> None:
        self.published.extend(events)


def service(providers: list[FakeProvider], lifecycle: FakeLifecycle, **kw: Any) -> DeliveryService:
    registry = FailoverRegistry({Channel.SMS: providers}, **kw)
    return DeliveryService(
        lifecycle,  # type: ignore[arg-type]
        registry,
        FakeBroker(),  # type: ignore[arg-type]
        RetryPolicy(5, 0.01, 0.1),
        MemoryHeldOutcomes(),
        worker="test-worker",
    )


async def test_fails_over_to_the_next_provider_while_the_first_circuit_is_open() -> None:
    down = FakeProvider("first", TransientProviderError("500", "down"))
    backup = FakeProvider("second")
    lifecycle = FakeLifecycle(message())
    delivery = service([down, backup], lifecycle, threshold=2, cooldown=60)
    for _ in range(2):
        await delivery.deliver(lifecycle.claimed.id)
    assert down.calls == 2, "each attempt tries the first provider"
    assert backup.calls == 2, "and fails over to the next one at once"
    await delivery.deliver(lifecycle.claimed.id)
    assert down.calls == 2, "open circuit: not called"
    assert backup.calls == 3 and lifecycle.calls[-1] == ("sent", "second")


async def test_rate_limiting_does_not_trip_the_breaker() -> None:
    limited = FakeProvider("only", TransientProviderError("429", "slow", 1.0, rate_limited=True))
    lifecycle = FakeLifecycle(message())
    delivery = service([limited], lifecycle, threshold=1, cooldown=60)
    for _ in range(3):
        await delivery.deliver(lifecycle.claimed.id)
    assert limited.calls == 3
    # Given back untried each time (the sender slows down), the circuit still closed.
    assert [c[0] for c in lifecycle.calls] == ["released"] * 3


async def test_no_provider_available_releases_the_message_without_calling_anyone() -> None:
    down = FakeProvider("only", TransientProviderError("500", "down"))
    lifecycle = FakeLifecycle(message())
    delivery = service([down], lifecycle, threshold=1, cooldown=60)
    await delivery.deliver(lifecycle.claimed.id)
    await delivery.deliver(lifecycle.claimed.id)
    assert down.calls == 1
    assert lifecycle.calls[-1][0] == "released"


async def test_ambiguous_and_permanent_outcomes() -> None:
    timeout = FakeProvider("t", TransientProviderError("READTIMEOUT", "t", ambiguous=True))
    lifecycle = FakeLifecycle(message())
    await service([timeout], lifecycle).deliver(lifecycle.claimed.id)
    assert lifecycle.calls[-1] == ("retry", {"provider": "t", "ambiguous": True})

    refused = FakeProvider("r", PermanentProviderError("21211", "invalid"))
    lifecycle = FakeLifecycle(message())
    await service([refused], lifecycle).deliver(lifecycle.claimed.id)
    assert lifecycle.calls[-1] == ("failed", "21211")


async def test_exhausted_attempts_dead_letter() -> None:
    down = FakeProvider("d", TransientProviderError("500", "down"))
    lifecycle = FakeLifecycle(replace(message(), attempts=5))
    await service([down], lifecycle).deliver(lifecycle.claimed.id)
    assert lifecycle.calls[-1] == ("failed", "500")


async def test_a_refusal_of_an_unsubscribed_recipient_fails_saying_so_even_once_held() -> None:
    unsubscribed = PermanentProviderError("21610", "unsubscribed", recipient_unsubscribed=True)
    lifecycle = FakeLifecycle(message())
    for fail, marked in ((unsubscribed, True), (PermanentProviderError("21211", "x"), False)):
        outcome = await service([FakeProvider("p", fail)], lifecycle).attempt(message())
        assert isinstance(outcome, Failure)
        assert outcome.error.permanent and outcome.error.recipient_unsubscribed is marked
        # A worker that cannot write it holds it: the mark must survive that too.
        assert decode_outcome(encode_outcome(outcome)) == outcome
