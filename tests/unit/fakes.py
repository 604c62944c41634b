"""In-memory stand-ins shared by the unit tests of code that writes to a socket."""

from __future__ import annotations

from typing import Any


class FakeTransport:
    """An asyncio transport that keeps what is written to it and never blocks."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default
