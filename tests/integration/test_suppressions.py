"""Suppressions through the API, on PostgreSQL and SQLite: a suppressed recipient is refused at
accept, a message waiting for its time is canceled instead of sent, and the list, add and
remove fields keep their rules (a recipient's own STOP is lifted only with a reason, and every
removal is recorded).

Each test runs under an account of its own: suppressions are per account, so tests sharing the
session's gateway cannot see each other's.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from gateway.domain.suppressions import NewSuppression, SuppressionReason
from gateway.services.clock import utcnow
from persistence.suppressions import REMOVALS, SuppressionRepository
from tests.conftest import GraphQLClient, RunningGateway, SandboxRequests
from tests.integration.test_batch_and_rules import (
    SENDER,
    accepted,
    account_rows,
    read,
    send,
    send_many,
    sms,
    wait_for_status,
)

ADD = """
mutation Add($input: AddSuppressionInput!) {
  addSuppression(input: $input) {
    __typename
    ... on SuppressionAdded { created suppression { id address channel from reason since detail } }
    ... on InvalidInput { problems { field problem } }
  }
}
"""

REMOVE = """
mutation Remove($id: ID!, $reason: String) {
  removeSuppression(id: $id, reason: $reason) {
    __typename
    ... on SuppressionRemoved { suppression { id address reason } }
    ... on RemovalReasonRequired { suppression { id reason } }
    ... on NotFound { id }
  }
}
"""

LIST = """
query List($first: Int, $after: String, $address: String) {
  suppressions(first: $first, after: $after, address: $address) {
    edges { cursor node { id address reason } }
    pageInfo { hasNextPage hasPreviousPage endCursor }
  }
}
"""


async def add(client: GraphQLClient, **fields: object) -> dict[str, Any]:
    result: dict[str, Any] = (await client.execute(ADD, {"input": fields}))["addSuppression"]
    return result


async def added(client: GraphQLClient, **fields: object) -> dict[str, Any]:
    result = await add(client, **fields)
    assert result["__typename"] == "SuppressionAdded", result
    suppression: dict[str, Any] = result["suppression"]
    return suppression


async def remove(client: GraphQLClient, public_id: str, reason: str | None = None) -> Any:
    return (await client.execute(REMOVE, {"id": public_id, "reason": reason}))["removeSuppression"]


async def listed(client: GraphQLClient, **arguments: object) -> dict[str, Any]:
    page: dict[str, Any] = (await client.execute(LIST, arguments))["suppressions"]
    return page


def refused(result: dict[str, Any], reason: str) -> datetime:
    assert result["__typename"] == "RecipientSuppressed", result
    assert result["reason"] == reason
    return datetime.fromisoformat(result["since"])


# The tests that look at what the sandbox received send to numbers (+1 415 555 087x) no other
# test uses: one sandbox sees the whole session's sends.
async def test_a_suppressed_recipient_is_refused_at_accept_per_input(
    gateway: RunningGateway, client: GraphQLClient, sandbox_requests: SandboxRequests
) -> None:
    entry = await added(client, address="(415) 555-0871", note="asked by phone")
    assert entry["address"] == "+14155550871"
    assert entry["channel"] is None and entry["from"] is None
    assert entry["reason"] == "API" and entry["detail"] == {"note": "asked by phone"}

    since = refused(await send(client, sms("one", to="+14155550871")), "API")
    assert since == datetime.fromisoformat(entry["since"])
    results = await send_many(
        client,
        [
            sms("two", to="+14155550143"),
            sms("three", to="415-555-0871"),
            sms("four", to="+14155550871", idempotencyKey="sup-key"),
            {
                "channel": "MMS",
                "from": SENDER,
                "to": "+14155550871",
                "attachments": ["https://example.com/a.png"],
            },
        ],
    )
    assert [r["__typename"] for r in results] == [
        "MessageAccepted",
        "RecipientSuppressed",
        "RecipientSuppressed",
        "RecipientSuppressed",
    ]
    assert accepted(results[0])["body"] == "two"
    # Nothing of the refused inputs was stored, nor sent.
    assert await account_rows(gateway, client) == (1, 1)
    assert sandbox_requests("+14155550871") == []
    # Another account's sends to the same number are not its business.
    other = await gateway.new_client()
    accepted(await send(other, sms("elsewhere", to="+14155550871")))
    # The key of a refused input was never claimed: once lifted, the same request goes through.
    assert (await remove(client, entry["id"]))["__typename"] == "SuppressionRemoved"
    [again] = await send_many(client, [sms("four", to="+14155550871", idempotencyKey="sup-key")])
    assert accepted(again)["idempotencyKey"] == "sup-key" and again["replayed"] is False


async def test_a_suppression_covers_its_channel_and_sender_only(client: GraphQLClient) -> None:
    await added(client, address="+14155550144", channel="SMS", **{"from": SENDER})
    refused(await send(client, sms("blocked", to="+14155550144")), "API")
    other_sender = {**sms("other sender", to="+14155550144"), "from": "+14155550101"}
    mms = {
        "channel": "MMS",
        "from": SENDER,
        "to": "+14155550144",
        "attachments": ["https://example.com/a.png"],
    }
    results = await send_many(client, [other_sender, mms])
    assert [r["__typename"] for r in results] == ["MessageAccepted", "MessageAccepted"]

    await added(client, address="Bob@Example.com")
    mail = {"channel": "EMAIL", "from": "ops@example.com", "to": "bob@example.com", "body": "x"}
    refused(await send(client, mail), "API")


async def test_a_message_waiting_for_its_time_is_canceled_once_its_recipient_is_suppressed(
    client: GraphQLClient, sandbox_requests: SandboxRequests
) -> None:
    send_at = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    message = accepted(await send(client, sms("later", to="+14155550872", sendAt=send_at)))
    assert message["status"] == "SCHEDULED"
    await added(client, address="+14155550872")

    found = await wait_for_status(client, message["id"], "CANCELED")
    assert found["attempts"] == 0
    assert found["error"] == {
        "code": "RECIPIENT_SUPPRESSED",
        "description": "API",
        "permanent": True,
    }
    assert [(e["kind"], e["status"]) for e in found["events"]] == [
        ("accepted", "SCHEDULED"),
        ("enqueued", "QUEUED"),
        ("canceled", "CANCELED"),
    ]
    assert sandbox_requests("+14155550872") == []
    # It stays canceled: nothing sends it later.
    assert (await read(client, message["id"]))["status"] == "CANCELED"


async def test_suppressions_are_listed_newest_first_in_keyset_pages(client: GraphQLClient) -> None:
    addresses = ["+14155550151", "+14155550152", "+14155550153"]
    for address in addresses:
        await added(client, address=address)
    first = await listed(client, first=2)
    assert [e["node"]["address"] for e in first["edges"]] == addresses[:0:-1]
    assert first["pageInfo"]["hasNextPage"] is True
    rest = await listed(client, first=2, after=first["pageInfo"]["endCursor"])
    assert [e["node"]["address"] for e in rest["edges"]] == addresses[:1]
    assert rest["pageInfo"] == {
        "hasNextPage": False,
        "hasPreviousPage": True,
        "endCursor": rest["edges"][0]["cursor"],
    }
    only = await listed(client, address="(415) 555-0152")
    assert [e["node"]["address"] for e in only["edges"]] == ["+14155550152"]
    assert (await listed(client, address="not an address"))["edges"] == []

    # Adding the same scope again keeps the entry there.
    again = await add(client, address="+14155550152")
    assert again["created"] is False
    assert again["suppression"]["id"] == only["edges"][0]["node"]["id"]
    assert len((await listed(client))["edges"]) == 3

    invalid = await add(client, address="nope", **{"from": "also nope"})
    assert invalid["__typename"] == "InvalidInput"
    assert sorted(p["field"] for p in invalid["problems"]) == ["address", "from"]


async def test_a_recipients_own_stop_is_lifted_only_with_a_reason_and_recorded(
    gateway: RunningGateway, client: GraphQLClient
) -> None:
    account = await gateway.container.accounts.ensure_account(client.account, utcnow())
    stop, created = await SuppressionRepository(gateway.container.engine).add(
        NewSuppression(
            account.id, "+14155550161", None, SENDER, SuppressionReason.STOP_KEYWORD, {"b": 1}
        ),
        utcnow(),
    )
    assert created
    [edge] = (await listed(client))["edges"]
    assert edge["node"]["reason"] == "STOP_KEYWORD"
    refused(await send(client, sms("no", to="+14155550161")), "STOP_KEYWORD")

    public_id = edge["node"]["id"]
    for reason in (None, "   "):
        result = await remove(client, public_id, reason)
        assert result == {
            "__typename": "RemovalReasonRequired",
            "suppression": {"id": public_id, "reason": "STOP_KEYWORD"},
        }
    assert len((await listed(client))["edges"]) == 1

    removed = await remove(client, public_id, "texted START to our support line")
    assert removed["__typename"] == "SuppressionRemoved"
    assert (await listed(client))["edges"] == []
    accepted(await send(client, sms("yes", to="+14155550161")))
    async with gateway.container.engine.connect() as conn:
        [row] = (
            await conn.execute(select(REMOVALS).where(REMOVALS.c.account_id == account.id))
        ).all()
    assert row.suppression_id == stop.id and row.address == "+14155550161"
    assert row.reason == "STOP_KEYWORD" and row.sender == SENDER
    assert row.removal_reason == "texted START to our support line"

    # Gone, another account's, or no suppression id at all: not found alike.
    other = await gateway.new_client()
    theirs = await added(other, address="+14155550162")
    for unknown in (public_id, theirs["id"], "msg_" + stop.id.hex, "garbage"):
        assert await remove(client, unknown) == {"__typename": "NotFound", "id": unknown}
