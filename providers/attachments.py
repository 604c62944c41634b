"""Attachments fetched from their URLs, for the vendors that want the bytes (SendGrid, Mailgun).

Messages carry attachments as URLs. Fetching a URL an API caller chose is a server-side request
forgery risk, so every host is resolved and refused when it points inside our network, unless
explicitly allowed (development and tests); redirects are followed a few hops, each through the
same guard, and the total size is bounded while streaming.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Final
from urllib.parse import SplitResult, unquote, urljoin, urlsplit

import structlog

from gateway.domain.records import Message
from gateway.services.ports import PermanentProviderError
from providers.http import ProviderSession, StreamedResponse, TransportError, loggable_url

__all__ = [
    "ATTACHMENT_REFUSED",
    "ATTACHMENT_TOO_LARGE",
    "ATTACHMENT_UNAVAILABLE",
    "MAX_ATTACHMENT_BYTES",
    "Attachment",
    "AttachmentFetcher",
]

log = structlog.get_logger(__name__)

ATTACHMENT_UNAVAILABLE: Final = "ATTACHMENT_UNAVAILABLE"
ATTACHMENT_REFUSED: Final = "ATTACHMENT_REFUSED"
ATTACHMENT_TOO_LARGE: Final = "ATTACHMENT_TOO_LARGE"
MAX_ATTACHMENT_BYTES: Final = 10 * 1024 * 1024
MAX_REDIRECTS: Final = 3


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    content_type: str
    content: bytes


class AttachmentFetcher:
    def __init__(
        self,
        client: ProviderSession,
        *,
        allow_private_hosts: bool = False,
        max_bytes: int = MAX_ATTACHMENT_BYTES,
    ) -> None:
        self._client = client
        self._allow_private = allow_private_hosts
        self._max_bytes = max_bytes

    async def fetch_all(self, message: Message) -> list[Attachment]:
        """Every attachment of ``message``, in order; PermanentProviderError for one that
        cannot be had (refused, unavailable, or all of them together over the limit)."""
        fetched: list[Attachment] = []
        budget = self._max_bytes
        for url in message.attachments:
            item = await self._fetch(url, budget)
            budget -= len(item.content)
            fetched.append(item)
        return fetched

    async def _fetch(self, url: str, budget: int) -> Attachment:
        current = _parse_url(url)
        shown = loggable_url(url)
        for _ in range(MAX_REDIRECTS + 1):
            await self._guard(current)
            try:
                async with self._client.stream(current.geturl()) as response:
                    location = response.redirect_location
                    if location is not None:
                        # Each hop goes through the guard: a public URL redirecting to an
                        # internal one is the classic way around an SSRF check.
                        current = _parse_url(urljoin(current.geturl(), location))
                        continue
                    if response.status_code != 200:
                        raise PermanentProviderError(
                            ATTACHMENT_UNAVAILABLE,
                            f"attachment {shown} answered HTTP {response.status_code}",
                        )
                    content = await self._read_limited(response, budget, shown)
                    return Attachment(
                        filename=_filename(current),
                        content_type=_content_type(response),
                        content=content,
                    )
            except TransportError as exc:
                raise PermanentProviderError(
                    ATTACHMENT_UNAVAILABLE,
                    f"attachment {shown} could not be fetched: {exc.code}",
                ) from exc
        raise PermanentProviderError(
            ATTACHMENT_UNAVAILABLE, f"attachment {shown} redirects too often"
        )

    async def _read_limited(self, response: StreamedResponse, budget: int, shown: str) -> bytes:
        declared = response.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > budget:
            raise _too_large(shown, self._max_bytes)
        chunks: list[bytes] = []
        size = 0
        # Counted while streaming: Content-Length may be absent or lie.
        async for chunk in response.chunks():
            size += len(chunk)
            if size > budget:
                raise _too_large(shown, self._max_bytes)
            chunks.append(chunk)
        return b"".join(chunks)

    async def _guard(self, url: SplitResult) -> None:
        """Refuse non-HTTP schemes, and hosts resolving to non-public addresses.

        The connection resolves the name again, so a DNS answer that changes in between (DNS
        rebinding) is not caught here; a network-level egress policy is the complete answer.
        """
        if url.scheme not in ("http", "https"):
            raise PermanentProviderError(
                ATTACHMENT_REFUSED, f"attachment scheme {url.scheme!r} is not http(s)"
            )
        host = url.hostname
        if not host:
            raise PermanentProviderError(ATTACHMENT_REFUSED, "attachment URL has no host")
        if self._allow_private:
            return
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except OSError as exc:
            raise PermanentProviderError(
                ATTACHMENT_UNAVAILABLE, f"attachment host {host!r} does not resolve"
            ) from exc
        for *_, sockaddr in infos:
            address = str(sockaddr[0]).split("%", 1)[0]  # drop an IPv6 zone id
            if not _is_public(ipaddress.ip_address(address)):
                log.warning("attachment_refused", host=host, reason="non-public address")
                raise PermanentProviderError(
                    ATTACHMENT_REFUSED,
                    f"attachment host {host!r} resolves to a non-public address",
                )


def _is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    # is_global excludes private, loopback, link-local, shared (CGNAT), reserved, unspecified.
    return address.is_global and not address.is_multicast


def _too_large(shown: str, limit: int) -> PermanentProviderError:
    return PermanentProviderError(
        ATTACHMENT_TOO_LARGE,
        f"attachments exceed {limit // (1024 * 1024)} MB in total (at {shown})",
    )


def _parse_url(url: str) -> SplitResult:
    """An attachment URL taken apart; refused when it cannot be."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not one
    except ValueError as exc:
        raise PermanentProviderError(ATTACHMENT_REFUSED, "attachment URL is invalid") from exc
    if any(ord(char) <= 0x20 or ord(char) == 0x7F for char in url):
        raise PermanentProviderError(ATTACHMENT_REFUSED, "attachment URL is invalid")
    return parts


def _filename(url: SplitResult) -> str:
    name = PurePosixPath(unquote(url.path)).name
    return name or "attachment"


def _content_type(response: StreamedResponse) -> str:
    value = response.headers.get("Content-Type", "")
    main = value.split(";", 1)[0].strip().lower()
    return main or "application/octet-stream"
