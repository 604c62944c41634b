"""Opt-out keywords end to end, on PostgreSQL and SQLite: signed Twilio inbound webhooks carry
STOP, START and HELP; the sender is suppressed and lifted, each keyword is answered through the
normal pipeline (the sandbox receives the answer), and the audit trail shows it all.

The webhooks are signed with the official ``twilio`` library's ``RequestValidator``. Every test
runs under an account of its own, with numbers (+1 415 555 091x to 099x) no other test sends
to: the session's one sandbox sees every test's sends, and "nothing more was sent" is checked
by a sentinel (a later keyword's answer) rather than by waiting.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

import httpx
import pytest
from sqlalchemy import func, select, update
from twilio.request_validator import RequestValidator

from gateway.domain.channels import Channel
from gateway.domain.messages import SendRequest
from gateway.domain.opt_outs import DEFAULT_REPLIES, AutoReply, KeywordKind
from gateway.domain.suppressions import NewSuppression, SuppressionReason
from persistence.rows import MESSAGES
from persistence.suppressions import REMOVALS, SuppressionRepository
from tests.conftest import GraphQLClient, RunningGateway, SandboxRequests
from tests.integration.operations import set_mutation
from tests.integration.test_batch_and_rules import (
    accepted,
    problem_fields,
    read,
    send,
    wait_for_status,
)
from tests.integration.test_webhooks import inbound_params, receipts
from tests.quiet_windows import window_around_now

INBOUND = "/webhooks/twilio/messages"

SETTINGS_FIELDS = """
    stopKeywords startKeywords helpKeywords scope stopReply startReply helpReply
"""
READ_SETTINGS = f"query {{ optOutSettings {{ {SETTINGS_FIELDS} }} }}"
SET_SETTINGS = set_mutation(
    "setOptOutSettings",
    "OptOutSettingsInput",
    "OptOutSettingsSet",
    f"optOutSettings {{ {SETTINGS_FIELDS} }}",
)
SET_QUIET_HOURS = """
mutation Q($input: QuietHoursInput!) { setQuietHours(input: $input) { __typename } }
"""
CONVERSATION = """
query C($participant: String!) {
  conversations(first: 5, participant: $participant) { edges { node {
    id messageCount
    messages(first: 50) { edges { node {
      id direction status from to body idempotencyKey
      events { kind status detail }
    } } }
  } } }
}
"""
EVENTS = """
subscription E($conversationId: ID, $after: String) {
  messageEvents(conversationId: $conversationId, after: $after) { kind status messageId detail }
}
"""
SUPPRESSIONS = """
query S($address: String) {
  suppressions(first: 10, address: $address) { edges { node { id address from reason detail } } }
}
"""


async def post_twilio_inbound(
    http: httpx.AsyncClient,
    base_url: str,
    params: dict[str, str],
    *,
    auth_token: str,
    public_base_url: str,
) -> httpx.Response:
    """POST a Twilio inbound form to ``base_url``, signed for the gateway's public URL."""
    signature = RequestValidator(auth_token).compute_signature(public_base_url + INBOUND, params)
    return await http.post(
        base_url + INBOUND,
        content=urlencode(params).encode(),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        },
    )


