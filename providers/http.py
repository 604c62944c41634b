"""The outbound HTTP clients of the provider adapters, and what they share around them.

Two clients, each bounded and keep-alive (a TLS handshake saved per message):

- :class:`ProviderSession` (aiohttp) for the vendor API calls on the delivery hot path. It costs
  ~0.1 ms of CPU per request where ``httpx`` costs 0.8 ms, and 1.8 ms with 32 requests in
  flight (its pool bookkeeping grows with the number of waiting requests), measured against
  a loopback server on this machine class.
- One ``httpx.AsyncClient`` per process for everything else: attachment fetches (with their
  SSRF checks per hop) and the sandbox's callbacks.

Credentials are passed per request, never set on a client, because a client may also fetch
URLs chosen by API callers.

Exception trees the adapters map from::

    httpx.TransportError
    +-- ConnectError, ConnectTimeout, PoolTimeout,  request never left: safe to retry
        UnsupportedProtocol
    +-- ReadTimeout, WriteTimeout, ReadError,       request may have been received:
        RemoteProtocolError, WriteError             retrying may send the message twice

    aiohttp.ClientError
    +-- ClientConnectorError, ConnectionTimeoutError  request never left (the connect timeout
        (waiting for a pooled connection too),        also bounds waiting for a free pooled
        InvalidURL                                    connection): safe to retry
    +-- SocketTimeoutError, ServerDisconnectedError,  request may have been received
        ClientOSError, ClientPayloadError, ...
    and TimeoutError for the whole call's backstop deadline: may have been received.
"""

from __future__ import annotations

import base64
import email.utils
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import aiohttp
import httpx
import orjson

from gateway.observability.redaction import REDACTED, is_sensitive_key
from gateway.services.ports import TransientProviderError
from gateway.settings import Settings

__all__ = [
    "USER_AGENT",
    "ProviderResponse",
    "ProviderSession",
    "basic_auth",
    "create_provider_client",
    "loggable_headers",
    "loggable_url",
    "parse_retry_after",
    "response_summary",
    "transport_error",
]

USER_AGENT: Final = "messaging-gateway/0.1"

# The request never reached the provider: retrying cannot duplicate the message.
_UNSENT: Final = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.UnsupportedProtocol,
)
_UNSENT_AIOHTTP: Final = (
    aiohttp.ClientConnectorError,
    aiohttp.ConnectionTimeoutError,
    aiohttp.InvalidURL,
)
_SENSITIVE_HEADERS: Final = frozenset({"authorization", "proxy-authorization", "cookie"})
# Shorter than the idle timeouts of common servers (uvicorn and node: 5 s): a pooled connection
# is dropped by us before the server can close it under a request that is being sent, a race
# that would make the attempt ambiguous.
_KEEPALIVE_SECONDS: Final = 4.0


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


class ProviderSession:
    """Bounded keep-alive aiohttp client for provider API calls; close it on shutdown.

    The aiohttp session is created on first use, inside the running event loop it belongs to.
    """

    def __init__(
        self, *, max_connections: int, connect_timeout: float, read_timeout: float
    ) -> None:
        self._max_connections = max_connections
        self._timeout = aiohttp.ClientTimeout(
            # Waiting for a free pooled connection is a sign of overload, not of a slow
            # provider: it is bounded like a connect, so the worker backs off instead of
            # piling up.
            connect=connect_timeout,
            sock_connect=connect_timeout,
            sock_read=read_timeout,
            # Backstop for a peer that trickles its answer or never reads the request.
            total=connect_timeout + 2 * read_timeout,
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
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                headers={"User-Agent": USER_AGENT},
                # Never implicit: no proxy or netrc from the environment for provider calls.
                trust_env=False,
            )
        return self._session

    async def post(self, url: str, *, body: bytes, headers: Mapping[str, str]) -> ProviderResponse:
        """POST ``body``; raises ``aiohttp.ClientError`` / ``TimeoutError`` on transport
        failures (see :func:`transport_error`), never for an HTTP error status."""
        return await self._request("POST", url, body, headers)

    async def get(self, url: str, *, headers: Mapping[str, str]) -> ProviderResponse:
        """GET ``url``; raises like :meth:`post`."""
        return await self._request("GET", url, None, headers)

    async def _request(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]
    ) -> ProviderResponse:
        started = time.monotonic()
        # A provider API does not redirect: a redirect is answered as it is.
        async with self._open().request(
            method, url, data=body, headers=headers, allow_redirects=False
        ) as response:
            content = await response.read()
            return ProviderResponse(
                method=method,
                url=url,
                status_code=response.status,
                reason_phrase=response.reason or "",
                headers=response.headers,
                content=content,
                elapsed_ms=round((time.monotonic() - started) * 1000, 1),
            )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def basic_auth(username: str, password: str) -> str:
    """An ``Authorization`` header value for HTTP Basic authentication."""
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


