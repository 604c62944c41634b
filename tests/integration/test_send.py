"""sendMessage / sendMessages over real HTTP, on PostgreSQL and SQLite."""

from __future__ import annotations

import asyncio

from tests.conftest import GraphQLClient, RunningGateway

SEND = """
mutation Send($input: SendMessageInput!) {
  sendMessage(input: $input) {
    __typename
    ... on MessageAccepted { replayed message { id status channel from to segments encoding
        idempotencyKey conversation { id participants } } }
    ... on InvalidInput { problems { field problem } }
    ... on IdempotencyConflict { reason original { id } }
  }
}
"""

MESSAGE = """
query One($id: ID!) { message(id: $id) { id status attempts provider events { kind status } } }
"""


def sms(body: str = "hello", **extra: object) -> dict[str, object]:
    return {"channel": "SMS", "from": "+14155550100", "to": "+14155550199", "body": body, **extra}


async def test_sms_is_normalized_and_delivered(client: GraphQLClient) -> None:
    data = await client.execute(SEND, {"input": sms(to="(415) 555-0199", body="Hi €")})
    result = data["sendMessage"]
    assert result["__typename"] == "MessageAccepted"
    message = result["message"]
    assert message["to"] == "+14155550199"
    assert (message["segments"], message["encoding"]) == (1, "GSM7")
    assert message["conversation"]["participants"] == ["+14155550100", "+14155550199"]

    for _ in range(100):
        found = (await client.execute(MESSAGE, {"id": message["id"]}))["message"]
        if found["status"] == "DELIVERED":
            break
        await asyncio.sleep(0.05)
    assert found["status"] == "DELIVERED"
    assert [e["status"] for e in found["events"]] == ["QUEUED", "SENDING", "SENT", "DELIVERED"]
    assert found["attempts"] == 1 and found["provider"] == "twilio"


async def test_invalid_input_lists_every_bad_field(client: GraphQLClient) -> None:
    data = await client.execute(
        SEND, {"input": {"channel": "SMS", "from": "nope", "to": "a@b.example", "body": ""}}
    )
    result = data["sendMessage"]
    assert result["__typename"] == "InvalidInput"
    fields = sorted(p["field"] for p in result["problems"])
    assert fields == ["body", "from", "to"]


async def test_idempotent_replay_and_conflict(client: GraphQLClient) -> None:
    first = (await client.execute(SEND, {"input": sms(idempotencyKey="k-1")}))["sendMessage"]
    again = (await client.execute(SEND, {"input": sms(idempotencyKey="k-1")}))["sendMessage"]
    assert again["__typename"] == "MessageAccepted" and again["replayed"] is True
    assert again["message"]["id"] == first["message"]["id"]
    other = await client.execute(SEND, {"input": sms("other", idempotencyKey="k-1")})
    conflict = other["sendMessage"]
    assert conflict["__typename"] == "IdempotencyConflict"
    assert conflict["original"]["id"] == first["message"]["id"]


async def test_racing_idempotent_requests_send_once(
    gateway: RunningGateway, client: GraphQLClient
) -> None:
    results = await asyncio.gather(
        *(client.execute(SEND, {"input": sms("race", idempotencyKey="race")}) for _ in range(8))
    )
    ids = {r["sendMessage"]["message"]["id"] for r in results}
    assert len(ids) == 1
    assert sorted(r["sendMessage"]["replayed"] for r in results) == [False] + [True] * 7
