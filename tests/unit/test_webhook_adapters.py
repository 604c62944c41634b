"""Each vendor's webhook adapter: who it refuses (401 missing, 403 wrong), what it parses a
verified payload into, and what the vendor is answered."""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest

from gateway.domain.channels import Channel
from gateway.domain.reports import InboundMessage, StatusReport
from gateway.domain.statuses import MessageStatus
from gateway.settings import Settings
from gateway.web.webhooks import PATHS
from providers.signatures import (
    TELNYX_SIGNATURE_HEADER,
    TELNYX_TIMESTAMP_HEADER,
    generate_sendgrid_keypair,
    generate_telnyx_keypair,
    sendgrid_sign,
    standard_webhook_sign,
    telnyx_sign,
    twilio_signature,
)
from providers.webhooks import (
    PayloadError,
    ReceivedWebhook,
    Refused,
    WebhookAdapter,
    WebhookRequest,
    webhook_adapters,
)
from providers.webhooks.generic import EMAIL_ROUTE, SMS_ROUTE, GenericWebhook, parse_generic_sms
from providers.webhooks.sendgrid import SendGridEventsWebhook, SendGridInboundWebhook
from providers.webhooks.telnyx import TelnyxWebhook
from providers.webhooks.twilio import TwilioMessagesWebhook, TwilioStatusWebhook

BASE = "https://hooks.example.com"
TOKEN = "twilio-auth-token"
SECRET = "whsec_" + base64.b64encode(b"generic-secret-bytes").decode()


def request(
    path: str, body: bytes, headers: dict[str, str] | None = None, query: str = ""
) -> WebhookRequest:
    return WebhookRequest(path, query, headers or {}, body)


def refusal(adapter: WebhookAdapter, incoming: WebhookRequest) -> int:
    with pytest.raises(Refused) as refused:
        adapter.verify(incoming)
    return refused.value.status


# --- Twilio ---------------------------------------------------------------------------------

STATUS_FORM = {"MessageSid": "SM" + "ab" * 16, "MessageStatus": "delivered"}


def twilio_request(path: str, form: dict[str, str], query: str, signed_with: str) -> WebhookRequest:
    url = f"{BASE}{path}" + (f"?{query}" if query else "")
    signature = twilio_signature(signed_with, url, form)
    body = urlencode(form).encode()
    return request(path, body, {"x-twilio-signature": signature}, query)


async def test_twilio_takes_what_twilio_signed_for_our_public_url_and_parses_it() -> None:
    adapter = TwilioStatusWebhook(TOKEN, BASE + "/")
    mid = uuid.uuid4()
    incoming = twilio_request("/webhooks/twilio/status", STATUS_FORM, f"mid={mid.hex}", TOKEN)
    form = adapter.verify(incoming)
    received = ReceivedWebhook(adapter.route, None, incoming.query, incoming.body)
    [report] = await adapter.parse(received, form)
    assert isinstance(report, StatusReport)
    assert (report.message_id, report.status) == (mid, MessageStatus.DELIVERED)
    # Without the form verification decoded (the replay), the same report.
    assert await adapter.parse(received) == [report]


def test_twilio_refuses_a_missing_or_wrong_signature_and_another_host() -> None:
    adapter = TwilioStatusWebhook(TOKEN, BASE)
    path = "/webhooks/twilio/status"
    unsigned = twilio_request(path, STATUS_FORM, "", TOKEN)
    assert refusal(adapter, request(path, unsigned.body)) == 401
    assert refusal(adapter, twilio_request(path, STATUS_FORM, "", "another-token")) == 403
    # Signed for the URL with another query string than the one received.
    signed = twilio_request(path, STATUS_FORM, "mid=1", TOKEN)
    assert refusal(adapter, request(path, signed.body, dict(signed.headers), "mid=2")) == 403


def test_a_twilio_body_that_is_no_form_is_a_payload_error() -> None:
    adapter = TwilioStatusWebhook(TOKEN, BASE)
    with pytest.raises(PayloadError):
        adapter.verify(request("/webhooks/twilio/status", b"\xff\xfe"))


async def test_twilio_inbound_is_answered_with_empty_twiml_applied_or_kept() -> None:
    adapter = TwilioMessagesWebhook(TOKEN, BASE)
    form = {"MessageSid": "SM" + "cd" * 16, "From": "+14155550100", "To": "+14155550199"}
    incoming = twilio_request("/webhooks/twilio/messages", form, "", TOKEN)
    received = ReceivedWebhook(adapter.route, None, "", incoming.body)
    message = await adapter.parse(received, adapter.verify(incoming))
    assert isinstance(message, InboundMessage) and message.sender == "+14155550100"
    for answer in (adapter.ok, adapter.kept):
        assert answer is not None
        assert (answer.status, answer.media_type) == (200, "text/xml")
        assert answer.body.endswith(b"<Response></Response>")
    assert (TwilioStatusWebhook.ok.status, TwilioStatusWebhook.ok.body) == (204, b"")


# --- SendGrid -------------------------------------------------------------------------------

EVENTS = b'[{"sg_event_id": "ev1", "event": "delivered", "sg_message_id": "abc.filter1"}]'


