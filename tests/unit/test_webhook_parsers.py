"""Provider webhook parsers: every documented mapping, and no exception but PayloadError."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import partial
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.domain.channels import Channel
from gateway.domain.records import DeliveryError
from gateway.domain.reports import (
    KIND_DEFERRED,
    KIND_DELIVERY_RECEIPT,
    KIND_ENGAGEMENT,
    KIND_PROVIDER_STATUS,
    InboundMessage,
    StatusReport,
)
from gateway.domain.statuses import MessageStatus
from gateway.domain.suppressions import SuppressionReason
from providers.webhooks import (
    PayloadError,
    ReceivedWebhook,
    parse_generic_email,
    parse_generic_sms,
    parse_sendgrid_events,
    parse_sendgrid_inbound,
    parse_twilio_inbound,
    parse_twilio_status,
)
from providers.webhooks.forms import MAX_PARTS, decode_any_form
from providers.webhooks.sendgrid import SendGridInboundWebhook

FUZZ = settings(max_examples=150, deadline=None)

SID = "SM1f0e3b2a9c8d7e6f5a4b3c2d1e0f9a8b"
ACCOUNT = "AC0123456789abcdef0123456789abcdef"
MID = uuid.UUID("0192f3a4-b5c6-7d8e-9f01-23456789abcd")


def dumps(value: object) -> bytes:
    return json.dumps(value).encode()


# --- Twilio status callbacks -----------------------------------------------------------------


def twilio_status(status: str, **extra: str) -> dict[str, str]:
    # What Twilio posts to a StatusCallback URL for an outbound SMS.
    return {
        "ApiVersion": "2010-04-01",
        "AccountSid": ACCOUNT,
        "MessageSid": SID,
        "SmsSid": SID,
        "MessageStatus": status,
        "SmsStatus": status,
        "From": "+14155550100",
        "To": "+14155550199",
        **extra,
    }


@pytest.mark.parametrize(
    ("provider_status", "status", "kind"),
    [
        ("accepted", None, KIND_PROVIDER_STATUS),
        ("scheduled", None, KIND_PROVIDER_STATUS),
        ("queued", None, KIND_PROVIDER_STATUS),
        ("sending", None, KIND_PROVIDER_STATUS),
        ("sent", MessageStatus.SENT, KIND_DELIVERY_RECEIPT),
        ("delivered", MessageStatus.DELIVERED, KIND_DELIVERY_RECEIPT),
        ("read", MessageStatus.DELIVERED, KIND_DELIVERY_RECEIPT),
        ("undelivered", MessageStatus.UNDELIVERED, KIND_DELIVERY_RECEIPT),
        ("failed", MessageStatus.FAILED, KIND_DELIVERY_RECEIPT),
        # Only an operator cancels in our model, and never after the hand-over to Twilio.
        ("canceled", None, KIND_PROVIDER_STATUS),
    ],
)
def test_twilio_status_mapping(
    provider_status: str, status: MessageStatus | None, kind: str
) -> None:
    report = parse_twilio_status(twilio_status(provider_status), {"mid": MID.hex})
    assert report == StatusReport(
        provider="twilio",
        provider_message_id=SID,
        message_id=MID,
        status=status,
        kind=kind,
        dedupe_key=f"twilio:{SID}:{provider_status}",
        error=report.error,
        detail={"provider": "twilio", "providerMessageId": SID, "providerStatus": provider_status},
    )
    if provider_status in ("undelivered", "failed"):
        assert report.error is not None and report.error.permanent
    else:
        assert report.error is None


def test_twilio_undelivered_carries_the_error_code_and_message() -> None:
    form = twilio_status(
        "undelivered",
        ErrorCode="30003",
        ErrorMessage="Unreachable destination handset",
        RawDlrDoneDate="2411011400",
    )
    report = parse_twilio_status(form, {})
    assert report.error == DeliveryError("30003", "Unreachable destination handset", True)
    assert report.detail == {
        "provider": "twilio",
        "providerMessageId": SID,
        "providerStatus": "undelivered",
        "errorCode": "30003",
        "errorMessage": "Unreachable destination handset",
        "rawDlrDoneDate": "2411011400",
    }
    # Credentials-adjacent and personal fields stay out of the audit trail.
    assert ACCOUNT not in json.dumps(report.detail)


def test_twilio_failure_without_error_fields_still_has_an_error() -> None:
    report = parse_twilio_status(twilio_status("failed", ErrorCode=""), {})
    assert report.error == DeliveryError("FAILED", "Twilio: failed", True)
    described = parse_twilio_status(twilio_status("failed", ErrorCode="30007"), {})
    assert described.error == DeliveryError("30007", "Twilio error 30007", True)


def test_twilio_queue_overflow_failure_is_marked_a_throughput_refusal() -> None:
    report = parse_twilio_status(twilio_status("failed", ErrorCode="30001"), {})
    assert report.throughput_refusal
    assert report.status is MessageStatus.FAILED
    assert report.detail["errorCode"] == "30001"
    # Any other failure, and 30001 on a status that is no failure, are not.
    for form in (
        twilio_status("failed", ErrorCode="30007"),
        twilio_status("undelivered", ErrorCode="30001"),
        twilio_status("sent", ErrorCode="30001"),
        twilio_status("failed"),
    ):
        assert not parse_twilio_status(form, {}).throughput_refusal


def test_twilio_error_code_on_a_success_is_detail_not_error() -> None:
    report = parse_twilio_status(twilio_status("delivered", ErrorCode="30032"), {})
    assert report.status is MessageStatus.DELIVERED
    assert report.error is None
    assert report.detail["errorCode"] == "30032"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"mid": MID.hex}, MID),
        ({"mid": MID.hex.upper()}, MID),
        ({}, None),
        ({"mid": str(MID)}, None),  # hyphenated: not what we put in callback URLs
        ({"mid": MID.hex[:-1]}, None),
        ({"mid": "z" * 32}, None),
        ({"mid": ""}, None),
    ],
)
def test_twilio_our_message_id_from_the_callback_query(
    query: dict[str, str], expected: uuid.UUID | None
) -> None:
    assert parse_twilio_status(twilio_status("sent"), query).message_id == expected


def test_twilio_status_is_case_insensitive_and_keys_on_the_normalized_value() -> None:
    upper = parse_twilio_status(twilio_status("Delivered"), {})
    lower = parse_twilio_status(twilio_status("delivered"), {})
    assert upper.dedupe_key == lower.dedupe_key == f"twilio:{SID}:delivered"


def test_twilio_dedupe_keys_differ_per_status_and_repeat_for_duplicates() -> None:
    statuses = ["queued", "sending", "sent", "delivered", "read", "undelivered", "failed"]
    keys = [parse_twilio_status(twilio_status(s), {}).dedupe_key for s in statuses]
    assert len(set(keys)) == len(keys)
    assert parse_twilio_status(twilio_status("sent"), {}) == parse_twilio_status(
        twilio_status("sent"), {"unrelated": "x"}
    )


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"MessageStatus": "sent"}, "MessageSid"),
        ({"MessageSid": "", "MessageStatus": "sent"}, "MessageSid"),
        ({"MessageSid": "SM 1", "MessageStatus": "sent"}, "MessageSid"),
        ({"MessageSid": "S" * 129, "MessageStatus": "sent"}, "MessageSid"),
        ({"MessageSid": SID}, "MessageStatus"),
        ({"MessageSid": SID, "MessageStatus": "teleported"}, "MessageStatus"),
        ({"MessageSid": SID, "MessageStatus": "sent" * 1000}, "MessageStatus"),
    ],
)
def test_twilio_status_rejects_with_the_field_named(form: dict[str, str], field: str) -> None:
    with pytest.raises(PayloadError, match=field):
        parse_twilio_status(form, {})


# --- Twilio inbound --------------------------------------------------------------------------


def twilio_inbound(**extra: str) -> dict[str, str]:
    # What Twilio posts to a number's "A message comes in" webhook.
    return {
        "ToCountry": "US",
        "ToState": "CA",
        "SmsMessageSid": SID,
        "NumMedia": "0",
        "ToCity": "SAN FRANCISCO",
        "FromZip": "94105",
        "SmsSid": SID,
        "FromState": "CA",
        "SmsStatus": "received",
        "FromCity": "SAN FRANCISCO",
        "Body": "Running 5 min late, see you soon",
        "FromCountry": "US",
        "To": "+14155550199",
        "ToZip": "94105",
        "NumSegments": "1",
        "MessageSid": SID,
        "AccountSid": ACCOUNT,
        "From": "+14155550100",
        "ApiVersion": "2010-04-01",
        **extra,
    }


def test_twilio_inbound_sms() -> None:
    assert parse_twilio_inbound(twilio_inbound()) == InboundMessage(
        channel=Channel.SMS,
        sender="+14155550100",
        recipient="+14155550199",
        body="Running 5 min late, see you soon",
        attachments=(),
        provider="twilio",
        provider_message_id=SID,
        sent_at=None,
    )


def test_twilio_inbound_mms_keeps_media_urls_in_order() -> None:
    media = "https://api.twilio.com/2010-04-01/Accounts/{}/Messages/MM1/Media/ME{}"
    form = twilio_inbound(
        NumMedia="2",
        Body="",
        MediaUrl0=media.format(ACCOUNT, 0),
        MediaContentType0="image/jpeg",
        MediaUrl1=media.format(ACCOUNT, 1),
        MediaContentType1="image/png",
    )
    message = parse_twilio_inbound(form)
    assert message.channel is Channel.MMS
    assert message.body is None
    assert message.attachments == (media.format(ACCOUNT, 0), media.format(ACCOUNT, 1))


def test_twilio_inbound_normalizes_numbers_to_e164() -> None:
    message = parse_twilio_inbound(twilio_inbound(From="(415) 555-0100", To="1-415-555-0199"))
    assert (message.sender, message.recipient) == ("+14155550100", "+14155550199")


def test_twilio_inbound_without_body_field_or_num_media() -> None:
    form = twilio_inbound()
    del form["Body"], form["NumMedia"]
    message = parse_twilio_inbound(form)
    assert (message.channel, message.body) == (Channel.SMS, None)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"MessageSid": ""}, "MessageSid"),
        ({"From": ""}, "From"),
        ({"To": ""}, "To"),
        ({"From": "12345"}, "From"),  # a short code writes to nobody: not E.164
        ({"To": "1234"}, "To"),  # neither E.164 nor a short code
        ({"To": "whatsapp:+14155550199"}, "To"),
        ({"NumMedia": "abc"}, "NumMedia"),
        ({"NumMedia": "-1"}, "NumMedia"),
        ({"NumMedia": "1.0"}, "NumMedia"),
        ({"NumMedia": "\u0663"}, "NumMedia"),  # ARABIC-INDIC DIGIT THREE: int() would take it
        ({"NumMedia": "21"}, "NumMedia"),
        ({"NumMedia": "1"}, "MediaUrl0"),
        ({"NumMedia": "1", "MediaUrl0": "ftp://example.com/a.jpg"}, "MediaUrl0"),
        ({"NumMedia": "2", "MediaUrl0": "https://example.com/a.jpg"}, "MediaUrl1"),
        ({"Body": "x" * 10_001}, "Body"),
        ({"Body": "nul\x00byte"}, "Body"),
        ({"Body": "lone \ud800 surrogate"}, "Body"),
    ],
)
def test_twilio_inbound_rejects_with_the_field_named(changes: dict[str, str], field: str) -> None:
    with pytest.raises(PayloadError, match=field):
        parse_twilio_inbound(twilio_inbound(**changes))


def test_twilio_inbound_long_concatenated_body_is_kept() -> None:
    body = "é" * 10_000
    assert parse_twilio_inbound(twilio_inbound(Body=body)).body == body


# --- SendGrid Event Webhook ------------------------------------------------------------------

SG_ID = "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0"


def sg_event(event: str, event_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "email": "user@example.com",
        "timestamp": 1730469600,
        "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
        "event": event,
        "category": ["receipts"],
        "sg_event_id": event_id,
        "sg_message_id": SG_ID,
        "message_id": MID.hex,
        **extra,
    }


@pytest.mark.parametrize(
    ("event", "status", "kind"),
    [
        ("processed", None, KIND_PROVIDER_STATUS),
        ("delivered", MessageStatus.DELIVERED, KIND_DELIVERY_RECEIPT),
        ("deferred", None, KIND_DEFERRED),
        ("bounce", MessageStatus.FAILED, KIND_DELIVERY_RECEIPT),
        ("dropped", MessageStatus.FAILED, KIND_DELIVERY_RECEIPT),
        ("open", None, KIND_ENGAGEMENT),
        ("click", None, KIND_ENGAGEMENT),
        ("spamreport", None, KIND_ENGAGEMENT),
        ("unsubscribe", None, KIND_ENGAGEMENT),
        ("group_unsubscribe", None, KIND_ENGAGEMENT),
        ("group_resubscribe", None, KIND_ENGAGEMENT),
        # SendGrid adds events over time; a new one must never fail the batch.
        ("machine_opened", None, KIND_PROVIDER_STATUS),
    ],
)
def test_sendgrid_event_mapping(event: str, status: MessageStatus | None, kind: str) -> None:
    [report] = parse_sendgrid_events(dumps([sg_event(event, "qK1MxfAaE_ukyyNsjxTpkw==")]))
    assert report.provider == "sendgrid"
    assert report.provider_message_id == "14c5d75ce93"
    assert report.message_id == MID
    assert (report.status, report.kind) == (status, kind)
    assert report.dedupe_key == "sendgrid:qK1MxfAaE_ukyyNsjxTpkw=="
    assert report.detail["providerEvent"] == event
    assert report.detail["timestamp"] == 1730469600
    assert (report.error is not None) == (event in ("bounce", "dropped"))


@pytest.mark.parametrize(
    ("event", "extra", "reason"),
    [
        ("bounce", {"type": "bounce"}, SuppressionReason.HARD_BOUNCE),
        ("bounce", {"type": "blocked"}, None),
        ("bounce", {}, None),
        ("spamreport", {}, SuppressionReason.SPAM_REPORT),
        ("unsubscribe", {}, SuppressionReason.UNSUBSCRIBE),
        ("group_unsubscribe", {"asm_group_id": 7}, SuppressionReason.UNSUBSCRIBE),
        ("group_resubscribe", {"asm_group_id": 7}, None),
        ("dropped", {"reason": "Bounced Address"}, None),
        ("delivered", {}, None),
        ("open", {}, None),
    ],
)
def test_sendgrid_events_that_suppress_their_recipient(
    event: str, extra: dict[str, Any], reason: SuppressionReason | None
) -> None:
    [report] = parse_sendgrid_events(dumps([sg_event(event, "s1", **extra)]))
    assert report.suppression is reason


def test_sendgrid_batch_keeps_order_and_details() -> None:
    batch = [
        sg_event("processed", "e1"),
        sg_event("deferred", "e2", response="400 try again later", attempt="5"),
        sg_event("delivered", "e3", response="250 OK", ip="168.1.1.1"),
        sg_event(
            "click",
            "e4",
            url="https://user:pw@example.com/reset?token=s3cret#top",
            useragent="Mozilla/5.0",
        ),
        sg_event(
            "bounce",
            "e5",
            reason="550 5.1.1 The email account that you tried to reach does not exist",
            status="5.1.1",
            type="bounce",
            bounce_classification="Invalid Address",
        ),
        sg_event("dropped", "e6", reason="Bounced Address", status="5.0.0"),
        sg_event("bounce", "e7", reason="550 blocked by policy", type="blocked"),
        sg_event("dropped", "e8"),
    ]
    reports = parse_sendgrid_events(dumps(batch))
    assert [r.dedupe_key for r in reports] == [f"sendgrid:e{i}" for i in range(1, 9)]
    assert reports[1].detail["attempt"] == "5"
    assert reports[1].detail["response"] == "400 try again later"
    assert reports[2].detail["response"] == "250 OK"
    # Query strings of clicked links carry one-time tokens; credentials too.
    assert reports[3].detail["url"] == "https://example.com/reset"
    assert reports[4].error == DeliveryError(
        "5.1.1", "550 5.1.1 The email account that you tried to reach does not exist", True
    )
    assert reports[4].detail["bounceClassification"] == "Invalid Address"
    assert reports[5].error == DeliveryError("5.0.0", "Bounced Address", True)
    # A block is the receiving server refusing this message now, not a dead mailbox.
    assert reports[6].error == DeliveryError("bounce", "550 blocked by policy", False)
    assert reports[7].error == DeliveryError("dropped", "SendGrid: dropped", True)
    for report in reports:
        json.dumps(report.detail, allow_nan=False)
        assert "ip" not in report.detail and "email" not in report.detail


@pytest.mark.parametrize(
    ("changes", "provider_id", "message_id"),
    [
        ({"sg_message_id": "abc123"}, "abc123", MID),
        ({"sg_message_id": ".starts-with-dot"}, None, MID),
        ({"sg_message_id": 42}, None, MID),
        ({"sg_message_id": "has space.x"}, None, MID),
        ({"message_id": None}, "14c5d75ce93", None),
        ({"message_id": "not-ours"}, "14c5d75ce93", None),
        ({"message_id": 12}, "14c5d75ce93", None),
    ],
)
def test_sendgrid_optional_ids_are_lenient(
    changes: dict[str, Any], provider_id: str | None, message_id: uuid.UUID | None
) -> None:
    event = {**sg_event("delivered", "e1"), **changes}
    [report] = parse_sendgrid_events(dumps([event]))
    assert (report.provider_message_id, report.message_id) == (provider_id, message_id)


def test_sendgrid_dedupe_keys_follow_the_event_id() -> None:
    first = parse_sendgrid_events(dumps([sg_event("delivered", "a"), sg_event("open", "b")]))
    again = parse_sendgrid_events(dumps([sg_event("delivered", "a")]))
    assert first[0].dedupe_key != first[1].dedupe_key
    assert first[0] == again[0]


def test_sendgrid_empty_batch_is_no_reports() -> None:
    assert parse_sendgrid_events(b"[]") == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[{", "not valid JSON"),
        (b'{"event": "delivered"}', "JSON array"),
        (b"[1]", r"events\[0\] must be a JSON object"),
        (dumps([sg_event("open", "a"), {"event": "open"}]), r"events\[1\]\.sg_event_id"),
        (dumps([{"sg_event_id": "a"}]), r"events\[0\]\.event is required"),
        (dumps([{"sg_event_id": 5, "event": "open"}]), r"events\[0\]\.sg_event_id must be"),
        (dumps([{"sg_event_id": "a b", "event": "open"}]), r"events\[0\]\.sg_event_id"),
        (dumps([{"sg_event_id": "a", "event": ["open"]}]), r"events\[0\]\.event must be"),
        (dumps([{"sg_event_id": "a", "event": " "}]), r"events\[0\]\.event"),
    ],
)
def test_sendgrid_events_rejects_clearly(body: bytes, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        parse_sendgrid_events(body)


def test_sendgrid_events_refuses_oversized_bodies_before_parsing() -> None:
    with pytest.raises(PayloadError, match="at most"):
        parse_sendgrid_events(b"[" + b" " * (5 * 1024 * 1024) + b"]")


# --- SendGrid Inbound Parse ------------------------------------------------------------------

INBOUND_HEADERS = (
    "Received: by mx0047p1mdw1.sendgrid.net with SMTP id 6WCVv7KAWn Fri, 01 Nov 2024 14:00:02\r\n"
    "DKIM-Signature: v=1; a=rsa-sha256; d=gmail.com; s=20230601;\r\n"
    "\th=from:to:subject:date:message-id; bh=abc=; b=def=\r\n"
    "From: Jane Contact <Contact@Gmail.com>\r\n"
    "Date: Fri, 1 Nov 2024 10:00:00 -0400\r\n"
    "Message-ID:\r\n <CAF=abc123+xyz@mail.gmail.com>\r\n"
    "Subject: Lunch on Friday?\r\n"
    "To: user@usehatchapp.com\r\n"
    'Content-Type: multipart/alternative; boundary="000000000000"\r\n'
)


def sg_inbound(**changes: str) -> dict[str, str]:
    form = {
        "headers": INBOUND_HEADERS,
        "dkim": "{@gmail.com : pass}",
        "content-ids": "{}",
        "to": "user@usehatchapp.com",
        "html": "<div>Are we still on?</div>",
        "from": "Jane Contact <Contact@Gmail.com>",
        "text": "Are we still on?\n",
        "sender_ip": "209.85.208.41",
        "spam_report": "Spam detection software... score 0.1",
        "envelope": '{"to":["user@usehatchapp.com"],"from":"contact@gmail.com"}',
        "attachments": "0",
        "subject": "Lunch on Friday?",
        "spam_score": "0.1",
        "charsets": '{"to":"UTF-8","html":"UTF-8","subject":"UTF-8","from":"UTF-8","text":"UTF-8"}',
        "SPF": "pass",
    }
    form.update(changes)
    return {key: value for key, value in form.items() if value != "<drop>"}


async def test_sendgrid_inbound_multipart_is_read_by_the_one_form_reader() -> None:
    boundary = "xYzZY" + uuid.uuid4().hex[:8]
    fields = sg_inbound(subject="Caf\u00e9 on Friday?")
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        + value.encode()
        + b"\r\n"
        for name, value in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="attachment1"; '
        'filename="menu.pdf"\r\nContent-Type: application/pdf\r\n\r\n'.encode()
        + b"%PDF\x00\xff"
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    body, content_type = b"".join(parts), f"multipart/form-data; boundary={boundary}"

    single, _ = decode_any_form(content_type, body)
    assert single == fields  # every text field, the upload left out
    adapter = SendGridInboundWebhook("token")
    received = ReceivedWebhook(adapter.route, content_type, "token=token", body)
    assert await adapter.parse(received) == parse_sendgrid_inbound(fields)

    with pytest.raises(PayloadError):
        await adapter.parse(ReceivedWebhook(adapter.route, content_type, "", body[:-40]))


def test_a_multipart_form_of_too_many_parts_is_refused() -> None:
    boundary = "b" + uuid.uuid4().hex
    part = f'--{boundary}\r\nContent-Disposition: form-data; name="f"\r\n\r\nx\r\n'
    content_type = f"multipart/form-data; boundary={boundary}"
    at_limit = (part * MAX_PARTS + f"--{boundary}--\r\n").encode()
    assert decode_any_form(content_type, at_limit)[1]["f"] == ["x"] * MAX_PARTS
    with pytest.raises(PayloadError):
        decode_any_form(content_type, (part * (MAX_PARTS + 1) + f"--{boundary}--\r\n").encode())


def test_sendgrid_inbound_email() -> None:
    assert parse_sendgrid_inbound(sg_inbound()) == InboundMessage(
        channel=Channel.EMAIL,
        sender="contact@gmail.com",
        recipient="user@usehatchapp.com",
        body="Are we still on?\n",
        attachments=(),
        provider="sendgrid",
        provider_message_id="CAF=abc123+xyz@mail.gmail.com",
        sent_at=datetime(2024, 11, 1, 14, 0, tzinfo=UTC),
        subject="Lunch on Friday?",
    )


def test_sendgrid_inbound_html_only_and_no_body() -> None:
    assert parse_sendgrid_inbound(sg_inbound(text="")).body == "<div>Are we still on?</div>"
    assert parse_sendgrid_inbound(sg_inbound(text="\r\n")).body == "<div>Are we still on?</div>"
    assert parse_sendgrid_inbound(sg_inbound(text="\n", html="<drop>")).body == "\n"
    empty = parse_sendgrid_inbound(sg_inbound(text="<drop>", html="<drop>", subject=""))
    assert (empty.body, empty.subject) == (None, None)


def test_sendgrid_inbound_recipient_prefers_the_envelope() -> None:
    cc = sg_inbound(
        to='"Smith, Bob" <bob@example.org>, user@usehatchapp.com',
        envelope='{"to":["User@UseHatchApp.com"],"from":"bounce@mailer.example"}',
    )
    assert parse_sendgrid_inbound(cc).recipient == "user@usehatchapp.com"
    no_envelope = sg_inbound(to='"Smith, Bob" <bob@example.org>, user@x.org', envelope="<drop>")
    assert parse_sendgrid_inbound(no_envelope).recipient == "bob@example.org"
    broken = sg_inbound(to="first@x.org", envelope="{not json")
    assert parse_sendgrid_inbound(broken).recipient == "first@x.org"


def test_sendgrid_inbound_without_message_id_uses_a_stable_digest() -> None:
    headers = INBOUND_HEADERS.replace("Message-ID:\r\n <CAF=abc123+xyz@mail.gmail.com>\r\n", "")
    first = parse_sendgrid_inbound(sg_inbound(headers=headers))
    again = parse_sendgrid_inbound(sg_inbound(headers=headers))
    other = parse_sendgrid_inbound(sg_inbound(headers=headers, text="Something else"))
    assert first.provider_message_id.startswith("sha256:")
    assert len(first.provider_message_id) == len("sha256:") + 64
    assert first.provider_message_id == again.provider_message_id
    assert first.provider_message_id != other.provider_message_id


def test_sendgrid_inbound_unusable_message_id_is_digested() -> None:
    long_id = "Message-Id: <" + "x" * 200 + "@example.org>\r\n"
    message = parse_sendgrid_inbound(sg_inbound(headers=long_id))
    assert message.provider_message_id.startswith("sha256:")
    assert message.sent_at is None


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"from": "<drop>"}, "from"),
        ({"from": "Jane <not an address>"}, "from"),
        ({"to": "<drop>", "envelope": "<drop>"}, "to"),
        ({"to": "undisclosed-recipients:;", "envelope": "<drop>"}, "to"),
        ({"text": "x" * 262_145}, "text"),
        ({"text": "<drop>", "html": "a\x00b"}, "html"),
        ({"text": "<drop>", "html": "<drop>", "email": "MIME-Version: 1.0\r\n..."}, "raw MIME"),
    ],
)
def test_sendgrid_inbound_rejects_with_the_field_named(changes: dict[str, str], field: str) -> None:
    with pytest.raises(PayloadError, match=field):
        parse_sendgrid_inbound(sg_inbound(**changes))


# --- generic JSON format ---------------------------------------------------------------------

SMS_EXAMPLE = {
    "from": "+18045551234",
    "to": "+12016661234",
    "type": "sms",
    "messaging_provider_id": "message-1",
    "body": "text message",
    "attachments": None,
    "timestamp": "2024-11-01T14:00:00Z",
}
EMAIL_EXAMPLE = {
    "from": "contact@gmail.com",
    "to": "user@usehatchapp.com",
    "xillio_id": "message-2",
    "body": "<html><body>html is <b>allowed</b> here </body></html>",
    "attachments": ["https://example.com/document.pdf"],
    "timestamp": "2024-11-01T14:00:00Z",
}
NOV_1 = datetime(2024, 11, 1, 14, 0, tzinfo=UTC)


def test_generic_sms_example() -> None:
    assert parse_generic_sms(dumps(SMS_EXAMPLE)) == InboundMessage(
        channel=Channel.SMS,
        sender="+18045551234",
        recipient="+12016661234",
        body="text message",
        attachments=(),
        provider="generic",
        provider_message_id="message-1",
        sent_at=NOV_1,
    )


def test_generic_email_example() -> None:
    assert parse_generic_email(dumps(EMAIL_EXAMPLE)) == InboundMessage(
        channel=Channel.EMAIL,
        sender="contact@gmail.com",
        recipient="user@usehatchapp.com",
        body="<html><body>html is <b>allowed</b> here </body></html>",
        attachments=("https://example.com/document.pdf",),
        provider="generic",
        provider_message_id="message-2",
        sent_at=NOV_1,
    )


@pytest.mark.parametrize(
    ("changes", "channel", "attachments"),
    [
        ({"type": "mms", "attachments": ["https://example.com/a.jpg"]}, Channel.MMS, 1),
        ({"type": "MMS", "attachments": ["https://example.com/a.jpg"] * 20}, Channel.MMS, 20),
        # Group texts arrive as MMS without media.
        ({"type": "mms", "attachments": None}, Channel.MMS, 0),
        ({"type": "mms", "attachments": [], "body": None}, Channel.MMS, 0),
        ({"attachments": []}, Channel.SMS, 0),
    ],
)
def test_generic_sms_types(changes: dict[str, Any], channel: Channel, attachments: int) -> None:
    message = parse_generic_sms(dumps({**SMS_EXAMPLE, **changes}))
    assert (message.channel, len(message.attachments)) == (channel, attachments)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2024-11-01T14:00:00Z", NOV_1),
        ("2024-11-01t14:00:00z", NOV_1),
        ("2024-11-01T15:00:00+01:00", NOV_1),
        ("2024-11-01T14:00:00", NOV_1),  # naive: read as UTC
        ("2024-11-01 14:00:00.000Z", NOV_1),
        (None, None),
    ],
)
def test_generic_timestamps(raw: str | None, expected: datetime | None) -> None:
    assert parse_generic_sms(dumps({**SMS_EXAMPLE, "timestamp": raw})).sent_at == expected


def test_generic_email_accepts_display_names_and_lowercases() -> None:
    payload = {**EMAIL_EXAMPLE, "from": "Jane <Contact@Gmail.COM>", "to": "User@UseHatchApp.com"}
    message = parse_generic_email(dumps(payload))
    assert (message.sender, message.recipient) == ("contact@gmail.com", "user@usehatchapp.com")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"type": "sms", "attachments": ["https://example.com/a.jpg"]}, "attachments"),
        ({"type": "fax"}, "type"),
        ({"type": None}, "type is required"),
        ({"type": 1}, "type must be a string"),
        ({"messaging_provider_id": None}, "messaging_provider_id is required"),
        ({"messaging_provider_id": 7}, "messaging_provider_id must be a string"),
        ({"from": "not a number"}, "from"),
        ({"to": ""}, "to is required"),
        ({"attachments": "https://example.com/a.jpg"}, "attachments must be a list"),
        ({"type": "mms", "attachments": ["https://e.com/a"] * 21}, "at most 20"),
        ({"type": "mms", "attachments": ["javascript:alert(1)"]}, r"attachments\[0\]"),
        ({"type": "mms", "attachments": [None]}, r"attachments\[0\]"),
        ({"body": "x" * 10_001}, "body must be at most"),
        ({"body": 5}, "body must be a string"),
        ({"body": "a\x00b"}, "NUL"),
        ({"timestamp": "yesterday"}, "timestamp"),
        ({"timestamp": "2024-11-01"}, "timestamp"),
        ({"timestamp": 1730469600}, "timestamp"),
        ({"timestamp": "0001-01-01T00:00:00+05:00"}, "timestamp"),
    ],
)
def test_generic_sms_rejects_clearly(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        parse_generic_sms(dumps({**SMS_EXAMPLE, **changes}))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty"),
        (b"not json", "not valid JSON"),
        (b"[]", "JSON object"),
        (b'{"body": "\xc3\x28"}', "not valid JSON"),
        (b'{"body": "\\ud800"}', "not valid JSON"),
        (b'{"x": NaN}', "not valid JSON"),
    ],
)
def test_generic_rejects_bodies_that_are_not_json_objects(body: bytes, message: str) -> None:
    for parse in (parse_generic_sms, parse_generic_email):
        with pytest.raises(PayloadError, match=message):
            parse(body)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"xillio_id": None}, "xillio_id is required"),
        ({"from": "contact"}, "from"),
        ({"to": ["user@usehatchapp.com"]}, "to must be a string"),
        ({"body": "x" * 262_145}, "body must be at most"),
        ({"attachments": ["/relative/path.pdf"]}, r"attachments\[0\]"),
    ],
)
def test_generic_email_rejects_clearly(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        parse_generic_email(dumps({**EMAIL_EXAMPLE, **changes}))


def test_generic_email_large_html_body_is_kept() -> None:
    html = "<p>" + "é" * 262_000 + "</p>"
    assert parse_generic_email(dumps({**EMAIL_EXAMPLE, "body": html})).body == html


# --- fuzzing: nothing but PayloadError, and what succeeds is well-formed ---------------------

# Every code point, surrogates and controls included: decoded form values can hold any of them.
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=40)
# JSON strings with a lone surrogate are refused by the decoder as a whole, so JSON payloads
# use text without them to get past it and exercise the field checks (NUL still included).
JSON_TEXT = st.text(st.characters(codec="utf-8"), max_size=40)
REALISTIC = st.sampled_from(
    [
        "",
        " ",
        "0",
        "2",
        "21",
        SID,
        MID.hex,
        "+14155550100",
        "4155550100",
        "whatsapp:+14155550100",
        "user@usehatchapp.com",
        "Jane <Jane@Example.com>",
        "a@b.c, d@e.f",
        "https://example.com/a.jpg",
        "ftp://example.com/a.jpg",
        "sms",
        "mms",
        "delivered",
        "undelivered",
        "bounce",
        "blocked",
        "click",
        "2024-11-01T14:00:00Z",
        "0001-01-01T00:00:00+05:00",
        "9999-12-31T23:59:59-05:00",
        '{"to":["user@usehatchapp.com"]}',
        '{"to":[1, "x", "user@usehatchapp.com"]}',
        "Message-ID: <a@b>\r\nDate: Fri, 1 Nov 2024 10:00:00 -0400\r\n",
        "Message-ID:\r\n\t<\u00e9@b>\r\nDate: Mon, 1 Jan 0001 00:00:00 +2300\r\n",
    ]
)
FORM_VALUE = REALISTIC | ANY_TEXT
JSON_SCALAR = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | REALISTIC
    | JSON_TEXT
)
JSON_VALUE = st.recursive(
    JSON_SCALAR,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(JSON_TEXT, inner, max_size=4),
    max_leaves=12,
)
URL_LIST = st.lists(REALISTIC | JSON_TEXT, max_size=22)


def mutated(base: Mapping[str, Any], values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A valid payload with some fields replaced, some dropped and some junk ones added: most
    examples get past the first required field and reach the later checks."""
    keys = st.sampled_from(sorted(base))
    return st.builds(
        lambda changes, dropped, junk: {
            **{k: v for k, v in {**base, **changes}.items() if k not in dropped},
            **junk,
        },
        st.dictionaries(keys, values, max_size=3),
        st.sets(keys, max_size=2),
        st.dictionaries(ANY_TEXT if values is FORM_VALUE else JSON_TEXT, values, max_size=2),
    )


