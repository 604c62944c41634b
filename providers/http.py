"""The one outbound HTTP stack: provider API calls, attachment fetches, sandbox callbacks.

:class:`ProviderSession` is a bounded keep-alive aiohttp client (a TLS handshake saved per
message). aiohttp rather than httpx: on the delivery hot path a request costs it a fraction of
the CPU httpx spends, whose pool bookkeeping also grows with the requests in flight (figures in
``bench/RESULTS.md``). Nothing outside this module imports aiohttp: adapters see
:class:`ProviderResponse`, :class:`StreamedResponse` and :class:`TransportError`.

Credentials are passed per request, never set on a session, because a session may also fetch
URLs chosen by API callers; for the same reason it keeps no cookies and reads no proxy or
netrc from the environment.

Transport failures, as :class:`TransportError` (``unsent`` tells which side of the line)::

    aiohttp.ClientError
    +-- ClientConnectorError, ConnectionTimeoutError  request never left (the connect timeout
        (waiting for a pooled connection too),        also bounds waiting for a free pooled
        InvalidURL                                    connection): safe to retry
    +-- SocketTimeoutError, ServerDisconnectedError,  request may have been received:
        ClientOSError, ClientPayloadError, ...        retrying may send the message twice
    and TimeoutError for the whole call's backstop deadline: may have been received.
"""

from __future__ import annotations

import base64
import email.utils
import ipaddress
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl, urlsplit, urlunsplit
from uuid import UUID

import aiohttp
import orjson
import yarl
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from gateway.observability.redaction import REDACTED
from gateway.services.ports import PermanentProviderError, ProviderReceipt, TransientProviderError
from gateway.settings import Settings

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

__all__ = [
    "USER_AGENT",
    "ProviderResponse",
    "ProviderSession",
    "Refusal",
    "StreamedResponse",
    "TransportError",
    "basic_auth",
    "callback_url",
    "json_object",
    "loggable_url",
    "looked_up",
    "receipt",
    "refusal_error",
    "sent",
    "transport_error",
]

USER_AGENT: Final = "messaging-gateway/0.1"

# The request never reached the server: retrying cannot duplicate the message.
_UNSENT: Final = (
    aiohttp.ClientConnectorError,
    aiohttp.ConnectionTimeoutError,
    aiohttp.InvalidURL,
)
# Failures under the names audit trails have always shown for them.
_CODES: Final[dict[type[BaseException], str]] = {
    aiohttp.ClientConnectorError: "ConnectError",
    aiohttp.ClientConnectorDNSError: "ConnectError",
    aiohttp.ConnectionTimeoutError: "ConnectTimeout",
    aiohttp.SocketTimeoutError: "ReadTimeout",
    aiohttp.ServerDisconnectedError: "RemoteProtocolError",
    TimeoutError: "Timeout",
}
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
# Characters a URL may not carry unquoted (besides spaces, controls and non-ASCII ones), and a
# percent sign that starts no escape.
_UNSAFE: Final = frozenset(' "<>\\^`{|}')
_BARE_PERCENT: Final = re.compile(r"%(?![0-9A-Fa-f]{2})")
# Shorter than the idle timeouts of common servers (uvicorn and node: 5 s): a pooled connection
# is dropped by us before the server can close it under a request that is being sent, a race
# that would make the attempt ambiguous.
_KEEPALIVE_SECONDS: Final = 4.0

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class TransportError(Exception):
    """No HTTP answer (refused, reset, timed out, garbled).

    ``code`` names the failure; ``unsent`` is True only when the request surely never reached
    the server. Its text names the failure, never headers or credentials.
    """

    def __init__(self, code: str, detail: str, *, unsent: bool) -> None:
        super().__init__(detail)
        self.code = code
        self.unsent = unsent


def _transport_failure(exc: aiohttp.ClientError | TimeoutError) -> TransportError:
    code = _CODES.get(type(exc), type(exc).__name__)
    return TransportError(code, str(exc), unsent=isinstance(exc, _UNSENT))


