"""The real Twilio, SendGrid, Mailgun and Telnyx adapters against the sandbox, over real
loopback HTTP.

Three uvicorn servers run in the test loop: the sandbox (both vendors' APIs), and a receiver
that stands in for the gateway's webhooks (recording the signed callbacks) and serves
attachment files. Nothing of ours is mocked: the adapters build real requests, the sandbox
answers in the vendors' wire formats, and the callbacks are checked with our verifiers.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partialmethod
from typing import Any, Final

import httpx
import orjson
import pytest
import structlog
import telnyx
from mailgun.security import SecurityGuard
from starlette import types as asgi
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from gateway.domain.channels import Channel, Direction
from gateway.domain.records import Message
from gateway.domain.reports import StatusReport
from gateway.domain.statuses import MessageStatus
from gateway.services.ports import (
    PermanentProviderError,
    ProviderLookup,
    ProviderReceipt,
    TransientProviderError,
)
from gateway.settings import Settings
from harness.asgi import run_uvicorn
from harness.http import loopback_client
from harness.servers import free_port
from providers.attachments import AttachmentFetcher
from providers.http import ProviderSession
from providers.mailgun import MailgunProvider
from providers.sandbox_app import Sandbox, SandboxConfig, create_sandbox_app
from providers.sendgrid import SendGridProvider
from providers.signatures import (
    SENDGRID_SIGNATURE_HEADER,
    SENDGRID_TIMESTAMP_HEADER,
    TELNYX_SIGNATURE_HEADER,
    TELNYX_TIMESTAMP_HEADER,
    TWILIO_SIGNATURE_HEADER,
    generate_sendgrid_keypair,
    generate_telnyx_keypair,
    verify_mailgun,
    verify_sendgrid,
    verify_telnyx,
    verify_twilio,
)
from providers.telnyx import TelnyxProvider
from providers.twilio import TwilioProvider
from providers.webhooks.telnyx import parse_telnyx

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "integration-auth-token"
API_KEY = "SG.integration-key"
MAILGUN_KEY = "key-integration-mailgun"
MAILGUN_DOMAIN = "mg.integration.example"
MAILGUN_SIGNING_KEY = "integration-webhook-signing-key"
TELNYX_KEY = "KEY0123456789integration"
TELNYX_PROFILE = "16fd2706-8baf-433b-82eb-8c7fada847da"
SENDER = "+15005550006"
PHONE = "+14155550100"
READ_TIMEOUT = 0.5
PDF = b"%PDF-1.4 sandbox attachment\n" * 64

Adapter = TwilioProvider | SendGridProvider | MailgunProvider | TelnyxProvider


# --- servers --------------------------------------------------------------------------------


def running(app: asgi.ASGIApp) -> contextlib.AbstractAsyncContextManager[str]:
    """Serve ``app`` under uvicorn on a free loopback port, in this event loop."""
    return run_uvicorn(app, timeout_graceful_shutdown=5)


@dataclass
class Callback:
    url: str
    headers: dict[str, str]
    body: bytes
    form: dict[str, str] = field(default_factory=dict)


@dataclass
class Receiver:
    """The gateway's side of the webhooks, reduced to recording what arrives."""

    twilio: list[Callback] = field(default_factory=list)
    sendgrid: list[Callback] = field(default_factory=list)
    mailgun: list[Callback] = field(default_factory=list)
    telnyx: list[Callback] = field(default_factory=list)
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    #: The request targets of file fetches, as they arrived on the wire.
    fetched: list[bytes] = field(default_factory=list)

    def clear(self) -> None:
        self.twilio.clear()
        self.sendgrid.clear()
        self.mailgun.clear()
        self.telnyx.clear()
        self.fetched.clear()

    def app(self) -> Starlette:
        async def twilio_status(request: Request) -> Response:
            form = await request.form()
            self.twilio.append(
                Callback(
                    str(request.url),
                    dict(request.headers),
                    b"",
                    {key: str(value) for key, value in form.multi_items()},
                )
            )
            return Response(status_code=200)

        def recording(calls: list[Callback]) -> Callable[[Request], Awaitable[Response]]:
            async def record(request: Request) -> Response:
                body = await request.body()
                calls.append(Callback(str(request.url), dict(request.headers), body))
                return Response(status_code=200)

            return record

        async def file(request: Request) -> Response:
            self.fetched.append(request.scope["raw_path"] + b"?" + request.scope["query_string"])
            found = self.files.get(request.path_params["name"])
            if found is None:
                return PlainTextResponse("no such file", status_code=404)
            return Response(found[0], media_type=found[1])

        async def hop(request: Request) -> Response:
            # /hops/{n}/{name}: n more redirects (relative ones) before the file itself.
            left = int(request.path_params["n"])
            name = request.path_params["name"]
            target = f"../{left - 1}/{name}" if left > 1 else f"/files/{name}"
            return Response(status_code=302, headers={"Location": target})

        async def broken_twilio(request: Request) -> Response:
            # A 2xx that is not Twilio's JSON: a proxy answering for it, say.
            return PlainTextResponse("Created", status_code=201)

        async def odd_telnyx(request: Request) -> Response:
            # /odd/{status}/v2/messages: answers Telnyx would give only in trouble.
            status = int(request.path_params["status"])
            if status == 200:
                return PlainTextResponse("OK", status_code=200)
            code = "10008" if status == 408 else "10007"
            body = {"errors": [{"code": code, "title": "Request timeout", "detail": "timed out"}]}
            return Response(orjson.dumps(body), status_code=status)

        return Starlette(
            routes=[
                Route("/twilio/status", twilio_status, methods=["POST"]),
                Route("/sendgrid/events", recording(self.sendgrid), methods=["POST"]),
                Route("/mailgun/events", recording(self.mailgun), methods=["POST"]),
                Route("/telnyx", recording(self.telnyx), methods=["POST"]),
                Route("/odd/{status:int}/v2/messages", odd_telnyx, methods=["POST"]),
                Route("/files/{name}", file, methods=["GET"]),
                Route("/hops/{n:int}/{name}", hop, methods=["GET"]),
                Route(
                    "/broken/2010-04-01/Accounts/{sid}/Messages.json",
                    broken_twilio,
                    methods=["POST"],
                ),
            ]
        )


