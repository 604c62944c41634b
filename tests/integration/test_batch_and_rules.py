"""sendMessages batches and the domain rules as seen through the API, on PostgreSQL and SQLite.

Sandbox failure rules live on the session's shared gateway, so each test that sets one uses a
recipient no other test uses and removes the rule when done.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from gateway.domain.reports import KIND_DELIVERY_RECEIPT, StatusReport
from gateway.domain.statuses import MessageStatus
from persistence.rows import CONVERSATIONS as CONVERSATION_ROWS
from persistence.rows import MESSAGES as MESSAGE_ROWS
from schema.ids import decode_uuid
from tests.conftest import GraphQLClient, RunningGateway, SandboxRefuses, SandboxRequests
from tests.integration.operations import CANCEL, message_action

SENDER = "+14155550100"

RESULT_FIELDS = """
    __typename
    ... on MessageAccepted { replayed message { id status channel from to body attachments
        segments encoding idempotencyKey sendAt conversation { id participants } } }
    ... on InvalidInput { problems { field problem } }
    ... on IdempotencyConflict { reason original { id body } }
    ... on RecipientSuppressed { reason since }
"""

SEND = f"""
mutation Send($input: SendMessageInput!) {{ sendMessage(input: $input) {{ {RESULT_FIELDS} }} }}
"""

SEND_MANY = f"""
mutation SendMany($inputs: [SendMessageInput!]!) {{
  sendMessages(inputs: $inputs) {{ {RESULT_FIELDS} }}
}}
"""

SEND_MANY_SHORT = """
mutation SendMany($inputs: [SendMessageInput!]!) {
  sendMessages(inputs: $inputs) {
    __typename ... on MessageAccepted { replayed message { id status conversation { id } } }
  }
}
"""

MESSAGE = """
query One($id: ID!) {
  message(id: $id) {
    id status attempts provider providerMessageId updatedAt
    error { code description permanent }
    conversation { id messageCount }
    events { cursor kind status }
  }
}
"""

CONVERSATIONS = """
query { conversations(first: 100) { edges { node { id participants messageCount } } } }
"""

RETRY = message_action("retryMessage", accepted="id status attempts error { code }")

DEAD_LETTERS = """
query Dead($first: Int, $after: String) {
  deadLetters(first: $first, after: $after) {
    edges { cursor node { id status attempts error { code description permanent } } }
    pageInfo { hasNextPage hasPreviousPage endCursor }
  }
}
"""


def sms(body: str = "hello", to: str = "+14155550199", **extra: object) -> dict[str, object]:
    return {"channel": "SMS", "from": SENDER, "to": to, "body": body, **extra}


def email(body: str = "hello", **extra: object) -> dict[str, object]:
    return {
        "channel": "EMAIL",
        "from": "ops@example.com",
        "to": "bob@example.com",
        "body": body,
        **extra,
    }


def accepted(result: dict[str, Any]) -> dict[str, Any]:
    assert result["__typename"] == "MessageAccepted", result
    message: dict[str, Any] = result["message"]
    return message


def problem_fields(result: dict[str, Any]) -> list[str]:
    assert result["__typename"] == "InvalidInput", result
    return sorted(p["field"] for p in result["problems"])


async def send(client: GraphQLClient, payload: dict[str, object]) -> dict[str, Any]:
    result: dict[str, Any] = (await client.execute(SEND, {"input": payload}))["sendMessage"]
    return result


async def send_many(client: GraphQLClient, inputs: list[dict[str, object]]) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = (await client.execute(SEND_MANY, {"inputs": inputs}))[
        "sendMessages"
    ]
    return results


async def read(client: GraphQLClient, message_id: str) -> dict[str, Any]:
    found: dict[str, Any] = (await client.execute(MESSAGE, {"id": message_id}))["message"]
    return found


async def wait_for_status(client: GraphQLClient, message_id: str, status: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for _ in range(400):
        found = await read(client, message_id)
        if found["status"] == status:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"message never reached {status}: {found}")


async def conversations(client: GraphQLClient) -> list[dict[str, Any]]:
    data = await client.execute(CONVERSATIONS)
    return [e["node"] for e in data["conversations"]["edges"]]


async def account_rows(gateway: RunningGateway, client: GraphQLClient) -> tuple[int, int]:
    """(messages, conversations) stored for the client's account, counted in the database."""
    account = await gateway.container.accounts.ensure_account(client.account, datetime.now(UTC))
    async with gateway.container.engine.connect() as conn:
        messages = await conn.scalar(
            select(func.count())
            .select_from(MESSAGE_ROWS)
            .where(MESSAGE_ROWS.c.account_id == account.id)
        )
        convs = await conn.scalar(
            select(func.count())
            .select_from(CONVERSATION_ROWS)
            .where(CONVERSATION_ROWS.c.account_id == account.id)
        )
    return int(messages or 0), int(convs or 0)