@dataclass(frozen=True, slots=True)
class ProviderResponse:
    """A provider's answer, read in full (API answers are small)."""

    method: str
    url: str
    status_code: int
    reason_phrase: str
    headers: Mapping[str, str]
    content: bytes
    elapsed_ms: float

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not."""
        return orjson.loads(self.content)


class StreamedResponse:
    """An answer whose body is read piece by piece (a fetched file of unknown size)."""

    __slots__ = ("_response", "headers", "status_code")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status_code = response.status
        # Case-insensitive, as HTTP header names are.
        self.headers: Mapping[str, str] = response.headers

    @property
    def redirect_location(self) -> str | None:
        """Where a redirect points; None for any other answer."""
        if self.status_code in _REDIRECTS:
            return self.headers.get("Location")
        return None

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body (decoded from its Content-Encoding) as it arrives."""
        async for chunk in self._response.content.iter_chunked(64 * 1024):
            yield chunk


class ProviderSession:
    """Bounded keep-alive HTTP client; close it on shutdown.

    Waiting for a free pooled connection is bounded like a connect, unless
    ``wait_for_connections`` (then only the connect itself and each read are bounded, with no
    deadline for the whole call). The aiohttp session is created on first use, inside the
    running event loop it belongs to.
    """

    def __init__(
        self,
        *,
        max_connections: int,
        connect_timeout: float,
        read_timeout: float,
        wait_for_connections: bool = False,
        check_addresses: Callable[[list[IPAddress]], None] | None = None,
    ) -> None:
        self._max_connections = max_connections
        self._check_addresses = check_addresses
        # Waiting for a free pooled connection is a sign of overload, not of a slow provider:
        # bounded like a connect, so the worker backs off instead of piling up.
        pool_wait = None if wait_for_connections else connect_timeout
        self._timeout = aiohttp.ClientTimeout(
            connect=pool_wait,
            sock_connect=connect_timeout,
            sock_read=read_timeout,
            # Backstop for a peer that trickles its answer or never reads the request.
            total=None if wait_for_connections else connect_timeout + 2 * read_timeout,
        )
        # Fetched files may be large: only the gaps between their pieces are bounded.
        self._stream_timeout = aiohttp.ClientTimeout(
            connect=pool_wait, sock_connect=connect_timeout, sock_read=read_timeout
        )
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> ProviderSession:
        return cls(
            max_connections=settings.provider_max_connections,
            connect_timeout=settings.provider_connect_timeout,
            read_timeout=settings.provider_read_timeout,
        )

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                limit_per_host=0,
                keepalive_timeout=_KEEPALIVE_SECONDS,
                resolver=(
                    None
                    if self._check_addresses is None
                    else _CheckedResolver(self._check_addresses)
                ),
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                headers={"User-Agent": USER_AGENT},
                # Never implicit: no proxy or netrc from the environment.
                trust_env=False,
                # A fetched URL's cookies must not follow any later request.
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def post(
        self,
        url: str,
        *,
        body: bytes,
        headers: Mapping[str, str],
        read_at_most: int | None = None,
    ) -> ProviderResponse:
        """POST ``body``; raises :class:`TransportError` without an answer, never for an HTTP
        error status. With ``read_at_most`` only the start of the answer's body is read (an
        answer from a URL an API caller chose may be of any size)."""
        return await self._request("POST", url, body, headers, None, read_at_most)

    async def get(
        self,
        url: str,
        *,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None = None,
    ) -> ProviderResponse:
        """GET ``url`` (with ``params`` as its query); raises like :meth:`post`."""
        return await self._request("GET", url, None, headers, params)

    async def _request(
        self,
        method: str,
        url: str,
        body: bytes | None,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None,
        read_at_most: int | None = None,
    ) -> ProviderResponse:
        started = time.monotonic()
        try:
            # A provider API does not redirect: a redirect is answered as it is.
            async with self._open().request(
                method, url, data=body, headers=headers, params=params, allow_redirects=False
            ) as response:
                if read_at_most is None:
                    content = await response.read()
                else:
                    content = await response.content.read(read_at_most)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _transport_failure(exc) from exc
        return ProviderResponse(
            method=method,
            url=str(response.url),
            status_code=response.status,
            reason_phrase=response.reason or "",
            headers=response.headers,
            content=content,
            elapsed_ms=round((time.monotonic() - started) * 1000, 1),
        )

    @asynccontextmanager
    async def stream(self, url: str) -> AsyncIterator[StreamedResponse]:
        """GET ``url`` without following redirects, its body left to read; raises
        :class:`TransportError` without an answer or when the body breaks off."""
        try:
            async with self._open().get(
                _as_given(url), allow_redirects=False, timeout=self._stream_timeout
            ) as response:
                yield StreamedResponse(response)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _transport_failure(exc) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class _CheckedResolver(AbstractResolver):
    """The system resolver, whose answers must pass ``check`` before any is connected to:
    the addresses checked are the addresses used, so a name cannot be re-pointed between
    the check and the connection. ``check`` raises to refuse them all."""

    def __init__(self, check: Callable[[list[IPAddress]], None]) -> None:
        self._check = check
        self._resolver = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._resolver.resolve(host, port, family)
        self._check([ipaddress.ip_address(r["host"].split("%", 1)[0]) for r in found])
        return found

    async def close(self) -> None:
        await self._resolver.close()