@dataclass
class Answers:
    """The status of every HTTP answer an app gave, in order, including one to a client that
    had already hung up (uvicorn then drops the bytes): what the sandbox decided."""

    statuses: list[int] = field(default_factory=list)
    given: asyncio.Event = field(default_factory=asyncio.Event)

    def clear(self) -> None:
        self.statuses.clear()
        self.given.clear()

    def recording(self, app: asgi.ASGIApp) -> asgi.ASGIApp:
        async def recorded_app(scope: asgi.Scope, receive: asgi.Receive, send: asgi.Send) -> None:
            async def recorded(message: asgi.Message) -> None:
                if message["type"] == "http.response.start":
                    self.statuses.append(message["status"])
                    self.given.set()
                await send(message)

            await app(scope, receive, recorded)

        return recorded_app


@dataclass
class World:
    receiver: Receiver
    receiver_url: str
    sandbox: Sandbox
    sandbox_url: str
    client: httpx.AsyncClient
    session: ProviderSession
    sandbox_answers: Answers

    @property
    def config(self) -> SandboxConfig:
        return self.sandbox.config

    def provider(self, vendor: str, **options: Any) -> Adapter:
        """``vendor``'s adapter against the sandbox, with the credentials the sandbox expects
        and the receiver for its callbacks; ``options`` (the adapter's own keywords) override
        them."""
        receiver = self.receiver_url
        make, defaults = {
            "twilio": (
                TwilioProvider,
                {
                    "account_sid": ACCOUNT_SID,
                    "auth_token": AUTH_TOKEN,
                    "status_callback_url": f"{receiver}/twilio/status",
                },
            ),
            "telnyx": (
                TelnyxProvider,
                {"api_key": TELNYX_KEY, "webhook_url": f"{receiver}/telnyx"},
            ),
            "sendgrid": (
                SendGridProvider,
                {"api_key": API_KEY, "allow_private_attachment_hosts": True},
            ),
            "mailgun": (
                MailgunProvider,
                {
                    "api_key": MAILGUN_KEY,
                    "domain": MAILGUN_DOMAIN,
                    "attachments": AttachmentFetcher(self.session, allow_private_hosts=True),
                },
            ),
        }[vendor]
        return make(self.session, **{"base_url": self.sandbox_url, **defaults, **options})

    twilio = partialmethod(provider, "twilio")
    telnyx = partialmethod(provider, "telnyx")
    sendgrid = partialmethod(provider, "sendgrid")
    mailgun = partialmethod(provider, "mailgun")


@pytest.fixture(scope="module")
async def world() -> AsyncIterator[World]:
    receiver = Receiver()
    settings = Settings(
        twilio_account_sid=ACCOUNT_SID,
        twilio_auth_token=AUTH_TOKEN,
        sendgrid_api_key=API_KEY,
        mailgun_api_key=MAILGUN_KEY,
        mailgun_domain=MAILGUN_DOMAIN,
        mailgun_webhook_signing_key=MAILGUN_SIGNING_KEY,
        telnyx_api_key=TELNYX_KEY,
        sandbox_callback_delay=0.02,
        sandbox_retry_after=2,
        # Far beyond the adapters' read timeout: the client must give up first.
        sandbox_timeout_seconds=10,
        provider_connect_timeout=1.0,
        provider_read_timeout=READ_TIMEOUT,
    )
    async with running(receiver.app()) as receiver_url:
        config = SandboxConfig.from_settings(
            settings.model_copy(
                update={
                    "sandbox_event_webhook_url": f"{receiver_url}/sendgrid/events",
                    "sandbox_mailgun_webhook_url": f"{receiver_url}/mailgun/events",
                }
            )
        )
        config.seed = 1234
        config.callback_backoff = 0.02
        app = create_sandbox_app(config)
        answers = Answers()
        session = ProviderSession.from_settings(settings)
        try:
            async with (
                running(answers.recording(app)) as sandbox_url,
                loopback_client() as client,
            ):
                sandbox = app.state.sandbox
                yield World(receiver, receiver_url, sandbox, sandbox_url, client, session, answers)
        finally:
            await session.aclose()


@pytest.fixture
async def env(world: World) -> AsyncIterator[World]:
    await world.sandbox.drain()
    world.sandbox.reset()
    world.receiver.clear()
    world.sandbox_answers.clear()
    yield world
    await world.sandbox.drain()


def message(
    channel: Channel,
    recipient: str,
    body: str | None = "Hello from the sandbox",
    *,
    sender: str = SENDER,
    attachments: tuple[str, ...] = (),
    metadata: dict[str, Any] | None = None,
) -> Message:
    now = datetime.now(UTC)
    return Message(
        id=uuid.uuid4(),
        account_id=uuid.uuid4(),
        conversation_id=uuid.uuid4(),
        channel=channel,
        direction=Direction.OUTBOUND,
        sender=sender,
        recipient=recipient,
        body=body,
        attachments=attachments,
        status=MessageStatus.SENDING,
        attempts=1,
        segments=None,
        encoding=None,
        metadata=metadata,
        created_at=now,
        updated_at=now,
    )


def sms(recipient: str = PHONE, **kwargs: Any) -> Message:
    return message(Channel.SMS, recipient, **kwargs)


def email(recipient: str = "alice@example.com", **kwargs: Any) -> Message:
    return message(Channel.EMAIL, recipient, sender="gateway@example.com", **kwargs)


# --- Twilio: happy paths --------------------------------------------------------------------