def in_an_hour() -> str:
    return (datetime.now(UTC) + timedelta(hours=1)).isoformat()


def message_uuid(public_id: str) -> uuid.UUID:
    value = decode_uuid(public_id, "Message")
    assert value is not None, public_id
    return value


# --- sendMessages ------------------------------------------------------------------------------


async def test_batch_results_in_input_order(client: GraphQLClient) -> None:
    earlier = accepted(await send(client, sms("earlier", idempotencyKey="b-pre")))
    inputs: list[dict[str, object]] = [
        sms("zero"),
        {"channel": "SMS", "from": "nope", "to": "+14155550199", "body": "bad from"},
        sms("earlier", idempotencyKey="b-pre"),  # replay of an earlier request
        sms("different", idempotencyKey="b-pre"),  # same key, other input
        sms("four", idempotencyKey="b-new"),
        {"channel": "EMAIL", "from": SENDER, "to": "+14155550199", "body": "phone numbers"},
        email("six"),
        sms("", to="+14155550198"),
        sms("eight", to="(415) 555-0198"),
    ]
    results = await send_many(client, inputs)
    assert [r["__typename"] for r in results] == [
        "MessageAccepted",
        "InvalidInput",
        "MessageAccepted",
        "IdempotencyConflict",
        "MessageAccepted",
        "InvalidInput",
        "MessageAccepted",
        "InvalidInput",
        "MessageAccepted",
    ]
    assert accepted(results[0])["body"] == "zero"
    assert problem_fields(results[1]) == ["from"]
    assert results[2]["replayed"] is True
    assert accepted(results[2])["id"] == earlier["id"]
    assert results[3]["original"]["id"] == earlier["id"]
    assert results[3]["reason"]
    assert results[4]["replayed"] is False
    assert accepted(results[4])["idempotencyKey"] == "b-new"
    assert problem_fields(results[5]) == ["from", "to"]
    assert accepted(results[6])["body"] == "six"
    assert problem_fields(results[7]) == ["body"]
    assert accepted(results[8])["to"] == "+14155550198"

    new_ids = [accepted(results[i])["id"] for i in (0, 4, 6, 8)]
    assert len(set(new_ids)) == 4 and earlier["id"] not in new_ids
    for message_id in new_ids:
        assert (await read(client, message_id))["id"] == message_id
    total = sum(c["messageCount"] for c in await conversations(client))
    assert total == 5  # the earlier message and the four new ones


async def test_repeated_key_inside_one_batch(
    gateway: RunningGateway, client: GraphQLClient
) -> None:
    results = await send_many(
        client,
        [
            sms("bad", idempotencyKey="dup", to="not a number"),  # invalid: claims nothing
            sms("first", idempotencyKey="dup"),
            sms("first", idempotencyKey="dup"),
            sms("second", idempotencyKey="dup"),
            sms("first", idempotencyKey="dup"),
            sms("first", idempotencyKey="other"),
        ],
    )
    assert [r["__typename"] for r in results] == [
        "InvalidInput",
        "MessageAccepted",
        "MessageAccepted",
        "IdempotencyConflict",
        "MessageAccepted",
        "MessageAccepted",
    ]
    original = accepted(results[1])
    assert results[1]["replayed"] is False
    assert results[2]["replayed"] is True and accepted(results[2])["id"] == original["id"]
    assert results[3]["original"]["id"] == original["id"]
    assert results[4]["replayed"] is True and accepted(results[4])["id"] == original["id"]
    assert results[5]["replayed"] is False and accepted(results[5])["id"] != original["id"]
    assert await account_rows(gateway, client) == (2, 1)

    # A later request with the key replays the batch's message.
    again = await send(client, sms("first", idempotencyKey="dup"))
    assert again["replayed"] is True and accepted(again)["id"] == original["id"]