def _as_given(url: str) -> yarl.URL:
    """The URL exactly as written when it needs no quoting. Re-quoted, ``%2F`` in a query would
    go out as ``/`` and ``%7E`` as ``~``: not the URL that was signed, for a pre-signed one."""
    written = url.isascii() and url.isprintable() and not _BARE_PERCENT.search(url)
    if written and not any(char in _UNSAFE for char in url):
        return yarl.URL(url, encoded=True)
    return yarl.URL(url)


def json_object(response: ProviderResponse) -> dict[str, Any] | None:
    """The body as a JSON object; None when it is not one (a proxy's HTML page, say)."""
    try:
        payload = response.json()
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


def basic_auth(username: str, password: str) -> str:
    """An ``Authorization`` header value for HTTP Basic authentication."""
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


def loggable_url(url: str) -> str:
    """The URL without user-info, fragment or query values; query keys are kept.

    Every query value goes, not only secret-looking ones: attachment URLs are often pre-signed
    (``X-Amz-Signature=...``, ``sig=...``) and such a URL is a credential in itself.
    """
    parts = urlsplit(str(url))
    netloc = parts.hostname or ""
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    query = "&".join(
        f"{key}={REDACTED}" for key, _ in parse_qsl(parts.query, keep_blank_values=True)
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def response_summary(response: ProviderResponse) -> dict[str, Any]:
    """Fields safe to log about a provider response (no request headers, no body)."""
    return {
        "method": response.method,
        "url": loggable_url(response.url),
        "status_code": response.status_code,
        "elapsed_ms": response.elapsed_ms,
    }


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return max(0.0, moment.timestamp() - current)


async def sent(
    log: FilteringBoundLogger,
    provider: str,
    request: Awaitable[ProviderResponse],
    message_id: UUID,
) -> ProviderResponse:
    """The answer ``request`` (the sending of our message ``message_id``) gets; without one,
    :func:`logged_transport_error` raised instead, as ``provider_transport_error``."""
    return await _answered(
        log, provider, request, "provider_transport_error", message_id=str(message_id)
    )


async def looked_up(
    log: FilteringBoundLogger,
    provider: str,
    request: Awaitable[ProviderResponse],
    provider_message_id: str,
) -> ProviderResponse:
    """The answer ``request`` (a lookup of the vendor's ``provider_message_id``) gets; without
    one, :func:`logged_transport_error` raised instead, as ``provider_lookup_failed``."""
    return await _answered(
        log, provider, request, "provider_lookup_failed", provider_message_id=provider_message_id
    )


async def _answered(
    log: FilteringBoundLogger,
    provider: str,
    request: Awaitable[ProviderResponse],
    event: str,
    **context: str,
) -> ProviderResponse:
    try:
        return await request
    except TransportError as exc:
        raise logged_transport_error(log, event, provider, exc, **context) from exc


def callback_url(url: str, message_id: UUID) -> str:
    """``url`` with our message id as ``mid`` in its query: a callback that overtakes the
    recording of the vendor's id (it can arrive before the worker commits) still finds its
    message."""
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}mid={message_id.hex}"


