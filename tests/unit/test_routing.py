"""Routes and the failover decision table (pure logic: fake providers, no I/O)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from gateway.domain.channels import Channel
from gateway.domain.records import DeliveryError, Message
from gateway.domain.results import Failure, Release, Retry, Sent
from gateway.domain.routing import (
    ABANDONED_CODE,
    Plan,
    Route,
    RouteError,
    Step,
    after_failure,
    check_route,
    country_of,
    plan_attempt,
    route_for,
)
from gateway.observability.metrics import REGISTRY
from gateway.services.clock import utcnow
from gateway.services.failover import Failover
from gateway.services.ports import PermanentProviderError, TransientProviderError
from gateway.services.retry_policy import RetryPolicy
from providers.registry import FailoverRegistry
from tests.unit.test_breaker_and_failover import FakeProvider, message

DEFAULT = ("twilio", "telnyx")


def test_country_of_reads_the_region_of_e164_numbers_only() -> None:
    assert country_of("+447700900123") == "GB"
    assert country_of("+14155550100") == "US"
    assert country_of("+442079460000") == "GB"
    assert country_of("+4930123456") == "DE"
    assert country_of("someone@example.com") is None
    assert country_of("4155550100") is None, "no +country: no guess"


def test_the_most_specific_route_wins() -> None:
    uk = Route(Channel.SMS, "GB", ("telnyx", "twilio"))
    everywhere = Route(Channel.SMS, None, ("twilio",))
    mms = Route(Channel.MMS, None, ("telnyx",))
    assert route_for(Channel.SMS, "+447700900123", DEFAULT, [everywhere, uk]) == uk.providers
    assert route_for(Channel.SMS, "+14155550100", DEFAULT, [uk, everywhere]) == ("twilio",)
    assert route_for(Channel.SMS, "+14155550100", DEFAULT, [uk]) == DEFAULT
    assert route_for(Channel.SMS, "+14155550100", DEFAULT, [mms]) == DEFAULT, "other channel"
    assert route_for(Channel.MMS, "+447700900123", DEFAULT, [uk, mms]) == ("telnyx",)
    assert route_for(Channel.SMS, "+447700900123", DEFAULT, []) == DEFAULT


CARRIERS = {
    "twilio": frozenset({Channel.SMS, Channel.MMS}),
    "telnyx": frozenset({Channel.SMS}),
    "sendgrid": frozenset({Channel.EMAIL}),
}


def test_the_recipient_is_parsed_only_for_a_route_by_country(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def unparsable(recipient: str) -> str | None:
        raise AssertionError(f"{recipient} parsed without a route for a country")

    monkeypatch.setattr("gateway.domain.routing.country_of", unparsable)
    everywhere = Route(Channel.SMS, None, ("twilio",))
    uk_mms = Route(Channel.MMS, "GB", ("telnyx",))
    assert route_for(Channel.SMS, "+447700900123", DEFAULT, []) == DEFAULT
    assert route_for(Channel.SMS, "+447700900123", DEFAULT, [everywhere, uk_mms]) == ("twilio",)
    with pytest.raises(AssertionError, match="parsed"):
        route_for(Channel.MMS, "+447700900123", DEFAULT, [uk_mms])


@pytest.mark.parametrize(
    ("route", "code"),
    [
        (Route(Channel.SMS, None, ()), "EMPTY_ROUTE"),
        (Route(Channel.SMS, None, ("nexmo",)), "UNKNOWN_PROVIDER"),
        (Route(Channel.SMS, None, ("sendgrid",)), "WRONG_CHANNEL"),
        (Route(Channel.MMS, None, ("twilio", "telnyx")), "WRONG_CHANNEL"),
        (Route(Channel.SMS, None, ("twilio", "twilio")), "DUPLICATE_PROVIDER"),
        (Route(Channel.SMS, "XX", ("twilio",)), "INVALID_COUNTRY"),
        (Route(Channel.EMAIL, "GB", ("sendgrid",)), "INVALID_COUNTRY"),
    ],
)
def test_routes_that_cannot_be_stored(route: Route, code: str) -> None:
    with pytest.raises(RouteError) as refused:
        check_route(route, CARRIERS)
    assert refused.value.code == code


def test_a_valid_route_passes() -> None:
    route = Route(Channel.SMS, "GB", ("telnyx", "twilio"))
    assert check_route(route, CARRIERS) is route


@pytest.mark.parametrize(
    ("permanent", "ambiguous", "step"),
    [
        (False, False, Step.NEXT),  # unsent, a 5xx before acceptance, a 429
        (False, True, Step.HOLD),  # a timeout after the request left
        (True, False, Step.FAIL),
        (True, True, Step.FAIL),
    ],
)
def test_the_failover_decision_table(permanent: bool, ambiguous: bool, step: Step) -> None:
    assert after_failure(permanent=permanent, ambiguous=ambiguous) is step


GRACE = 60.0


def failover(*providers: FakeProvider, **kw: float) -> Failover:
    registry = FailoverRegistry({Channel.SMS: list(providers)}, **kw)  # type: ignore[arg-type]
    return Failover(registry, RetryPolicy(5, 0.01, 0.1), grace=GRACE)


def failovers(source: str, target: str) -> float:
    labels = {"from_provider": source, "to_provider": target}
    return REGISTRY.get_sample_value("gateway_provider_failovers_total", labels) or 0.0


@pytest.mark.parametrize(
    "error",
    [
        TransientProviderError("CONNECTERROR", "refused"),  # surely unsent
        TransientProviderError("500", "down before accepting"),
        TransientProviderError("429", "slow down", 5.0, rate_limited=True),
    ],
)
async def test_a_failure_that_proves_nothing_was_taken_goes_to_the_next_vendor_now(
    error: TransientProviderError,
) -> None:
    first, second = FakeProvider("fo-a", error), FakeProvider("fo-b")
    before = failovers("fo-a", "fo-b")
    outcome = await failover(first, second).attempt(message())
    assert first.calls == 1 and second.calls == 1
    assert isinstance(outcome, Sent) and outcome.provider == "fo-b"
    assert outcome.detail == {
        "failedOver": [{"provider": "fo-a", "code": error.code, "description": error.description}]
    }
    assert failovers("fo-a", "fo-b") == before + 1


async def test_an_ambiguous_attempt_is_held_and_kept_to_its_vendor() -> None:
    timeout = TransientProviderError("READTIMEOUT", "no answer", ambiguous=True)
    first, second = FakeProvider("amb-a", timeout), FakeProvider("amb-b")
    start = utcnow()
    outcome = await failover(first, second).attempt(message())
    assert second.calls == 0, "never sent through another vendor blindly"
    assert isinstance(outcome, Retry)
    assert outcome.provider == "amb-a", "kept to the vendor that may have it"
    assert outcome.detail == {"provider": "amb-a", "ambiguous": True}
    assert outcome.next_attempt_at >= start + timedelta(seconds=GRACE), "held for the grace"
    labels = {"provider": "amb-a", "outcome": "ambiguous"}
    assert REGISTRY.get_sample_value("gateway_delivery_attempts_total", labels) == 1


async def test_an_adapter_that_crashed_mid_call_is_ambiguous() -> None:
    first, second = FakeProvider("crash-a", RuntimeError("bug")), FakeProvider("crash-b")
    outcome = await failover(first, second).attempt(message())
    assert second.calls == 0
    assert isinstance(outcome, Retry) and outcome.provider == "crash-a"


async def test_a_permanent_refusal_fails_without_asking_another_vendor() -> None:
    refused = PermanentProviderError("21211", "invalid number")
    first, second = FakeProvider("perm-a", refused), FakeProvider("perm-b")
    outcome = await failover(first, second).attempt(message())
    assert second.calls == 0
    assert isinstance(outcome, Failure) and outcome.error.code == "21211"


async def test_when_every_vendor_refuses_the_message_is_retried_later_unpinned() -> None:
    first = FakeProvider("all-a", TransientProviderError("503", "down"))
    second = FakeProvider("all-b", TransientProviderError("429", "slow", rate_limited=True))
    outcome = await failover(first, second).attempt(message())
    assert first.calls == 1 and second.calls == 1
    assert isinstance(outcome, Retry) and outcome.provider is None
    assert outcome.detail == {
        "provider": "all-b",
        "failedOver": [{"provider": "all-a", "code": "503", "description": "down"}],
    }


async def test_a_message_with_a_vendor_goes_through_that_vendor_only() -> None:
    first = FakeProvider("own-a", TransientProviderError("500", "down"))
    second = FakeProvider("own-b")
    route = failover(first, second, threshold=1, cooldown=60)
    kept = replace(message(), provider="own-b")
    outcome = await route.attempt(kept)
    assert first.calls == 0 and isinstance(outcome, Sent) and outcome.provider == "own-b"

    second.fail = TransientProviderError("500", "down")
    outcome = await route.attempt(kept)
    assert isinstance(outcome, Retry) and first.calls == 0, "no failover for a kept message"
    outcome = await route.attempt(kept)
    assert isinstance(outcome, Release), "its vendor's circuit is open: it waits"
    assert first.calls == 0 and second.calls == 2


async def test_a_vendor_no_longer_configured_fails_its_kept_messages() -> None:
    other = FakeProvider("still-here")
    outcome = await failover(other).attempt(replace(message(), provider="gone"))
    assert other.calls == 0
    assert isinstance(outcome, Failure) and outcome.error.code == "PROVIDER_UNAVAILABLE"


async def test_an_open_circuit_is_skipped_until_its_trial_call() -> None:
    clock_first = FakeProvider("skip-a", TransientProviderError("500", "down"))
    second = FakeProvider("skip-b")
    route = failover(clock_first, second, threshold=1, cooldown=60)
    await route.attempt(message())  # opens skip-a's circuit, fails over to skip-b
    clock_first.fail = None
    outcome = await route.attempt(message())
    assert clock_first.calls == 1, "open: skipped"
    assert isinstance(outcome, Sent) and outcome.provider == "skip-b"
    assert outcome.detail is None, "skipped, not failed over from"


async def test_the_account_route_orders_the_vendors_of_the_attempt() -> None:
    first, second = FakeProvider("route-a"), FakeProvider("route-b")
    uk = [Route(Channel.SMS, "GB", ("route-b", "route-a"))]
    route = failover(first, second)
    outcome = await route.attempt(replace(message(), recipient="+447700900123"), uk)
    assert isinstance(outcome, Sent) and outcome.provider == "route-b" and first.calls == 0
    outcome = await route.attempt(message(), uk)  # a US number: the default order
    assert isinstance(outcome, Sent) and outcome.provider == "route-a"


async def test_a_route_naming_a_vendor_dropped_from_the_settings_skips_it() -> None:
    only = FakeProvider("left-a")
    gone = [Route(Channel.SMS, None, ("dropped", "left-a"))]
    outcome = await failover(only).attempt(message(), gone)
    assert isinstance(outcome, Sent) and outcome.provider == "left-a"


async def test_a_route_whose_vendors_are_all_gone_gives_way_to_the_default_order() -> None:
    only = FakeProvider("fallback-a")
    gone = [Route(Channel.SMS, None, ("dropped",))]
    outcome = await failover(only).attempt(message(), gone)
    assert isinstance(outcome, Sent) and outcome.provider == "fallback-a"


@pytest.mark.parametrize(
    ("provider", "last_error", "plan"),
    [
        (None, None, Plan(("a", "b"), kept=False)),
        (None, "500", Plan(("a", "b"), kept=False)),  # an ordinary retry: its route again
        ("b", None, Plan(("b",), kept=True)),  # a vendor took it, or may have
        ("b", ABANDONED_CODE, Plan(("b",), kept=True)),
        (None, ABANDONED_CODE, Plan(("a",), kept=True)),  # its worker died: the first alone
    ],
)
def test_which_vendors_an_attempt_may_use(
    provider: str | None, last_error: str | None, plan: Plan
) -> None:
    assert plan_attempt(provider=provider, last_error=last_error, order=("a", "b")) == plan


def abandoned() -> Message:
    error = DeliveryError(ABANDONED_CODE, "the worker handling it stopped", permanent=False)
    return replace(message(), error=error)


async def test_a_message_taken_back_from_a_dead_worker_never_fails_over() -> None:
    first = FakeProvider("dead-a", TransientProviderError("CONNECTERROR", "refused"))
    second = FakeProvider("dead-b")
    route = failover(first, second, threshold=1, cooldown=60)
    outcome = await route.attempt(abandoned())
    assert second.calls == 0, "its dead worker may have sent it through dead-a"
    assert isinstance(outcome, Retry) and outcome.provider == "dead-a", "kept to it from now on"

    outcome = await route.attempt(abandoned())
    assert isinstance(outcome, Release), "the first vendor's circuit is open: it waits"
    assert first.calls == 1 and second.calls == 0

    outcome = await route.attempt(message())
    assert isinstance(outcome, Sent) and outcome.provider == "dead-b", "others fail over"


async def test_a_message_taken_back_goes_through_its_route_first_vendor() -> None:
    first, second = FakeProvider("back-a"), FakeProvider("back-b")
    uk = [Route(Channel.SMS, "GB", ("back-b", "back-a"))]
    outcome = await failover(first, second).attempt(
        replace(abandoned(), recipient="+447700900123"), uk
    )
    assert isinstance(outcome, Sent) and outcome.provider == "back-b" and first.calls == 0