def check_inbound(message: InboundMessage) -> None:
    assert isinstance(message.channel, Channel)
    assert message.provider and 0 < len(message.provider_message_id) <= 128
    assert len(message.attachments) <= 20
    if message.body is not None:
        message.body.encode("utf-8")
        assert "\x00" not in message.body
    if message.channel is Channel.EMAIL:
        for address in (message.sender, message.recipient):
            assert "@" in address and address == address.lower()
    else:
        assert message.sender.startswith("+") and message.recipient.startswith("+")
    if message.sent_at is not None:
        assert message.sent_at.utcoffset() is not None


def check_report(report: StatusReport) -> None:
    assert report.kind in (
        KIND_DELIVERY_RECEIPT,
        KIND_DEFERRED,
        KIND_ENGAGEMENT,
        KIND_PROVIDER_STATUS,
    )
    assert len(report.dedupe_key) <= 300
    assert report.provider_message_id is None or len(report.provider_message_id) <= 128
    if report.error is not None:
        assert 0 < len(report.error.code) <= 64
    # Stored in a JSON column: must serialize strictly and encode as UTF-8.
    json.dumps(report.detail, allow_nan=False).encode("utf-8")


def only_payload_errors(parse: Callable[[], object]) -> None:
    try:
        result = parse()
    except PayloadError as exc:
        assert str(exc)
        return
    results = result if isinstance(result, list) else [result]
    for item in results:
        if isinstance(item, InboundMessage):
            check_inbound(item)
        else:
            assert isinstance(item, StatusReport)
            check_report(item)