def transport_error(provider: str, exc: TransportError) -> TransientProviderError:
    """A transport failure as a transient error, ambiguous unless it surely never left."""
    description = f"{provider} {exc.code}: {exc}" if str(exc) else f"{provider} {exc.code}"
    return TransientProviderError(exc.code.upper(), description, ambiguous=not exc.unsent)


def logged_transport_error(
    log: FilteringBoundLogger, event: str, provider: str, exc: TransportError, **context: str
) -> TransientProviderError:
    """:func:`transport_error`, logged as ``event`` by the adapter's own logger."""
    error = transport_error(provider, exc)
    log.warning(event, provider=provider, **context, error=error.code, ambiguous=error.ambiguous)
    return error


# Behind these statuses a proxy or the vendor itself may have accepted the message before failing.
_AMBIGUOUS_5XX: Final = frozenset({502, 504})


def _retry_after(response: ProviderResponse) -> float | None:
    """The seconds the answer's ``Retry-After`` asks us to wait, if it has one."""
    return parse_retry_after(response.headers.get("Retry-After"))


def server_error(code: str, text: str, response: ProviderResponse) -> TransientProviderError:
    """A 5xx answer: transient, not before the Retry-After the vendor may give."""
    return TransientProviderError(
        code,
        text,
        retry_after=_retry_after(response),
        ambiguous=response.status_code in _AMBIGUOUS_5XX,
    )


@dataclass(frozen=True, slots=True)
class Refusal:
    """A vendor's reading of a non-success answer, in the terms every adapter classifies by."""

    code: str
    text: str
    #: The vendor's own code says it throttled us (a 429 always does).
    rate_limited: bool = False
    #: The vendor gave up on a request it had received, and may have acted on it.
    timed_out: bool = False
    #: The recipient was refused for having unsubscribed: their consent, not only a failure.
    unsubscribed: bool = False
    #: Seconds until the vendor's own rate-limit window resets, for an answer without
    #: ``Retry-After``.
    reset_after: float | None = None


def refusal_error(
    log: FilteringBoundLogger,
    provider: str,
    response: ProviderResponse,
    event: str,
    refusal: Refusal,
    **context: str,
) -> TransientProviderError | PermanentProviderError:
    """The error a non-success answer stands for, logged as ``event`` by the adapter's logger.

    Throttling is transient, not before ``Retry-After`` (else the vendor's reset); a 5xx is
    :func:`server_error`; a request the vendor timed out is transient and ambiguous. Anything
    else is permanent: the same request can never succeed.
    """
    code, text = refusal.code, refusal.text
    status = response.status_code
    log.warning(event, provider=provider, code=code, **context, **response_summary(response))
    if status == 429 or refusal.rate_limited:
        given = _retry_after(response)
        wait = given if given is not None else refusal.reset_after
        return TransientProviderError(code, text, retry_after=wait, rate_limited=True)
    if status >= 500:
        return server_error(code, text, response)
    if refusal.timed_out:
        return TransientProviderError(code, text, ambiguous=True)
    return PermanentProviderError(code, text, recipient_unsubscribed=refusal.unsubscribed)


def missing_id_error(
    log: FilteringBoundLogger, provider: str, response: ProviderResponse, missing: str
) -> TransientProviderError:
    """A success answer without the vendor's id for the message (``missing``): we cannot tell
    what it accepted, and the message may well exist."""
    log.warning("provider_bad_response", provider=provider, **response_summary(response))
    return TransientProviderError(
        "INVALID_RESPONSE",
        f"{provider} answered {response.status_code} without {missing}",
        ambiguous=True,
    )


def receipt(
    log: FilteringBoundLogger,
    provider: str,
    message_id: UUID,
    response: ProviderResponse,
    vendor_id: object,
    missing: str,
    **detail: object,
) -> ProviderReceipt:
    """The receipt of a message the vendor took, ``vendor_id`` its id as the answer gave it,
    logged with ``detail``; :func:`missing_id_error` without one (``missing`` names it)."""
    if not isinstance(vendor_id, str) or not vendor_id:
        raise missing_id_error(log, provider, response, missing)
    log.info(
        "provider_accepted",
        provider=provider,
        message_id=str(message_id),
        provider_message_id=vendor_id,
        **detail,
    )
    return ProviderReceipt(provider, vendor_id)
