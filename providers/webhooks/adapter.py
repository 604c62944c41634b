"""What every vendor's webhook adapter does: verify a request, parse it, acknowledge it.

The HTTP layer only routes: it reads the body within the adapter's limit, asks the adapter to
verify the request, hands what the adapter parsed to the services, and answers what the
adapter says the vendor expects. Signature schemes, header names, answer bodies and payload
formats stay here, beside the parsers.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Protocol

from gateway.domain.reports import InboundMessage, StatusReport

from .forms import Form
from .records import ReceivedWebhook

#: The largest body a webhook takes unless its adapter says otherwise.
MAX_BODY: Final = 1 << 20


class Refused(Exception):
    """A request we do not take: 401 when its credentials are missing, 403 when they are
    wrong (413 when its body is too large). ``str(error)`` is safe to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """What verification needs of an HTTP request, the body already read."""

    path: str
    #: The raw query string, without the ``?``.
    query: str
    #: Looked up by lower-case name.
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class Answer:
    """What the vendor is answered: status, body and media type."""

    status: int
    body: bytes = b""
    media_type: str | None = None


Parsed = list[StatusReport] | InboundMessage


class WebhookAdapter(Protocol):
    #: Names the endpoint in spooled payloads (``ReceivedWebhook.route``): never rename one.
    route: str
    #: The source receipts and metrics are labelled with ("twilio").
    source: str
    #: The largest body taken (bytes).
    limit: int
    #: The answer once the payload is applied (or was a duplicate).
    ok: Answer
    #: The answer once a payload we could not apply is kept for replay; None: the gateway's
    #: own JSON 202 saying where it is kept.
    kept: Answer | None

    def verify(self, request: WebhookRequest) -> Form | None:
        """Raise Refused unless the request's credentials hold; return the body decoded as a
        form when checking them took decoding it (``parse`` then need not decode it again).
        May raise PayloadError for a body it cannot even read."""
        ...

    async def parse(self, received: ReceivedWebhook, form: Form | None = None) -> Parsed:
        """Our records from a verified payload; PayloadError (a 400) for anything else."""
        ...


class TimestampedVerifier(Protocol):
    """A scheme that signs a timestamp header with the raw body (``verify_sendgrid``,
    ``verify_telnyx``)."""

    def __call__(
        self,
        key: str,
        timestamp: str | None,
        payload: bytes,
        signature: str | None,
        /,
        *,
        now: float,
    ) -> bool: ...


@dataclass(frozen=True, slots=True)
class TimestampedScheme:
    """A vendor's scheme of signing a timestamp header with the raw body: where the signature
    and timestamp travel, how they are checked, and how refusals name the webhook."""

    signature_header: str
    timestamp_header: str
    verify: TimestampedVerifier
    #: Names the webhook in a refusal's text.
    what: str

    def check(self, request: WebhookRequest, key: str | None) -> None:
        """Refused (401) without the signature or timestamp header, (403) unless they verify
        with ``key``; None for ``key`` means nothing is configured, so every request is
        refused."""
        signature = request.headers.get(self.signature_header.lower())
        timestamp = request.headers.get(self.timestamp_header.lower())
        if not signature or not timestamp:
            raise Refused(401, f"missing {self.what} signature headers")
        if key is None or not self.verify(key, timestamp, request.body, signature, now=time.time()):
            raise Refused(403, f"invalid {self.what} signature")
