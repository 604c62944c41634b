"""Webhook endpoints' pure rules: which URLs and addresses may be called (with a stub
resolver for names), the retry schedule, and what an answer means."""

from __future__ import annotations

import ipaddress
import random
from datetime import UTC, datetime, timedelta

import pytest

from gateway.domain.statuses import MessageStatus
from gateway.domain.webhook_endpoints import (
    EventFilter,
    RetrySchedule,
    UnsafeUrl,
    Verdict,
    address_problem,
    disabled_for_failing,
    parse_endpoint_url,
    verdict,
)
from gateway.services.webhook_endpoints import UrlGuard, new_secret

IP = ipaddress.IPv4Address | ipaddress.IPv6Address


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.1.2.3",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "100.64.0.1",  # carrier-grade NAT
        "169.254.169.254",  # cloud metadata
        "169.254.1.1",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fd00:ec2::254",  # AWS metadata over IPv6
        "ff02::1",
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "2002:a00:1::",  # 6to4 of 10.0.0.1
        "2001:db8::1",  # documentation
    ],
)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"]
)
def test_public_addresses_pass(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address)) is None


def test_the_metadata_address_is_named() -> None:
    assert address_problem(ipaddress.ip_address("169.254.169.254")) == "a cloud metadata address"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://example.com/hook", "https"),
        ("ftp://example.com/hook", "https"),
        ("https://user:pw@example.com/hook", "credentials"),
        ("https:///hook", "no host"),
        ("https://localhost/hook", "localhost"),
        ("https://api.localhost/hook", "localhost"),
        ("https://127.0.0.1/hook", "loopback"),
        ("https://[::1]/hook", "loopback"),
        ("https://[::ffff:169.254.169.254]/hook", "metadata"),
        ("https://169.254.169.254/latest/meta-data", "metadata"),
        ("https://example.com:99999/", "valid URL"),
        ("https://exa mple.com/", "spaces"),
        ("https://example.com/#frag", "fragment"),
        ("https://example.com/" + "a" * 2000, "at most"),
    ],
)
def test_unsafe_urls_are_refused_before_any_lookup(url: str, why: str) -> None:
    with pytest.raises(UnsafeUrl, match=why):
        parse_endpoint_url(url, allow_private=False)


def test_allowing_private_urls_lets_http_and_loopback_through_but_no_other_scheme() -> None:
    parsed = parse_endpoint_url("http://127.0.0.1:8080/hook", allow_private=True)
    assert parsed.literal == ipaddress.ip_address("127.0.0.1")
    assert parse_endpoint_url("http://localhost/x", allow_private=True).host == "localhost"
    with pytest.raises(UnsafeUrl):
        parse_endpoint_url("ftp://127.0.0.1/", allow_private=True)


class StubResolver:
    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def resolve(self, host: str) -> list[IP]:
        self.asked.append(host)
        return [ipaddress.ip_address(a) for a in self.answers.get(host, [])]


async def test_a_name_is_judged_by_every_address_it_resolves_to() -> None:
    resolver = StubResolver(
        {
            "public.example": ["93.184.216.34", "2606:4700:4700::1111"],
            "inside.example": ["10.0.0.7"],
            "mixed.example": ["93.184.216.34", "192.168.0.2"],
            "mapped.example": ["::ffff:127.0.0.1"],
            "metadata.example": ["169.254.169.254"],
        }
    )
    guard = UrlGuard(resolver, allow_private=False)
    await guard.check("https://public.example/hook")
    for host, why in [
        ("inside.example", "private"),
        ("mixed.example", "private"),
        ("mapped.example", "loopback"),
        ("metadata.example", "metadata"),
        ("nowhere.example", "does not resolve"),
    ]:
        with pytest.raises(UnsafeUrl, match=why):
            await guard.check(f"https://{host}/hook")
    # A literal address needs no lookup.
    resolver.asked.clear()
    with pytest.raises(UnsafeUrl):
        await guard.check("https://10.0.0.1/hook")
    assert resolver.asked == []


async def test_allowing_private_urls_skips_the_lookup() -> None:
    resolver = StubResolver({"inside.example": ["10.0.0.7"]})
    await UrlGuard(resolver, allow_private=True).check("http://inside.example/hook")
    assert resolver.asked == []


def test_a_secret_is_standard_webhooks_shaped() -> None:
    import base64

    secret = new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
    assert new_secret() != secret


def test_the_retry_schedule_grows_to_its_cap_with_jitter_and_ends() -> None:
    schedule = RetrySchedule()
    rng = random.Random(7)
    pauses = [schedule.pause(n, rng) for n in range(1, schedule.max_attempts)]
    assert all(p is not None for p in pauses)
    seconds = [p.total_seconds() for p in pauses if p is not None]
    for n, pause in enumerate(seconds, start=1):
        full = min(schedule.cap_seconds, schedule.base_seconds * schedule.factor ** (n - 1))
        assert 0.75 * full <= pause <= full
    assert seconds[0] < seconds[3] < seconds[6]
    assert max(seconds) <= schedule.cap_seconds
    # The last try comes about a day after the first.
    assert timedelta(hours=17) < timedelta(seconds=sum(seconds)) < timedelta(hours=27)
    assert schedule.pause(schedule.max_attempts, rng) is None


def test_verdicts() -> None:
    assert verdict(200) is Verdict.DELIVERED
    assert verdict(204) is Verdict.DELIVERED
    assert verdict(410) is Verdict.GONE
    for status in (None, 301, 302, 400, 404, 429, 500, 503):
        assert verdict(status) is Verdict.RETRY


def test_an_endpoint_is_disabled_only_after_failing_for_the_whole_period() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    allowed = timedelta(days=5)
    assert not disabled_for_failing(None, now, allowed)
    assert not disabled_for_failing(now - timedelta(days=4), now, allowed)
    assert disabled_for_failing(now - timedelta(days=5), now, allowed)


def test_an_empty_filter_wants_everything() -> None:
    assert EventFilter().wants("received", MessageStatus.RECEIVED)
    only = EventFilter(frozenset({"delivery_receipt"}), frozenset({MessageStatus.DELIVERED}))
    assert only.wants("delivery_receipt", MessageStatus.DELIVERED)
    assert not only.wants("accepted", MessageStatus.DELIVERED)
    assert not only.wants("delivery_receipt", MessageStatus.FAILED)
