"""Mailgun's webhooks: the signature scheme, the token memory against replays, what events and
Routes posts are parsed into."""

from __future__ import annotations

import secrets
import time
import uuid
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest

from gateway.domain.reports import KIND_DEFERRED, KIND_DELIVERY_RECEIPT, KIND_ENGAGEMENT
from gateway.domain.statuses import MessageStatus
from gateway.domain.suppressions import SuppressionReason
from providers.signatures import MAILGUN_TOLERANCE, mailgun_signature, verify_mailgun
from providers.webhooks import PayloadError, ReceivedWebhook, Refused, WebhookRequest
from providers.webhooks.forms import decode_any_form
from providers.webhooks.mailgun import (
    SeenTokens,
    mailgun_suppression,
    mailgun_webhooks,
    parse_mailgun_event,
    parse_mailgun_inbound,
)

KEY = "unit-webhook-signing-key"
MAILGUN_ID = "20260203192638.000be97f99f8cea1@mg.example.com"


def signed(key: str = KEY, *, age: float = 0.0, token: str | None = None) -> dict[str, str]:
    timestamp = str(int(time.time() - age))
    token = token or secrets.token_hex(25)
    return {
        "timestamp": timestamp,
        "token": token,
        "signature": mailgun_signature(key, timestamp, token),
    }


def event(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": secrets.token_urlsafe(16),
        "event": name,
        "timestamp": 1770146798.372891,
        "recipient": "alice@example.com",
        "message": {"headers": {"message-id": MAILGUN_ID}},
        "user-variables": {},
        **extra,
    }


def events_request(data: dict[str, Any], signature: dict[str, str] | None) -> WebhookRequest:
    payload: dict[str, Any] = {"event-data": data}
    if signature is not None:
        payload["signature"] = signature
    return WebhookRequest("/webhooks/mailgun/events", "", {}, orjson.dumps(payload))


def refusal(verify: Any, incoming: WebhookRequest) -> int:
    with pytest.raises(Refused) as refused:
        verify(incoming)
    return refused.value.status


# --- the scheme -----------------------------------------------------------------------------


def test_the_signature_is_hex_hmac_sha256_of_timestamp_then_token() -> None:
    # Changing either part, the key, or their order changes it.
    reference = mailgun_signature("key", "1770920772", "tok")
    assert len(reference) == 64 and int(reference, 16) >= 0
    assert reference == mailgun_signature("key", "177092077", "2tok")  # plain concatenation
    assert reference != mailgun_signature("key", "tok", "1770920772")
    assert reference != mailgun_signature("other", "1770920772", "tok")
    now = 1770920772.0
    assert verify_mailgun("key", "1770920772", "tok", reference, now=now)
    altered = reference[:-1] + ("1" if reference[-1] == "0" else "0")
    assert not verify_mailgun("key", "1770920772", "tok", altered, now=now)
    assert not verify_mailgun("key", "1770920772", "tok", None, now=now)
    assert not verify_mailgun("key", "not-a-time", "tok", reference, now=now)
    late = now + MAILGUN_TOLERANCE + 1
    assert not verify_mailgun("key", "1770920772", "tok", reference, now=late)
    assert not verify_mailgun(
        "key", "1770920772", "tok", reference, now=now - MAILGUN_TOLERANCE - 1
    )


def test_seen_tokens_refuse_a_token_with_another_body_until_it_expires() -> None:
    clock = [0.0]
    seen = SeenTokens(10.0, max_entries=3, clock=lambda: clock[0])
    assert seen.claim("a", b"one")
    assert seen.claim("a", b"one")  # a redelivery of the same post
    assert not seen.claim("a", b"two")
    clock[0] = 11.0
    assert seen.claim("a", b"two")  # forgotten once its time is up
    for token in "bcd":
        assert seen.claim(token, b"x")
    # Full: the oldest ("a") made room.
    assert seen.claim("a", b"three")


# --- event webhooks -------------------------------------------------------------------------


def test_events_refuse_missing_wrong_stale_and_moved_signatures() -> None:
    events, _ = mailgun_webhooks(KEY)
    data = event("delivered")
    assert refusal(events.verify, events_request(data, None)) == 401
    assert refusal(events.verify, WebhookRequest("/", "", {}, b"not json")) == 401
    partial = {k: v for k, v in signed().items() if k != "token"}
    assert refusal(events.verify, events_request(data, partial)) == 401
    assert refusal(events.verify, events_request(data, signed("other-key"))) == 403
    assert refusal(events.verify, events_request(data, signed(age=MAILGUN_TOLERANCE + 60))) == 403
    # Nothing configured: nothing is taken.
    unconfigured, _ = mailgun_webhooks(None)
    assert refusal(unconfigured.verify, events_request(data, signed())) == 403

    # A genuine signature moved onto another payload is refused; the same payload is not.
    signature = signed()
    events.verify(events_request(data, signature))
    events.verify(events_request(data, signature))
    forged = event("failed", severity="permanent")
    assert refusal(events.verify, events_request(forged, signature)) == 403