async def test_twilio_sms_returns_the_sid_and_sends_signed_callbacks(env: World) -> None:
    provider = env.twilio()
    msg = sms(body="Your code is 123456")
    receipt = await provider.send(msg)

    assert receipt.provider == "twilio"
    assert receipt.provider_message_id.startswith("SM")
    assert len(receipt.provider_message_id) == 34
    [record] = env.sandbox.requests
    assert record["vendor"] == "twilio"
    assert record["outcome"] == "accepted"
    assert record["to"] == PHONE
    assert record["from"] == SENDER
    assert record["body"] == "Your code is 123456"
    assert record["media"] == []
    assert record["message_id"] == msg.id.hex
    assert record["provider_id"] == receipt.provider_message_id

    await env.sandbox.drain()
    assert [c.form["MessageStatus"] for c in env.receiver.twilio] == ["sent", "delivered"]
    expected_url = provider.status_callback_for(msg)
    assert expected_url == f"{env.receiver_url}/twilio/status?mid={msg.id.hex}"
    for callback in env.receiver.twilio:
        assert callback.url == expected_url
        assert callback.form["MessageSid"] == receipt.provider_message_id
        assert callback.form["SmsSid"] == receipt.provider_message_id
        assert callback.form["AccountSid"] == ACCOUNT_SID
        assert callback.form["To"] == PHONE
        assert callback.form["From"] == SENDER
        signature = callback.headers[TWILIO_SIGNATURE_HEADER.lower()]
        assert verify_twilio(AUTH_TOKEN, expected_url, callback.form, signature)
        assert not verify_twilio("another-token", expected_url, callback.form, signature)
        assert not verify_twilio(
            AUTH_TOKEN, expected_url.replace(msg.id.hex, uuid.uuid4().hex), callback.form, signature
        )
    assert [c["http_status"] for c in env.sandbox.callbacks] == [200, 200]


async def sent_mms(env: World, provider: Adapter) -> ProviderReceipt:
    """An MMS of two media URLs and no text sent by ``provider``, as the sandbox took it: with
    every URL."""
    media = ("https://cdn.example.com/a.png", "https://cdn.example.com/b.jpg")
    receipt = await provider.send(message(Channel.MMS, PHONE, body=None, attachments=media))
    [record] = env.sandbox.requests
    assert record["media"] == list(media)
    assert record["body"] is None
    assert record["provider_id"] == receipt.provider_message_id
    return receipt


async def test_twilio_mms_sends_every_media_url(env: World) -> None:
    await sent_mms(env, env.twilio())
    await env.sandbox.drain()
    assert [c.form["MessageStatus"] for c in env.receiver.twilio] == ["sent", "delivered"]


async def test_twilio_undeliverable_recipient_reports_undelivered(env: World) -> None:
    env.config.undeliverable_recipients = {PHONE}
    await env.twilio().send(sms())

    await env.sandbox.drain()
    statuses = [c.form["MessageStatus"] for c in env.receiver.twilio]
    assert statuses == ["sent", "undelivered"]
    assert env.receiver.twilio[-1].form["ErrorCode"] == "30003"
    callback = env.receiver.twilio[-1]
    assert verify_twilio(
        AUTH_TOKEN, callback.url, callback.form, callback.headers[TWILIO_SIGNATURE_HEADER.lower()]
    )


# --- SendGrid: happy paths ------------------------------------------------------------------


def monthly_report(env: World, html: str) -> Message:
    """A "Monthly report" e-mail with report.pdf attached, served by the receiver."""
    env.receiver.files["report.pdf"] = (PDF, "application/pdf")
    return email(
        body=html,
        attachments=(f"{env.receiver_url}/files/report.pdf",),
        metadata={"subject": "Monthly report"},
    )


def sendgrid_signed(key: str, post: Callback) -> bool:
    """Whether ``post`` (an event webhook) carries a valid signature by ``key``."""
    return verify_sendgrid(
        key,
        post.headers[SENDGRID_TIMESTAMP_HEADER.lower()],
        post.body,
        post.headers[SENDGRID_SIGNATURE_HEADER.lower()],
        now=time.time(),
    )


def assert_monthly_report(
    record: dict[str, Any], vendor: str, msg: Message, receipt: ProviderReceipt
) -> None:
    """What the sandbox recorded of an accepted "Monthly report" e-mail with report.pdf."""
    assert (record["vendor"], record["outcome"]) == (vendor, "accepted")
    assert (record["to"], record["from"]) == ("alice@example.com", "gateway@example.com")
    assert record["subject"] == "Monthly report"
    assert record["html"] == msg.body
    assert record["message_id"] == msg.id.hex
    assert record["provider_id"] == receipt.provider_message_id
    assert record["attachments"] == [
        {
            "filename": "report.pdf",
            "type": "application/pdf",
            "size": len(PDF),
            "sha256": hashlib.sha256(PDF).hexdigest(),
        }
    ]


async def test_sendgrid_html_email_with_attachment(env: World) -> None:
    msg = monthly_report(env, "<p>Hello <b>Alice</b></p><p>Totals &amp; figures attached.</p>")
    receipt = await env.sendgrid().send(msg)

    assert receipt.provider == "sendgrid"
    assert receipt.provider_message_id
    [record] = env.sandbox.requests
    assert_monthly_report(record, "sendgrid", msg, receipt)
    assert record["body"] == "Hello Alice\n\nTotals & figures attached."

    await env.sandbox.drain()
    [post] = env.receiver.sendgrid
    assert sendgrid_signed(env.config.public_key, post)
    # The gateway's default key would not verify: the signature is really checked.
    _, stranger = generate_sendgrid_keypair()
    assert not sendgrid_signed(stranger, post)
    events = orjson.loads(post.body)
    assert [event["event"] for event in events] == ["processed", "delivered"]
    assert len({event["sg_event_id"] for event in events}) == 2
    for event in events:
        assert event["email"] == "alice@example.com"
        assert event["message_id"] == msg.id.hex
        assert event["sg_message_id"].startswith(receipt.provider_message_id + ".filter")
        assert isinstance(event["timestamp"], int)


@pytest.mark.parametrize("vendor", ["sendgrid", "mailgun"])
async def test_plain_email_without_subject(env: World, vendor: str) -> None:
    await env.provider(vendor).send(email(body="Just text, 2 < 3 > 1."))

    [record] = env.sandbox.requests
    assert record["subject"] == "(no subject)"
    assert record["body"] == "Just text, 2 < 3 > 1."
    assert record["html"] is None
    assert record["attachments"] == []


async def test_sendgrid_bounce_recipient_reports_a_bounce(env: World) -> None:
    env.config.bounce_recipients = {"bob@example.com"}
    await env.sendgrid().send(email("Bob@Example.com"))

    await env.sandbox.drain()
    [post] = env.receiver.sendgrid
    events = orjson.loads(post.body)
    assert [event["event"] for event in events] == ["processed", "bounce"]
    assert events[1]["reason"]
    assert sendgrid_signed(env.config.public_key, post)


# --- Mailgun: happy paths -------------------------------------------------------------------