async def test_more_than_1000_inputs_are_refused_and_nothing_is_written(
    gateway: RunningGateway, client: GraphQLClient
) -> None:
    inputs = [sms(f"n{i}", sendAt=in_an_hour()) for i in range(1001)]
    response = await client.post(SEND_MANY_SHORT, {"inputs": inputs})
    body = response.json()
    assert body.get("errors"), body
    assert body.get("data") is None
    codes = [(e.get("extensions") or {}).get("code") for e in body["errors"]]
    assert codes == ["BAD_USER_INPUT"], body["errors"]
    assert await account_rows(gateway, client) == (0, 0)
    assert await conversations(client) == []


async def test_batch_of_1000_valid_inputs_is_accepted(
    gateway: RunningGateway, client: GraphQLClient
) -> None:
    # Scheduled an hour ahead: the batch is accepted like any other, but the shared gateway's
    # worker does not have to deliver a thousand messages during the rest of the session.
    send_at = in_an_hour()
    inputs = [sms(f"n{i}", to=f"+1415555{150 + i % 10:04d}", sendAt=send_at) for i in range(1000)]
    inputs[10]["idempotencyKey"] = "big-1"
    results = (await client.execute(SEND_MANY_SHORT, {"inputs": inputs}))["sendMessages"]
    assert len(results) == 1000
    assert {r["__typename"] for r in results} == {"MessageAccepted"}
    assert {r["replayed"] for r in results} == {False}
    assert {r["message"]["status"] for r in results} == {"SCHEDULED"}
    assert len({r["message"]["id"] for r in results}) == 1000
    assert len({r["message"]["conversation"]["id"] for r in results}) == 10
    assert await account_rows(gateway, client) == (1000, 10)
    convs = await conversations(client)
    assert sorted(c["messageCount"] for c in convs) == [100] * 10
    # Each result is the message of its own input.
    for index in (0, 10, 517, 999):
        found = await client.execute(
            "query($id: ID!) { message(id: $id) { body to idempotencyKey } }",
            {"id": results[index]["message"]["id"]},
        )
        assert found["message"]["body"] == f"n{index}"
        assert found["message"]["to"] == f"+1415555{150 + index % 10:04d}"
    assert found["message"]["idempotencyKey"] is None


async def test_concurrent_batches_sharing_keys_each_send_once(
    gateway: RunningGateway, client: GraphQLClient
) -> None:
    # Batches that claim the same keys and conversations in opposite orders must neither
    # deadlock nor send a message twice.
    send_at = in_an_hour()
    inputs = [
        sms(f"k{i}", to=f"+1415555{170 + i % 3:04d}", idempotencyKey=f"ck-{i}", sendAt=send_at)
        for i in range(30)
    ]
    batches = [inputs, inputs[::-1], inputs[5:] + inputs[:5], inputs[::-1], inputs]
    results = await asyncio.gather(*(send_many(client, batch) for batch in batches))
    by_key: dict[str, set[str]] = {}
    fresh = 0
    for batch, answers in zip(batches, results, strict=True):
        assert len(answers) == len(batch)
        for payload, answer in zip(batch, answers, strict=True):
            message = accepted(answer)
            assert message["body"] == payload["body"]
            by_key.setdefault(str(payload["idempotencyKey"]), set()).add(message["id"])
            fresh += not answer["replayed"]
    assert all(len(ids) == 1 for ids in by_key.values()), by_key
    assert fresh == 30
    assert await account_rows(gateway, client) == (30, 3)


