"""One delivery attempt across a message's vendors: route, health, failover, ambiguity.

The vendors are tried in the message's route order (``gateway.domain.routing.route_for``),
skipping those whose circuit is open. What follows a failure is the decision table of
``gateway.domain.routing.after_failure``:

- the vendor surely did not take the message (unsent, a 5xx before acceptance, a 429): the
  next vendor is called at once, in the same attempt, and the audit trail of the attempt lists
  the vendors that failed before (``failedOver``); when none is left, the message is retried
  later like any transient failure, or, when the last one asked to slow down (429), given back
  untried by the sender's pacing (the ``slowed`` hook), which every 429 sets off;
- it may have taken it (a timeout after the request was sent, a 502/504, an unreadable
  answer, an adapter that crashed mid-call): the message is never handed to another vendor. It
  is kept to that vendor (its ``provider`` is recorded), held for ``ambiguous_grace`` seconds
  at least, and retried through that same vendor only. None of the vendors can be asked about
  a message whose id they never returned, so holding is what lets a late acceptance (and its
  status callback) arrive before the retry; a duplicate through the same vendor remains
  possible and is recorded as such (``ambiguous`` in the attempt's detail), a duplicate
  through two vendors never is;
- it refused the message for good: the message fails, no other vendor is asked.

A message that already has a vendor (one took it, or may have) goes through that vendor only,
whatever its route, and waits while that vendor's circuit is open. So does a message taken
back from a stopped worker, through its route's first vendor
(``gateway.domain.routing.plan_attempt``): it is kept to that vendor from then on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import KW_ONLY, dataclass
from datetime import timedelta
from typing import Any, Final

import structlog

from gateway.domain.records import DeliveryError, Message
from gateway.domain.results import Failure, Outcome, Release, Retry, Sent
from gateway.domain.routing import Route, Step, after_failure, plan_attempt, route_for
from gateway.observability.metrics import DELIVERY_ATTEMPTS, counter
from gateway.services.clock import utcnow
from gateway.services.ports import (
    Breaker,
    PermanentProviderError,
    Provider,
    ProviderReceipt,
    ProviderRegistry,
    TransientProviderError,
)
from gateway.services.retry_policy import RetryPolicy

log = structlog.get_logger(__name__)

FAILOVERS: Final = counter(
    "provider_failovers",
    "Moves of a message from a vendor that surely did not take it to the next one, within "
    "one attempt, by the vendor failed over from and the one failed over to.",
    ["from_provider", "to_provider"],
)


#: What a vendor's throughput error (429) means for the message when no other vendor takes
#: it, given the vendor's name and its error: the sender's pacing (``DeliveryService``).
Slowed = Callable[[Message, str, TransientProviderError], Awaitable[Outcome]]


@dataclass(frozen=True, slots=True)
class _Failed:
    error: DeliveryError
    retry_after: float | None
    step: Step
    #: The vendor's throughput error (429), if that is what it was.
    limited: TransientProviderError | None = None


@dataclass(eq=False, slots=True)
class Failover:
    providers: ProviderRegistry
    policy: RetryPolicy
    _: KW_ONLY
    grace: float
    slowed: Slowed | None = None

    async def attempt(self, message: Message, routes: Sequence[Route] = ()) -> Outcome:
        """Try the message's vendors until one takes it or the table says stop."""
        default = [p.name for p, _ in self.providers.candidates(message.channel)]
        routed = route_for(message.channel, message.recipient, default, routes)
        # A vendor dropped from the settings since the route named it is skipped; a route left
        # with none gives way to the default order, so that no message waits for nothing.
        order = [name for name in routed if self.providers.named(name) is not None] or default
        last_error = message.error.code if message.error is not None else None
        plan = plan_attempt(provider=message.provider, last_error=last_error, order=order)
        if plan.kept:
            return await self._through_own(message, plan.providers[0])
        refused: list[dict[str, Any]] = []
        last: tuple[str, _Failed] | None = None
        slowed: Outcome | None = None
        for name in plan.providers:
            found = self.providers.named(name)
            if found is None or not found[1].allow():
                continue
            provider, breaker = found
            if refused:
                FAILOVERS.labels(refused[-1]["provider"], name).inc()
            answer = await _call(message, provider, breaker)
            trail = {"failedOver": list(refused)} if refused else {}
            if isinstance(answer, ProviderReceipt):
                return _sent(message, answer, trail or None)
            if answer.step is Step.NEXT:
                refused.append(_refusal(name, answer.error))
                last = (name, answer)
                slowed = await self._slow(message, name, answer)
                continue
            return await self._after(message, name, answer, trail)
        if last is None:
            return self._no_provider(message, order)
        if last[1].limited is not None and slowed is not None:
            return slowed  # the last vendor asked to slow down: given back untried
        detail = {"provider": last[0], **({"failedOver": refused[:-1]} if refused[:-1] else {})}
        return self.retry_later(message, last[1].error, last[1].retry_after, detail)

    def retry_later(
        self,
        message: Message,
        error: DeliveryError,
        retry_after: float | None,
        detail: dict[str, Any],
        *,
        floor: float = 0.0,
        keep_to: str | None = None,
    ) -> Outcome:
        """A transient failure: retried after the policy's delay (``floor`` at least), or
        failed once the attempts are spent."""
        if self.policy.exhausted(message.attempts):
            return Failure(message.id, error, detail)
        delay = max(floor, self.policy.delay(message.attempts, retry_after))
        return Retry(message.id, error, utcnow() + timedelta(seconds=delay), detail, keep_to)

    async def _through_own(self, message: Message, name: str) -> Outcome:
        """Through ``name`` alone, a retry kept to it as well."""
        found = self.providers.named(name)
        if found is None:
            # Its vendor is no longer configured: only it could tell whether the message is
            # out, so no other vendor may send it.
            error = DeliveryError(
                "PROVIDER_UNAVAILABLE", f"{name} is not configured any more", permanent=True
            )
            return Failure(message.id, error, {"provider": name})
        provider, breaker = found
        if not breaker.allow():
            return self._no_provider(message, [name])
        answer = await _call(message, provider, breaker)
        if isinstance(answer, ProviderReceipt):
            return _sent(message, answer, None)
        return await self._after(message, name, answer, {}, keep=True)

    async def _slow(self, message: Message, name: str, failed: _Failed) -> Outcome | None:
        """The sender's pacing after a vendor's throughput error; None for any other error."""
        if failed.limited is None or self.slowed is None:
            return None
        return await self.slowed(message, name, failed.limited)

    async def _after(
        self,
        message: Message,
        name: str,
        failed: _Failed,
        trail: dict[str, Any],
        *,
        keep: bool = False,
    ) -> Outcome:
        """What follows the failure of the vendor the message stops at (no failover)."""
        slowed = await self._slow(message, name, failed)
        if slowed is not None:
            return slowed
        detail = {"provider": name, **trail}
        if failed.step is Step.FAIL:
            return Failure(message.id, failed.error, detail)
        if failed.step is Step.HOLD:
            # The vendor may still deliver it: kept to it, and not before the grace period.
            detail["ambiguous"] = True
            return self.retry_later(
                message, failed.error, failed.retry_after, detail, floor=self.grace, keep_to=name
            )
        return self.retry_later(
            message, failed.error, failed.retry_after, detail, keep_to=name if keep else None
        )

    def _no_provider(self, message: Message, order: Sequence[str]) -> Outcome:
        found = [self.providers.named(name) for name in order]
        wait = min((f[1].retry_in() for f in found if f is not None), default=None)
        wait = max(self.policy.base_delay if wait is None else wait, self.policy.base_delay)
        return Release(
            message.id, utcnow() + timedelta(seconds=wait), "every provider's circuit is open"
        )