def mailgun_posts(env: World) -> list[dict[str, Any]]:
    """The sandbox's event webhook posts, each checked to carry a valid Mailgun signature."""
    bodies = []
    for post in env.receiver.mailgun:
        body = orjson.loads(post.body)
        signature = body["signature"]
        assert verify_mailgun(
            MAILGUN_SIGNING_KEY,
            signature["timestamp"],
            signature["token"],
            signature["signature"],
            now=time.time(),
        )
        # Another key does not verify it: the signature is really checked.
        assert not verify_mailgun(
            "another-key",
            signature["timestamp"],
            signature["token"],
            signature["signature"],
            now=time.time(),
        )
        bodies.append(body["event-data"])
    return bodies


async def test_mailgun_html_email_with_attachment(env: World) -> None:
    msg = monthly_report(env, "<p>Hello <b>Alice</b></p>")
    receipt = await env.mailgun().send(msg)

    assert receipt.provider == "mailgun"
    # Mailgun's id without the angle brackets its answer wraps it in, as its events name it.
    assert receipt.provider_message_id.endswith(f"@{MAILGUN_DOMAIN}")
    assert "<" not in receipt.provider_message_id
    [record] = env.sandbox.requests
    assert_monthly_report(record, "mailgun", msg, receipt)
    assert record["body"] == "Hello Alice"

    await env.sandbox.drain()
    [event] = mailgun_posts(env)
    assert event["event"] == "delivered"
    assert event["message"]["headers"]["message-id"] == receipt.provider_message_id
    assert event["user-variables"] == {"message_id": msg.id.hex}


async def test_mailgun_bounce_and_undeliverable_recipients_report_failures(env: World) -> None:
    env.config.bounce_recipients = {"bob@example.com"}
    env.config.undeliverable_recipients = {"carol@example.com"}
    await env.mailgun().send(email("Bob@Example.com"))
    await env.mailgun().send(email("carol@example.com"))
    await env.sandbox.drain()
    events = sorted(mailgun_posts(env), key=lambda event: str(event["recipient"]).lower())
    assert [(e["event"], e["severity"], e["delivery-status"]["code"]) for e in events] == [
        ("failed", "permanent", 550),
        ("failed", "temporary", 452),
    ]


async def test_mailgun_unknown_domain_is_permanent(env: World) -> None:
    with pytest.raises(PermanentProviderError) as unknown:
        await env.mailgun(domain="elsewhere.example").send(email("dave@example.com"))
    assert unknown.value.code == "404"
    assert "Domain not found" in unknown.value.description
    await env.sandbox.drain()
    assert env.receiver.mailgun == []


async def test_mailgun_signatures_verify_under_the_official_sdk(env: World) -> None:
    await env.mailgun().send(email())
    await env.sandbox.drain()
    [post] = env.receiver.mailgun
    signature = orjson.loads(post.body)["signature"]
    guard = SecurityGuard
    args = (signature["token"], signature["timestamp"], signature["signature"])
    assert guard.verify_webhook(MAILGUN_SIGNING_KEY, *args)
    assert not guard.verify_webhook("another-key", *args)


# --- Telnyx: happy paths --------------------------------------------------------------------


def telnyx_report(body: bytes) -> StatusReport:
    """What the gateway makes of a status webhook: its one report."""
    parsed = parse_telnyx(body)
    assert isinstance(parsed, list), parsed
    [report] = parsed
    return report


def telnyx_events(env: World) -> list[dict[str, Any]]:
    """The ``data`` of every Telnyx webhook the receiver got, each checked against the
    sandbox's public key (and against a stranger's, which must fail)."""
    _, stranger = generate_telnyx_keypair()
    events = []
    for post in env.receiver.telnyx:
        timestamp = post.headers[TELNYX_TIMESTAMP_HEADER]
        signature = post.headers[TELNYX_SIGNATURE_HEADER]
        now = time.time()
        key = env.config.telnyx_public_key
        assert verify_telnyx(key, timestamp, post.body, signature, now=now)
        assert not verify_telnyx(stranger, timestamp, post.body, signature, now=now)
        assert not verify_telnyx(key, timestamp, post.body + b" ", signature, now=now)
        events.append(orjson.loads(post.body)["data"])
    return events


async def test_telnyx_sms_returns_the_id_and_sends_signed_webhooks(env: World) -> None:
    provider = env.telnyx(messaging_profile_id=TELNYX_PROFILE)
    msg = sms(body="Your code is 654321")
    receipt = await provider.send(msg)

    assert receipt.provider == "telnyx"
    assert uuid.UUID(receipt.provider_message_id)
    [record] = env.sandbox.requests
    assert record["vendor"] == "telnyx"
    assert record["outcome"] == "accepted"
    assert (record["to"], record["from"]) == (PHONE, SENDER)
    assert record["body"] == "Your code is 654321"
    assert record["media"] == []
    assert record["message_id"] == msg.id.hex
    assert record["provider_id"] == receipt.provider_message_id
    assert record["webhook_url"] == f"{env.receiver_url}/telnyx?mid={msg.id.hex}"
    found = env.sandbox.messages["telnyx"][receipt.provider_message_id]
    assert (found["type"], found["messaging_profile_id"]) == ("SMS", TELNYX_PROFILE)

    await env.sandbox.drain()
    events = telnyx_events(env)
    assert [e["event_type"] for e in events] == ["message.sent", "message.finalized"]
    assert [e["payload"]["to"][0]["status"] for e in events] == ["sent", "delivered"]
    for event in events:
        assert event["payload"]["id"] == receipt.provider_message_id
        assert event["payload"]["to"][0]["phone_number"] == PHONE
        assert event["payload"]["from"]["phone_number"] == SENDER
    # What the gateway makes of them: the message found by our id, carried in the signed body.
    reports = [telnyx_report(post.body) for post in env.receiver.telnyx]
    assert [r.status for r in reports] == [MessageStatus.SENT, MessageStatus.DELIVERED]
    assert {r.message_id for r in reports} == {msg.id}
    assert [c["http_status"] for c in env.sandbox.callbacks] == [200, 200]


