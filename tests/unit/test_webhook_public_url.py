"""The URL a Twilio signature is checked against, built from the ASGI scope.

It must equal what Starlette's ``Request.url`` gives (path and query as received, under our
public base URL), or genuine callbacks would be refused and forged ones could pass.
"""

from __future__ import annotations

import pytest
from starlette.requests import Request

from providers.webhooks.twilio import TwilioStatusWebhook

BASE = "https://hooks.example.com/"


def request(path: str, query: bytes) -> Request:
    scope = {
        "type": "http",
        "method": "POST",
        "scheme": "http",
        "server": ("127.0.0.1", 8000),
        "path": path,
        "query_string": query,
        "headers": [(b"host", b"127.0.0.1:8000")],
    }
    return Request(scope)


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/webhooks/twilio/status", b""),
        ("/webhooks/twilio/status", b"mid=0123456789abcdef0123456789abcdef"),
        ("/webhooks/twilio/status", b"mid=a%20b&x=%C3%A9&empty="),
        ("/webhooks/twilio/odd?#\\path", b"q=1"),
        ("/webhooks/twilio/caf\u00e9", b"mid=1"),
    ],
)
def test_the_signed_url_is_the_public_base_plus_the_path_and_query_received(
    path: str, query: bytes
) -> None:
    incoming = request(path, query)
    expected = (
        BASE.rstrip("/")
        + incoming.url.path
        + (f"?{incoming.url.query}" if incoming.url.query else "")
    )
    adapter = TwilioStatusWebhook("token", BASE)
    assert adapter.signed_url(path, query.decode()) == expected
