"""Which clients are on this machine: the embedded mode's conveniences are for them only.

The development key written into the GraphiQL page and the sandbox's control API
(``/sandbox/control/*``, ``/control/*`` of ``messaging-gateway sandbox``) are handed to a
request only when all of these hold:

- The connection's peer is a loopback address (127.0.0.0/8 or ::1). It is the socket's own
  peer: the servers run without proxy-header support, so no header can claim an address.
- The request carries no forwarding header (``Forwarded``, ``X-Forwarded-For``,
  ``X-Real-IP``): a reverse proxy on this machine connects from loopback on behalf of someone
  elsewhere. Such a header is never trusted to grant anything, only to withhold.
- ``Host`` names this machine by a loopback name (``localhost``, ``*.localhost`` or a loopback
  address). Otherwise a web page on another site, whose name it made the browser resolve to
  127.0.0.1 (DNS rebinding), would read the page's key as a same-origin response.

A proxy on this machine that adds no forwarding header and rewrites ``Host`` to a loopback
name cannot be told apart from a local client: do not put the embedded mode behind one.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Final

from starlette.types import Scope

__all__ = ["is_local_request", "is_loopback_address", "is_loopback_host"]

#: Headers a proxy adds when it relays a request; their presence alone makes it remote.
FORWARDING_HEADERS: Final = frozenset({b"forwarded", b"x-forwarded-for", b"x-real-ip"})


def is_loopback_address(host: str) -> bool:
    """True for an IP address literal in 127.0.0.0/8 or ::1 (also IPv4-mapped)."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def is_loopback_host(host: str) -> bool:
    """A bind address or host name that reaches this machine only (no name resolution)."""
    name = host.strip().rstrip(".").lower()
    return name == "localhost" or name.endswith(".localhost") or is_loopback_address(name)


def _host_name(value: str) -> str:
    """The name part of a Host header: ``[::1]:8080`` -> ``::1``, ``a:80`` -> ``a``."""
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    name, colon, port = value.rpartition(":")
    return name if colon and port.isdigit() and ":" not in name else value


def is_local_request(scope: Scope) -> bool:
    """See the module docstring: a loopback peer, nothing relayed, a loopback Host."""
    client = scope.get("client")
    if not client or not is_loopback_address(str(client[0])):
        return False
    headers: Iterable[tuple[bytes, bytes]] = scope.get("headers") or ()
    for name, value in headers:
        name = name.lower()
        if name in FORWARDING_HEADERS:
            return False
        if name == b"host" and not is_loopback_host(_host_name(value.decode("latin-1"))):
            return False
    return True
