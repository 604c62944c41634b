"""The shared outbound HTTP client of the provider adapters, and what they share around it.

One ``httpx.AsyncClient`` per process: its pool bounds how many sockets the workers open to
providers, and keep-alive saves a TLS handshake per message. Credentials are passed per request
(``auth=`` / ``headers=``), never set on the client, because the same client also fetches
attachment URLs chosen by API callers.

Exception tree the adapters map from (httpx)::

    httpx.TransportError
    +-- ConnectError, ConnectTimeout, PoolTimeout,  request never left: safe to retry
        UnsupportedProtocol
    +-- ReadTimeout, WriteTimeout, ReadError,       request may have been received:
        RemoteProtocolError, WriteError             retrying may send the message twice
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import httpx

from gateway.observability.redaction import REDACTED, is_sensitive_key
from gateway.services.ports import TransientProviderError
from gateway.settings import Settings

__all__ = [
    "USER_AGENT",
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
_SENSITIVE_HEADERS: Final = frozenset({"authorization", "proxy-authorization", "cookie"})


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


def response_summary(response: httpx.Response) -> dict[str, Any]:
    """Fields safe to log about a provider response (no request headers, no body)."""
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


def transport_error(provider: str, exc: httpx.TransportError) -> TransientProviderError:
    """Map a transport failure to a transient error, ambiguous unless it surely never left."""
    name = type(exc).__name__
    # str(exc) of an httpx transport error names the failure, never headers or credentials.
    description = f"{provider} {name}: {exc}" if str(exc) else f"{provider} {name}"
    if isinstance(exc, _UNSENT):
        return TransientProviderError(name.upper(), description)
    return TransientProviderError(name.upper(), description, ambiguous=True)
