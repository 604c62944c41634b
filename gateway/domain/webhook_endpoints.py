"""Webhook endpoints: an account's HTTPS URLs that audit-trail events are POSTed to.

Pure rules only: which addresses an endpoint URL may reach, which events an endpoint wants,
when a failed delivery is tried again, and what an answer means for the delivery and for its
endpoint. The services decide when to ask (at creation, and again at every delivery).
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final
from urllib.parse import urlsplit
from uuid import UUID

from gateway.domain.records import MessageEvent
from gateway.domain.statuses import MessageStatus

URL_MAX: Final = 2000
DESCRIPTION_MAX: Final = 500
#: Event kinds an endpoint may name in its filter: longer ones exist nowhere.
KIND_MAX: Final = 32
#: How long the secret a rotation replaced keeps signing deliveries beside the new one.
ROTATION_OVERLAP: Final = timedelta(hours=24)

# The cloud metadata services: link-local or private already, named for the error message.
_METADATA: Final = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)
# NAT64's well-known prefix embeds any IPv4 address, private ones included.
_NAT64: Final = ipaddress.ip_network("64:ff9b::/96")


class DisabledReason(StrEnum):
    #: The account disabled it.
    MANUAL = "MANUAL"
    #: It answered 410 Gone: it asked not to be called again.
    GONE = "GONE"
    #: Every delivery failed for longer than the setting allows.
    FAILING = "FAILING"


class EndpointEventKind(StrEnum):
    """What happened to an endpoint, as its account reads it in the endpoint's event log."""

    CREATED = "CREATED"
    #: Its URL, description or filters changed.
    UPDATED = "UPDATED"
    #: By the account (MANUAL) or by the dispatcher (GONE, FAILING): see the event's reason.
    DISABLED = "DISABLED"
    ENABLED = "ENABLED"
    SECRET_ROTATED = "SECRET_ROTATED"


@dataclass(frozen=True, slots=True)
class EndpointEvent:
    """One entry of an endpoint's event log; ``reason`` only for DISABLED."""

    id: int
    endpoint_id: UUID
    kind: EndpointEventKind
    reason: DisabledReason | None
    occurred_at: datetime


class UnsafeUrl(ValueError):
    """An endpoint URL we refuse to call; the text says why, for the account to read."""