class Tenant:
    def __init__(self, gateway: RunningGateway, account_id: UUID, client: GraphQLClient) -> None:
        self.gateway = gateway
        self.account_id = account_id
        self.client = client

    @classmethod
    async def new(cls, gateway: RunningGateway, *numbers: str) -> Tenant:
        name = "optout-" + uuid.uuid4().hex[:10]
        account, key = await gateway.container.api_keys.create(name)
        for number in numbers:
            owner = await gateway.container.webhook_repo.add_address(
                account.id, number, datetime.now(UTC)
            )
            assert owner == account.id
        return cls(gateway, account.id, GraphQLClient(gateway.base_url, key, name, gateway.http))

    async def inbound(self, sender: str, to: str, body: str) -> dict[str, str]:
        """POST a signed Twilio inbound SMS; returns its form (post it again to redeliver)."""
        params = inbound_params(sender, to, body)
        await self.deliver(params)
        return params

    async def deliver(self, params: dict[str, str]) -> None:
        response = await self.post(params)
        assert response.status_code == 200, response.text

    async def post(self, params: dict[str, str]) -> httpx.Response:
        settings = self.gateway.container.settings
        return await post_twilio_inbound(
            self.gateway.http,
            self.gateway.base_url,
            params,
            auth_token=settings.twilio_auth_token,
            public_base_url=settings.public_base_url,
        )

    async def conversation(self, participant: str) -> dict[str, Any]:
        data = await self.client.execute(CONVERSATION, {"participant": participant})
        [edge] = data["conversations"]["edges"]
        node: dict[str, Any] = edge["node"]
        return node

    async def suppressions(self, address: str) -> list[dict[str, Any]]:
        data = await self.client.execute(SUPPRESSIONS, {"address": address})
        return [edge["node"] for edge in data["suppressions"]["edges"]]

    async def settings(self, **fields: object) -> dict[str, Any]:
        result: dict[str, Any] = (await self.client.execute(SET_SETTINGS, {"input": fields}))[
            "setOptOutSettings"
        ]
        return result


def messages_of(conversation: dict[str, Any]) -> list[dict[str, Any]]:
    return [edge["node"] for edge in conversation["messages"]["edges"]]


async def answers(
    sandbox_requests: SandboxRequests, recipient: str, count: int
) -> list[dict[str, Any]]:
    """What the sandbox received for ``recipient``, once it holds ``count`` sends (bounded)."""
    for _ in range(400):
        received = sandbox_requests(recipient)
        if len(received) >= count:
            return received
        await asyncio.sleep(0.05)
    raise AssertionError(f"the sandbox received {sandbox_requests(recipient)} for {recipient}")


def refused_as_opted_out(result: dict[str, Any]) -> None:
    assert result["__typename"] == "RecipientSuppressed", result
    assert result["reason"] == "STOP_KEYWORD"


def sms(sender: str, to: str, body: str) -> dict[str, object]:
    return {"channel": "SMS", "from": sender, "to": to, "body": body}


