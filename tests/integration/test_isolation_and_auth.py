"""Account isolation, API keys, GET rules and error masking over real HTTP, on both backends."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from gateway.services.auth import PREFIX_LENGTH
from tests.conftest import GraphQLClient, RunningGateway, SandboxRefuses, SandboxRequests
from tests.integration.operations import CANCEL, RETRY

SENDER = "+14155550100"

SEND = """
mutation Send($input: SendMessageInput!) {
  sendMessage(input: $input) {
    __typename
    ... on MessageAccepted { replayed message { id status conversation { id participants } } }
    ... on IdempotencyConflict { reason original { id } }
  }
}
"""

MESSAGE = """
query One($id: ID!) { message(id: $id) { id status body attempts events { kind } } }
"""

NODE = """
query Node($id: ID!) { node(id: $id) { __typename id } }
"""

CONVERSATION = """
query Conv($id: ID!) { conversation(id: $id) { id messageCount } }
"""

CONVERSATIONS = """
query Convs($participant: String) {
  conversations(first: 100, participant: $participant) {
    edges { node { id participants messageCount } }
  }
}
"""

DEAD_LETTERS = """
query { deadLetters(first: 100) { edges { node { id } } } }
"""


def sms(body: str = "hello", to: str = "+14155550199", **extra: object) -> dict[str, object]:
    return {"channel": "SMS", "from": SENDER, "to": to, "body": body, **extra}


async def send(client: GraphQLClient, payload: dict[str, object]) -> dict[str, Any]:
    result: dict[str, Any] = (await client.execute(SEND, {"input": payload}))["sendMessage"]
    assert result["__typename"] == "MessageAccepted", result
    message: dict[str, Any] = result["message"]
    return message


async def read(client: GraphQLClient, message_id: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = (await client.execute(MESSAGE, {"id": message_id}))["message"]
    return found


async def wait_for_status(client: GraphQLClient, message_id: str, status: str) -> dict[str, Any]:
    found: dict[str, Any] | None = None
    for _ in range(400):
        found = await read(client, message_id)
        if found is not None and found["status"] == status:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"message never reached {status}: {found}")


async def conversation_ids(client: GraphQLClient, participant: str | None = None) -> list[str]:
    data = await client.execute(CONVERSATIONS, {"participant": participant})
    return [e["node"]["id"] for e in data["conversations"]["edges"]]


async def raw_post(
    gateway: RunningGateway,
    query: str,
    variables: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return await gateway.http.post(
        f"{gateway.base_url}/graphql",
        json={"query": query, "variables": variables or {}},
        headers=headers or {},
    )


def assert_unauthenticated(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    body = response.json()
    assert body.get("data") is None, body
    codes = [(e.get("extensions") or {}).get("code") for e in body["errors"]]
    assert codes == ["UNAUTHENTICATED"], body


# --- isolation between accounts ----------------------------------------------------------------


@dataclass
class AccountA:
    delivered: dict[str, Any]
    scheduled: dict[str, Any]
    dead: dict[str, Any]


async def _account_a(a: GraphQLClient, recipient: str, refuses: SandboxRefuses) -> AccountA:
    delivered = await send(a, sms("a's secret"))
    await wait_for_status(a, delivered["id"], "DELIVERED")
    send_at = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    scheduled = await send(a, sms("a's plan", sendAt=send_at))
    with refuses(recipient):
        dead = await send(a, sms("a's failure", to=recipient))
        await wait_for_status(a, dead["id"], "FAILED")
    return AccountA(delivered, scheduled, dead)


async def test_other_account_cannot_read(
    gateway: RunningGateway, sandbox_refuses: SandboxRefuses
) -> None:
    a, b = await gateway.new_client(), await gateway.new_client()
    mine = await _account_a(a, "+14155550165", sandbox_refuses)
    messages = [mine.delivered, mine.scheduled, mine.dead]
    conversations = {m["conversation"]["id"] for m in messages}
    random_message = "msg_" + uuid.uuid4().hex
    random_conversation = "conv_" + uuid.uuid4().hex

    # Positive control: A sees everything.
    for message in messages:
        assert (await read(a, message["id"])) is not None
    assert len(await conversation_ids(a)) == len(conversations) == 2
    dead_for_a = (await a.execute(DEAD_LETTERS))["deadLetters"]["edges"]
    assert [e["node"]["id"] for e in dead_for_a] == [mine.dead["id"]]

    # B gets for A's ids exactly what it gets for ids that do not exist.
    for field, query, ids, unknown in (
        ("message", MESSAGE, [m["id"] for m in messages], random_message),
        ("node", NODE, [m["id"] for m in messages] + sorted(conversations), random_message),
        ("conversation", CONVERSATION, sorted(conversations), random_conversation),
    ):
        expected = (await b.post(query, {"id": unknown})).json()
        assert expected == {"data": {field: None}}
        for public_id in ids:
            response = await b.post(query, {"id": public_id})
            assert response.status_code == 200
            assert response.json() == expected, (field, public_id)

    assert await conversation_ids(b) == []
    for participant in (SENDER, "+14155550199", "+14155550165"):
        assert await conversation_ids(b, participant) == []
    assert (await b.execute(DEAD_LETTERS))["deadLetters"]["edges"] == []


async def test_other_account_cannot_cancel_or_retry(
    gateway: RunningGateway, sandbox_refuses: SandboxRefuses
) -> None:
    a, b = await gateway.new_client(), await gateway.new_client()
    mine = await _account_a(a, "+14155550164", sandbox_refuses)

    for mutation, field, target in (
        (CANCEL, "cancelMessage", mine.scheduled["id"]),
        (CANCEL, "cancelMessage", mine.delivered["id"]),
        (RETRY, "retryMessage", mine.dead["id"]),
        (RETRY, "retryMessage", mine.delivered["id"]),
    ):
        unknown = "msg_" + uuid.uuid4().hex
        expected = (await b.execute(mutation, {"id": unknown}))[field]
        assert expected == {"__typename": "NotFound", "id": unknown}
        result = (await b.execute(mutation, {"id": target}))[field]
        assert result == {"__typename": "NotFound", "id": target}, (field, target)

    # Nothing changed for A.
    scheduled = await read(a, mine.scheduled["id"])
    assert scheduled is not None and scheduled["status"] == "SCHEDULED"
    assert [e["kind"] for e in scheduled["events"]] == ["accepted"]
    dead = await read(a, mine.dead["id"])
    assert dead is not None and dead["status"] == "FAILED" and dead["attempts"] == 1
    assert "retry_requested" not in [e["kind"] for e in dead["events"]]
    # And A itself still can.
    canceled = (await a.execute(CANCEL, {"id": mine.scheduled["id"]}))["cancelMessage"]
    assert canceled["__typename"] == "MessageAccepted"


async def test_same_participants_in_two_accounts_make_two_conversations(
    gateway: RunningGateway,
) -> None:
    a, b = await gateway.new_client(), await gateway.new_client()
    from_a = [await send(a, sms(f"a{i}")) for i in range(2)]
    from_b = await send(b, sms("b0", to="(415) 555-0199"))
    conv_a = from_a[0]["conversation"]
    conv_b = from_b["conversation"]
    assert conv_a["participants"] == conv_b["participants"]
    assert conv_a["id"] != conv_b["id"]
    assert from_a[1]["conversation"]["id"] == conv_a["id"]

    data_a = await a.execute(CONVERSATIONS)
    data_b = await b.execute(CONVERSATIONS)
    assert [
        (e["node"]["id"], e["node"]["messageCount"]) for e in data_a["conversations"]["edges"]
    ] == [(conv_a["id"], 2)]
    assert [
        (e["node"]["id"], e["node"]["messageCount"]) for e in data_b["conversations"]["edges"]
    ] == [(conv_b["id"], 1)]


async def test_idempotency_keys_belong_to_their_account(gateway: RunningGateway) -> None:
    a, b = await gateway.new_client(), await gateway.new_client()
    first = await send(a, sms("a's body", idempotencyKey="shared-key"))
    # Same key, different input in another account: a new message, not a conflict that would
    # reveal A's message.
    result = (await b.execute(SEND, {"input": sms("b's body", idempotencyKey="shared-key")}))[
        "sendMessage"
    ]
    assert result["__typename"] == "MessageAccepted" and result["replayed"] is False
    assert result["message"]["id"] != first["id"]
    # Same key, same input in another account: still B's own message.
    same = (await b.execute(SEND, {"input": sms("a's body", idempotencyKey="other-key")}))[
        "sendMessage"
    ]
    again = (await a.execute(SEND, {"input": sms("a's body", idempotencyKey="other-key")}))[
        "sendMessage"
    ]
    assert same["replayed"] is False and again["replayed"] is False
    assert same["message"]["id"] != again["message"]["id"]


# --- authentication ----------------------------------------------------------------------------


async def test_no_authorization_header_is_unauthenticated(
    gateway: RunningGateway, sandbox_requests: SandboxRequests
) -> None:
    assert_unauthenticated(await raw_post(gateway, "{ conversations { edges { cursor } } }"))
    response = await raw_post(gateway, SEND, {"input": sms("no key", to="+14155550163")})
    assert_unauthenticated(response)
    assert response.headers.get("www-authenticate", "").lower().startswith("bearer")
    await asyncio.sleep(0.2)
    assert sandbox_requests("+14155550163") == []


async def test_wrong_keys_are_unauthenticated(
    gateway: RunningGateway, client: GraphQLClient
) -> None:
    query = "{ conversations { edges { cursor } } }"
    for header in (
        "Bearer mgw_wrong",
        f"Bearer {client.key[:-1]}{'A' if client.key[-1] != 'A' else 'B'}",
        f"Bearer {client.key}x",
        f"Basic {client.key}",
        client.key,
        "Bearer",
        "",
        f"Bearer {'x' * 5000}",
    ):
        response = await raw_post(gateway, query, headers={"Authorization": header})
        assert_unauthenticated(response)
    # Positive control: the right key, in any scheme spelling, works.
    for header in (f"Bearer {client.key}", f"bearer {client.key}"):
        response = await raw_post(gateway, query, headers={"Authorization": header})
        assert response.status_code == 200, response.text
        assert response.json() == {"data": {"conversations": {"edges": []}}}


async def test_revoked_key_stops_working(gateway: RunningGateway) -> None:
    client = await gateway.new_client()
    _, spare_key = await gateway.container.api_keys.create(client.account)
    message = await send(client, sms("before revocation"))
    query = "{ conversations { edges { node { id } } } }"

    revoked = await gateway.container.accounts.revoke_key(
        client.key[:PREFIX_LENGTH], datetime.now(UTC)
    )
    assert revoked is True
    # The key cache trusts a verified key for settings.api_key_cache_seconds; poll past it.
    assert gateway.container.settings.api_key_cache_seconds <= 1
    for _ in range(200):
        response = await client.post(query)
        if response.status_code == 401:
            break
        await asyncio.sleep(0.05)
    assert_unauthenticated(response)
    for _ in range(3):
        assert_unauthenticated(await client.post(query))

    # The account's other key is untouched and sees the same data.
    spare = await raw_post(
        gateway, MESSAGE, {"id": message["id"]}, headers={"Authorization": f"Bearer {spare_key}"}
    )
    assert spare.status_code == 200
    assert spare.json()["data"]["message"]["id"] == message["id"]


# --- GET ---------------------------------------------------------------------------------------


async def test_queries_over_get_work(gateway: RunningGateway, client: GraphQLClient) -> None:
    message = await send(client, sms("read me over GET"))
    response = await gateway.http.get(
        f"{gateway.base_url}/graphql",
        params={"query": MESSAGE, "variables": json.dumps({"id": message["id"]})},
        headers={"Authorization": f"Bearer {client.key}", "Accept": "application/json"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body
    assert body["data"]["message"]["id"] == message["id"]
    assert body["data"]["message"]["body"] == "read me over GET"

    anonymous = await gateway.http.get(
        f"{gateway.base_url}/graphql",
        params={"query": MESSAGE, "variables": json.dumps({"id": message["id"]})},
        headers={"Accept": "application/json"},
    )
    assert_unauthenticated(anonymous)


async def test_mutations_over_get_are_refused_and_write_nothing(
    gateway: RunningGateway, client: GraphQLClient, sandbox_requests: SandboxRequests
) -> None:
    recipient = "+14155550162"
    send_at = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    scheduled = await send(client, sms("keep me", sendAt=send_at))
    operations = [
        (SEND, {"input": sms("over GET", to=recipient)}),
        (CANCEL, {"id": scheduled["id"]}),
    ]
    for query, variables in operations:
        response = await gateway.http.get(
            f"{gateway.base_url}/graphql",
            params={"query": query, "variables": json.dumps(variables)},
            headers={"Authorization": f"Bearer {client.key}", "Accept": "application/json"},
        )
        assert response.status_code in (400, 405), response.text
        assert "MessageAccepted" not in response.text

    assert await conversation_ids(client, recipient) == []
    still = await read(client, scheduled["id"])
    assert still is not None and still["status"] == "SCHEDULED"
    await asyncio.sleep(0.2)
    assert sandbox_requests(recipient) == []


# --- masking of unexpected errors --------------------------------------------------------------


async def test_unexpected_error_is_masked(
    gateway: RunningGateway, client: GraphQLClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    message = await send(client, sms("fine"))
    secret = "boom: secret internal detail"

    async def broken(*_: object, **__: object) -> object:
        raise RuntimeError(secret)

    with monkeypatch.context() as patch:
        patch.setattr(gateway.container.queries, "messages", broken)
        response = await raw_post(
            gateway,
            MESSAGE,
            {"id": message["id"]},
            headers={"Authorization": f"Bearer {client.key}", "X-Request-ID": "masking-test-1"},
        )
    assert response.status_code == 200, response.text
    assert secret not in response.text and "RuntimeError" not in response.text
    body = response.json()
    assert body["data"] == {"message": None}
    [error] = body["errors"]
    assert error["message"] == "Internal error"
    assert error["extensions"] == {"code": "INTERNAL", "requestId": "masking-test-1"}
    assert response.headers["x-request-id"] == "masking-test-1"

    # Restored: the same query works again.
    found = await read(client, message["id"])
    assert found is not None and found["id"] == message["id"]


async def test_unexpected_error_in_a_mutation_is_masked_with_a_fresh_request_id(
    gateway: RunningGateway, client: GraphQLClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    send_at = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    message = await send(client, sms("cancel me", sendAt=send_at))
    secret = "lifecycle exploded: password=hunter2"

    async def broken(*_: object, **__: object) -> object:
        raise RuntimeError(secret)

    with monkeypatch.context() as patch:
        patch.setattr(gateway.container.lifecycle, "cancel", broken)
        response = await client.post(CANCEL, {"id": message["id"]})
    assert secret not in response.text and "hunter2" not in response.text
    body = response.json()
    assert body["data"] is None
    [error] = body["errors"]
    assert error["message"] == "Internal error"
    assert error["extensions"]["code"] == "INTERNAL"
    request_id = error["extensions"]["requestId"]
    assert isinstance(request_id, str) and request_id
    assert response.headers["x-request-id"] == request_id

    found = await read(client, message["id"])
    assert found is not None and found["status"] == "SCHEDULED"
    canceled = (await client.execute(CANCEL, {"id": message["id"]}))["cancelMessage"]
    assert canceled["__typename"] == "MessageAccepted"