def test_sendgrid_events_need_both_headers_and_a_signature_by_the_configured_key() -> None:
    private, public = generate_sendgrid_keypair()
    timestamp = str(int(time.time()))
    headers = {
        "x-twilio-email-event-webhook-signature": sendgrid_sign(private, timestamp, EVENTS),
        "x-twilio-email-event-webhook-timestamp": timestamp,
    }
    path = "/webhooks/sendgrid/events"
    assert SendGridEventsWebhook(public).verify(request(path, EVENTS, headers)) is None
    only_signature = {k: v for k, v in headers.items() if k.endswith("signature")}
    assert refusal(SendGridEventsWebhook(public), request(path, EVENTS, only_signature)) == 401
    tampered = EVENTS.replace(b"delivered", b"bounce")
    assert refusal(SendGridEventsWebhook(public), request(path, tampered, headers)) == 403
    _, other = generate_sendgrid_keypair()
    assert refusal(SendGridEventsWebhook(other), request(path, EVENTS, headers)) == 403
    assert refusal(SendGridEventsWebhook(None), request(path, EVENTS, headers)) == 403


def test_sendgrid_inbound_takes_the_token_from_the_query_or_basic_auth() -> None:
    adapter = SendGridInboundWebhook("s3cret")
    path = "/webhooks/sendgrid/inbound"
    assert adapter.verify(request(path, b"", query="a=1&token=s3cret")) is None
    basic = "Basic " + base64.b64encode(b"any:s3cret").decode()
    assert adapter.verify(request(path, b"", {"authorization": basic})) is None
    assert refusal(adapter, request(path, b"")) == 401
    assert refusal(adapter, request(path, b"", query="token=")) == 401
    assert refusal(adapter, request(path, b"", query="token=guess")) == 403
    assert refusal(SendGridInboundWebhook(None), request(path, b"", query="token=s3cret")) == 403


# --- Generic --------------------------------------------------------------------------------

SMS = (
    b'{"from": "+14155550100", "to": "+14155550199", "type": "sms",'
    b' "messaging_provider_id": "gen-1", "body": "hi"}'
)


def generic_headers(secret: str, body: bytes) -> dict[str, str]:
    now = int(time.time())
    return {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(now),
        "webhook-signature": standard_webhook_sign(secret, "msg_1", now, body),
    }


async def test_generic_endpoints_check_the_standard_webhook_signature() -> None:
    adapter = GenericWebhook(SMS_ROUTE, parse_generic_sms, SECRET)
    path = "/api/webhooks/sms"
    assert adapter.verify(request(path, SMS, generic_headers(SECRET, SMS))) is None
    message = await adapter.parse(ReceivedWebhook(SMS_ROUTE, None, "", SMS))
    assert message.provider_message_id == "gen-1"
    assert refusal(adapter, request(path, SMS)) == 401
    other = "whsec_" + base64.b64encode(b"another-secret").decode()
    assert refusal(adapter, request(path, SMS, generic_headers(other, SMS))) == 403
    unconfigured = GenericWebhook(SMS_ROUTE, parse_generic_sms, None)
    assert refusal(unconfigured, request(path, SMS, generic_headers(SECRET, SMS))) == 403
    assert (adapter.ok.status, adapter.ok.body) == (200, b'{"status":"ok"}')


# --- Telnyx ---------------------------------------------------------------------------------

TELNYX_PRIVATE, TELNYX_PUBLIC = generate_telnyx_keypair()
OUR_ID = uuid.uuid4()


def telnyx_event(event_type: str, **payload: Any) -> bytes:
    return orjson.dumps({"data": {"event_type": event_type, "id": "ev-1", "payload": payload}})


def telnyx_request(body: bytes, key: str = TELNYX_PRIVATE, age: float = 0) -> WebhookRequest:
    stamp = str(int(time.time() - age))
    headers = {
        TELNYX_TIMESTAMP_HEADER: stamp,
        TELNYX_SIGNATURE_HEADER: telnyx_sign(key, stamp, body),
    }
    return request("/webhooks/telnyx", body, headers)


FINALIZED = telnyx_event(
    "message.finalized",
    id="40385f64-5717-4562-b3fc-2c963f66afa6",
    to=[{"phone_number": "+14155550100", "status": "delivery_failed"}],
    errors=[{"code": "40008", "title": "Undeliverable", "detail": "Carrier refused"}],
    webhook_url=f"https://hooks.example.com/webhooks/telnyx?mid={OUR_ID.hex}",
)


async def test_telnyx_checks_the_ed25519_signature_and_its_age() -> None:
    adapter = TelnyxWebhook(TELNYX_PUBLIC)
    assert adapter.verify(telnyx_request(FINALIZED)) is None
    assert refusal(adapter, request("/webhooks/telnyx", FINALIZED)) == 401
    stranger, _ = generate_telnyx_keypair()
    assert refusal(adapter, telnyx_request(FINALIZED, key=stranger)) == 403
    assert refusal(adapter, telnyx_request(FINALIZED, age=301)) == 403
    assert refusal(TelnyxWebhook(None), telnyx_request(FINALIZED)) == 403
    assert adapter.ok.status == 200