async def test_stop_answers_suppresses_and_start_lifts_once_however_often_delivered(
    gateway: RunningGateway, sandbox_requests: SandboxRequests
) -> None:
    ours, theirs = "+14155550911", "+14155550912"
    tenant = await Tenant.new(gateway, ours)
    # Quiet hours all around now in the recipient's zone: the answers go anyway.
    start, end = window_around_now("America/Los_Angeles")
    await tenant.client.execute(
        SET_QUIET_HOURS, {"input": {"start": start, "end": end, "defaultTimeZone": "UTC"}}
    )
    accepted(await send(tenant.client, sms(ours, theirs, "Your code is 1234")))

    stop = await tenant.inbound(theirs, ours, "  Stop ")
    [stop_answer] = await answers(sandbox_requests, theirs, 1)
    assert (stop_answer["from"], stop_answer["body"]) == (ours, DEFAULT_REPLIES[KeywordKind.STOP])
    refused_as_opted_out(await send(tenant.client, sms(ours, theirs, "Still there?")))
    [entry] = await tenant.suppressions(theirs)
    assert (entry["from"], entry["reason"]) == (ours, "STOP_KEYWORD")
    assert entry["detail"]["keyword"] == "STOP"

    # Twilio delivers the STOP again: nothing more is stored, suppressed or sent.
    await tenant.deliver(stop)
    conversation = await tenant.conversation(theirs)
    messages = messages_of(conversation)
    assert [(m["direction"], m["status"]) for m in messages[:2]] == [
        ("OUTBOUND", "SCHEDULED"),
        ("INBOUND", "RECEIVED"),
    ]
    assert conversation["messageCount"] == 3
    inbound, answer = messages[1], messages[2]
    assert [(e["kind"], e["status"]) for e in inbound["events"]] == [
        ("received", "RECEIVED"),
        ("keyword_received", "RECEIVED"),
        ("opted_out", "RECEIVED"),
    ]
    keyword, change = inbound["events"][1]["detail"], inbound["events"][2]["detail"]
    assert keyword == {"keyword": "STOP", "kind": "STOP"}
    assert change["scope"] == "SENDER" and change["created"] is True
    # Ids in details are public ids, as the API shows them everywhere else.
    assert change["suppressionId"] == entry["id"]
    assert entry["detail"]["inboundMessageId"] == inbound["id"]
    inbound_hex = inbound["id"].removeprefix("msg_")
    assert (answer["direction"], answer["from"], answer["to"]) == ("OUTBOUND", ours, theirs)
    assert answer["idempotencyKey"] == f"auto-reply:{inbound_hex}"
    assert answer["events"][0]["kind"] == "accepted"
    assert answer["events"][0]["detail"] == {"autoReply": "STOP", "inReplyTo": inbound["id"]}
    assert len(await tenant.suppressions(theirs)) == 1

    # START lifts it (recorded as the recipient's doing), is answered, and sends go again.
    await tenant.inbound(theirs, ours, "start")
    received = await answers(sandbox_requests, theirs, 2)
    # The sentinel: the STOP was answered once, the START once.
    assert [r["body"] for r in received] == [
        DEFAULT_REPLIES[KeywordKind.STOP],
        DEFAULT_REPLIES[KeywordKind.START],
    ]
    assert await tenant.suppressions(theirs) == []
    async with gateway.container.engine.connect() as conn:
        [removal] = (
            await conn.execute(
                select(REMOVALS.c.reason, REMOVALS.c.removal_reason).where(
                    REMOVALS.c.account_id == tenant.account_id
                )
            )
        ).all()
    assert tuple(removal) == ("STOP_KEYWORD", "lifted by the recipient: START")
    again = accepted(await send(tenant.client, sms(ours, theirs, "Welcome back")))
    # Quiet hours hold the account's own message, not the answers.
    assert again["status"] == "SCHEDULED"


REFUSE_ANSWERS_TO = {
    "postgresql": [
        """CREATE FUNCTION refuse_answer() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'the database refuses the answer'; END $$""",
        """CREATE TRIGGER refuse_answer BEFORE INSERT ON messages FOR EACH ROW
        WHEN (NEW.recipient = '{recipient}' AND NEW.idempotency_key LIKE 'auto-reply:%')
        EXECUTE FUNCTION refuse_answer()""",
    ],
    "sqlite": [
        """CREATE TRIGGER refuse_answer BEFORE INSERT ON messages
        WHEN NEW.recipient = '{recipient}' AND NEW.idempotency_key LIKE 'auto-reply:%'
        BEGIN SELECT RAISE(ABORT, 'the database refuses the answer'); END""",
    ],
}
ALLOW_ANSWERS = {
    "postgresql": ["DROP TRIGGER refuse_answer ON messages", "DROP FUNCTION refuse_answer()"],
    "sqlite": ["DROP TRIGGER refuse_answer"],
}