async def test_the_official_telnyx_sdk_verifies_the_sandbox_signatures(env: World) -> None:
    """Our reading of Telnyx's scheme checked against Telnyx's own verifier."""
    await env.telnyx().send(sms())
    await env.sandbox.drain()
    client = telnyx.Telnyx(api_key=TELNYX_KEY, public_key=env.config.telnyx_public_key)
    posts = env.receiver.telnyx
    assert len(posts) == 2
    for post in posts:
        event = client.webhooks.unwrap(post.body.decode(), headers=post.headers)
        assert event.data.event_type in {"message.sent", "message.finalized"}
    _, stranger = generate_telnyx_keypair()
    other = telnyx.Telnyx(api_key=TELNYX_KEY, public_key=stranger)
    with pytest.raises(ValueError, match="Signature verification failed"):
        other.webhooks.unwrap(posts[0].body.decode(), headers=posts[0].headers)


async def test_telnyx_mms_sends_every_media_url(env: World) -> None:
    receipt = await sent_mms(env, env.telnyx())
    found = env.sandbox.messages["telnyx"][receipt.provider_message_id]
    assert found["type"] == "MMS"
    assert found["messaging_profile_id"] is None
    await env.sandbox.drain()
    assert [e["payload"]["to"][0]["status"] for e in telnyx_events(env)] == ["sent", "delivered"]


async def test_telnyx_undeliverable_recipient_is_finalized_as_delivery_failed(env: World) -> None:
    env.config.undeliverable_recipients = {PHONE}
    await env.telnyx().send(sms())

    await env.sandbox.drain()
    events = telnyx_events(env)
    assert [e["payload"]["to"][0]["status"] for e in events] == ["sent", "delivery_failed"]
    assert events[-1]["payload"]["errors"][0]["code"] == "40008"
    report = telnyx_report(env.receiver.telnyx[-1].body)
    assert report.status is MessageStatus.UNDELIVERED
    assert report.error is not None and report.error.code == "40008"


@pytest.mark.parametrize(
    ("status", "code", "ambiguous"),
    [
        (408, "10008", True),
        (502, "10007", True),
        (503, "10007", False),
        (200, "INVALID_RESPONSE", True),
    ],
)
async def test_telnyx_answers_in_trouble_are_transient(
    env: World, status: int, code: str, ambiguous: bool
) -> None:
    # 408: Telnyx gave up on a request it had read; 502: a proxy may have passed it on; 200
    # without Telnyx's JSON: something took it. Each may have created the message.
    provider = env.telnyx(base_url=f"{env.receiver_url}/odd/{status}")
    with pytest.raises(TransientProviderError) as caught:
        await provider.send(sms())
    assert (caught.value.code, caught.value.ambiguous) == (code, ambiguous)


async def test_one_vendor_in_outage_while_the_other_answers(env: World) -> None:
    env.sandbox.configure({"vendor": "telnyx", "outage": True})
    with pytest.raises(TransientProviderError):
        await env.telnyx().send(sms())
    await env.twilio().send(sms())
    assert [(r["vendor"], r["outcome"]) for r in env.sandbox.requests] == [
        ("telnyx", "outage"),
        ("twilio", "accepted"),
    ]


# --- error mapping --------------------------------------------------------------------------

Send = Callable[[World], Awaitable[ProviderReceipt]]


async def send_twilio(env: World) -> ProviderReceipt:
    return await env.twilio().send(sms())


async def send_sendgrid(env: World) -> ProviderReceipt:
    return await env.sendgrid().send(email())


async def send_mailgun(env: World) -> ProviderReceipt:
    return await env.mailgun().send(email())


async def send_telnyx(env: World) -> ProviderReceipt:
    return await env.telnyx().send(sms())


VENDORS = pytest.mark.parametrize(
    "send",
    [send_twilio, send_sendgrid, send_mailgun, send_telnyx],
    ids=["twilio", "sendgrid", "mailgun", "telnyx"],
)
#: The vendors of SMS and MMS, the others' channel being e-mail.
PHONE_VENDORS: Final = ("twilio", "telnyx")


def message_for(vendor: str) -> Message:
    return sms() if vendor in PHONE_VENDORS else email()


@pytest.mark.parametrize(
    ("vendor", "code", "explanation"),
    [
        ("twilio", "21211", PHONE),
        ("sendgrid", "400", "Does not contain a valid address."),
        ("mailgun", "400", "not a valid address"),
        ("telnyx", "40310", "'to' address"),
    ],
)
async def test_invalid_recipient_is_permanent(
    env: World, vendor: str, code: str, explanation: str
) -> None:
    msg = message_for(vendor)
    env.config.invalid_recipients = {msg.recipient}
    with pytest.raises(PermanentProviderError) as caught:
        await env.provider(vendor).send(msg)
    assert caught.value.code == code
    assert explanation in caught.value.description
    assert env.sandbox.requests[-1]["outcome"] == "invalid_recipient"
    await env.sandbox.drain()
    assert getattr(env.receiver, vendor) == []


@pytest.mark.parametrize(
    ("vendor", "code", "description"),
    [
        ("twilio", "21610", "Attempt to send to unsubscribed recipient"),
        ("telnyx", "40300", "The recipient replied STOP to this sender."),
    ],
)
async def test_unsubscribed_recipient_is_permanent_and_marked_so(
    env: World, vendor: str, code: str, description: str
) -> None:
    env.config.unsubscribed_recipients = {PHONE}
    provider = env.provider(vendor)
    with pytest.raises(PermanentProviderError) as caught:
        await provider.send(sms())
    assert caught.value.code == code
    assert caught.value.description == description
    assert caught.value.recipient_unsubscribed is True
    assert env.sandbox.requests[-1]["outcome"] == "unsubscribed_recipient"
    # Any other refusal is not a word about the recipient's consent.
    env.config.unsubscribed_recipients = set()
    env.config.invalid_recipients = {PHONE}
    with pytest.raises(PermanentProviderError) as other:
        await provider.send(sms())
    assert other.value.recipient_unsubscribed is False


@VENDORS
async def test_rate_limited_is_transient_with_retry_after(env: World, send: Send) -> None:
    env.config.rate_429 = 1.0
    with pytest.raises(TransientProviderError) as caught:
        await send(env)
    # Telnyx's 429 carries x-ratelimit-reset, the others Retry-After: the same 2 seconds.
    assert caught.value.retry_after == pytest.approx(2.0, abs=1.0)
    assert caught.value.code in {"20429", "429", "10011"}
    assert not caught.value.ambiguous
    assert env.sandbox.requests[-1]["outcome"] == "rate_limited"