def _transient_outcome(exc: TransientProviderError) -> str:
    if exc.rate_limited:
        return "rate_limited"
    return "ambiguous" if exc.ambiguous else "transient_error"


def _sent(message: Message, receipt: ProviderReceipt, detail: dict[str, Any] | None) -> Sent:
    return Sent(message.id, receipt.provider, receipt.provider_message_id, detail)


def _refusal(name: str, error: DeliveryError) -> dict[str, Any]:
    return {"provider": name, "code": error.code, "description": error.description}


async def _call(
    message: Message, provider: Provider, breaker: Breaker
) -> ProviderReceipt | _Failed:
    try:
        receipt = await provider.send(message)
    except TransientProviderError as exc:
        DELIVERY_ATTEMPTS.labels(provider.name, _transient_outcome(exc)).inc()
        if exc.rate_limited:
            breaker.record_neutral()
        else:
            breaker.record_failure()
        error = DeliveryError(exc.code, exc.description, permanent=False)
        step = after_failure(permanent=False, ambiguous=exc.ambiguous)
        return _Failed(error, exc.retry_after, step, exc if exc.rate_limited else None)
    except PermanentProviderError as exc:
        DELIVERY_ATTEMPTS.labels(provider.name, "permanent_error").inc()
        breaker.record_neutral()
        error = DeliveryError(
            exc.code,
            exc.description,
            permanent=True,
            recipient_unsubscribed=exc.recipient_unsubscribed,
        )
        return _Failed(error, None, Step.FAIL)
    except Exception as exc:
        # An adapter bug must not strand the message in SENDING. Nobody can say how far the
        # call got: ambiguous, so the message stays with this vendor.
        DELIVERY_ATTEMPTS.labels(provider.name, "crashed").inc()
        breaker.record_failure()
        log.exception("provider_crashed", provider=provider.name, message_id=str(message.id))
        error = DeliveryError("PROVIDER_ERROR", type(exc).__name__, permanent=False)
        return _Failed(error, None, after_failure(permanent=False, ambiguous=True))
    DELIVERY_ATTEMPTS.labels(provider.name, "sent").inc()
    breaker.record_success()
    return receipt