async def test_an_answer_the_database_refuses_once_still_goes_out_exactly_once(
    gateway: RunningGateway, sandbox_requests: SandboxRequests
) -> None:
    """The answer is accepted in the unit that stores the keyword: the database refusing it
    refuses the keyword's change too, and the webhook's next delivery does all of it."""
    ours, theirs = "+14155550961", "+14155550962"
    tenant = await Tenant.new(gateway, ours)
    engine = gateway.container.engine
    async with engine.begin() as conn:
        for statement in REFUSE_ANSWERS_TO[gateway.backend]:
            await conn.exec_driver_sql(statement.format(recipient=theirs))
    try:
        params = inbound_params(theirs, ours, "STOP")
        refused = await tenant.post(params)
        # Kept for replay (Twilio is answered as usual: the payload is safe with us).
        assert refused.status_code == 200, refused.text
    finally:
        async with engine.begin() as conn:
            for statement in ALLOW_ANSWERS[gateway.backend]:
                await conn.exec_driver_sql(statement)
    # Neither the keyword's change nor the message itself was stored.
    assert await tenant.suppressions(theirs) == []
    async with engine.connect() as conn:
        stored = await conn.scalar(
            select(func.count()).select_from(MESSAGES).where(MESSAGES.c.sender == theirs)
        )
    assert stored == 0
    assert sandbox_requests(theirs) == []
    [kept] = [
        r
        for r in await receipts(gateway.container, "failed")
        if r["payload"] == urlencode(params) and r["route"] == "twilio_messages"
    ]
    assert "the database refuses the answer" in kept["error"]

    # Applied again (the kept payload replayed, or the provider's own redelivery): everything
    # is done, the answer sent once; a duplicate after that does nothing.
    await tenant.deliver(params)
    [answer] = await answers(sandbox_requests, theirs, 1)
    assert answer["body"] == DEFAULT_REPLIES[KeywordKind.STOP]
    await tenant.deliver(params)
    # The sentinel: HELP is answered (a suppressed recipient too), and nothing came between.
    await tenant.inbound(theirs, ours, "help")
    received = await answers(sandbox_requests, theirs, 2)
    assert [r["body"] for r in received] == [
        DEFAULT_REPLIES[KeywordKind.STOP],
        DEFAULT_REPLIES[KeywordKind.HELP],
    ]
    assert len(await tenant.suppressions(theirs)) == 1
    conversation = await tenant.conversation(theirs)
    inbound = next(m for m in messages_of(conversation) if m["body"] == "STOP")
    assert [e["kind"] for e in inbound["events"]] == ["received", "keyword_received", "opted_out"]
    assert [m["idempotencyKey"] for m in messages_of(conversation)].count(
        "auto-reply:" + inbound["id"].removeprefix("msg_")
    ) == 1