@VENDORS
@pytest.mark.parametrize(
    ("fault", "value", "codes", "outcome"),
    [
        ("rate_500", 1.0, {"20500", "500", "10007"}, "server_error"),
        ("outage", True, {"20503", "503", "10007"}, "outage"),
    ],
    ids=["server_error", "outage"],
)
async def test_server_errors_and_outages_are_transient(
    env: World, send: Send, fault: str, value: float, codes: set[str], outcome: str
) -> None:
    setattr(env.config, fault, value)
    with pytest.raises(TransientProviderError) as caught:
        await send(env)
    assert caught.value.code in codes
    assert env.sandbox.requests[-1]["outcome"] == outcome


@VENDORS
async def test_timeout_is_transient_and_ambiguous(env: World, send: Send) -> None:
    env.config.rate_timeout = 1.0
    with pytest.raises(TransientProviderError) as caught:
        await send(env)
    assert caught.value.ambiguous
    assert caught.value.code == "READTIMEOUT"
    # The client's read timeout ended the call while the sandbox still held the request (its
    # hold is far longer): the sandbox saw the hang-up and dropped the request, answering
    # nobody with a 504, instead of answering it once the hold ran out.
    await asyncio.wait_for(env.sandbox_answers.given.wait(), 30)  # a guard against hanging
    assert env.sandbox_answers.statuses == [504]
    [record] = env.sandbox.requests  # sent once: an ambiguous send is not repeated here
    assert record["outcome"] == "timeout"
    assert "delayed" not in record
    # The sandbox created nothing: no callbacks follow.
    await env.sandbox.drain()
    assert record["provider_id"] is None
    receivers = (env.receiver.twilio, env.receiver.sendgrid, env.receiver.mailgun)
    assert receivers == ([], [], []) and env.receiver.telnyx == []


@VENDORS
async def test_a_slow_answer_within_the_read_timeout_is_a_success(env: World, send: Send) -> None:
    env.config.rate_timeout = 1.0
    env.config.timeout_seconds = READ_TIMEOUT / 5
    receipt = await send(env)
    [record] = env.sandbox.requests
    assert record["outcome"] == "accepted"
    assert record["delayed"] is True
    assert record["provider_id"] == receipt.provider_message_id


def secret_name(vendor: str) -> str:
    """The keyword under which ``vendor``'s adapter takes its secret."""
    return "auth_token" if vendor == "twilio" else "api_key"


@pytest.mark.parametrize(
    ("vendor", "secret", "code"),
    [
        ("twilio", "not-the-token", "20003"),
        ("sendgrid", "SG.wrong", "401"),
        ("mailgun", "key-wrong", "401"),
        ("telnyx", "KEYwrong", "10009"),
    ],
)
async def test_wrong_credentials_are_permanent(
    env: World, vendor: str, secret: str, code: str
) -> None:
    provider = env.provider(vendor, **{secret_name(vendor): secret})
    with pytest.raises(PermanentProviderError) as caught:
        await provider.send(message_for(vendor))
    assert caught.value.code == code
    assert secret not in str(caught.value)
    assert env.sandbox.requests[-1]["outcome"] == "unauthorized"


@pytest.mark.parametrize("vendor", ["twilio", "sendgrid", "mailgun", "telnyx"])
async def test_unreachable_provider_is_transient_not_ambiguous(env: World, vendor: str) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    provider = env.provider(vendor, base_url=nobody)
    with pytest.raises(TransientProviderError) as caught:
        await provider.send(message_for(vendor))
    assert caught.value.code == "CONNECTERROR"
    assert not caught.value.ambiguous


@VENDORS
async def test_credentials_stay_out_of_logs_errors_and_reprs(env: World, send: Send) -> None:
    secrets = (
        AUTH_TOKEN,
        API_KEY,
        MAILGUN_KEY,
        TELNYX_KEY,
        base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()),
        base64.b64encode(f"api:{MAILGUN_KEY}".encode()),
    )
    shown: list[str] = [
        repr(env.twilio()),
        repr(env.sendgrid()),
        repr(env.mailgun()),
        repr(env.telnyx()),
        repr(env.session),
        repr(env.config),
    ]
    with structlog.testing.capture_logs() as logs:
        for fault in ("rate_429", "rate_500", "rate_timeout"):
            setattr(env.config, fault, 1.0)
            with pytest.raises(TransientProviderError) as caught:
                await send(env)
            setattr(env.config, fault, 0.0)
            error: BaseException | None = caught.value
            while error is not None:  # the whole chain, as a traceback would show it
                shown.append(f"{error!s} {error!r}")
                error = error.__cause__
    assert {e["event"] for e in logs} >= {"provider_refused", "provider_transport_error"}
    shown.extend(repr(e) for e in logs)
    for secret in secrets:
        text = secret.decode() if isinstance(secret, bytes) else secret
        assert not [line for line in shown if text in line]


async def test_twilio_2xx_without_json_is_transient_and_ambiguous(env: World) -> None:
    with pytest.raises(TransientProviderError) as caught:
        await env.twilio(base_url=f"{env.receiver_url}/broken").send(sms())
    assert caught.value.ambiguous
    assert caught.value.code == "INVALID_RESPONSE"


async def looked_up_as_it_moves(
    env: World, provider: Adapter, msg: Message, first: str
) -> tuple[str, ProviderLookup]:
    """Send ``msg`` with its callbacks held back and look it up at once: found, in the vendor's
    ``first`` status, not settled. Then, every callback out, look it up again: the vendor's id
    of the message and that second lookup."""
    env.config.callback_delay = 0.3
    receipt = await provider.send(msg)
    early = await provider.lookup(receipt.provider_message_id)
    assert (early.found, early.provider_status, early.status) == (True, first, None)
    await env.sandbox.drain()
    return receipt.provider_message_id, await provider.lookup(receipt.provider_message_id)


async def test_mailgun_lookup_settles_by_the_deciding_event(env: World) -> None:
    provider = env.mailgun()
    _, late = await looked_up_as_it_moves(env, provider, email(), "accepted")
    assert (late.provider_status, late.status, late.error) == (
        "delivered",
        MessageStatus.DELIVERED,
        None,
    )
    # The key the delivered event's webhook has: either is a duplicate of the other.
    [event] = mailgun_posts(env)
    assert late.report_key == f"mailgun:{event['id']}"

    env.config.bounce_recipients = {"bob@example.com"}
    bounced = await provider.send(email("bob@example.com"))
    await env.sandbox.drain()
    failed = await provider.lookup(bounced.provider_message_id)
    assert failed.status is MessageStatus.FAILED
    assert failed.error is not None and failed.error.permanent and failed.error.code == "550"