BYTE_PARSERS = [parse_sendgrid_events, parse_generic_sms, parse_generic_email]


def dumps_any(value: object) -> bytes:
    return json.dumps(value).encode("utf-8", "surrogatepass")


@FUZZ
@given(st.binary(max_size=200) | JSON_VALUE.map(dumps_any))
def test_fuzz_arbitrary_bytes_and_json(body: bytes) -> None:
    for parse in BYTE_PARSERS:
        only_payload_errors(partial(parse, body))


@FUZZ
@given(
    mutated(SMS_EXAMPLE, JSON_VALUE)
    | mutated({**SMS_EXAMPLE, "type": "mms"}, URL_LIST | JSON_VALUE)
    | mutated(EMAIL_EXAMPLE, JSON_VALUE)
)
def test_fuzz_generic_payloads(value: dict[str, Any]) -> None:
    body = dumps_any(value)
    only_payload_errors(lambda: parse_generic_sms(body))
    only_payload_errors(lambda: parse_generic_email(body))


@FUZZ
@given(
    st.lists(
        mutated(sg_event("bounce", "e1", status="5.1.1", reason="x", type="blocked"), JSON_VALUE)
        | mutated(sg_event("click", "e2", url="https://example.com/?t=1"), JSON_VALUE)
        | JSON_VALUE,
        max_size=4,
    )
)
def test_fuzz_sendgrid_event_batches(events: list[Any]) -> None:
    only_payload_errors(lambda: parse_sendgrid_events(dumps_any(events)))