async def test_empty_batch_answers_empty_list(client: GraphQLClient) -> None:
    assert await send_many(client, []) == []


# --- channel rules -----------------------------------------------------------------------------


async def test_sms_needs_phone_numbers(client: GraphQLClient) -> None:
    result = await send(
        client, {"channel": "SMS", "from": "a@example.com", "to": "b@example.com", "body": "x"}
    )
    assert problem_fields(result) == ["from", "to"]
    result = await send(client, {"channel": "SMS", "from": SENDER, "to": SENDER, "body": "x"})
    assert problem_fields(result) == ["to"]


async def test_email_needs_addresses_and_lower_cases_them(client: GraphQLClient) -> None:
    result = await send(
        client, {"channel": "EMAIL", "from": SENDER, "to": "+14155550199", "body": "x"}
    )
    assert problem_fields(result) == ["from", "to"]
    result = await send(
        client, {"channel": "EMAIL", "from": "ops@example.com", "to": "not-an-address", "body": "x"}
    )
    assert problem_fields(result) == ["to"]

    message = accepted(
        await send(
            client,
            {
                "channel": "EMAIL",
                "from": "Ops@Example.COM",
                "to": " Bob.Smith@EXAMPLE.com ",
                "body": "x",
            },
        )
    )
    assert (message["from"], message["to"]) == ("ops@example.com", "bob.smith@example.com")
    assert message["conversation"]["participants"] == ["bob.smith@example.com", "ops@example.com"]
    assert (message["segments"], message["encoding"]) == (None, None)
    # Another spelling of the same two mailboxes is the same conversation.
    again = accepted(
        await send(
            client,
            {
                "channel": "EMAIL",
                "from": "BOB.SMITH@example.com",
                "to": "ops@EXAMPLE.com",
                "body": "y",
            },
        )
    )
    assert again["conversation"]["id"] == message["conversation"]["id"]


async def test_mms_needs_an_http_attachment(client: GraphQLClient) -> None:
    mms = {"channel": "MMS", "from": SENDER, "to": "+14155550199"}
    assert problem_fields(await send(client, {**mms, "body": "pic"})) == ["attachments"]
    assert problem_fields(await send(client, {**mms, "attachments": []})) == ["attachments"]
    for bad in (
        "ftp://example.com/a.png",
        "javascript:alert(1)",
        "example.com/a.png",
        "https://",
        "http://exa mple.com/a.png",
        "file:///etc/passwd",
    ):
        assert problem_fields(await send(client, {**mms, "attachments": [bad]})) == [
            "attachments"
        ], bad
    ok = accepted(
        await send(
            client, {**mms, "attachments": ["https://example.com/a.png", "http://example.com/b"]}
        )
    )
    assert ok["channel"] == "MMS" and ok["body"] is None
    assert ok["attachments"] == ["https://example.com/a.png", "http://example.com/b"]
    # SMS cannot carry attachments.
    result = await send(client, {**sms(), "attachments": ["https://example.com/a.png"]})
    assert problem_fields(result) == ["attachments"]


async def test_sms_body_limit_is_1600_characters(client: GraphQLClient) -> None:
    longest = accepted(await send(client, sms("a" * 1600)))
    assert (longest["segments"], longest["encoding"]) == (11, "GSM7")
    wide = accepted(await send(client, sms("ж" * 1600)))
    assert (wide["segments"], wide["encoding"]) == (24, "UCS2")
    assert problem_fields(await send(client, sms("a" * 1601))) == ["body"]
    assert problem_fields(await send(client, sms("ж" * 1601))) == ["body"]
    assert problem_fields(await send(client, sms(""))) == ["body"]
    assert problem_fields(await send(client, sms("   "))) == ["body"]
    # E-mail bodies are not held to the SMS limit.
    accepted(await send(client, email("a" * 1601)))