# --- attachments ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/files/report.pdf",
        "http://localhost:{port}/files/report.pdf",
        "http://[::1]:{port}/files/report.pdf",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.7/internal.pdf",
        "file:///etc/passwd",
        "ftp://127.0.0.1/report.pdf",
    ],
)
async def test_ssrf_guard_refuses_internal_attachment_urls(env: World, url: str) -> None:
    env.receiver.files["report.pdf"] = (PDF, "application/pdf")
    port = httpx.URL(env.receiver_url).port
    provider = env.sendgrid(allow_private_attachment_hosts=False)
    with pytest.raises(PermanentProviderError) as caught:
        await provider.send(email(attachments=(url.format(port=port),)))
    assert caught.value.code == "ATTACHMENT_REFUSED"
    # Refused before anything was sent to SendGrid.
    assert list(env.sandbox.requests) == []


async def test_missing_attachment_is_permanent(env: World) -> None:
    with pytest.raises(PermanentProviderError) as caught:
        await env.sendgrid().send(email(attachments=(f"{env.receiver_url}/files/nope.pdf",)))
    assert caught.value.code == "ATTACHMENT_UNAVAILABLE"
    assert list(env.sandbox.requests) == []


async def test_an_attachment_url_is_fetched_exactly_as_written(env: World) -> None:
    # A pre-signed URL is only valid byte for byte: nothing may be re-quoted on the way.
    env.receiver.files["report~1.pdf"] = (PDF, "application/pdf")
    target = "/files/report%7E1.pdf?X-Amz-Credential=AK%2F2026%2Fs3&X-Amz-Signature=ab%3D"
    await env.sendgrid().send(email(attachments=(env.receiver_url + target,)))
    assert env.receiver.fetched == [target.encode()]
    [record] = env.sandbox.requests
    assert record["attachments"][0]["filename"] == "report~1.pdf"


async def test_attachment_redirects_are_followed_a_few_hops_and_no_further(env: World) -> None:
    env.receiver.files["report.pdf"] = (PDF, "application/pdf")
    provider = env.sendgrid()
    await provider.send(email(attachments=(f"{env.receiver_url}/hops/3/report.pdf",)))
    [record] = env.sandbox.requests
    assert record["attachments"][0]["sha256"] == hashlib.sha256(PDF).hexdigest()
    assert record["attachments"][0]["filename"] == "report.pdf"
    with pytest.raises(PermanentProviderError) as caught:
        await provider.send(email(attachments=(f"{env.receiver_url}/hops/4/report.pdf",)))
    assert caught.value.code == "ATTACHMENT_UNAVAILABLE"
    assert "redirects too often" in caught.value.description


async def test_an_attachment_host_that_is_not_there_is_unavailable(env: World) -> None:
    url = f"http://127.0.0.1:{free_port()}/files/report.pdf"
    with pytest.raises(PermanentProviderError) as caught:
        await env.sendgrid().send(email(attachments=(url,)))
    assert caught.value.code == "ATTACHMENT_UNAVAILABLE"
    assert "ConnectError" in caught.value.description
    assert list(env.sandbox.requests) == []


async def test_attachments_over_the_size_limit_are_refused(env: World) -> None:
    env.receiver.files["a.pdf"] = (PDF, "application/pdf")
    env.receiver.files["b.pdf"] = (PDF, "application/pdf")
    urls = (f"{env.receiver_url}/files/a.pdf", f"{env.receiver_url}/files/b.pdf")
    provider = env.sendgrid(max_attachment_bytes=len(PDF) + 10)
    with pytest.raises(PermanentProviderError) as caught:
        await provider.send(email(attachments=urls))
    assert caught.value.code == "ATTACHMENT_TOO_LARGE"
    # Each alone fits: the limit is on the total.
    await provider.send(email(attachments=urls[:1]))


# --- control API and configuration ----------------------------------------------------------


async def test_control_api_configures_lists_and_resets(env: World) -> None:
    http = env.client
    response = await http.post(f"{env.sandbox_url}/control/config", json={"rate_500": 1})
    assert response.status_code == 200, response.text
    assert response.json()["rate_500"] == 1.0
    assert "signing_key" not in response.json() and "twilio_auth_token" not in response.json()
    with pytest.raises(TransientProviderError):
        await env.twilio().send(sms())

    listed = (await http.get(f"{env.sandbox_url}/control/requests")).json()
    assert [r["outcome"] for r in listed["requests"]] == ["server_error"]

    bad = await http.post(f"{env.sandbox_url}/control/config", json={"twilio_auth_token": "x"})
    assert bad.status_code == 400
    bad = await http.post(f"{env.sandbox_url}/control/config", json={"rate_429": 2})
    assert bad.status_code == 400

    reset = await http.post(f"{env.sandbox_url}/control/reset")
    assert reset.status_code == 200
    assert reset.json()["rate_500"] == 0.0
    assert (await http.get(f"{env.sandbox_url}/control/requests")).json()["requests"] == []
    await env.twilio().send(sms())


