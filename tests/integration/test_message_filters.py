"""The filtered ``messages`` listing over real HTTP, on PostgreSQL and SQLite: each filter,
both orders, keyset pages, and the errors of input that cannot be meant.

Every test uses a fresh account, so the list holds exactly what the test sent.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.conftest import GraphQLClient
from tests.integration.test_queries import (
    b64,
    error_codes,
    send,
    send_many,
    sms,
    wait_for_status,
    walk_pages,
)

MESSAGES = """
query M($filter: MessageFilter, $first: Int, $after: String, $sortBy: MessageSort,
        $order: SortOrder) {
  messages(filter: $filter, first: $first, after: $after, sortBy: $sortBy, order: $order) {
    edges { cursor node { id status channel to provider createdAt updatedAt } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}
"""

CANCEL = "mutation C($id: ID!) { cancelMessage(id: $id) { __typename } }"

ALICE, BOB = "+14155550161", "+14155550162"


async def listed(client: GraphQLClient, **variables: Any) -> list[str]:
    data = await client.execute(MESSAGES, {"first": 100, **variables})
    return [e["node"]["id"] for e in data["messages"]["edges"]]


def later() -> str:
    return (datetime.now(UTC) + timedelta(days=1)).isoformat()


async def test_each_filter_narrows_the_list_newest_first(client: GraphQLClient) -> None:
    to_alice = await send_many(client, [sms(to=ALICE, body=f"a{n}") for n in range(3)])
    scheduled = await send(client, sms(to=BOB, body="later", sendAt=later()))
    canceled = await send(client, sms(to=BOB, body="never", sendAt=later()))
    assert (await client.execute(CANCEL, {"id": canceled["id"]}))["cancelMessage"] == {
        "__typename": "MessageAccepted"
    }
    mail = await send(
        client, {"channel": "EMAIL", "from": "desk@example.com", "to": "c@example.com", "body": "x"}
    )
    everything = [mail, canceled, scheduled, *reversed(to_alice)]
    assert await listed(client) == [m["id"] for m in everything]

    assert await listed(client, filter={"to": "(415) 555-0161"}) == [
        m["id"] for m in reversed(to_alice)
    ]
    assert await listed(client, filter={"status": ["SCHEDULED"]}) == [scheduled["id"]]
    assert await listed(client, filter={"status": ["SCHEDULED", "CANCELED"]}) == [
        canceled["id"],
        scheduled["id"],
    ]
    assert await listed(client, filter={"channel": "EMAIL"}) == [mail["id"]]
    assert await listed(client, filter={"direction": "INBOUND"}) == []
    assert len(await listed(client, filter={"direction": "OUTBOUND"})) == len(everything)
    assert await listed(client, filter={"from": "Desk@Example.com"}) == [mail["id"]]
    bob = scheduled["conversation"]["id"]
    assert await listed(client, filter={"conversationId": bob}) == [
        canceled["id"],
        scheduled["id"],
    ]
    # Filters combine with AND.
    assert await listed(client, filter={"conversationId": bob, "status": ["CANCELED"]}) == [
        canceled["id"]
    ]
    assert await listed(client, filter={"to": ALICE, "channel": "EMAIL"}) == []

    delivered = await wait_for_status(client, to_alice[0]["id"], "DELIVERED")
    by_vendor = await listed(client, filter={"provider": delivered["provider"]})
    assert to_alice[0]["id"] in by_vendor
    assert scheduled["id"] not in by_vendor
    assert await listed(client, filter={"provider": "no-such-vendor"}) == []


async def test_time_ranges_are_half_open(client: GraphQLClient) -> None:
    # One at a time: the messages of one batch share their creation time.
    sent = [await send(client, sms(body=f"m{n}")) for n in range(5)]
    window = {"since": sent[1]["createdAt"], "until": sent[3]["createdAt"]}
    assert await listed(client, filter={"createdAt": window}) == [sent[2]["id"], sent[1]["id"]]
    assert await listed(client, filter={"createdAt": {"since": sent[3]["createdAt"]}}) == [
        sent[4]["id"],
        sent[3]["id"],
    ]
    assert await listed(client, filter={"updatedAt": {"until": sent[0]["createdAt"]}}) == []


async def test_oldest_first_and_the_updated_order(client: GraphQLClient) -> None:
    sent = await send_many(client, [sms(body=f"m{n}", sendAt=later()) for n in range(3)])
    ids = [m["id"] for m in sent]
    assert await listed(client, order="OLDEST_FIRST") == ids
    # Canceling the oldest makes it the most recently updated.
    await client.execute(CANCEL, {"id": ids[0]})
    assert await listed(client, sortBy="UPDATED_AT") == [ids[0], ids[2], ids[1]]
    assert await listed(client, sortBy="UPDATED_AT", order="OLDEST_FIRST") == [
        ids[1],
        ids[2],
        ids[0],
    ]


async def test_keyset_pages_walk_every_message_once_in_both_orders(client: GraphQLClient) -> None:
    sent = [m["id"] for m in await send_many(client, [sms(body=f"m{n}") for n in range(7)])]
    for order, expected in (("NEWEST_FIRST", sent[::-1]), ("OLDEST_FIRST", sent)):

        async def fetch(after: str | None, order: str = order) -> dict[str, Any]:
            variables = {"first": 3, "after": after, "order": order}
            page: dict[str, Any] = (await client.execute(MESSAGES, variables))["messages"]
            return page

        walked: list[str] = []
        async for number, edges, info, seen in walk_pages(fetch):
            assert len(edges) == (1 if number == 2 else 3)
            assert info["hasPreviousPage"] == (number > 0)
            walked = seen
        assert walked == expected


async def test_input_that_cannot_be_meant_is_bad_user_input(client: GraphQLClient) -> None:
    first = await send(client, sms())
    cursor = (await client.execute(MESSAGES, {"first": 1}))["messages"]["pageInfo"]["endCursor"]
    naive = datetime(2026, 1, 1).isoformat()
    at = datetime(2026, 1, 1, tzinfo=UTC)
    for variables in (
        {"first": 101},
        {"first": -1},
        {"filter": {"status": []}},
        {"filter": {"createdAt": {"since": at.isoformat(), "until": at.isoformat()}}},
        {
            "filter": {
                "updatedAt": {"since": at.isoformat(), "until": (at - timedelta(1)).isoformat()}
            }
        },
        {"filter": {"createdAt": {"since": naive}}},
        {"filter": {"conversationId": first["id"]}},  # a message id
        {"filter": {"conversationId": "conv_nothex"}},
        {"after": "garbage!!"},
        {"after": cursor, "order": "OLDEST_FIRST"},  # a cursor of the other order
        {"after": cursor, "sortBy": "UPDATED_AT"},
        {"after": b64(f"d:{at.isoformat()}|{'0' * 32}")},  # a dead-letter cursor
    ):
        assert await error_codes(client, MESSAGES, variables) == ["BAD_USER_INPUT"], variables
    response = await client.post(MESSAGES, {"filter": {"status": ["LOST"]}})
    [error] = response.json()["errors"]
    assert "LOST" in error["message"]


SEARCHED = [
    "Your parcel ships tomorrow",
    "The big dog barked at the parcel",
    "A dog, big and brown",
    "Wordsmith meeting at noon",
    "Café opens at nine",
    "e-mail me the invoice",
]


async def test_search_finds_the_same_messages_on_both_databases(client: GraphQLClient) -> None:
    """The same expectations run on PostgreSQL and on SQLite: both engines agree."""
    sent = [m["id"] for m in await send_many(client, [sms(body=b) for b in SEARCHED])]

    async def found(query: str, **extra: Any) -> set[int]:
        ids = await listed(client, filter={"search": query, **extra})
        return {sent.index(i) for i in ids}

    assert await found("parcel") == {0, 1}
    assert await found("PARCEL dog") == {1}
    assert await found('"big dog"') == {1}
    assert await found('"dog big"') == {2}
    assert await found("word*") == {3}
    assert await found("word") == set()
    assert await found("café") == {4}
    assert await found("cafe") == set()
    assert await found("e-mail") == {5}
    assert await found('"e mail" invoice') == {5}
    assert await found("par* dog") == {1}
    assert await found("nothing") == set()
    # Operators of either engine are only separators, never syntax.
    assert await found("parcel OR dog") == set()
    assert await found("dog NOT big") == set()
    assert await found("parcel & !ships | tomorrow:*") == {0}
    assert await found("'parcel' \\ \"ships") == {0}
    assert await found("NEAR(big dog)") == set()
    # Search combines with the other filters.
    assert await found("dog", to="+14155550199") == {1, 2}
    assert await found("dog", to=ALICE) == set()


async def test_search_finds_a_message_after_its_status_changes(client: GraphQLClient) -> None:
    sent = await send(client, sms(body="Your kumquat crate ships today"))
    queued = await listed(client, filter={"search": "kumquat"})
    await wait_for_status(client, sent["id"], "DELIVERED")
    assert queued == [sent["id"]]
    assert await listed(client, filter={"search": "kumquat crate"}) == [sent["id"]]
    assert await listed(client, filter={"search": "kumquat", "status": ["DELIVERED"]}) == [
        sent["id"]
    ]


async def test_a_search_without_words_is_bad_user_input(client: GraphQLClient) -> None:
    await send(client, sms())
    for query in ("", "   ", '"" * & | !', "\\", "x" * 501):
        variables = {"filter": {"search": query}}
        assert await error_codes(client, MESSAGES, variables) == ["BAD_USER_INPUT"], query


SEARCH_CONVERSATIONS = """
query S($search: String, $participant: String) {
  conversations(search: $search, participant: $participant, first: 100) {
    edges { node { id participants matchingMessage { id body } } }
  }
}
"""


async def test_conversations_are_found_by_participant_or_by_what_was_said(
    client: GraphQLClient,
) -> None:
    older = await send(client, sms(to=ALICE, body="the parcel left"))
    newer = await send(client, sms(to=ALICE, body="your parcel arrived"))
    await send(client, sms(to=BOB, body="lunch at noon"))
    mail = await send(
        client,
        {"channel": "EMAIL", "from": "desk@example.com", "to": "zoe@example.org", "body": "hi"},
    )
    alice = older["conversation"]["id"]
    bob_id = (await send(client, sms(to=BOB, body="still on?")))["conversation"]["id"]

    async def search(text: str, **extra: Any) -> dict[str, Any]:
        data = await client.execute(SEARCH_CONVERSATIONS, {"search": text, **extra})
        return {
            e["node"]["id"]: e["node"]["matchingMessage"] for e in data["conversations"]["edges"]
        }

    # By what was said: the conversation comes with its newest matching message.
    assert await search("parcel") == {alice: {"id": newer["id"], "body": "your parcel arrived"}}
    assert await search('"parcel left"') == {alice: {"id": older["id"], "body": "the parcel left"}}
    [noon] = (await search("noo*")).values()
    assert noon is not None and noon["body"] == "lunch at noon"
    # By part of a number however written, or of an address: no matching message then.
    assert await search("555-0162") == {bob_id: None}
    assert await search("(415) 555 016") == {alice: None, bob_id: None}
    assert await search("ZOE@") == {mail["conversation"]["id"]: None}
    # A literal percent or underscore is not a wildcard.
    assert await search("zoe%") == {}
    assert await search("nothing here") == {}
    assert await search("parcel", participant=BOB) == {}
    for bad in ("", "%%", "\\"):
        codes = await error_codes(client, SEARCH_CONVERSATIONS, {"search": bad})
        assert codes == ["BAD_USER_INPUT"], bad