def test_a_token_used_for_an_event_cannot_sign_an_inbound_post() -> None:
    events, inbound = mailgun_webhooks(KEY)
    signature = signed()
    events.verify(events_request(event("delivered"), signature))
    body = urlencode({**signature, "from": "a@x.org", "recipient": "b@y.org"}).encode()
    incoming = WebhookRequest(
        "/webhooks/mailgun/inbound", "", {"content-type": "application/x-www-form-urlencoded"}, body
    )
    assert refusal(inbound.verify, incoming) == 403


def test_events_map_to_statuses_kinds_and_errors() -> None:
    mid = uuid.uuid4()
    delivered = event(
        "delivered",
        **{
            "user-variables": {"message_id": mid.hex},
            "delivery-status": {"code": 250, "message": "OK"},
        },
    )
    [report] = parse_mailgun_event(orjson.dumps({"event-data": delivered}))
    assert (report.status, report.kind, report.message_id) == (
        MessageStatus.DELIVERED,
        KIND_DELIVERY_RECEIPT,
        mid,
    )
    assert report.provider_message_id == MAILGUN_ID
    assert report.dedupe_key == f"mailgun:{delivered['id']}"
    assert report.detail["timestamp"] == 1770146798

    bounce = event(
        "failed",
        severity="permanent",
        reason="bounce",
        **{"delivery-status": {"code": 550, "message": "5.1.1 No such mailbox", "description": ""}},
    )
    [failed] = parse_mailgun_event(orjson.dumps({"event-data": bounce}))
    assert (failed.status, failed.kind) == (MessageStatus.FAILED, KIND_DELIVERY_RECEIPT)
    assert failed.error is not None
    assert (failed.error.code, failed.error.description, failed.error.permanent) == (
        "550",
        "5.1.1 No such mailbox",
        True,
    )
    assert failed.message_id is None  # no user variables: matched by Mailgun's id alone

    [rejected] = parse_mailgun_event(orjson.dumps({"event-data": event("rejected")}))
    assert rejected.status is MessageStatus.FAILED

    temporary = event("failed", severity="temporary", reason="generic")
    [deferred] = parse_mailgun_event(orjson.dumps({"event-data": temporary}))
    assert (deferred.status, deferred.kind, deferred.error) == (None, KIND_DEFERRED, None)

    clicked = event("clicked", url="https://shop.example.com/reset?token=one-time#top")
    [click] = parse_mailgun_event(orjson.dumps({"event-data": clicked}))
    assert (click.status, click.kind) == (None, KIND_ENGAGEMENT)
    assert click.detail["url"] == "https://shop.example.com/reset"
    for name in ("opened", "unsubscribed", "complained"):
        [engaged] = parse_mailgun_event(orjson.dumps({"event-data": event(name)}))
        assert (engaged.status, engaged.kind) == (None, KIND_ENGAGEMENT)

    # Mailgun writes an empty list when there are no user variables.
    [accepted] = parse_mailgun_event(
        orjson.dumps({"event-data": event("accepted", **{"user-variables": []})})
    )
    assert accepted.status is None and accepted.message_id is None


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"event": "complained"}, SuppressionReason.SPAM_REPORT),
        ({"event": "unsubscribed"}, SuppressionReason.UNSUBSCRIBE),
        (
            {"severity": "permanent", "reason": "bounce", "delivery-status": {"code": 550}},
            SuppressionReason.HARD_BOUNCE,
        ),
        ({"severity": "permanent", "reason": "bounce"}, SuppressionReason.HARD_BOUNCE),
        # Mailgun's own lists and policy say nothing new of the address.
        ({"severity": "permanent", "reason": "suppress-bounce"}, None),
        ({"severity": "permanent", "reason": "suppress-unsubscribe"}, None),
        ({"severity": "permanent", "reason": "old"}, None),
        ({"severity": "permanent", "reason": "esp-block"}, None),
        ({"severity": "permanent", "reason": "bounce", "delivery-status": {"code": 421}}, None),
        ({"severity": "temporary", "reason": "bounce", "delivery-status": {"code": 552}}, None),
        ({"severity": "temporary", "reason": "generic"}, None),
        ({"event": "rejected"}, None),
        ({"event": "delivered"}, None),
        ({"event": "opened"}, None),
    ],
)
def test_which_events_suppress_their_recipient(
    extra: dict[str, Any], reason: SuppressionReason | None
) -> None:
    rest = {key: value for key, value in extra.items() if key != "event"}
    data = event(str(extra.get("event", "failed")), **rest)
    assert mailgun_suppression(data) is reason
    [report] = parse_mailgun_event(orjson.dumps({"event-data": data}))
    assert report.suppression is reason


