"""Per-sender pacing on pure rules and in-memory ports: the number-type rule and its defaults,
rate validation, the GCRA schedule (no one-second window over the rate), the in-process
limiter, the rates cache, and a provider's throughput error pausing the sender untried."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import orjson
import pytest

from gateway.domain.channels import Channel
from gateway.domain.pacing import (
    DefaultRates,
    SenderKind,
    check_rate,
    gcra_slot,
    pacing_key,
    sender_kind,
)
from gateway.domain.results import Release, Sent
from gateway.services.delivery import DeliveryService
from gateway.services.pacing import SenderRates
from gateway.services.ports import PermanentProviderError, TransientProviderError
from gateway.services.retry_policy import RetryPolicy
from providers.http import ProviderResponse
from providers.registry import FailoverRegistry
from providers.twilio import TwilioProvider
from tests.unit.test_breaker_and_failover import Clock, FakeProvider, message
from workers.held_outcomes import MemoryHeldOutcomes
from workers.pacing import MemoryPacer

# ----------------------------------------------------------------------------- the rules


@pytest.mark.parametrize(
    ("sender", "kind"),
    [
        ("+14155550100", SenderKind.LONG_CODE),
        ("+18005550100", SenderKind.TOLL_FREE),
        ("+18335550100", SenderKind.TOLL_FREE),
        ("+18885550100", SenderKind.TOLL_FREE),
        # 899 is no toll-free code, and 800 outside NANP is an ordinary number.
        ("+18995550100", SenderKind.LONG_CODE),
        ("+448005550100", SenderKind.LONG_CODE),
        ("12345", SenderKind.SHORT_CODE),
        ("123456", SenderKind.SHORT_CODE),
        ("1234", SenderKind.LONG_CODE),
        ("news@example.com", SenderKind.EMAIL_DOMAIN),
    ],
)
def test_the_kind_of_a_sender_follows_the_number_type_rule(sender: str, kind: SenderKind) -> None:
    assert sender_kind(sender) is kind


def test_each_kind_has_its_default_and_the_settings_change_them() -> None:
    defaults = DefaultRates()
    assert [defaults.of(k) for k in SenderKind] == [1.0, 3.0, 100.0, 100.0]
    assert DefaultRates(long_code=20.0).of(sender_kind("+14155550100")) == 20.0


def test_an_email_sender_is_paced_by_its_domain_a_number_by_itself() -> None:
    assert pacing_key("news@Example.COM") == pacing_key("billing@example.com") == "@example.com"
    assert pacing_key("+14155550100") == "+14155550100"


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), 10_000.5])
def test_a_rate_outside_its_bounds_is_a_problem_of_its_field(bad: float) -> None:
    [problem] = check_rate(bad)
    assert problem.field == "segmentsPerSecond"


def test_a_rate_within_bounds_or_none_is_fine() -> None:
    assert check_rate(0.5) == check_rate(10_000.0) == check_rate(None) == []


def most_in_one_second(times: list[float], costs: list[int]) -> int:
    """The most segments whose slots fall in any half-open window of one second (less a
    hair, for the rounding of sums of intervals)."""
    return max(
        sum(c for t, c in zip(times, costs, strict=True) if start <= t < start + 1.0 - 1e-9)
        for start in times
    )


@pytest.mark.parametrize("rate", [1.0, 3.0, 20.0, 100.0])
def test_a_backlog_is_scheduled_at_the_rate_and_never_over_it(rate: float) -> None:
    tat, now, slots, costs = 0.0, 100.0, [], []
    for i in range(int(rate * 5)):
        cost = 1 + i % 3
        slot, tat = gcra_slot(tat, now, rate, cost)
        slots.append(slot)
        costs.append(cost)
        now += 0.001  # the backlog is asked for far faster than it may go
    assert slots == sorted(slots)
    # Segments go together: a window holds the rate, plus the rest of one message at most.
    assert most_in_one_second(slots, costs) <= rate + 2
    assert most_in_one_second(slots, [1] * len(slots)) <= max(rate, 1)


def test_an_idle_sender_goes_at_once_and_then_waits_its_interval() -> None:
    assert gcra_slot(0.0, 50.0, 2.0, 1) == (50.0, 50.5)
    assert gcra_slot(50.5, 50.1, 2.0, 3) == (50.5, 52.0)


# ----------------------------------------------------------------------------- the limiter


async def test_the_in_process_limiter_takes_slots_only_within_the_horizon() -> None:
    clock = Clock()
    pacer = MemoryPacer(clock)
    assert await pacer.reserve("+14155550100", 10.0, 1, within=0.25) == 0.0
    assert await pacer.reserve("+14155550100", 10.0, 1, within=0.25) == pytest.approx(0.1)
    assert await pacer.reserve("+14155550100", 10.0, 1, within=0.25) == pytest.approx(0.2)
    # The next slot (0.3 s away) lies beyond the horizon: nothing taken.
    assert await pacer.reserve("+14155550100", 10.0, 1, within=0.25) is None
    assert pacer.ready_in("+14155550100") == pytest.approx(0.3)
    # Another sender is not held back by this one.
    assert await pacer.reserve("+14155550199", 10.0, 1, within=0.25) == 0.0
    clock.now += 0.3
    assert await pacer.reserve("+14155550100", 10.0, 1, within=0.25) == pytest.approx(0.0)


async def test_a_slowed_sender_takes_no_slot_before_its_pause_ends() -> None:
    clock = Clock()
    pacer = MemoryPacer(clock)
    await pacer.slow_down("+14155550100", 2.0)
    assert await pacer.reserve("+14155550100", 100.0, 1, within=1.0) is None
    clock.now += 1.5
    assert await pacer.reserve("+14155550100", 100.0, 1, within=1.0) == pytest.approx(0.5)


# ----------------------------------------------------------------------------- the rates


class MemoryRates:
    def __init__(self) -> None:
        self.own: dict[str, float] = {}
        self.reads = 0
        self.down = False

    async def rates(self, senders: Collection[str]) -> dict[str, float]:
        self.reads += 1
        if self.down:
            raise ConnectionError("database down")
        return {s: self.own[s] for s in senders if s in self.own}

    async def set_rate(self, sender: str, rate: float | None, now: datetime) -> None:
        if rate is None:
            self.own.pop(sender, None)
        else:
            self.own[sender] = rate


ACCOUNT = uuid4()
OWNED = {"+14155550100", "+18005550100", "news@example.com"}


async def owned(account_id: UUID) -> set[str]:
    return OWNED if account_id == ACCOUNT else set()


def rates(store: MemoryRates, clock: Clock) -> SenderRates:
    return SenderRates(store, DefaultRates(), ttl=5.0, owned_addresses=owned, clock=clock)


async def test_rates_are_a_senders_own_else_its_kinds_default_read_through_a_cache() -> None:
    store, clock = MemoryRates(), Clock()
    store.own["@example.com"] = 7.0
    service = rates(store, clock)
    found = await service.rates_of(["+14155550100", "+18005550100", "a@example.com"])
    assert found == {"+14155550100": 1.0, "+18005550100": 3.0, "@example.com": 7.0}
    store.own["+14155550100"] = 50.0
    assert await service.rate_of("+14155550100") == 1.0, "cached for its ttl"
    assert store.reads == 1
    clock.now += 5.0
    assert await service.rate_of("+14155550100") == 50.0
    store.down = True
    clock.now += 5.0
    assert await service.rate_of("+14155550100") == 50.0, "the last known rate stands"


async def test_an_account_sets_the_rate_of_its_own_addresses_only() -> None:
    store, clock = MemoryRates(), Clock()
    service = rates(store, clock)
    done = await service.set_rate(ACCOUNT, "(800) 555-0100", 20.0)
    assert not isinstance(done, list)
    assert (done.address, done.kind, done.segments_per_second) == (
        "+18005550100",
        SenderKind.TOLL_FREE,
        20.0,
    )
    assert store.own == {"+18005550100": 20.0}
    assert await service.rate_of("+18005550100") == 20.0, "the process that set it at once"
    refused = await service.set_rate(uuid4(), "+18005550100", 5.0)
    assert isinstance(refused, list) and [p.field for p in refused] == ["address"]
    invalid = await service.set_rate(ACCOUNT, "+18005550100", 0.0)
    assert isinstance(invalid, list) and [p.field for p in invalid] == ["segmentsPerSecond"]
    assert store.own == {"+18005550100": 20.0}
    back = await service.set_rate(ACCOUNT, "+18005550100", None)
    assert not isinstance(back, list) and back.is_default and back.segments_per_second == 3.0
    assert store.own == {}


async def test_the_senders_of_an_account_show_their_rates() -> None:
    store, clock = MemoryRates(), Clock()
    store.own["@example.com"] = 12.0
    listed = await rates(store, clock).senders(ACCOUNT)
    assert [(s.address, s.segments_per_second, s.is_default) for s in listed] == [
        ("+14155550100", 1.0, True),
        ("+18005550100", 3.0, True),
        ("news@example.com", 12.0, False),
    ]


# ----------------------------------------------------------------------------- throughput errors


def delivery(provider: FakeProvider, pacer: MemoryPacer, *more: FakeProvider) -> DeliveryService:
    return DeliveryService(
        None,  # type: ignore[arg-type]  # attempts write nothing
        FailoverRegistry({Channel.SMS: [provider, *more]}),
        None,  # type: ignore[arg-type]
        RetryPolicy(5, 0.01, 60.0),
        MemoryHeldOutcomes(),
        worker="test-worker",
        pacer=pacer,
        slowdown=1.5,
    )


@pytest.mark.parametrize(("retry_after", "pause"), [(4.0, 4.0), (None, 1.5)])
async def test_a_throughput_error_pauses_the_sender_and_gives_the_message_back_untried(
    retry_after: float | None, pause: float
) -> None:
    clock = Clock()
    pacer = MemoryPacer(clock)
    error = TransientProviderError("20429", "Too Many Requests", retry_after, rate_limited=True)
    provider = FakeProvider("twilio", fail=error)
    # Its last attempt by the count: a failure now would dead-letter it.
    claimed = replace(message(), attempts=5)
    before = datetime.now(UTC)
    outcome = await delivery(provider, pacer).attempt(claimed)
    assert isinstance(outcome, Release), outcome
    assert outcome.next_attempt_at >= before + timedelta(seconds=pause)
    assert "twilio" in outcome.reason and "20429" in outcome.reason
    assert pacer.ready_in(claimed.sender) == pytest.approx(pause)
    assert pacer.ready_in("+14155550199") == 0.0


async def test_another_transient_error_is_still_a_counted_retry() -> None:
    pacer = MemoryPacer(Clock())
    provider = FakeProvider("twilio", fail=TransientProviderError("500", "boom"))
    outcome = await delivery(provider, pacer).attempt(replace(message(), attempts=5))
    assert type(outcome).__name__ == "Failure", "attempts exhausted: dead-lettered"
    assert pacer.ready_in("+14155550100") == 0.0


async def test_a_throughput_error_fails_over_to_the_next_vendor_and_still_paces_the_sender() -> (
    None
):
    pacer = MemoryPacer(Clock())
    error = TransientProviderError("20429", "Too Many Requests", 4.0, rate_limited=True)
    limited, other = FakeProvider("twilio", fail=error), FakeProvider("telnyx")
    claimed = message()
    outcome = await delivery(limited, pacer, other).attempt(claimed)
    assert isinstance(outcome, Sent) and outcome.provider == "telnyx", outcome
    assert pacer.ready_in(claimed.sender) == pytest.approx(4.0), "the sender is paced all the same"


class Answers:
    """A provider session that answers every post with one canned response."""

    def __init__(self, status: int, body: dict[str, object]) -> None:
        self.status = status
        self.body = body

    async def post(
        self, url: str, *, body: bytes, headers: object, **_: object
    ) -> ProviderResponse:
        content = orjson.dumps(self.body)
        return ProviderResponse("POST", url, self.status, "Refused", {}, content, 1.0)


def twilio_answering(status: int, body: dict[str, object]) -> TwilioProvider:
    return TwilioProvider(
        Answers(status, body),  # type: ignore[arg-type]
        base_url="http://127.0.0.1:9",
        account_sid="AC1",
        auth_token="token",
        status_callback_url="http://127.0.0.1:9/status",
    )


@pytest.mark.parametrize(("status", "code"), [(429, 20429), (400, 30001), (429, None)])
async def test_twilio_throughput_errors_are_rate_limited(status: int, code: int | None) -> None:
    with pytest.raises(TransientProviderError) as caught:
        await twilio_answering(status, {"code": code, "message": "slow down"}).send(message())
    assert caught.value.rate_limited


async def test_another_twilio_refusal_is_not_a_throughput_error() -> None:
    with pytest.raises(PermanentProviderError):
        await twilio_answering(400, {"code": 21211, "message": "invalid To"}).send(message())