def create_provider_client(settings: Settings) -> httpx.AsyncClient:
    """A bounded, keep-alive client with the provider timeouts; close it on shutdown."""
    limits = httpx.Limits(
        max_connections=settings.provider_max_connections,
        max_keepalive_connections=settings.provider_max_connections,
        keepalive_expiry=30.0,
    )
    timeout = httpx.Timeout(
        connect=settings.provider_connect_timeout,
        read=settings.provider_read_timeout,
        write=settings.provider_read_timeout,
        # Waiting for a free pooled connection is a sign of overload, not of a slow provider:
        # give up as quickly as on a connect so the worker backs off instead of piling up.
        pool=settings.provider_connect_timeout,
    )
    return httpx.AsyncClient(
        limits=limits,
        timeout=timeout,
        # Redirects are never followed implicitly: a provider API does not redirect a POST, and
        # attachment fetches re-check every hop against the SSRF guard themselves.
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT},
    )


def loggable_url(url: str | httpx.URL) -> str:
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


def loggable_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {
        key: REDACTED if key.lower() in _SENSITIVE_HEADERS or is_sensitive_key(key) else value
        for key, value in headers.items()
    }


def response_summary(response: httpx.Response | ProviderResponse) -> dict[str, Any]:
    """Fields safe to log about a provider response (no request headers, no body)."""
    if isinstance(response, ProviderResponse):
        return {
            "method": response.method,
            "url": loggable_url(response.url),
            "status_code": response.status_code,
            "elapsed_ms": response.elapsed_ms,
        }
    return {
        "method": response.request.method,
        "url": loggable_url(response.request.url),
        "status_code": response.status_code,
        "elapsed_ms": round(response.elapsed.total_seconds() * 1000, 1)
        if _has_elapsed(response)
        else None,
    }


def _has_elapsed(response: httpx.Response) -> bool:
    try:
        response.elapsed  # noqa: B018 - raises until the body is read
    except RuntimeError:
        return False
    return True


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


def transport_error(
    provider: str, exc: httpx.TransportError | aiohttp.ClientError | TimeoutError
) -> TransientProviderError:
    """Map a transport failure to a transient error, ambiguous unless it surely never left."""
    name = _AIOHTTP_CODES.get(type(exc), type(exc).__name__)
    # str(exc) of a transport error names the failure, never headers or credentials.
    description = f"{provider} {name}: {exc}" if str(exc) else f"{provider} {name}"
    if isinstance(exc, (*_UNSENT, *_UNSENT_AIOHTTP)):
        return TransientProviderError(name.upper(), description)
    return TransientProviderError(name.upper(), description, ambiguous=True)


# aiohttp failures under the codes the httpx ones of the same meaning have in audit trails.
_AIOHTTP_CODES: Final[dict[type[BaseException], str]] = {
    aiohttp.ClientConnectorError: "ConnectError",
    aiohttp.ClientConnectorDNSError: "ConnectError",
    aiohttp.ConnectionTimeoutError: "ConnectTimeout",
    aiohttp.SocketTimeoutError: "ReadTimeout",
    aiohttp.ServerDisconnectedError: "RemoteProtocolError",
    TimeoutError: "Timeout",
}