async def test_sms_and_mms_between_the_same_numbers_share_one_conversation(
    client: GraphQLClient,
) -> None:
    pic = ["https://example.com/p.png"]
    messages = [
        accepted(await send(client, sms("one", to="(415) 555-0199"))),
        accepted(
            await send(
                client,
                {
                    "channel": "MMS",
                    "from": "415.555.0199",
                    "to": "+1 415 555 0100",
                    "attachments": pic,
                },
            )
        ),
        accepted(
            await send(
                client, {"channel": "SMS", "from": "1 415 555 0199", "to": SENDER, "body": "x"}
            )
        ),
        accepted(
            await send(
                client, {"channel": "MMS", "from": SENDER, "to": "+14155550199", "attachments": pic}
            )
        ),
    ]
    assert len({m["conversation"]["id"] for m in messages}) == 1
    assert messages[0]["conversation"]["participants"] == [SENDER, "+14155550199"]
    mail = accepted(await send(client, email()))
    assert mail["conversation"]["id"] != messages[0]["conversation"]["id"]
    other_number = accepted(await send(client, sms(to="+14155550198")))
    assert other_number["conversation"]["id"] != messages[0]["conversation"]["id"]

    convs = {c["id"]: c["messageCount"] for c in await conversations(client)}
    assert convs == {
        messages[0]["conversation"]["id"]: 4,
        mail["conversation"]["id"]: 1,
        other_number["conversation"]["id"]: 1,
    }


async def test_concurrent_first_messages_create_one_conversation(
    gateway: RunningGateway, client: GraphQLClient
) -> None:
    spellings = ["+14155550177", "(415) 555-0177", "415.555.0177", "1 415 555 0177"]
    singles = [
        send(client, sms(f"s{i}", to=spellings[i % len(spellings)]))
        if i % 2
        else send(
            client,
            {
                "channel": "SMS",
                "from": spellings[i % len(spellings)],
                "to": SENDER,
                "body": f"r{i}",
            },
        )
        for i in range(16)
    ]
    batches = [
        send_many(client, [sms(f"b{i}-{j}", to="+14155550177") for j in range(3)]) for i in range(4)
    ]
    alone, together = await asyncio.gather(asyncio.gather(*singles), asyncio.gather(*batches))
    results = [*alone, *(r for batch in together for r in batch)]
    ids = {accepted(r)["conversation"]["id"] for r in results}
    assert len(ids) == 1
    assert [(c["id"], c["messageCount"]) for c in await conversations(client)] == [(ids.pop(), 28)]
    assert await account_rows(gateway, client) == (28, 1)


# --- scheduling, cancel and retry --------------------------------------------------------------


async def test_scheduled_message_can_be_canceled_once(
    gateway: RunningGateway, client: GraphQLClient, sandbox_requests: SandboxRequests
) -> None:
    send_at = in_an_hour()
    message = accepted(await send(client, sms("later", to="+14155550176", sendAt=send_at)))
    assert message["status"] == "SCHEDULED"
    assert datetime.fromisoformat(message["sendAt"]) == datetime.fromisoformat(send_at)

    canceled = (await client.execute(CANCEL, {"id": message["id"]}))["cancelMessage"]
    assert canceled == {
        "__typename": "MessageAccepted",
        "message": {"id": message["id"], "status": "CANCELED"},
    }
    again = (await client.execute(CANCEL, {"id": message["id"]}))["cancelMessage"]
    assert again == {
        "__typename": "NotCancelable",
        "current": {"id": message["id"], "status": "CANCELED"},
    }
    found = await read(client, message["id"])
    assert found["status"] == "CANCELED" and found["attempts"] == 0
    assert [(e["kind"], e["status"]) for e in found["events"]] == [
        ("accepted", "SCHEDULED"),
        ("canceled", "CANCELED"),
    ]
    assert sandbox_requests("+14155550176") == []


