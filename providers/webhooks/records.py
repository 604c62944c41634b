"""The webhook adapters' own records: the error they raise, and a verified request as it came.

What they produce (``InboundMessage``, ``StatusReport``) belongs to the domain
(``gateway.domain.reports``).
"""

from __future__ import annotations

from dataclasses import dataclass


class PayloadError(ValueError):
    """A payload we cannot use. ``str(error)`` names the bad field and is safe to return in the
    body of a 400 response: it never echoes field values, which may be personal data."""


@dataclass(frozen=True, slots=True)
class ReceivedWebhook:
    """A webhook request whose signature was verified, as it arrived: all it takes to parse
    and apply it again, later or in another process (the spool while the database is down).

    ``route`` names the endpoint's adapter (``WebhookAdapter.route``); ``query`` is the raw
    query string (a Twilio status callback carries our message id there).
    """

    route: str
    content_type: str | None
    query: str
    body: bytes
