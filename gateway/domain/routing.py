"""Which vendors a message may go through, in which order, and what a failed call means.

Routes: each channel has a default order of vendors (the ``*_PROVIDERS`` settings). An
account may override it per channel, for every destination or for the numbers of one country
(the recipient's region in phonenumbers' data, e.g. ``GB`` for +44): the most specific route
that applies wins, country over account-wide over the default.

Failover: a vendor's failure decides the next step (:func:`after_failure`).

- The vendor surely did not take the message (the request never left, a 5xx it answered before
  accepting anything, a 429): the next vendor is tried at once, in the same attempt.
- It may have taken it (a timeout after the request was sent, a 502/504 from a proxy, an
  answer we cannot read): the message is never sent through another vendor. It is kept to that
  vendor, held for the ambiguous grace period, then retried through the same vendor only.
- It refused the message for good: the message fails; no other vendor is asked.

A message a vendor took (or may have taken) is kept to it for every later attempt, including
a retry asked for through the API: only that vendor can know whether it is already out. One
taken back from a worker that stopped mid-attempt goes through its route's first vendor
alone (:func:`plan_attempt`).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

import phonenumbers

from gateway.domain.channels import Channel


@dataclass(frozen=True, slots=True)
class Route:
    """An account's vendor order for a channel: for every destination (``country`` None) or
    for the numbers of one country (ISO 3166-1 alpha-2, upper case)."""

    channel: Channel
    country: str | None
    providers: tuple[str, ...]


def country_of(recipient: str) -> str | None:
    """The region of an E.164 phone number (``GB`` for +44 7...); None for anything else."""
    if not recipient.startswith("+"):
        return None
    try:
        parsed = phonenumbers.parse(recipient, None)
    except phonenumbers.NumberParseException:
        return None
    region = phonenumbers.region_code_for_number(parsed)
    if region is None and parsed.country_code is not None:
        # Not a number of any region's plan (e.g. a range set aside for drama): the main
        # country of its calling code, as +44 is the United Kingdom's.
        region = phonenumbers.region_code_for_country_code(parsed.country_code)
    return None if region in (None, phonenumbers.UNKNOWN_REGION) else region


def route_for(
    channel: Channel,
    recipient: str,
    default: Sequence[str],
    routes: Sequence[Route],
) -> tuple[str, ...]:
    """The vendors to try for one message, in order: the account's route for the recipient's
    country, else its route for the channel, else the channel's default order."""
    mine = [r for r in routes if r.channel == channel]
    # Only a route for a country needs the recipient's: parsing a number costs more than the
    # rest of the choice, and most accounts route by channel alone.
    if channel is not Channel.EMAIL and any(r.country is not None for r in mine):
        country = country_of(recipient)
        for route in mine:
            if country is not None and route.country == country:
                return route.providers
    for route in mine:
        if route.country is None:
            return route.providers
    return tuple(default)


class RouteError(ValueError):
    """A route that cannot be stored; ``code`` says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def check_route(route: Route, carriers: dict[str, frozenset[Channel]]) -> Route:
    """The route, validated against the vendors configured (``carriers``: each vendor's
    channels); raises :class:`RouteError` (EMPTY_ROUTE, UNKNOWN_PROVIDER, WRONG_CHANNEL,
    DUPLICATE_PROVIDER, INVALID_COUNTRY)."""
    if not route.providers:
        raise RouteError("EMPTY_ROUTE", "a route lists at least one provider")
    for name in route.providers:
        if name not in carriers:
            known = ", ".join(sorted(carriers))
            raise RouteError("UNKNOWN_PROVIDER", f"unknown provider {name!r}: choose from {known}")
        if route.channel not in carriers[name]:
            raise RouteError(
                "WRONG_CHANNEL", f"provider {name!r} does not carry {route.channel.value}"
            )
    if len(set(route.providers)) != len(route.providers):
        raise RouteError("DUPLICATE_PROVIDER", "a provider is listed twice")
    if route.country is not None:
        if route.channel is Channel.EMAIL:
            raise RouteError("INVALID_COUNTRY", "e-mail routes have no country")
        if route.country not in phonenumbers.SUPPORTED_REGIONS:
            raise RouteError("INVALID_COUNTRY", f"unknown country {route.country!r}")
    return route


class Step(enum.StrEnum):
    """What follows a vendor's failure."""

    #: The vendor surely did not take it: the next vendor, now.
    NEXT = "next"
    #: The vendor may have taken it: kept to that vendor, held, never sent elsewhere.
    HOLD = "hold"
    #: Refused for good: the message fails.
    FAIL = "fail"


def after_failure(*, permanent: bool, ambiguous: bool) -> Step:
    """The failover decision table."""
    if permanent:
        return Step.FAIL
    if ambiguous:
        return Step.HOLD
    return Step.NEXT


#: The error a message carries once it was taken back from a worker that stopped mid-attempt
#: (kept until a vendor answers for it): its worker may have been calling any vendor.
ABANDONED_CODE = "ABANDONED"


@dataclass(frozen=True, slots=True)
class Plan:
    """The vendors one attempt may call, in order. ``kept`` means the first alone: the
    attempt waits while its circuit is open, never fails over, and a retry stays with it."""

    providers: tuple[str, ...]
    kept: bool


def plan_attempt(*, provider: str | None, last_error: str | None, order: Sequence[str]) -> Plan:
    """Which vendors an attempt may use (``order``: the message's route, configured vendors
    only, circuits ignored).

    A message a vendor took or may have taken stays with that vendor. One taken back from a
    stopped worker (its last error :data:`ABANDONED_CODE`) is ambiguous with an unknown vendor:
    it goes through the route's first vendor only, the one its worker would have called
    unless that vendor's circuit was open in that process, and never fails over from it, so
    that at most the vendor the dead worker failed over to can also hold it. Otherwise the
    route, with failover."""
    if provider is not None:
        return Plan((provider,), kept=True)
    if last_error == ABANDONED_CODE and order:
        return Plan((order[0],), kept=True)
    return Plan(tuple(order), kept=False)
