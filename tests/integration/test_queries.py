"""Read side over real HTTP, on PostgreSQL and SQLite: lookups by id, keyset pages, previews.

Every test uses a fresh account, so the lists it reads hold exactly what it wrote.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest
from sqlalchemy import func, select

from persistence.rows import MESSAGES
from tests.conftest import GraphQLClient, RunningGateway, SandboxRequests

SENDER = "+14155550100"

SEND = """
mutation Send($input: SendMessageInput!) {
  sendMessage(input: $input) {
    __typename
    ... on MessageAccepted { replayed message { id status body createdAt
        conversation { id participants } } }
    ... on InvalidInput { problems { field problem } }
  }
}
"""

SEND_MANY = """
mutation SendMany($inputs: [SendMessageInput!]!) {
  sendMessages(inputs: $inputs) {
    __typename
    ... on MessageAccepted { message { id body createdAt conversation { id } } }
    ... on InvalidInput { problems { field problem } }
  }
}
"""

MESSAGE = """
query One($id: ID!) {
  message(id: $id) {
    id channel direction from to body attachments status provider attempts segments encoding
    idempotencyKey sendAt metadata createdAt updatedAt
    error { code description permanent }
    conversation { id participants messageCount }
    events { id cursor messageId conversationId status kind occurredAt message { id } }
  }
}
"""

NODE = """
query Node($id: ID!) {
  node(id: $id) {
    __typename id
    ... on Message { body conversation { id } }
    ... on Conversation { participants messageCount }
  }
}
"""

CONVERSATION = """
query Conv($id: ID!) {
  conversation(id: $id) { id participants createdAt lastMessageAt messageCount }
}
"""

CONVERSATIONS = """
query Convs($first: Int, $after: String, $participant: String) {
  conversations(first: $first, after: $after, participant: $participant) {
    edges { cursor node { id participants lastMessageAt messageCount } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}
"""

MESSAGES_PAGE = """
query Page($id: ID!, $first: Int, $after: String, $last: Int, $before: String) {
  conversation(id: $id) {
    messages(first: $first, after: $after, last: $last, before: $before) {
      edges { cursor node { id body } }
      pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    }
  }
}
"""

PREVIEW = """
query Preview($input: SendMessageInput!) {
  previewMessage(input: $input) {
    valid problems { field problem } normalizedFrom normalizedTo segments encoding
    nonGsmCharacters
  }
}
"""


def sms(to: str = "+14155550199", body: str = "hello", **extra: object) -> dict[str, object]:
    return {"channel": "SMS", "from": SENDER, "to": to, "body": body, **extra}


def accepted(result: dict[str, Any]) -> dict[str, Any]:
    assert result["__typename"] == "MessageAccepted", result
    message: dict[str, Any] = result["message"]
    return message


async def send(client: GraphQLClient, payload: dict[str, object]) -> dict[str, Any]:
    return accepted((await client.execute(SEND, {"input": payload}))["sendMessage"])


async def send_many(client: GraphQLClient, inputs: list[dict[str, object]]) -> list[dict[str, Any]]:
    results = (await client.execute(SEND_MANY, {"inputs": inputs}))["sendMessages"]
    return [accepted(r) for r in results]


async def wait_for_status(client: GraphQLClient, message_id: str, status: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for _ in range(400):
        found = (await client.execute(MESSAGE, {"id": message_id}))["message"]
        if found["status"] == status:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"message never reached {status}: {found}")


async def error_codes(
    client: GraphQLClient, query: str, variables: dict[str, Any]
) -> list[str | None]:
    """The extensions.code of each GraphQL error; fails when there is none."""
    response = await client.post(query, variables)
    body = response.json()
    assert body.get("errors"), body
    return [(e.get("extensions") or {}).get("code") for e in body["errors"]]


def stamp(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


async def conversation_ids(client: GraphQLClient, participant: str | None = None) -> list[str]:
    data = await client.execute(CONVERSATIONS, {"first": 100, "participant": participant})
    return [e["node"]["id"] for e in data["conversations"]["edges"]]


async def conversations_page(client: GraphQLClient, **variables: Any) -> dict[str, Any]:
    page: dict[str, Any] = (await client.execute(CONVERSATIONS, variables))["conversations"]
    return page


Page = tuple[int, list[dict[str, Any]], dict[str, Any], list[str]]


async def walk_pages(
    fetch: Callable[..., Awaitable[dict[str, Any]]], *, backward: bool = False
) -> AsyncIterator[Page]:
    """Every page ``fetch(after=cursor)`` gives (``before=`` when walking ``backward``), from the
    first to the one that says there are no more: (page number, edges, pageInfo, every id seen so
    far in order). Walking backward, pages come newest first, each itself oldest first."""
    seen: list[str] = []
    cursor: str | None = None
    for page_number in range(20):
        page = await fetch(**{"before" if backward else "after": cursor})
        edges, info = page["edges"], page["pageInfo"]
        ids = [e["node"]["id"] for e in edges]
        seen = ids + seen if backward else seen + ids
        yield page_number, edges, info, seen
        if not info["hasPreviousPage" if backward else "hasNextPage"]:
            return
        cursor = info["startCursor" if backward else "endCursor"]
    raise AssertionError("pagination never ended")


# --- message / node / conversation by id -------------------------------------------------------


async def test_message_by_id_returns_what_was_sent(client: GraphQLClient) -> None:
    sent = await send(
        client, sms(to="(415) 555-0199", body="Hi €", idempotencyKey="q-1", metadata={"a": [1]})
    )
    found = (await client.execute(MESSAGE, {"id": sent["id"]}))["message"]
    assert found["id"] == sent["id"]
    assert (found["channel"], found["direction"]) == ("SMS", "OUTBOUND")
    assert (found["from"], found["to"], found["body"]) == (SENDER, "+14155550199", "Hi €")
    assert found["attachments"] == []
    assert (found["segments"], found["encoding"]) == (1, "GSM7")
    assert found["idempotencyKey"] == "q-1"
    assert found["metadata"] == {"a": [1]}
    assert found["sendAt"] is None
    assert found["conversation"]["id"] == sent["conversation"]["id"]
    assert found["conversation"]["participants"] == [SENDER, "+14155550199"]
    assert stamp(found["updatedAt"]) >= stamp(found["createdAt"])


async def test_node_resolves_message_and_conversation_by_typed_id(client: GraphQLClient) -> None:
    sent = await send(client, sms(body="node"))
    conversation_id = sent["conversation"]["id"]

    as_message = (await client.execute(NODE, {"id": sent["id"]}))["node"]
    assert as_message == {
        "__typename": "Message",
        "id": sent["id"],
        "body": "node",
        "conversation": {"id": conversation_id},
    }
    as_conversation = (await client.execute(NODE, {"id": conversation_id}))["node"]
    assert as_conversation == {
        "__typename": "Conversation",
        "id": conversation_id,
        "participants": [SENDER, "+14155550199"],
        "messageCount": 1,
    }
    # The typed roots do not answer for the other kind of id.
    assert (await client.execute(CONVERSATION, {"id": sent["id"]}))["conversation"] is None
    assert (await client.execute(MESSAGE, {"id": conversation_id}))["message"] is None


async def test_unknown_malformed_and_foreign_ids_all_answer_null_alike(
    gateway: RunningGateway, client: GraphQLClient
) -> None:
    other = await gateway.new_client()
    foreign = await send(other, sms(body="not yours"))
    mine = await send(client, sms(body="mine"))
    mine_hex = mine["id"].removeprefix("msg_")
    ids = [
        foreign["id"],
        foreign["conversation"]["id"],
        "msg_" + uuid.uuid4().hex,
        "conv_" + uuid.uuid4().hex,
        "msg_" + mine_hex[:-1],  # truncated
        "msg_" + mine_hex + "0",  # too long
        "msg_" + "z" * 32,
        "msg_",
        "conv_",
        "",
        "garbage",
        mine_hex,  # no type prefix
        "evt_1",
        "x" * 5000,
        "msg_" + "\u0000" * 32,
        "msg_ " + mine_hex,
    ]
    for field, query in (("message", MESSAGE), ("node", NODE), ("conversation", CONVERSATION)):
        for public_id in ids:
            response = await client.post(query, {"id": public_id})
            assert response.status_code == 200, (field, public_id, response.text)
            assert response.json() == {"data": {field: None}}, (field, public_id)
    # Positive control: the very same queries do find this account's own objects.
    assert (await client.execute(MESSAGE, {"id": mine["id"]}))["message"]["body"] == "mine"


async def test_conversation_by_id_counts_and_dates(client: GraphQLClient) -> None:
    first = await send(client, sms(body="one"))
    conversation_id = first["conversation"]["id"]
    found = (await client.execute(CONVERSATION, {"id": conversation_id}))["conversation"]
    assert found["participants"] == [SENDER, "+14155550199"]
    assert found["messageCount"] == 1
    assert stamp(found["lastMessageAt"]) == stamp(first["createdAt"])
    assert stamp(found["createdAt"]) == stamp(first["createdAt"])

    later = [await send(client, sms(body=f"more {i}")) for i in range(3)]
    # The reverse direction, another spelling: still the same conversation.
    reverse = await send(
        client, {"channel": "SMS", "from": "415-555-0199", "to": "+1 415 555 0100", "body": "re"}
    )
    assert reverse["conversation"]["id"] == conversation_id
    found = (await client.execute(CONVERSATION, {"id": conversation_id}))["conversation"]
    assert found["messageCount"] == 5
    assert stamp(found["createdAt"]) == stamp(first["createdAt"])
    assert stamp(found["lastMessageAt"]) == stamp(reverse["createdAt"])
    assert stamp(found["lastMessageAt"]) > stamp(later[-1]["createdAt"])


# --- conversations -----------------------------------------------------------------------------


async def test_conversations_most_recent_activity_first(client: GraphQLClient) -> None:
    convs = [
        (await send(client, sms(to=f"+1415555{n:04d}")))["conversation"]["id"]
        for n in (111, 112, 113)
    ]
    assert await conversation_ids(client) == convs[::-1]

    await send(client, sms(to="+14155550111", body="again"))
    assert await conversation_ids(client) == [convs[0], convs[2], convs[1]]

    # The conversation that moved up did so because of its new message.
    data = await client.execute(CONVERSATIONS, {"first": 100})
    nodes = [e["node"] for e in data["conversations"]["edges"]]
    assert nodes[0]["messageCount"] == 2
    times = [stamp(n["lastMessageAt"]) for n in nodes]
    assert times == sorted(times, reverse=True)

    await send(client, sms(to="+14155550112", body="third one up"))
    assert await conversation_ids(client) == [convs[1], convs[0], convs[2]]


async def test_conversations_keyset_pages_walk_every_conversation_once(
    client: GraphQLClient,
) -> None:
    # Some conversations alone, some created by one batch (equal activity times: the keyset
    # must break the tie), and one older conversation brought back to the top.
    for n in range(120, 124):
        await send(client, sms(to=f"+1415555{n:04d}"))
    await send_many(client, [sms(to=f"+1415555{n:04d}") for n in range(124, 129)])
    await send(client, sms(to="+14155550121", body="bump"))
    full = await conversation_ids(client)
    assert len(full) == len(set(full)) == 9
    assert full[0] == (await conversation_ids(client, "+14155550121"))[0]

    for size in (1, 2, 3, 4, 8, 9, 10):
        fetch = partial(conversations_page, client, first=size)
        async for page_number, edges, info, seen in walk_pages(fetch):
            assert len(edges) <= size
            if edges:
                assert info["startCursor"] == edges[0]["cursor"]
                assert info["endCursor"] == edges[-1]["cursor"]
            if page_number == 0:
                assert info["hasPreviousPage"] is False
            assert info["hasNextPage"] is (len(seen) < len(full)), (size, page_number, info)
        assert seen == full, size


async def test_conversations_participant_filter_matches_any_spelling(
    client: GraphQLClient,
) -> None:
    one = (await send(client, sms(to="+14155550131")))["conversation"]["id"]
    two = (await send(client, sms(to="+14155550132")))["conversation"]["id"]
    mail = await send(
        client,
        {"channel": "EMAIL", "from": "Sender@Example.com", "to": "Alice@Example.COM", "body": "x"},
    )
    assert mail["conversation"]["participants"] == ["alice@example.com", "sender@example.com"]
    mail_id = mail["conversation"]["id"]

    for spelling in (
        "+14155550131",
        "(415) 555-0131",
        "415.555.0131",
        "+1 415-555-0131",
        "1 415 555 0131",
        " +14155550131 ",
    ):
        assert await conversation_ids(client, spelling) == [one], spelling
    for spelling in (SENDER, "(415) 555-0100"):
        assert sorted(await conversation_ids(client, spelling)) == sorted([one, two])
    for spelling in (
        "alice@example.com",
        "ALICE@EXAMPLE.COM",
        "Alice@Example.com",
        " alice@example.com ",
    ):
        assert await conversation_ids(client, spelling) == [mail_id], spelling
    for nothing in ("+14155550139", "bob@example.com", "not a number", "", "@"):
        assert await conversation_ids(client, nothing) == [], nothing


async def test_conversations_rejects_bad_page_arguments(client: GraphQLClient) -> None:
    await send(client, sms())
    for variables in ({"first": 101}, {"first": -1}, {"first": 1_000_000}):
        assert await error_codes(client, CONVERSATIONS, variables) == ["BAD_USER_INPUT"]
    at = datetime(2026, 1, 1, tzinfo=UTC).isoformat()
    for cursor in (
        "garbage!!",
        "",
        "é",
        "x" * 300,
        b64("m:" + uuid.uuid4().hex),  # a message cursor
        b64(f"c:{at}|nothex"),
        b64(f"c:yesterday|{uuid.uuid4().hex}"),
        b64(f"c:2026-01-01T00:00:00|{uuid.uuid4().hex}"),  # no time zone
        b64(f"d:{at}|{uuid.uuid4().hex}"),  # a dead-letter cursor
    ):
        codes = await error_codes(client, CONVERSATIONS, {"first": 2, "after": cursor})
        assert codes == ["BAD_USER_INPUT"], cursor


async def test_time_cursors_at_the_edge_of_time_are_never_internal(
    client: GraphQLClient,
) -> None:
    await send(client, sms())
    dead_letters = (
        "query($after: String) { deadLetters(first: 2, after: $after) { edges { cursor } } }"
    )
    for stamp_text in ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"):
        for tag, query in (("c", CONVERSATIONS), ("d", dead_letters)):
            cursor = b64(f"{tag}:{stamp_text}|{uuid.uuid4().hex}")
            response = await client.post(query, {"after": cursor})
            body = response.json()
            codes = [(e.get("extensions") or {}).get("code") for e in body.get("errors", [])]
            # A well-formed but absurd cursor: an empty page or BAD_USER_INPUT are both honest
            # answers; INTERNAL is not.
            assert set(codes) <= {"BAD_USER_INPUT"}, (tag, stamp_text, body)


# --- Conversation.messages ---------------------------------------------------------------------


async def _conversation_with_messages(client: GraphQLClient, count: int) -> tuple[str, list[str]]:
    """A conversation of ``count`` messages, some sent alone, some in one batch."""
    alone = count // 2
    ids = [(await send(client, sms(body=f"m{i}")))["id"] for i in range(alone)]
    batch = await send_many(client, [sms(body=f"m{i}") for i in range(alone, count)])
    ids += [m["id"] for m in batch]
    conversation_id = batch[0]["conversation"]["id"]
    return conversation_id, ids


async def _messages_page(client: GraphQLClient, **variables: Any) -> dict[str, Any]:
    data = await client.execute(MESSAGES_PAGE, variables)
    page: dict[str, Any] = data["conversation"]["messages"]
    return page


async def test_messages_oldest_first(client: GraphQLClient) -> None:
    conversation_id, ids = await _conversation_with_messages(client, 7)
    page = await _messages_page(client, id=conversation_id)
    assert [e["node"]["id"] for e in page["edges"]] == ids
    assert [e["node"]["body"] for e in page["edges"]] == [f"m{i}" for i in range(7)]
    info = page["pageInfo"]
    assert (info["hasNextPage"], info["hasPreviousPage"]) == (False, False)
    assert info["startCursor"] == page["edges"][0]["cursor"]
    assert info["endCursor"] == page["edges"][-1]["cursor"]


@pytest.mark.parametrize(
    ("backward", "size_argument", "more_this_way", "more_behind"),
    [
        (False, "first", "hasNextPage", "hasPreviousPage"),
        (True, "last", "hasPreviousPage", "hasNextPage"),
    ],
    ids=["forward", "backward"],
)
async def test_messages_pages_walk_all_once_in_order(
    client: GraphQLClient, backward: bool, size_argument: str, more_this_way: str, more_behind: str
) -> None:
    conversation_id, ids = await _conversation_with_messages(client, 7)
    for size in (1, 2, 3, 6, 7, 8):
        fetch = partial(_messages_page, client, id=conversation_id, **{size_argument: size})
        async for page_number, edges, info, seen in walk_pages(fetch, backward=backward):
            assert len(edges) == min(size, len(ids) - len(seen) + len(edges))
            assert info["startCursor"] == (edges[0]["cursor"] if edges else None)
            assert info["endCursor"] == (edges[-1]["cursor"] if edges else None)
            assert info[more_behind] is (page_number > 0), (size, page_number, info)
            assert info[more_this_way] is (len(seen) < len(ids)), (size, page_number, info)
        assert seen == ids, size


async def test_messages_cursors_work_in_both_directions(client: GraphQLClient) -> None:
    conversation_id, ids = await _conversation_with_messages(client, 6)
    everything = await _messages_page(client, id=conversation_id, first=100)
    cursors = [e["cursor"] for e in everything["edges"]]

    middle = await _messages_page(client, id=conversation_id, first=2, after=cursors[1])
    assert [e["node"]["id"] for e in middle["edges"]] == ids[2:4]
    back = await _messages_page(client, id=conversation_id, last=2, before=cursors[4])
    assert [e["node"]["id"] for e in back["edges"]] == ids[2:4]
    between = await _messages_page(
        client, id=conversation_id, first=10, after=cursors[0], before=cursors[5]
    )
    assert [e["node"]["id"] for e in between["edges"]] == ids[1:5]

    past_the_end = await _messages_page(client, id=conversation_id, first=3, after=cursors[-1])
    assert past_the_end["edges"] == []
    assert past_the_end["pageInfo"]["hasNextPage"] is False
    assert past_the_end["pageInfo"]["startCursor"] is None
    assert past_the_end["pageInfo"]["endCursor"] is None
    before_the_start = await _messages_page(client, id=conversation_id, last=3, before=cursors[0])
    assert before_the_start["edges"] == []
    assert before_the_start["pageInfo"]["hasPreviousPage"] is False


async def test_messages_invalid_cursor_is_bad_user_input(client: GraphQLClient) -> None:
    sent = await send(client, sms())
    conversation_id = sent["conversation"]["id"]
    at = datetime(2026, 1, 1, tzinfo=UTC).isoformat()
    cursors = [
        "garbage!!",
        "",
        "=",
        "é",
        "\u0000",
        "x" * 300,
        b64("m:nothex"),
        b64("m:"),
        b64(f"c:{at}|{uuid.uuid4().hex}"),  # a conversation cursor
        b64("x:" + uuid.uuid4().hex),
        base64.urlsafe_b64encode(b"\xff\xfe\xfd").decode(),  # not UTF-8
        sent["id"],  # an id is not a cursor
    ]
    for direction in ("after", "before"):
        for cursor in cursors:
            variables = {"id": conversation_id, direction: cursor}
            if direction == "before":
                variables["last"] = 2
            codes = await error_codes(client, MESSAGES_PAGE, variables)
            assert codes == ["BAD_USER_INPUT"], (direction, cursor, codes)


async def test_messages_page_size_limits(client: GraphQLClient) -> None:
    sent = await send(client, sms())
    conversation_id = sent["conversation"]["id"]
    for variables in ({"first": 101}, {"last": 101}, {"first": -1}, {"last": -5}):
        codes = await error_codes(client, MESSAGES_PAGE, {"id": conversation_id, **variables})
        assert codes == ["BAD_USER_INPUT"], variables
    codes = await error_codes(client, MESSAGES_PAGE, {"id": conversation_id, "first": 1, "last": 1})
    assert codes == ["BAD_USER_INPUT"]
    # 100 is the largest page and is allowed.
    page = await _messages_page(client, id=conversation_id, first=100)
    assert [e["node"]["id"] for e in page["edges"]] == [sent["id"]]


# --- Message.events ----------------------------------------------------------------------------


async def test_events_oldest_first(client: GraphQLClient) -> None:
    sent = await send(client, sms(body="trail"))
    found = await wait_for_status(client, sent["id"], "DELIVERED")
    events = found["events"]
    assert [(e["kind"], e["status"]) for e in events[:2]] == [
        ("accepted", "QUEUED"),
        ("attempt", "SENDING"),
    ]
    assert {e["kind"] for e in events[2:]} == {"provider_accepted", "delivery_receipt"}
    assert len(events) == 4
    cursors = [int(e["cursor"]) for e in events]
    assert cursors == sorted(cursors) and len(set(cursors)) == len(cursors)
    times = [stamp(e["occurredAt"]) for e in events]
    assert times == sorted(times)
    for event in events:
        assert event["messageId"] == sent["id"]
        assert event["message"]["id"] == sent["id"]
        assert event["conversationId"] == sent["conversation"]["id"]


async def test_events_of_a_canceled_message_in_order(client: GraphQLClient) -> None:
    send_at = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    sent = await send(client, sms(body="later", sendAt=send_at))
    assert sent["status"] == "SCHEDULED"
    cancel = """
    mutation C($id: ID!) { cancelMessage(id: $id) { __typename } }
    """
    assert (await client.execute(cancel, {"id": sent["id"]}))["cancelMessage"] == {
        "__typename": "MessageAccepted"
    }
    found = (await client.execute(MESSAGE, {"id": sent["id"]}))["message"]
    assert [(e["kind"], e["status"]) for e in found["events"]] == [
        ("accepted", "SCHEDULED"),
        ("canceled", "CANCELED"),
    ]


# --- previewMessage ----------------------------------------------------------------------------


async def _preview(client: GraphQLClient, payload: dict[str, object]) -> dict[str, Any]:
    preview: dict[str, Any] = (await client.execute(PREVIEW, {"input": payload}))["previewMessage"]
    return preview


async def _account_message_count(gateway: RunningGateway, client: GraphQLClient) -> int:
    account = await gateway.container.accounts.ensure_account(client.account, datetime.now(UTC))
    async with gateway.container.engine.connect() as conn:
        count = await conn.scalar(
            select(func.count()).select_from(MESSAGES).where(MESSAGES.c.account_id == account.id)
        )
    return int(count or 0)


async def test_preview_valid_gsm7(client: GraphQLClient) -> None:
    preview = await _preview(client, sms(to="(415) 555-0199", body="Hello € [x]"))
    assert preview == {
        "valid": True,
        "problems": [],
        "normalizedFrom": SENDER,
        "normalizedTo": "+14155550199",
        "segments": 1,
        "encoding": "GSM7",
        "nonGsmCharacters": [],
    }


async def test_preview_valid_ucs2_lists_the_characters_that_force_it(
    client: GraphQLClient,
) -> None:
    preview = await _preview(client, sms(body="Cześć 😀 ść"))
    assert preview["valid"] is True
    assert (preview["segments"], preview["encoding"]) == (1, "UCS2")
    non_gsm = preview["nonGsmCharacters"]
    assert sorted(non_gsm) == sorted(["ś", "ć", "😀"])
    assert len(non_gsm) == len(set(non_gsm))


async def test_preview_segment_boundaries(client: GraphQLClient) -> None:
    cases = [
        ("a" * 160, 1, "GSM7"),
        ("a" * 161, 2, "GSM7"),
        ("a" * 306, 2, "GSM7"),
        ("a" * 307, 3, "GSM7"),
        ("€" * 80, 1, "GSM7"),  # extension characters take two septets
        ("€" * 80 + "a", 2, "GSM7"),
        ("ж" * 70, 1, "UCS2"),
        ("ж" * 71, 2, "UCS2"),
        ("ж" * 134, 2, "UCS2"),
        ("ж" * 135, 3, "UCS2"),
        ("😀" * 35, 1, "UCS2"),  # surrogate pairs take two code units
        ("😀" * 35 + "a", 2, "UCS2"),
    ]
    for body, segments, encoding in cases:
        preview = await _preview(client, sms(body=body))
        assert preview["valid"] is True, body
        assert (preview["segments"], preview["encoding"]) == (segments, encoding), (
            len(body),
            body[:1],
            preview,
        )


async def test_preview_email_has_no_segments(client: GraphQLClient) -> None:
    preview = await _preview(
        client, {"channel": "EMAIL", "from": "A@Example.com", "to": "b@EXAMPLE.com", "body": "ж"}
    )
    assert preview["valid"] is True
    assert (preview["normalizedFrom"], preview["normalizedTo"]) == (
        "a@example.com",
        "b@example.com",
    )
    assert (preview["segments"], preview["encoding"]) == (None, None)
    assert preview["nonGsmCharacters"] == []


async def test_preview_invalid_lists_problems_and_sends_nothing(
    gateway: RunningGateway, client: GraphQLClient, sandbox_requests: SandboxRequests
) -> None:
    recipient = "+14155550141"
    preview = await _preview(
        client, {"channel": "SMS", "from": "nope", "to": recipient, "body": "", "attachments": []}
    )
    assert preview["valid"] is False
    assert sorted(p["field"] for p in preview["problems"]) == ["body", "from"]
    assert all(p["problem"] for p in preview["problems"])
    assert preview["normalizedFrom"] is None and preview["segments"] is None

    # A valid preview does not send either.
    valid = await _preview(client, sms(to=recipient, body="only a preview"))
    assert valid["valid"] is True

    assert await _account_message_count(gateway, client) == 0
    assert await conversation_ids(client) == []
    await asyncio.sleep(0.2)  # give a wrongly enqueued message time to reach the sandbox
    assert sandbox_requests(recipient) == []
