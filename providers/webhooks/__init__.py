"""Provider webhook payloads parsed into our records: pure functions, no I/O.

Signature checks, reading the request and applying the result belong to the routes and the
services; a parser only turns already-read bytes or form fields into an InboundMessage or
StatusReports (``gateway.domain.reports``), and raises PayloadError (a 400) for anything else.
"""

from .generic import parse_generic_email, parse_generic_sms
from .records import PayloadError, ReceivedWebhook
from .sendgrid import parse_sendgrid_events, parse_sendgrid_inbound
from .twilio import parse_twilio_inbound, parse_twilio_status

__all__ = [
    "PayloadError",
    "ReceivedWebhook",
    "parse_generic_email",
    "parse_generic_sms",
    "parse_sendgrid_events",
    "parse_sendgrid_inbound",
    "parse_twilio_inbound",
    "parse_twilio_status",
]