def address_problem(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why an endpoint may not reach ``address``, or None when it is a public unicast one.

    An IPv6 address that carries an IPv4 one (mapped ``::ffff:a.b.c.d``, NAT64 ``64:ff9b::``,
    6to4 ``2002::``) is judged by the IPv4 address it leads to.
    """
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return address_problem(embedded)
    if address in _METADATA:
        return "a cloud metadata address"
    for test, what in (
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (address.is_unspecified, "the unspecified address"),
        (address.is_reserved, "a reserved address"),
        (address.is_private, "a private address"),
        (not address.is_global, "not a public address"),
    ):
        if test:
            return what
    return None


@dataclass(frozen=True, slots=True)
class EndpointUrl:
    """A URL that passed the checks that need no DNS: scheme, host, no credentials."""

    url: str
    host: str
    #: The host is an IP address written out: no resolution, so nothing to rebind.
    literal: ipaddress.IPv4Address | ipaddress.IPv6Address | None


def parse_endpoint_url(url: str, *, allow_private: bool) -> EndpointUrl:
    """The URL's host, checked as far as it can be without resolving it; raises UnsafeUrl.

    ``allow_private`` (development and tests) lets ``http`` and private addresses through.
    """
    if len(url) > URL_MAX:
        raise UnsafeUrl(f"must be at most {URL_MAX} characters")
    if not url.isascii() or not url.isprintable() or " " in url:
        raise UnsafeUrl("must be an ASCII URL without spaces (punycode for other names)")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is no number
    except ValueError as exc:
        raise UnsafeUrl(f"is not a valid URL: {exc}") from exc
    schemes = ("https", "http") if allow_private else ("https",)
    if parts.scheme.lower() not in schemes:
        raise UnsafeUrl("must be an https:// URL")
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrl("must not carry credentials; the signature authenticates us")
    if parts.fragment:
        raise UnsafeUrl("must not have a #fragment")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise UnsafeUrl("has no host")
    try:
        literal: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(
            host.split("%", 1)[0]
        )
    except ValueError:
        literal = None
        named_local = host.lower() == "localhost" or host.lower().endswith(".localhost")
        if named_local and not allow_private:
            raise UnsafeUrl("must not point at localhost") from None
    if literal is not None and not allow_private:
        check_addresses([literal])
    return EndpointUrl(url, host, literal)


def check_addresses(
    addresses: list[ipaddress.IPv4Address | ipaddress.IPv6Address],
) -> None:
    """Raises UnsafeUrl unless the host resolved, and to public addresses only (every one:
    a client may connect to any of them)."""
    if not addresses:
        raise UnsafeUrl("its host does not resolve")
    for address in addresses:
        problem = address_problem(address)
        if problem is not None:
            raise UnsafeUrl(f"resolves to {problem} ({address})")


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which audit-trail events an endpoint wants; an empty set means every one."""

    kinds: frozenset[str] = frozenset()
    statuses: frozenset[MessageStatus] = frozenset()

    def wants(self, kind: str, status: MessageStatus) -> bool:
        return (not self.kinds or kind in self.kinds) and (
            not self.statuses or status in self.statuses
        )


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    id: UUID
    account_id: UUID
    url: str
    description: str | None
    filter: EventFilter
    enabled: bool
    disabled_reason: DisabledReason | None
    disabled_at: datetime | None
    #: Since when every delivery has failed; None while the last one succeeded.
    failing_since: datetime | None
    #: Until when the secret a rotation replaced still signs; None: no such secret.
    previous_secret_until: datetime | None
    created_at: datetime
    updated_at: datetime


class DeliveryState(StrEnum):
    PENDING = "PENDING"
    SUCCEEDED = "SUCCEEDED"
    #: Attempts exhausted, or the endpoint answered 410 or was deleted from under it.
    FAILED = "FAILED"


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    """One event on its way to one endpoint, and how its attempts went."""

    id: int
    endpoint_id: UUID
    account_id: UUID
    event: MessageEvent
    state: DeliveryState
    attempts: int
    last_status_code: int | None
    last_error: str | None
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    """Exponential backoff with jitter: try ``n`` (1-based) is followed, after a failure, by a
    pause of ``min(cap, base * factor ** (n - 1))`` shortened by up to a quarter at random,
    so endpoints that failed together are not all called again at the same instant.

    With the defaults (5 s, x4, cap 8 h, 10 tries) the pauses are about 5 s, 20 s, 80 s, 5 min,
    21 min, 85 min, 5.7 h, 8 h, 8 h: the last try comes about a day after the first.
    """

    base_seconds: float = 5.0
    factor: float = 4.0
    cap_seconds: float = 8 * 3600.0
    max_attempts: int = 10

    def pause(self, attempts: int, rng: random.Random | None = None) -> timedelta | None:
        """The pause after the ``attempts``-th failed try; None when it was the last."""
        if attempts >= self.max_attempts:
            return None
        full = min(self.cap_seconds, self.base_seconds * self.factor ** (attempts - 1))
        jitter = (rng or random).uniform(0.75, 1.0)
        return timedelta(seconds=full * jitter)


class Verdict(StrEnum):
    DELIVERED = "DELIVERED"
    RETRY = "RETRY"
    #: 410 Gone: the delivery fails for good and the endpoint is disabled.
    GONE = "GONE"


def verdict(status_code: int | None) -> Verdict:
    """What an answer (None: no answer at all) means. Redirects are not followed, and count
    as failures like any other answer outside 2xx."""
    if status_code is not None and 200 <= status_code < 300:
        return Verdict.DELIVERED
    if status_code == 410:
        return Verdict.GONE
    return Verdict.RETRY


def disabled_for_failing(failing_since: datetime | None, now: datetime, allowed: timedelta) -> bool:
    """Whether an endpoint that has failed without a success since ``failing_since`` has now
    failed for longer than ``allowed``."""
    return failing_since is not None and now - failing_since >= allowed