async def test_scheduled_message_is_sent_when_due(client: GraphQLClient) -> None:
    send_at = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    message = accepted(await send(client, sms("soon", sendAt=send_at)))
    assert message["status"] == "SCHEDULED"
    found = await wait_for_status(client, message["id"], "DELIVERED")
    assert [(e["kind"], e["status"]) for e in found["events"][:3]] == [
        ("accepted", "SCHEDULED"),
        ("enqueued", "QUEUED"),
        ("attempt", "SENDING"),
    ]
    # Too late to cancel now.
    refused = (await client.execute(CANCEL, {"id": message["id"]}))["cancelMessage"]
    assert refused["__typename"] == "NotCancelable"
    assert refused["current"]["status"] == "DELIVERED"


async def test_cancel_and_retry_of_unknown_ids_are_not_found(client: GraphQLClient) -> None:
    for public_id in ("msg_" + uuid.uuid4().hex, "garbage", "conv_" + uuid.uuid4().hex, ""):
        for mutation, field in ((CANCEL, "cancelMessage"), (RETRY, "retryMessage")):
            result = (await client.execute(mutation, {"id": public_id}))[field]
            assert result == {"__typename": "NotFound", "id": public_id}, (field, public_id)


async def test_retry_of_a_message_that_did_not_fail_is_not_cancelable(
    client: GraphQLClient,
) -> None:
    scheduled = accepted(await send(client, sms("later", sendAt=in_an_hour())))
    result = (await client.execute(RETRY, {"id": scheduled["id"]}))["retryMessage"]
    assert result == {
        "__typename": "NotCancelable",
        "current": {"id": scheduled["id"], "status": "SCHEDULED"},
    }
    delivered = accepted(await send(client, sms("now")))
    await wait_for_status(client, delivered["id"], "DELIVERED")
    result = (await client.execute(RETRY, {"id": delivered["id"]}))["retryMessage"]
    assert result == {
        "__typename": "NotCancelable",
        "current": {"id": delivered["id"], "status": "DELIVERED"},
    }
    found = await read(client, delivered["id"])
    assert found["attempts"] == 1
    assert "retry_requested" not in [e["kind"] for e in found["events"]]


async def test_dead_letters_list_failed_messages_newest_first(
    gateway: RunningGateway, client: GraphQLClient, sandbox_refuses: SandboxRefuses
) -> None:
    recipient = "+14155550175"
    with sandbox_refuses(recipient):
        first = accepted(await send(client, sms("doomed 1", to=recipient)))
        await wait_for_status(client, first["id"], "FAILED")
        second = accepted(await send(client, sms("doomed 2", to=recipient)))
        failed = await wait_for_status(client, second["id"], "FAILED")
    assert failed["error"] is not None and failed["error"]["permanent"] is True
    assert failed["error"]["code"] and failed["error"]["description"]
    assert failed["attempts"] == 1
    assert [e["kind"] for e in failed["events"]] == ["accepted", "attempt", "dead_lettered"]
    delivered = accepted(await send(client, sms("fine")))
    await wait_for_status(client, delivered["id"], "DELIVERED")

    page = (await client.execute(DEAD_LETTERS, {"first": 50}))["deadLetters"]
    assert [e["node"]["id"] for e in page["edges"]] == [second["id"], first["id"]]
    assert {e["node"]["status"] for e in page["edges"]} == {"FAILED"}
    assert page["pageInfo"]["hasNextPage"] is False

    one = (await client.execute(DEAD_LETTERS, {"first": 1}))["deadLetters"]
    assert [e["node"]["id"] for e in one["edges"]] == [second["id"]]
    assert one["pageInfo"]["hasNextPage"] is True
    rest = (
        await client.execute(DEAD_LETTERS, {"first": 1, "after": one["pageInfo"]["endCursor"]})
    )["deadLetters"]
    assert [e["node"]["id"] for e in rest["edges"]] == [first["id"]]
    assert rest["pageInfo"]["hasNextPage"] is False


