"""Which provider carries which channel."""

from __future__ import annotations

from collections.abc import Mapping

from gateway.domain.channels import Channel
from gateway.services.ports import Provider


class StaticRegistry:
    def __init__(self, by_channel: Mapping[Channel, Provider]) -> None:
        self._by_channel = dict(by_channel)

    def for_channel(self, channel: Channel) -> Provider:
        return self._by_channel[channel]