async def test_an_answer_whose_enqueue_fails_after_the_commit_is_sent_by_the_sweeper(
    gateway: RunningGateway, sandbox_requests: SandboxRequests, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The answer committed QUEUED with the keyword; the broker refusing its enqueue leaves it
    to the sweeper, which finds it in the database: it goes out, once."""
    ours, theirs = "+14155550971", "+14155550972"
    tenant = await Tenant.new(gateway, ours)
    broker: Any = gateway.container.broker
    refused: list[object] = []

    async def refusing(messages: object) -> None:
        refused.append(messages)
        raise ConnectionError("the broker is away")

    with monkeypatch.context() as patch:
        patch.setattr(broker, "enqueue", refusing)
        stop = await tenant.inbound(theirs, ours, "STOP")
    assert refused, "the answer was handed to the broker after the commit"
    [answer] = await answers(sandbox_requests, theirs, 1)
    assert answer["body"] == DEFAULT_REPLIES[KeywordKind.STOP]
    await tenant.deliver(stop)  # a duplicate: nothing more
    await tenant.inbound(theirs, ours, "help")
    received = await answers(sandbox_requests, theirs, 2)
    assert [r["body"] for r in received] == [
        DEFAULT_REPLIES[KeywordKind.STOP],
        DEFAULT_REPLIES[KeywordKind.HELP],
    ]


async def test_the_keyword_events_reach_live_subscribers_of_the_conversation(
    gateway: RunningGateway, sandbox_requests: SandboxRequests
) -> None:
    ours, theirs = "+14155550921", "+14155550922"
    tenant = await Tenant.new(gateway, ours)
    first = accepted(await send(tenant.client, sms(ours, theirs, "Hello")))
    # From the last stored event on: whatever happens after it is replayed or live, no race.
    after = (await read(tenant.client, first["id"]))["events"][-1]["cursor"]
    variables = {"conversationId": first["conversation"]["id"], "after": after}
    async with tenant.client.subscription(EVENTS, variables) as events:
        await tenant.inbound(theirs, ours, "HELP")
        seen: list[tuple[str, str]] = []
        while ("accepted", "QUEUED") not in seen:
            payload = await events.next()
            event = payload["data"]["messageEvents"]
            if event["messageId"] != first["id"]:
                seen.append((event["kind"], event["status"]))
    assert seen[:3] == [
        ("received", "RECEIVED"),
        ("keyword_received", "RECEIVED"),
        ("help_requested", "RECEIVED"),
    ]
    received = await answers(sandbox_requests, theirs, 2)
    assert [r["body"] for r in received] == ["Hello", DEFAULT_REPLIES[KeywordKind.HELP]]
    # HELP changes nothing.
    assert await tenant.suppressions(theirs) == []


async def test_settings_read_set_and_refused_and_an_accounts_own_words_and_scope_hold(
    gateway: RunningGateway, sandbox_requests: SandboxRequests
) -> None:
    ours, other, theirs = "+14155550931", "+14155550932", "+14155550933"
    tenant = await Tenant.new(gateway, ours, other)
    defaults = (await tenant.client.execute(READ_SETTINGS))["optOutSettings"]
    assert (
        defaults["stopKeywords"][:2] == ["STOP", "STOPALL"]
        and "OPT OUT" in (defaults["stopKeywords"])
    )
    assert defaults["startKeywords"] == ["START", "YES", "UNSTOP"]
    assert defaults["helpKeywords"] == ["HELP", "INFO"]
    assert defaults["scope"] == "SENDER"
    assert defaults["stopReply"] == DEFAULT_REPLIES[KeywordKind.STOP]

    refused = await tenant.settings(
        stopKeywords=["Halt", " "], startKeywords=["HALT"], helpReply=" ", stopReply=None
    )
    assert refused["__typename"] == "InvalidInput"
    assert sorted((p["field"], p["problem"]) for p in refused["problems"]) == [
        ("helpReply", "must not be blank (null turns the reply off)"),
        ("startKeywords", "'HALT' is listed in stopKeywords too"),
        ("stopKeywords", "must not list an empty word"),
    ]
    # A refused setting changed nothing.
    assert (await tenant.client.execute(READ_SETTINGS))["optOutSettings"] == defaults

    result = await tenant.settings(
        stopKeywords=["Halt  Now", "stop"], scope="ACCOUNT", stopReply=None, helpReply="Acme help"
    )
    assert result["__typename"] == "OptOutSettingsSet", result
    chosen = result["optOutSettings"]
    assert chosen["stopKeywords"] == ["Halt Now", "stop"]
    assert chosen["startKeywords"] == defaults["startKeywords"]
    assert (chosen["scope"], chosen["stopReply"], chosen["helpReply"]) == (
        "ACCOUNT",
        None,
        "Acme help",
    )
    assert (await tenant.client.execute(READ_SETTINGS))["optOutSettings"] == chosen

    # The account's word, written to one number, opts the sender out of every number of it,
    # and is not answered (its reply is off).
    await tenant.inbound(theirs, ours, "halt now")
    [entry] = await tenant.suppressions(theirs)
    assert (entry["from"], entry["reason"]) == (None, "STOP_KEYWORD")
    refused_as_opted_out(await send(tenant.client, sms(other, theirs, "from the other number")))
    # The sentinel: HELP is answered, and it is the only answer the sandbox received.
    await tenant.inbound(theirs, other, "help")
    [answer] = await answers(sandbox_requests, theirs, 1)
    assert (answer["from"], answer["body"]) == (other, "Acme help")


async def test_the_answer_alone_is_exempt_from_the_suppression_at_its_claim(
    gateway: RunningGateway, sandbox_requests: SandboxRequests
) -> None:
    """A scheduled answer and a scheduled ordinary message to a recipient suppressed since:
    when they come due, the worker's claim cancels the ordinary one and sends the answer."""
    ours, theirs = "+14155550941", "+14155550942"
    tenant = await Tenant.new(gateway, ours)
    later = datetime.now(UTC) + timedelta(hours=1)
    marker = AutoReply(uuid.uuid4(), KeywordKind.STOP)
    plain = SendRequest(Channel.SMS, ours, theirs, "ordinary", send_at=later)
    answer = SendRequest(
        Channel.SMS,
        ours,
        theirs,
        "answer",
        send_at=later,
        idempotency_key=marker.idempotency_key(),
        auto_reply=marker,
    )
    outcomes = await gateway.container.sending.send(tenant.account_id, [plain, answer])
    ids = [outcome.message.id for outcome in outcomes]
    await SuppressionRepository(gateway.container.engine).add(
        NewSuppression(tenant.account_id, theirs, None, None, SuppressionReason.STOP_KEYWORD),
        datetime.now(UTC),
    )
    async with gateway.container.engine.begin() as conn:
        await conn.execute(
            update(MESSAGES).where(MESSAGES.c.id.in_(ids)).values(next_attempt_at=datetime.now(UTC))
        )
    canceled = await wait_for_status(tenant.client, "msg_" + ids[0].hex, "CANCELED")
    assert canceled["error"]["code"] == "RECIPIENT_SUPPRESSED"
    assert [r["body"] for r in await answers(sandbox_requests, theirs, 1)] == ["answer"]


async def test_a_send_through_the_api_cannot_claim_an_answers_exemption(
    gateway: RunningGateway, client: GraphQLClient
) -> None:
    """The exemption is no input: an API send that reuses an answer's key is an ordinary send."""
    ours, theirs = "+14155550951", "+14155550952"
    account = await gateway.container.accounts.ensure_account(client.account, datetime.now(UTC))
    await SuppressionRepository(gateway.container.engine).add(
        NewSuppression(account.id, theirs, None, None, SuppressionReason.STOP_KEYWORD),
        datetime.now(UTC),
    )
    key = AutoReply(uuid.uuid4(), KeywordKind.STOP).idempotency_key()
    refused_as_opted_out(await send(client, {**sms(ours, theirs, "hi"), "idempotencyKey": key}))


async def test_a_short_code_sends_and_a_stop_written_to_it_suppresses_for_it(
    gateway: RunningGateway, sandbox_requests: SandboxRequests
) -> None:
    """A short code (five or six digits, no E.164 form) is a sender like any number of ours:
    it sends, inbound messages written to it arrive, and a STOP to it suppresses for it."""
    ours, theirs = "54321", "+14155550996"
    tenant = await Tenant.new(gateway, ours)
    sent = accepted(await send(tenant.client, sms(ours, theirs, "Your code is 9876")))
    assert sent["from"] == ours
    await wait_for_status(tenant.client, sent["id"], "DELIVERED")
    [first] = await answers(sandbox_requests, theirs, 1)
    assert first["from"] == ours

    await tenant.inbound(theirs, ours, "STOP")
    [_, stop_answer] = await answers(sandbox_requests, theirs, 2)
    assert (stop_answer["from"], stop_answer["body"]) == (ours, DEFAULT_REPLIES[KeywordKind.STOP])
    refused_as_opted_out(await send(tenant.client, sms(ours, theirs, "Still there?")))
    [entry] = await tenant.suppressions(theirs)
    assert entry["from"] == ours
    # A short code is a sender only: nobody is sent to one.
    assert problem_fields(await send(tenant.client, sms(ours, "65432", "to a code"))) == ["to"]