async def test_retry_of_a_dead_letter_sends_it_again(
    gateway: RunningGateway,
    client: GraphQLClient,
    sandbox_refuses: SandboxRefuses,
    sandbox_requests: SandboxRequests,
) -> None:
    recipient = "+14155550174"
    with sandbox_refuses(recipient):
        message = accepted(await send(client, sms("second chance", to=recipient)))
        await wait_for_status(client, message["id"], "FAILED")
        dead = (await client.execute(DEAD_LETTERS, {"first": 50}))["deadLetters"]
        assert [e["node"]["id"] for e in dead["edges"]] == [message["id"]]

    retried = (await client.execute(RETRY, {"id": message["id"]}))["retryMessage"]
    assert retried["__typename"] == "MessageAccepted"
    assert retried["message"]["id"] == message["id"]
    assert retried["message"]["error"] is None

    found = await wait_for_status(client, message["id"], "DELIVERED")
    assert found["attempts"] == 2
    assert found["error"] is None
    assert found["provider"] and found["providerMessageId"]
    trail = [(e["kind"], e["status"]) for e in found["events"]]
    assert trail[:5] == [
        ("accepted", "QUEUED"),
        ("attempt", "SENDING"),
        ("dead_lettered", "FAILED"),
        ("retry_requested", "QUEUED"),
        ("attempt", "SENDING"),
    ]
    assert {kind for kind, _ in trail[5:]} == {"provider_accepted", "delivery_receipt"}
    assert trail[-1][1] == "DELIVERED" or trail[-2][1] == "DELIVERED"
    cursors = [int(e["cursor"]) for e in found["events"]]
    assert cursors == sorted(cursors)
    # Refused the first time, accepted once on the retry.
    assert len(sandbox_requests(recipient, accepted_only=True)) == 1

    # No longer a dead letter, and a second retry is refused.
    dead = (await client.execute(DEAD_LETTERS, {"first": 50}))["deadLetters"]
    assert dead["edges"] == []
    again = (await client.execute(RETRY, {"id": message["id"]}))["retryMessage"]
    assert again["__typename"] == "NotCancelable"


# --- statuses never move backwards -------------------------------------------------------------


async def receipt(gateway: RunningGateway, target: uuid.UUID, status: MessageStatus) -> list[Any]:
    """A provider's delivery receipt for ``target``, through the path callbacks take; the
    events it applied (none for a duplicate or a report that would move the status back)."""
    report = StatusReport(
        provider="twilio",
        provider_message_id=None,
        message_id=target,
        status=status,
        kind=KIND_DELIVERY_RECEIPT,
        dedupe_key=f"test:{target}:{status.value}:{uuid.uuid4().hex}",
        error=None,
        detail={"providerStatus": status.value.lower()},
    )
    outcome = await gateway.container.webhooks.apply_reports("twilio", [report])
    assert outcome.unmatched == 0, "the report must reach the message to test anything"
    return outcome.applied


async def test_late_receipts_never_move_a_status_backwards(
    gateway: RunningGateway, client: GraphQLClient
) -> None:
    message = accepted(await send(client, sms("forward only")))
    delivered = await wait_for_status(client, message["id"], "DELIVERED")
    target = message_uuid(message["id"])
    for late in (
        MessageStatus.SENT,
        MessageStatus.SENDING,
        MessageStatus.QUEUED,
        MessageStatus.SCHEDULED,
        MessageStatus.DELIVERED,  # a duplicate
        MessageStatus.UNDELIVERED,
        MessageStatus.FAILED,
    ):
        assert await receipt(gateway, target, late) == [], late
    assert await read(client, message["id"]) == delivered


async def test_receipts_for_a_scheduled_message_change_nothing(
    gateway: RunningGateway, client: GraphQLClient
) -> None:
    message = accepted(await send(client, sms("not yet", sendAt=in_an_hour())))
    before = await read(client, message["id"])
    target = message_uuid(message["id"])
    for status in (MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.SCHEDULED):
        assert await receipt(gateway, target, status) == [], status
    assert await read(client, message["id"]) == before
    canceled = (await client.execute(CANCEL, {"id": message["id"]}))["cancelMessage"]
    assert canceled["__typename"] == "MessageAccepted"
    for status in (MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.QUEUED):
        assert await receipt(gateway, target, status) == [], status
    assert (await read(client, message["id"]))["status"] == "CANCELED"