async def test_telnyx_status_event_finds_our_message_by_the_signed_webhook_url() -> None:
    adapter = TelnyxWebhook(TELNYX_PUBLIC)
    # The request's own query string is not signed: a mid there is ignored.
    received = ReceivedWebhook("telnyx_messaging", None, f"mid={uuid.uuid4().hex}", FINALIZED)
    parsed = await adapter.parse(received)
    assert isinstance(parsed, list)
    [report] = parsed
    assert report.message_id == OUR_ID
    assert report.provider_message_id == "40385f64-5717-4562-b3fc-2c963f66afa6"
    assert report.status is MessageStatus.UNDELIVERED
    assert report.error is not None
    assert (report.error.code, report.error.description) == ("40008", "Carrier refused")
    assert report.dedupe_key == "telnyx:40385f64-5717-4562-b3fc-2c963f66afa6:delivery_failed"
    assert report.detail["providerEvent"] == "message.finalized"


@pytest.mark.parametrize(
    ("status", "ours"),
    [
        ("queued", None),
        ("sending", None),
        ("sent", MessageStatus.SENT),
        ("delivered", MessageStatus.DELIVERED),
        ("delivery_unconfirmed", MessageStatus.SENT),
        ("delivery_failed", MessageStatus.UNDELIVERED),
        ("expired", MessageStatus.UNDELIVERED),
        ("sending_failed", MessageStatus.FAILED),
    ],
)
async def test_telnyx_statuses_map_to_ours(status: str, ours: MessageStatus | None) -> None:
    body = telnyx_event("message.sent", id="m-1", to=[{"status": status.upper()}])
    parsed = await TelnyxWebhook(None).parse(ReceivedWebhook("telnyx_messaging", None, "", body))
    assert isinstance(parsed, list)
    [report] = parsed
    assert report.status is ours
    assert report.message_id is None  # no webhook URL: found by Telnyx's id alone
    assert (report.error is not None) == (
        status in {"delivery_failed", "expired", "sending_failed"}
    )


async def test_telnyx_inbound_mms_and_events_applied_nowhere() -> None:
    adapter = TelnyxWebhook(None)
    body = telnyx_event(
        "message.received",
        id="in-1",
        text="Look",
        to=[{"phone_number": "+1 415 555 0100"}],
        media=[{"url": "https://media.example.com/1.jpg", "content_type": "image/jpeg"}],
        **{"from": {"phone_number": "+14155550199"}},
    )
    message = await adapter.parse(ReceivedWebhook("telnyx_messaging", None, "", body))
    assert isinstance(message, InboundMessage)
    assert (message.sender, message.recipient) == ("+14155550199", "+14155550100")
    assert message.attachments == ("https://media.example.com/1.jpg",)
    assert message.body == "Look"
    assert message.provider_message_id == "in-1"
    assert message.channel is Channel.MMS
    other = telnyx_event("call.initiated", id="c-1")
    assert await adapter.parse(ReceivedWebhook("telnyx_messaging", None, "", other)) == []


@pytest.mark.parametrize(
    "body",
    [
        b"[]",
        orjson.dumps({"data": {"payload": {}}}),
        telnyx_event("message.finalized", id="m-1"),
        telnyx_event("message.finalized", id="m-1", to=[{"status": "teleported"}]),
        telnyx_event("message.finalized", to=[{"status": "sent"}]),
        telnyx_event("message.received", id="in-1", to=[{"phone_number": "+14155550100"}]),
    ],
    ids=["not-an-object", "no-event-type", "no-recipient", "unknown-status", "no-id", "no-from"],
)
async def test_telnyx_payloads_we_cannot_use_are_refused(body: bytes) -> None:
    with pytest.raises(PayloadError):
        await TelnyxWebhook(None).parse(ReceivedWebhook("telnyx_messaging", None, "", body))


# --- Routing --------------------------------------------------------------------------------


def test_every_path_routes_to_its_own_adapter_and_every_adapter_has_a_path() -> None:
    adapters = webhook_adapters(Settings(), sendgrid_public_key=None, telnyx_public_key=None)
    assert sorted(PATHS.values()) == sorted(adapters)
    assert PATHS["/webhooks/twilio/status"] == TwilioStatusWebhook.route
    # Telnyx posts every messaging event of a profile to one URL.
    assert PATHS["/webhooks/telnyx"] == TelnyxWebhook.route
    assert PATHS["/api/webhooks/email"] == EMAIL_ROUTE
    sources = {route: adapter.source for route, adapter in adapters.items()}
    assert sources == {
        "twilio_status": "twilio",
        "twilio_messages": "twilio",
        "sendgrid_events": "sendgrid",
        "sendgrid_inbound": "sendgrid",
        "mailgun_events": "mailgun",
        "mailgun_inbound": "mailgun",
        "telnyx_messaging": "telnyx",
        "generic_sms": "generic",
        "generic_email": "generic",
    }
    assert adapters["sendgrid_inbound"].limit > adapters["twilio_status"].limit
