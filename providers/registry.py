"""Which providers carry which channel, in failover order, each behind its circuit breaker."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence

from gateway.domain.channels import Channel
from gateway.services.ports import Provider
from providers.breaker import BREAKER_STATES, CircuitBreaker


class FailoverRegistry:
    def __init__(
        self,
        by_channel: Mapping[Channel, Sequence[Provider]],
        *,
        threshold: int = 5,
        cooldown: float = 30.0,
        on_close: Sequence[Callable[[], Awaitable[None]]] = (),
    ) -> None:
        self._on_close = list(on_close)
        self._by_channel = {channel: list(providers) for channel, providers in by_channel.items()}
        self.breakers: dict[str, CircuitBreaker] = {}
        self._named: dict[str, Provider] = {}
        for providers in self._by_channel.values():
            for provider in providers:
                self._named.setdefault(provider.name, provider)
                if provider.name not in self.breakers:
                    self.breakers[provider.name] = CircuitBreaker(
                        provider.name, threshold=threshold, cooldown=cooldown
                    )

    def candidates(self, channel: Channel) -> list[tuple[Provider, CircuitBreaker]]:
        """The channel's providers in failover order."""
        return [(p, self.breakers[p.name]) for p in self._by_channel.get(channel, [])]

    def named(self, name: str) -> tuple[Provider, CircuitBreaker] | None:
        provider = self._named.get(name)
        return None if provider is None else (provider, self.breakers[name])

    def report_states(self) -> None:
        """Show these breakers' states on this process's ``/metrics``.

        Only where deliveries run (a worker, or the API with its embedded worker): elsewhere
        the breakers are never used and their "closed" would be a false report.
        """
        BREAKER_STATES.show(self.breakers.values())

    async def aclose(self) -> None:
        """Release what the providers hold (their HTTP sessions)."""
        BREAKER_STATES.hide(self.breakers.values())
        for close in self._on_close:
            await close()