async def test_failure_injection_per_vendor(env: World) -> None:
    http = env.client
    control = f"{env.sandbox_url}/control/config"
    down = await http.post(control, json={"vendor": "twilio", "outage": True, "rate_429": 1})
    assert down.status_code == 200, down.text
    assert down.json()["vendors"] == {"twilio": {"outage": True, "rate_429": 1.0}}
    assert down.json()["outage"] is False
    with pytest.raises(TransientProviderError) as caught:
        await env.twilio().send(sms())
    assert caught.value.code == "20503"
    # The other vendor follows the shared values: it answers.
    await env.sendgrid().send(email())
    assert [r["outcome"] for r in env.sandbox.requests] == ["outage", "accepted"]

    # A shared value holds wherever a vendor has none of its own.
    env.sandbox.configure({"rate_500": 1.0})
    with pytest.raises(TransientProviderError) as shared:
        await env.sendgrid().send(email())
    assert shared.value.code == "500"
    env.sandbox.configure({"rate_500": 0.0})

    # null drops the vendor's own value: the shared one holds again.
    back = await http.post(control, json={"vendor": "twilio", "outage": None})
    assert back.json()["vendors"] == {"twilio": {"rate_429": 1.0}}
    with pytest.raises(TransientProviderError) as limited:
        await env.twilio().send(sms())
    assert limited.value.code == "20429"

    for refused in (
        {"vendor": "carrier-pigeon", "outage": True},
        {"vendor": "twilio", "seed": 3},
        {"vendor": "twilio", "rate_500": 2},
    ):
        bad = await http.post(control, json=refused)
        assert bad.status_code == 400, refused
    assert (await http.get(control)).json()["vendors"] == {"twilio": {"rate_429": 1.0}}

    reset = await http.post(f"{env.sandbox_url}/control/reset")
    assert reset.json()["vendors"] == {}
    await env.twilio().send(sms())


async def test_seeded_fault_rates_repeat_exactly(env: World) -> None:
    async def outcomes() -> list[str]:
        env.sandbox.reset()
        env.sandbox.configure({"rate_500": 0.5, "seed": 99})
        for _ in range(12):
            with contextlib.suppress(TransientProviderError):
                await env.twilio().send(sms())
        return [record["outcome"] for record in env.sandbox.requests]

    first = await outcomes()
    assert {"accepted", "server_error"} == set(first)
    assert await outcomes() == first


def test_config_from_settings_normalizes_and_derives_the_public_key() -> None:
    private_key, public_key = generate_sendgrid_keypair()
    settings = Settings(
        public_base_url="http://gw.example.com:8080/",
        sandbox_invalid_recipients=" +15005550001, Bad@Example.com ,",
        sandbox_bounce_recipients="bounce@example.com",
        sandbox_unsubscribed_recipients="+15005550009, Gone@Example.com",
        sandbox_sendgrid_signing_key=private_key,
    )
    config = SandboxConfig.from_settings(settings)
    assert config.invalid_recipients == {"+15005550001", "bad@example.com"}
    assert config.bounce_recipients == {"bounce@example.com"}
    assert config.unsubscribed_recipients == {"+15005550009", "gone@example.com"}
    assert config.undeliverable_recipients == set()
    assert config.public_key == public_key
    assert not config.key_generated
    assert config.event_webhook_url == "http://gw.example.com:8080/webhooks/sendgrid/events"

    generated = SandboxConfig.from_settings(Settings())
    assert generated.key_generated
    assert base64.b64decode(generated.public_key, validate=True)
    assert generated.signing_key not in repr(generated)


# --- lookups (reconciliation) ---------------------------------------------------------------


@pytest.mark.parametrize("vendor", PHONE_VENDORS)
async def test_lookup_reads_the_message_as_it_moves(env: World, vendor: str) -> None:
    vendor_id, late = await looked_up_as_it_moves(env, env.provider(vendor), sms(), "queued")
    assert late.found and late.provider_status == "delivered"
    assert late.status is MessageStatus.DELIVERED
    assert late.error is None
    # The key a callback saying "delivered" for this id has: either is a duplicate of the other.
    assert late.report_key == f"{vendor}:{vendor_id}:delivered"


@pytest.mark.parametrize(
    ("vendor", "status", "code"),
    [("twilio", "undelivered", "30003"), ("telnyx", "delivery_failed", "40008")],
)
async def test_lookup_of_an_undelivered_message_carries_its_error(
    env: World, vendor: str, status: str, code: str
) -> None:
    env.config.undeliverable_recipients = {PHONE}
    provider = env.provider(vendor)
    receipt = await provider.send(sms())
    await env.sandbox.drain()
    found = await provider.lookup(receipt.provider_message_id)
    assert (found.provider_status, found.status) == (status, MessageStatus.UNDELIVERED)
    assert found.error is not None and found.error.code == code


@pytest.mark.parametrize(
    ("vendor", "unknown", "outage", "refused"),
    [
        ("twilio", "SM" + "0" * 32, "20503", "20003"),
        ("sendgrid", "NoSuchMessage0000000000", "503", "401"),
        ("mailgun", "20260101000000.0000000000000000@mg.integration.example", "503", "401"),
        ("telnyx", "5e2ab3a4-2f5c-4a4e-9d3c-000000000000", "10007", "10009"),
    ],
)
async def test_lookup_of_an_unknown_id_and_failures_classified_like_sends(
    env: World, vendor: str, unknown: str, outage: str, refused: str
) -> None:
    provider = env.provider(vendor)
    missing = await provider.lookup(unknown)
    assert not missing.found and missing.status is None and missing.report_key is None
    receipt = await provider.send(message_for(vendor))
    env.config.outage = True
    with pytest.raises(TransientProviderError) as down:
        await provider.lookup(receipt.provider_message_id)
    assert down.value.code == outage
    env.config.outage = False
    with pytest.raises(PermanentProviderError) as wrong:
        other = env.provider(vendor, **{secret_name(vendor): "not-the-secret"})
        await other.lookup(receipt.provider_message_id)
    assert wrong.value.code == refused
    assert "not-the-secret" not in str(wrong.value)
    assert not [
        key for key in (AUTH_TOKEN, API_KEY, MAILGUN_KEY, TELNYX_KEY) if key in repr(provider)
    ]


async def test_sendgrid_lookup_finds_the_message_by_its_x_message_id(env: World) -> None:
    x_message_id, late = await looked_up_as_it_moves(env, env.sendgrid(), email(), "processed")
    assert late.status is MessageStatus.DELIVERED
    assert late.report_key == f"sendgrid:activity:{x_message_id}:delivered"


async def test_sendgrid_lookup_of_a_bounced_message_is_failed(env: World) -> None:
    env.config.bounce_recipients = {"alice@example.com"}
    provider = env.sendgrid()
    receipt = await provider.send(email())
    await env.sandbox.drain()
    found = await provider.lookup(receipt.provider_message_id)
    assert found.status is MessageStatus.FAILED
    assert found.error is not None and found.error.permanent


async def test_sendgrid_lookup_refuses_what_is_not_an_x_message_id(env: World) -> None:
    with pytest.raises(PermanentProviderError):
        await env.sendgrid().lookup("it's not an id")
