"""Use case: the pacing rate of each sender, set through the API or the command line and read
by the workers for every sender they take work from.

A sender's rate is its own (``sender_rates``) or its kind's default (settings; see
``gateway.domain.pacing`` for the number-type rule). Workers ask for the rates of many
senders at once, again and again, and rates change rarely: they are read through a short
cache per process (``ttl`` seconds), so a change reaches every worker within that time (the
process that made it at once). While the database cannot be read, the last known rate stands,
and a sender never read gets its default.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import KW_ONLY, dataclass, field
from uuid import UUID

import structlog

from gateway.domain.addresses import AddressError, normalize_email, normalize_number
from gateway.domain.messages import FieldProblem
from gateway.domain.pacing import (
    DefaultRates,
    SenderRate,
    check_rate,
    pacing_key,
    sender_kind,
)
from gateway.services.clock import utcnow
from gateway.services.ports import SenderRateStore

log = structlog.get_logger(__name__)

#: Senders whose rate one process keeps; past it the cache starts afresh.
CACHED_SENDERS_MAX = 100_000


@dataclass(eq=False, slots=True)
class SenderRates:
    store: SenderRateStore
    defaults: DefaultRates
    _: KW_ONLY
    ttl: float
    owned_addresses: Callable[[UUID], Awaitable[set[str]]] | None = None
    region: str = "US"
    clock: Callable[[], float] = time.monotonic
    # pacing key -> (good until, its own rate or None for the default)
    _cache: dict[str, tuple[float, float | None]] = field(
        default_factory=dict, init=False, repr=False
    )

    def default_of(self, sender: str) -> float:
        return self.defaults.of(sender_kind(sender))

    async def rates_of(self, senders: Collection[str]) -> dict[str, float]:
        """Segments per second of each sender (addresses or pacing keys), by pacing key."""
        now = self.clock()
        keys = {pacing_key(s): s for s in senders}
        stale = [k for k in keys if (hit := self._cache.get(k)) is None or hit[0] <= now]
        if stale:
            try:
                own = await self.store.rates(stale)
            except Exception:
                log.warning("sender_rates_unreadable", senders=len(stale), exc_info=True)
            else:
                if len(self._cache) + len(stale) > CACHED_SENDERS_MAX:
                    self._cache.clear()
                for key in stale:
                    self._cache[key] = (now + self.ttl, own.get(key))
        rates = {}
        for key in keys:
            hit = self._cache.get(key)
            own_rate = hit[1] if hit is not None else None
            rates[key] = own_rate if own_rate is not None else self.default_of(key)
        return rates

    async def rate_of(self, sender: str) -> float:
        return (await self.rates_of([sender]))[pacing_key(sender)]

    async def senders(self, account_id: UUID) -> list[SenderRate]:
        """The account's sender addresses with the rate each is paced at."""
        owned = sorted(await self._owned(account_id))
        own = await self.store.rates({pacing_key(a) for a in owned})
        return [self._shown(address, own.get(pacing_key(address))) for address in owned]

    async def set_rate(
        self, account_id: UUID, address: str, rate: float | None
    ) -> SenderRate | list[FieldProblem]:
        """Give one of the account's sender addresses its own rate (an e-mail address: its
        domain's rate, for every address of that domain); None: back to the default."""
        problems = check_rate(rate)
        try:
            normalized = self.normalize(address)
        except AddressError as exc:
            problems.append(FieldProblem("address", str(exc)))
        else:
            owned = await self._owned(account_id)
            if normalized not in owned:
                problems.append(
                    FieldProblem("address", f"{normalized} is not an address of this account")
                )
        if problems:
            return problems
        await self.store_rate(normalized, rate)
        return self._shown(normalized, rate)

    async def store_rate(self, address: str, rate: float | None) -> None:
        """Set the rate of a normalized address whose ownership the caller has checked."""
        key = pacing_key(address)
        await self.store.set_rate(key, rate, utcnow())
        self._cache[key] = (self.clock() + self.ttl, rate)

    async def _owned(self, account_id: UUID) -> set[str]:
        return await self.owned_addresses(account_id) if self.owned_addresses is not None else set()

    def normalize(self, address: str) -> str:
        text = address.strip()
        return normalize_email(text) if "@" in text else normalize_number(text, self.region)

    def _shown(self, address: str, own: float | None) -> SenderRate:
        return SenderRate(
            address=address,
            kind=sender_kind(address),
            segments_per_second=own if own is not None else self.default_of(address),
            is_default=own is None,
        )
