"""Who gets the embedded mode's conveniences: the decision on crafted ASGI scopes."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.loopback import is_local_request, is_loopback_address, is_loopback_host


def scope(client: tuple[str, int] | None, *headers: tuple[str, str]) -> dict[str, Any]:
    return {
        "type": "http",
        "client": client,
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
    }


@pytest.mark.parametrize(
    "peer", ["127.0.0.1", "127.0.0.2", "127.255.255.254", "::1", "::ffff:127.0.0.1"]
)
def test_a_loopback_peer_is_local(peer: str) -> None:
    assert is_local_request(scope((peer, 50000), ("Host", "127.0.0.1:8080")))
    assert is_local_request(scope((peer, 50000)))  # no Host: not a browser


@pytest.mark.parametrize(
    "peer",
    ["203.0.113.9", "192.0.2.2", "10.0.0.1", "0.0.0.0", "::", "fd00::2", "::ffff:10.0.0.1"],
)
def test_any_other_peer_is_not(peer: str) -> None:
    assert not is_local_request(scope((peer, 50000), ("Host", "127.0.0.1:8080")))


@pytest.mark.parametrize("client", [None, ("testclient", 50000), ("localhost", 1), ("", 0)])
def test_an_unknown_or_named_peer_is_not(client: tuple[str, int] | None) -> None:
    # A Unix socket (a proxy's, typically) has no peer address; names are not resolved.
    assert not is_local_request(scope(client))
    assert not is_local_request({"type": "http", "headers": []})


@pytest.mark.parametrize(
    "header",
    [
        ("X-Forwarded-For", "203.0.113.9"),
        ("X-Forwarded-For", "127.0.0.1"),
        ("Forwarded", "for=127.0.0.1"),
        ("X-Real-IP", "127.0.0.1"),
    ],
)
def test_a_relayed_request_is_not_local_whatever_it_claims(header: tuple[str, str]) -> None:
    """A proxy on this machine connects from loopback for someone elsewhere; a forwarding
    header only ever withholds, never grants (its value is not even read)."""
    assert not is_local_request(scope(("127.0.0.1", 50000), header))
    assert not is_local_request(scope(("203.0.113.9", 50000), header))


@pytest.mark.parametrize(
    "host",
    ["localhost", "localhost:8080", "LOCALHOST.", "app.localhost:80", "127.0.0.1", "[::1]:8080"],
)
def test_a_loopback_host_header_is_local(host: str) -> None:
    assert is_local_request(scope(("127.0.0.1", 50000), ("Host", host)))


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:8080", "localhost.evil.example", "192.0.2.2:8080", ""]
)
def test_a_foreign_host_header_is_not(host: str) -> None:
    """DNS rebinding: another site's page, its name resolved to 127.0.0.1 in the browser."""
    assert not is_local_request(scope(("127.0.0.1", 50000), ("Host", host)))


def test_bind_addresses() -> None:
    for local in ("127.0.0.1", "127.0.1.1", "::1", "[::1]", "localhost", "LOCALHOST"):
        assert is_loopback_host(local), local
    for network in ("0.0.0.0", "::", "", "192.0.2.2", "example.org", "fd00::2"):
        assert not is_loopback_host(network), network
    assert is_loopback_address("127.0.0.1") and not is_loopback_address("localhost")
