"""gateway.web.webhooks._body: the whole body, in any number of chunks, within the limit."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.requests import ClientDisconnect, Request

from gateway.web.webhooks import _body
from providers.webhooks import Refused


def request(messages: list[dict[str, Any]], headers: list[tuple[bytes, bytes]]) -> Request:
    pending = list(messages)

    async def receive() -> dict[str, Any]:
        return pending.pop(0)

    return Request({"type": "http", "method": "POST", "headers": headers}, receive)


def chunk(body: bytes, more: bool) -> dict[str, Any]:
    return {"type": "http.request", "body": body, "more_body": more}


async def test_reads_every_chunk() -> None:
    got = await _body(request([chunk(b"a=1", True), chunk(b"&b=2", True), chunk(b"", False)], []))
    assert got == b"a=1&b=2"


async def test_a_declared_length_over_the_limit_is_refused_unread() -> None:
    with pytest.raises(Refused) as refused:
        await _body(request([], [(b"content-length", b"11")]), limit=10)
    assert refused.value.status == 413


async def test_an_undeclared_body_over_the_limit_is_refused() -> None:
    with pytest.raises(Refused) as refused:
        await _body(request([chunk(b"x" * 6, True), chunk(b"x" * 6, False)], []), limit=10)
    assert refused.value.status == 413


async def test_a_client_gone_midway_is_an_error() -> None:
    with pytest.raises(ClientDisconnect):
        await _body(request([chunk(b"x", True), {"type": "http.disconnect"}], []))
