"""Provider webhooks: each vendor's adapter verifies, parses and acknowledges its requests.

The parsers are pure functions, no I/O: they turn already-read bytes or form fields into an
InboundMessage or StatusReports (``gateway.domain.reports``) and raise PayloadError (a 400) for
anything else. The adapters (``adapter.WebhookAdapter``) add each vendor's signature or token
check and the answer it expects; the HTTP layer only routes to them.
"""

from gateway.settings import Settings

from .adapter import MAX_BODY, Answer, Parsed, Refused, WebhookAdapter, WebhookRequest
from .forms import Form
from .generic import (
    EMAIL_ROUTE,
    SMS_ROUTE,
    GenericWebhook,
    parse_generic_email,
    parse_generic_sms,
)
from .mailgun import mailgun_webhooks, parse_mailgun_event, parse_mailgun_inbound
from .records import PayloadError, ReceivedWebhook
from .sendgrid import (
    SendGridEventsWebhook,
    SendGridInboundWebhook,
    parse_sendgrid_events,
    parse_sendgrid_inbound,
)
from .telnyx import TelnyxWebhook, parse_telnyx
from .twilio import (
    TwilioMessagesWebhook,
    TwilioStatusWebhook,
    parse_twilio_inbound,
    parse_twilio_status,
)

__all__ = [
    "MAX_BODY",
    "Answer",
    "Form",
    "Parsed",
    "PayloadError",
    "ReceivedWebhook",
    "Refused",
    "WebhookAdapter",
    "WebhookRequest",
    "parse_generic_email",
    "parse_generic_sms",
    "parse_mailgun_event",
    "parse_mailgun_inbound",
    "parse_sendgrid_events",
    "parse_sendgrid_inbound",
    "parse_telnyx",
    "parse_twilio_inbound",
    "parse_twilio_status",
    "webhook_adapters",
]


def webhook_adapters(
    settings: Settings,
    *,
    sendgrid_public_key: str | None,
    mailgun_signing_key: str | None = None,
    telnyx_public_key: str | None = None,
) -> dict[str, WebhookAdapter]:
    """Every endpoint's adapter, by route name. ``sendgrid_public_key`` verifies the Event
    Webhook: the configured key, or the key of the sandbox standing in for SendGrid; likewise
    ``mailgun_signing_key`` (unset: ``MAILGUN_WEBHOOK_SIGNING_KEY``) Mailgun's posts and
    ``telnyx_public_key`` (unset: ``TELNYX_PUBLIC_KEY``) Telnyx's."""
    twilio = (settings.twilio_auth_token, settings.public_base_url)
    adapters: list[WebhookAdapter] = [
        TwilioStatusWebhook(*twilio),
        TwilioMessagesWebhook(*twilio),
        SendGridEventsWebhook(sendgrid_public_key),
        SendGridInboundWebhook(settings.sendgrid_inbound_token),
        *mailgun_webhooks(mailgun_signing_key or settings.mailgun_webhook_signing_key),
        TelnyxWebhook(telnyx_public_key or settings.telnyx_public_key),
        GenericWebhook(SMS_ROUTE, parse_generic_sms, settings.generic_webhook_secret),
        GenericWebhook(EMAIL_ROUTE, parse_generic_email, settings.generic_webhook_secret),
    ]
    return {adapter.route: adapter for adapter in adapters}