@FUZZ
@given(
    mutated(twilio_status("undelivered", ErrorCode="30003"), FORM_VALUE),
    mutated({"mid": MID.hex}, FORM_VALUE),
)
def test_fuzz_twilio_status_forms(form: dict[str, str], query: dict[str, str]) -> None:
    only_payload_errors(lambda: parse_twilio_status(form, query))


@FUZZ
@given(
    mutated(
        twilio_inbound(NumMedia="2", MediaUrl0="https://e.com/0", MediaUrl1="https://e.com/1"),
        FORM_VALUE,
    )
)
def test_fuzz_twilio_inbound_forms(form: dict[str, str]) -> None:
    only_payload_errors(lambda: parse_twilio_inbound(form))


@FUZZ
@given(mutated(sg_inbound(), FORM_VALUE))
def test_fuzz_sendgrid_inbound_forms(form: dict[str, str]) -> None:
    only_payload_errors(lambda: parse_sendgrid_inbound(form))


TWILIO_STATUSES = ["queued", "sending", "sent", "delivered", "read", "undelivered", "failed"]


@FUZZ
@given(
    st.sampled_from([*TWILIO_STATUSES, "canceled"]),
    st.sampled_from([*TWILIO_STATUSES, "canceled"]),
    st.dictionaries(st.sampled_from(["ErrorCode", "ErrorMessage", "To", "Extra"]), FORM_VALUE),
)
def test_fuzz_twilio_dedupe_keys(first: str, second: str, extra: Mapping[str, str]) -> None:
    # Extra fields never change identity; the status always does.
    one = parse_twilio_status({**twilio_status(first), **extra}, {})
    other = parse_twilio_status(twilio_status(second), {})
    assert (one.dedupe_key == other.dedupe_key) == (first == second)


def test_twilio_inbound_to_a_short_code_of_ours_is_read() -> None:
    message = parse_twilio_inbound(twilio_inbound(To="54321"))
    assert message.recipient == "54321"
