"""Per API key and per operation rate limits, in the `limits` library's notation.

``RATE_LIMITS="sendMessage=50/second;sendMessages=5000/minute;*=200/second"``: each root field
has its own window per key, ``*`` covers every other root field. Sliding-window counters check
before they count, so a rejected call consumes no quota. The storage is Redis in production
(shared by all API processes) and memory in the embedded mode.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from limits import RateLimitItem, parse_many
from limits.aio.storage import Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from gateway.observability.metrics import counter

log = structlog.get_logger(__name__)

LIMITER_ERRORS = counter(
    "rate_limiter_errors",
    "Rate limit checks that failed because the limiter storage was unreachable.",
)
RATE_LIMITED = counter(
    "rate_limited_operations",
    "Operations refused by the rate limiter, by root field.",
    ["field"],
)


class RateLimitConfigError(ValueError):
    pass


def parse_rate_limits(spec: str) -> dict[str, list[RateLimitItem]]:
    """``field=limit[,limit...];...`` -> limits per root field (``*`` for the rest)."""
    rules: dict[str, list[RateLimitItem]] = {}
    for part in spec.split(";"):
        part = part.strip()
        if not part:
            continue
        field, sep, limits_text = part.partition("=")
        field = field.strip()
        if not sep or not field or not limits_text.strip():
            raise RateLimitConfigError(f"RATE_LIMITS: expected field=limit, got {part!r}")
        try:
            rules[field] = parse_many(limits_text.strip())
        except ValueError as exc:
            raise RateLimitConfigError(f"RATE_LIMITS: {field}: {exc}") from exc
    return rules


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    retry_after: float = 0.0
    field: str = ""
    #: Refused because the limiter's storage could not be reached (fail closed), not because a
    #: limit was reached: the client is told the service is unavailable, not that it was fast.
    unavailable: bool = False


class RateLimiter:
    def __init__(
        self,
        rules: dict[str, list[RateLimitItem]],
        storage: Storage,
        *,
        fail_open: bool,
        on_close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._rules = rules
        self._limiter = SlidingWindowCounterRateLimiter(storage)
        self._fail_open = fail_open
        self._on_close = on_close

    async def close(self) -> None:
        if self._on_close is not None:
            await self._on_close()

    @property
    def enabled(self) -> bool:
        return bool(self._rules)

    def _limits_of(self, field: str) -> tuple[str, list[RateLimitItem]]:
        if field in self._rules:
            return field, self._rules[field]
        return "*", self._rules.get("*", [])

    async def check(self, key_id: str, costs: dict[str, int]) -> Decision:
        """Count ``costs`` (root field -> weight) against the key's windows, or refuse all."""
        try:
            return await self._check(key_id, costs)
        except Exception as exc:
            LIMITER_ERRORS.inc()
            log.warning(
                "rate_limiter_unavailable", error=type(exc).__name__, fail_open=self._fail_open
            )
            if self._fail_open:
                return Decision(True)
            return Decision(False, 1.0, "*", unavailable=True)

    async def _check(self, key_id: str, costs: dict[str, int]) -> Decision:
        planned = [
            (item, bucket, cost)
            for field, cost in costs.items()
            for bucket, items in [self._limits_of(field)]
            for item in items
        ]
        if len(planned) > 1:
            # Several windows: test them all first, so a refusal by the last one does not
            # leave the earlier ones counted. (A single sliding-window hit checks before it
            # counts by itself.)
            for item, bucket, cost in planned:
                if not await self._limiter.test(item, key_id, bucket, cost=cost):
                    return await self._refuse(item, key_id, bucket)
        for item, bucket, cost in planned:
            if not await self._limiter.hit(item, key_id, bucket, cost=cost):
                return await self._refuse(item, key_id, bucket)
        return Decision(True)

    async def _refuse(self, item: RateLimitItem, key_id: str, bucket: str) -> Decision:
        stats = await self._limiter.get_window_stats(item, key_id, bucket)
        retry_after = max(0.001, stats.reset_time - time.time())
        RATE_LIMITED.labels(bucket).inc()
        return Decision(False, round(retry_after, 3), bucket)