@pytest.mark.parametrize(
    "payload",
    [{"event-data": []}, {"event-data": {"event": "delivered"}}, {"event-data": {"id": "x"}}, []],
)
def test_malformed_events_are_payload_errors(payload: Any) -> None:
    with pytest.raises(PayloadError):
        parse_mailgun_event(orjson.dumps(payload))


# --- inbound (Routes) -----------------------------------------------------------------------


def route_fields(**extra: str) -> dict[str, str]:
    headers = [
        ["Message-Id", "<CAF=abc123@mail.example.org>"],
        ["Date", "Tue, 03 Feb 2026 19:26:38 +0100"],
        ["Subject", "Hello"],
    ]
    return {
        **signed(),
        "recipient": "support@ours.example.com",
        "sender": "bounce+x@mail.example.org",
        "from": "Jane Doe <Jane@Example.org>",
        "subject": "Hello",
        "body-plain": "Hi there",
        "body-html": "<p>Hi there</p>",
        "message-headers": orjson.dumps(headers).decode(),
        **extra,
    }


def multipart(fields: dict[str, str], upload: bytes) -> tuple[bytes, str]:
    boundary = "b0undary" + secrets.token_hex(4)
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="attachment-1"; '
        f'filename="a.bin"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
        + upload
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


async def test_inbound_urlencoded_and_multipart_posts_parse_alike() -> None:
    _, inbound = mailgun_webhooks(KEY)
    fields = route_fields()
    body = urlencode(fields).encode()
    form_type = "application/x-www-form-urlencoded"
    incoming = WebhookRequest("/webhooks/mailgun/inbound", "", {"content-type": form_type}, body)
    form = inbound.verify(incoming)
    message = await inbound.parse(ReceivedWebhook(inbound.route, form_type, "", body), form)
    assert (message.sender, message.recipient) == ("jane@example.org", "support@ours.example.com")
    assert (message.body, message.subject) == ("Hi there", "Hello")
    assert message.provider_message_id == "CAF=abc123@mail.example.org"
    assert message.sent_at is not None and message.sent_at.hour == 18
    assert message.attachments == ()

    other = route_fields()
    raw, media_type = multipart(other, b"\x00\xffbinary")
    incoming = WebhookRequest("/webhooks/mailgun/inbound", "", {"content-type": media_type}, raw)
    verified = inbound.verify(incoming)
    assert "attachment-1" not in verified[0]
    # Parsed again without the verified form (the replay of a kept payload): the same message.
    replayed = await inbound.parse(ReceivedWebhook(inbound.route, media_type, "", raw))
    assert replayed == parse_mailgun_inbound(verified[0])
    assert replayed.body == "Hi there" and replayed.recipient == "support@ours.example.com"


def test_inbound_refuses_unsigned_and_wrongly_signed_posts() -> None:
    _, inbound = mailgun_webhooks(KEY)
    form_type = {"content-type": "application/x-www-form-urlencoded"}
    unsigned = {k: v for k, v in route_fields().items() if k != "signature"}
    path = "/webhooks/mailgun/inbound"
    assert (
        refusal(inbound.verify, WebhookRequest(path, "", form_type, urlencode(unsigned).encode()))
        == 401
    )
    wrong = route_fields(**signed("other-key"))
    assert (
        refusal(inbound.verify, WebhookRequest(path, "", form_type, urlencode(wrong).encode()))
        == 403
    )
    garbled = WebhookRequest(path, "", {"content-type": "multipart/form-data; boundary=x"}, b"junk")
    assert refusal(inbound.verify, garbled) == 401


def test_inbound_html_only_and_missing_message_id() -> None:
    fields = route_fields(**{"body-plain": "\n", "message-headers": "[]"})
    message = parse_mailgun_inbound(fields)
    assert message.body == "<p>Hi there</p>"
    # No Message-Id: a digest of the post, equal for a redelivery of it.
    assert message.provider_message_id.startswith("sha256:")
    assert parse_mailgun_inbound(fields).provider_message_id == message.provider_message_id


def test_decode_any_form_reads_both_encodings() -> None:
    raw, media_type = multipart({"a": "1", "b": "é"}, b"file")
    single, multi = decode_any_form(media_type, raw)
    assert single == {"a": "1", "b": "é"} and multi == {"a": ["1"], "b": ["é"]}
    assert decode_any_form("application/x-www-form-urlencoded", b"a=1&a=2")[1] == {"a": ["1", "2"]}
