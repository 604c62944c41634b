"""Subscription.messageEvents over real websockets (graphql-transport-ws), on both backends.

Determinism: a live-only subscription (no ``after``) misses what is published before the server
has registered it, and the protocol has no "subscribed" acknowledgement. So either the test
waits until the gateway's event hub counts the subscriber, or it subscribes with ``after`` so
that whatever the registration order, the replay covers it, and it knows the live side is
registered once a replayed event has arrived (the stream subscribes before it replays).

Negative checks ("B sees none of A's events") are made deterministic with a marker where
possible: once a later event of the subscriber's own has arrived, anything dispatched earlier
would already have been delivered in front of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.typing import Subprotocol

from tests.conftest import GraphQLClient, RunningGateway

PROTOCOL = Subprotocol("graphql-transport-ws")

EVENTS = """
subscription Events($conversationId: ID, $messageId: ID, $after: String) {
  messageEvents(conversationId: $conversationId, messageId: $messageId, after: $after) {
    id cursor messageId conversationId status kind occurredAt
    message { id status }
  }
}
"""

SEND = """
mutation Send($input: SendMessageInput!) {
  sendMessage(input: $input) {
    __typename
    ... on MessageAccepted { message { id status conversation { id } } }
    ... on InvalidInput { problems { field problem } }
  }
}
"""

CANCEL = """
mutation Cancel($id: ID!) {
  cancelMessage(id: $id) { __typename ... on MessageAccepted { message { id status } } }
}
"""

MESSAGE = """
query One($id: ID!) {
  message(id: $id) { id status conversation { id } events { cursor status kind } }
}
"""

LIFECYCLE = ["QUEUED", "SENDING", "SENT", "DELIVERED"]
RANK = {status: rank for rank, status in enumerate(["SCHEDULED", *LIFECYCLE])}
TERMINAL = {"DELIVERED", "UNDELIVERED", "FAILED", "CANCELED"}
SENDER = "+14155550100"
RECIPIENT = "+14155550199"
OTHER_RECIPIENT = "+14155550142"


def ws_url(base_url: str) -> str:
    return base_url.replace("http://", "ws://") + "/graphql"


def cursors(events: list[dict[str, Any]]) -> list[int]:
    return [int(e["cursor"]) for e in events]


# --- HTTP side -------------------------------------------------------------------------------


async def send(
    client: GraphQLClient, to: str = RECIPIENT, body: str = "hello", **extra: object
) -> dict[str, Any]:
    data = await client.execute(
        SEND, {"input": {"channel": "SMS", "from": SENDER, "to": to, "body": body, **extra}}
    )
    result: dict[str, Any] = data["sendMessage"]
    assert result["__typename"] == "MessageAccepted", result
    message: dict[str, Any] = result["message"]
    return message


async def until_terminal(client: GraphQLClient, message_id: str) -> dict[str, Any]:
    """The message (with its audit trail) once it reached a terminal status."""
    for _ in range(400):
        found: dict[str, Any] = (await client.execute(MESSAGE, {"id": message_id}))["message"]
        if found["status"] in TERMINAL:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"{message_id} never reached a terminal status: {found}")


async def account_id(gateway: RunningGateway, client: GraphQLClient) -> uuid.UUID:
    account = await gateway.container.api_keys.authenticate(client.key)
    assert account is not None
    return account.id


async def wait_for_live_subscribers(
    gateway: RunningGateway, client: GraphQLClient, count: int
) -> None:
    """Until the gateway has ``count`` live subscribers for the client's account.

    White-box on purpose: graphql-transport-ws never acknowledges a subscribe, and a live-only
    subscription that is not registered yet would make a negative check vacuous.
    """
    account = await account_id(gateway, client)
    feeds = gateway.container.events.feeds
    for _ in range(500):
        # Websocket subscribers are members of shared feeds (each feed is one hub subscriber).
        if feeds.members(account) >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{count} live subscribers never registered")


# --- websocket side --------------------------------------------------------------------------


@dataclass
class Socket:
    """One graphql-transport-ws connection; several operations may run on it."""

    ws: ClientConnection
    _next_id: int = 0
    pending: list[dict[str, Any]] = field(default_factory=list)

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def recv(self, within: float = 10.0) -> dict[str, Any]:
        """The next protocol message other than ping/pong (pings are answered)."""
        while True:
            message: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), within))
            if message["type"] == "ping":
                await self.send({"type": "pong"})
                continue
            if message["type"] == "pong":
                continue
            return message

    async def subscribe(self, variables: dict[str, Any] | None = None, query: str = EVENTS) -> str:
        self._next_id += 1
        op = str(self._next_id)
        await self.send(
            {
                "id": op,
                "type": "subscribe",
                "payload": {"query": query, "variables": variables or {}},
            }
        )
        return op

    async def event(self, op: str | None = None, within: float = 10.0) -> dict[str, Any]:
        """The next messageEvents item (of ``op`` if given); any error fails the test."""
        while True:
            message = await self.recv(within)
            assert message["type"] == "next", message
            payload = message["payload"]
            assert "errors" not in payload, payload
            if op is None or message["id"] == op:
                event: dict[str, Any] = payload["data"]["messageEvents"]
                return event

    async def events_until(
        self, done: Callable[[list[dict[str, Any]]], bool], op: str | None = None
    ) -> list[dict[str, Any]]:
        """Events, in arrival order, until ``done(received)`` holds (bounded)."""
        received: list[dict[str, Any]] = []
        for _ in range(2000):
            received.append(await self.event(op))
            if done(received):
                return received
        raise AssertionError(f"gave up after {len(received)} events")

    async def nothing_within(self, seconds: float) -> None:
        try:
            message = await asyncio.wait_for(self.ws.recv(), seconds)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected message: {message!r}")

    async def closed_with(self, within: float = 10.0) -> int | None:
        """Read until the server closes the socket; its close code (no `next` may come)."""
        try:
            while True:
                message = json.loads(await asyncio.wait_for(self.ws.recv(), within))
                assert message["type"] not in ("next", "connection_ack"), message
        except websockets.ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd is not None else None


@contextlib.asynccontextmanager
async def raw_socket(base_url: str) -> AsyncIterator[Socket]:
    async with websockets.connect(ws_url(base_url), subprotocols=[PROTOCOL]) as ws:
        yield Socket(ws)


@contextlib.asynccontextmanager
async def socket(client: GraphQLClient) -> AsyncIterator[Socket]:
    """An acknowledged connection authenticated with the client's key."""
    async with raw_socket(client.base_url) as sock:
        await sock.send(
            {"type": "connection_init", "payload": {"authorization": f"Bearer {client.key}"}}
        )
        ack = await sock.recv()
        assert ack["type"] == "connection_ack", ack
        yield sock


def delivered(message_id: str) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda received: any(
        e["messageId"] == message_id and e["status"] == "DELIVERED" for e in received
    )


def all_terminal(message_ids: set[str]) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda received: (
        message_ids <= {e["messageId"] for e in received if e["status"] in TERMINAL}
    )


def of(message_id: str, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["messageId"] == message_id]


# --- live events -----------------------------------------------------------------------------


async def test_live_events_of_a_send_arrive_in_lifecycle_order(
    gateway: RunningGateway, client: GraphQLClient
) -> None:
    async with socket(client) as sock:
        op = await sock.subscribe()
        await wait_for_live_subscribers(gateway, client, 1)
        message = await send(client)
        received = await sock.events_until(delivered(message["id"]), op)

    assert {e["messageId"] for e in received} == {message["id"]}
    assert [e["status"] for e in received] == LIFECYCLE
    assert received[0]["kind"] == "accepted"
    numbers = cursors(received)
    assert numbers == sorted(set(numbers)), "cursors must strictly increase"
    for event in received:
        assert event["conversationId"] == message["conversation"]["id"]
        assert event["id"] and event["occurredAt"]
        # Resolved when the event is sent: the message may have moved on, never backwards.
        assert event["message"]["id"] == message["id"]
        assert RANK[event["message"]["status"]] >= RANK[event["status"]]
    stored = await until_terminal(client, message["id"])
    assert cursors(stored["events"]) == numbers


# --- replay ----------------------------------------------------------------------------------


async def test_replay_from_zero_then_live_without_gap_or_duplicate(client: GraphQLClient) -> None:
    first = await send(client, body="one")
    second = await send(client, to=OTHER_RECIPIENT, body="two")
    stored = [await until_terminal(client, m["id"]) for m in (first, second)]
    history = sorted(c for m in stored for c in cursors(m["events"]))
    assert len(history) == 2 * len(LIFECYCLE)

    async with socket(client) as sock:
        op = await sock.subscribe({"after": "0"})
        replayed = [await sock.event(op) for _ in history]
        assert cursors(replayed) == history
        assert [e["status"] for e in of(first["id"], replayed)] == LIFECYCLE

        third = await send(client, body="three")
        live = await sock.events_until(delivered(third["id"]), op)
        # Nothing that was replayed comes again once the stream has gone live.
        await sock.nothing_within(0.3)

    assert {e["messageId"] for e in live} == {third["id"]}
    assert [e["status"] for e in live] == LIFECYCLE
    trail = cursors((await until_terminal(client, third["id"]))["events"])
    assert cursors(replayed + live) == history + trail


async def test_replay_after_an_earlier_cursor_yields_only_later_events(
    client: GraphQLClient,
) -> None:
    first = await send(client, body="one")
    trail = cursors((await until_terminal(client, first["id"]))["events"])
    second = await send(client, body="two")
    trail += cursors((await until_terminal(client, second["id"]))["events"])
    after = trail[1]

    async with socket(client) as sock:
        op = await sock.subscribe({"after": str(after)})
        replayed = [await sock.event(op) for _ in trail[2:]]
        third = await send(client, body="three")
        live = await sock.events_until(delivered(third["id"]), op)

    assert cursors(replayed) == trail[2:]
    assert all(int(e["cursor"]) > after for e in replayed + live)
    assert [e["status"] for e in live] == LIFECYCLE
    third_trail = cursors((await until_terminal(client, third["id"]))["events"])
    assert cursors(live) == third_trail


async def test_replay_racing_with_concurrent_sends_has_no_gap_and_no_duplicate(
    gateway: RunningGateway, client: GraphQLClient
) -> None:
    first = await send(client, body="before")
    after = cursors((await until_terminal(client, first["id"]))["events"])[1]
    sent: list[str] = [first["id"]]
    some_sent = asyncio.Event()

    async def keep_sending() -> None:
        for i in range(30):
            sent.append((await send(client, body=f"race {i}"))["id"])
            if i == 4:
                some_sent.set()
            if i % 3 == 0:
                await asyncio.sleep(0.01)

    sender = asyncio.create_task(keep_sending())
    try:
        await asyncio.wait_for(some_sent.wait(), 30)
        async with socket(client) as sock:
            op = await sock.subscribe({"after": str(after)})
            await sender
            received = await sock.events_until(all_terminal(set(sent)), op)
            await sock.nothing_within(0.3)
    finally:
        if not sender.done():
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender

    numbers = cursors(received)
    assert len(numbers) == len(set(numbers)), "duplicate events"
    trails = {m: await until_terminal(client, m) for m in sent}
    expected = {c for m in trails.values() for c in cursors(m["events"]) if c > after}
    assert set(numbers) == expected
    # The audit trail in the database has nothing else for this account after the cursor.
    stored = await gateway.container.queries.events_after(
        await account_id(gateway, client), after, limit=10_000
    )
    assert {e.id for e in stored} == expected
    for message_id in sent:
        statuses = [e["status"] for e in of(message_id, received)]
        assert statuses == (LIFECYCLE[2:] if message_id == first["id"] else LIFECYCLE)


# --- filters ---------------------------------------------------------------------------------


async def test_conversation_filter_delivers_only_that_conversation(
    client: GraphQLClient,
) -> None:
    first = await send(client, to=RECIPIENT, body="x0")
    conversation = first["conversation"]["id"]
    trail = cursors((await until_terminal(client, first["id"]))["events"])

    async with socket(client) as control, socket(client) as filtered:
        all_op = await control.subscribe({"after": str(trail[-1])})
        op = await filtered.subscribe({"conversationId": conversation, "after": str(trail[0])})
        # Replayed events prove the filtered stream is live before anything else is sent.
        assert cursors([await filtered.event(op) for _ in trail[1:]]) == trail[1:]

        other = await send(client, to=OTHER_RECIPIENT, body="y")
        assert other["conversation"]["id"] != conversation
        await control.events_until(delivered(other["id"]), all_op)

        mine = await send(client, to=RECIPIENT, body="x1")
        received = [await filtered.event(op) for _ in LIFECYCLE]

    assert {e["messageId"] for e in received} == {mine["id"]}
    assert {e["conversationId"] for e in received} == {conversation}
    assert [e["status"] for e in received] == LIFECYCLE


async def test_message_filter_delivers_only_that_message(client: GraphQLClient) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    scheduled = await send(client, body="later", sendAt=later)
    assert scheduled["status"] == "SCHEDULED"

    async with socket(client) as control, socket(client) as filtered:
        op = await filtered.subscribe({"messageId": scheduled["id"], "after": "0"})
        accepted = await filtered.event(op)
        assert (accepted["messageId"], accepted["status"]) == (scheduled["id"], "SCHEDULED")
        all_op = await control.subscribe({"after": accepted["cursor"]})

        # Same conversation, other message: must not pass the filter.
        other = await send(client, body="now")
        assert other["conversation"]["id"] == scheduled["conversation"]["id"]
        await control.events_until(delivered(other["id"]), all_op)

        canceled = (await client.execute(CANCEL, {"id": scheduled["id"]}))["cancelMessage"]
        assert canceled["__typename"] == "MessageAccepted", canceled
        event = await filtered.event(op)

    assert (event["messageId"], event["status"]) == (scheduled["id"], "CANCELED")
    assert int(event["cursor"]) > int(accepted["cursor"])


# --- isolation between accounts --------------------------------------------------------------


async def test_unfiltered_subscription_sees_no_other_account_events(
    gateway: RunningGateway, client: GraphQLClient
) -> None:
    other = await gateway.new_client()
    async with socket(client) as mine, socket(other) as theirs:
        op = await theirs.subscribe()
        await wait_for_live_subscribers(gateway, other, 1)
        my_op = await mine.subscribe({"after": "0"})

        message = await send(client)
        await mine.events_until(delivered(message["id"]), my_op)
        # Dispatched after everything of `message`: when it arrives, a leak would have too.
        marker = await send(other, body="marker")
        seen = await theirs.events_until(delivered(marker["id"]), op)

    assert {e["messageId"] for e in seen} == {marker["id"]}


async def test_another_accounts_ids_match_nothing_like_random_ids(
    gateway: RunningGateway, client: GraphQLClient
) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    scheduled = await send(client, body="later", sendAt=later)
    conversation = scheduled["conversation"]["id"]
    other = await gateway.new_client()
    filters = [
        {"conversationId": conversation},
        {"messageId": scheduled["id"]},
        {"conversationId": "conv_" + uuid.uuid4().hex},
        {"messageId": "msg_" + uuid.uuid4().hex},
        # Malformed ids match nothing too, the same way (the stream stays open and silent).
        {"conversationId": "conv_not-hex"},
        {"messageId": "nope"},
    ]

    async with socket(client) as mine, socket(other) as theirs:
        my_op = await mine.subscribe({"after": "0"})
        assert (await mine.event(my_op))["messageId"] == scheduled["id"]
        for variables in filters:
            await theirs.subscribe(variables)
            await theirs.subscribe({**variables, "after": "0"})
        await wait_for_live_subscribers(gateway, other, 2 * len(filters))

        again = await send(client, body="same conversation")
        assert again["conversation"]["id"] == conversation
        canceled = (await client.execute(CANCEL, {"id": scheduled["id"]}))["cancelMessage"]
        assert canceled["__typename"] == "MessageAccepted", canceled
        await mine.events_until(
            lambda r: delivered(again["id"])(r) and any(e["status"] == "CANCELED" for e in r),
            my_op,
        )
        # Neither an event nor a `complete`: exactly what an id that exists nowhere gets.
        await theirs.nothing_within(0.5)


# --- authentication --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "init",
    [
        {"type": "connection_init"},
        {"type": "connection_init", "payload": {}},
        {"type": "connection_init", "payload": {"authorization": "Bearer mgw_not-a-key"}},
        {"type": "connection_init", "payload": {"authorization": ""}},
    ],
    ids=["no-payload", "no-key", "bad-key", "empty-key"],
)
async def test_connection_init_without_a_valid_key_is_closed_with_4403(
    gateway: RunningGateway, init: dict[str, Any]
) -> None:
    async with raw_socket(gateway.base_url) as sock:
        await sock.send(init)
        assert await sock.closed_with() == 4403


async def test_subscribe_before_connection_init_is_refused(client: GraphQLClient) -> None:
    await send(client)  # something a successful subscribe with after: "0" would replay
    async with raw_socket(client.base_url) as sock:
        await sock.subscribe({"after": "0"})
        assert await sock.closed_with() == 4401


# --- invalid cursor --------------------------------------------------------------------------


async def operation_errors(sock: Socket, op: str) -> list[dict[str, Any]]:
    """The errors that end ``op``, whether as `error` or as `next` with errors + `complete`."""
    errors: list[dict[str, Any]] = []
    while True:
        reply = await sock.recv()
        assert reply["id"] == op, reply
        if reply["type"] == "error":
            return errors + reply["payload"]
        assert reply["type"] in ("next", "complete"), reply
        if reply["type"] == "complete":
            return errors
        assert reply["payload"].get("data") is None, reply
        errors += reply["payload"].get("errors", [])


@pytest.mark.parametrize(
    "after",
    ["abc", "-1", "1.5", "", "evt_1", "\u0661", "1" * 20, str(2**63), "9" * 19],
    ids=[
        "word",
        "negative",
        "decimal",
        "empty",
        "event-id",
        "arabic-digit",
        "too-long",
        "int64-overflow",
        "19-nines",
    ],
)
async def test_invalid_after_cursor_is_refused_as_bad_user_input(
    client: GraphQLClient, after: str
) -> None:
    async with socket(client) as sock:
        op = await sock.subscribe({"after": after})
        errors = await operation_errors(sock, op)
    assert [e["extensions"]["code"] for e in errors] == ["BAD_USER_INPUT"], errors


async def test_invalid_after_cursor_is_a_protocol_error_message(client: GraphQLClient) -> None:
    async with socket(client) as sock:
        op = await sock.subscribe({"after": "abc"})
        message = await sock.recv()

    # graphql-transport-ws `error`: the operation is refused before any stream exists, like a
    # request error of the GraphQL spec's CreateSourceEventStream (not a `next` + `complete`).
    assert (message["type"], message["id"]) == ("error", op), message
    assert [e["extensions"]["code"] for e in message["payload"]] == ["BAD_USER_INPUT"]


async def test_connection_stays_usable_after_an_invalid_cursor(client: GraphQLClient) -> None:
    message = await send(client)
    trail = cursors((await until_terminal(client, message["id"]))["events"])

    async with socket(client) as sock:
        bad = await sock.subscribe({"after": "not-a-cursor"})
        errors = await operation_errors(sock, bad)
        assert [e["extensions"]["code"] for e in errors] == ["BAD_USER_INPUT"]

        good = await sock.subscribe({"after": "0"})
        replayed = [await sock.event(good) for _ in trail]
        assert cursors(replayed) == trail


# --- shared rendering ------------------------------------------------------------------------
#
# Live events are executed once per feed (same document, same shaping variables, same account)
# and every member gets the same bytes; replayed events are executed by graphql-core for each
# subscriber. Comparing live frames with replayed frames of the same events, under the same
# operation id, compares the two paths (field order included).

RICH = """
query Unrelated { __typename }

subscription Rich($after: String, $conversationId: ID, $withMessage: Boolean!) {
  feed: messageEvents(after: $after, conversationId: $conversationId) {
    __typename
    ...Core
    ... on MessageEvent { happened: kind detail }
    message @include(if: $withMessage) { ...Sender to body medium: channel }
  }
}

fragment Core on MessageEvent { id cursor messageId conversationId status occurredAt }
fragment Sender on Message { __typename id from }
"""


async def raw_frames(sock: Socket, count: int) -> list[str]:
    """The next ``count`` frames exactly as received (text frames: str)."""
    frames: list[str] = []
    while len(frames) < count:
        frame = await asyncio.wait_for(sock.ws.recv(), 10)
        assert isinstance(frame, str), f"binary frame: {frame!r}"
        if json.loads(frame)["type"] != "ping":
            frames.append(frame)
    return frames


def same_order(frame: str) -> str:
    """The frame re-encoded in its own key order, except inside ``detail``: a live event's
    detail keeps the order it was written in, a stored one the database's (JSONB sorts keys)."""
    parsed = json.loads(frame)
    event = parsed["payload"]["data"]["feed"]
    event["detail"] = json.dumps(event["detail"], sort_keys=True)
    return json.dumps(parsed)


def rich(after: str | None = None, **variables: Any) -> dict[str, Any]:
    return {"withMessage": True, **({"after": after} if after else {}), **variables}


async def subscribe_rich(sock: Socket, variables: dict[str, Any]) -> None:
    await sock.send(
        {
            "id": "1",
            "type": "subscribe",
            "payload": {"query": RICH, "variables": variables, "operationName": "Rich"},
        }
    )


async def test_live_frames_equal_frames_executed_for_one_subscriber(
    gateway: RunningGateway, client: GraphQLClient
) -> None:
    feeds = gateway.container.events.feeds
    rendered_before, unrendered_before = feeds.rendered, feeds.unrendered
    direct_before = feeds.sent_directly
    async with socket(client) as with_message, socket(client) as without, socket(client) as plain:
        await subscribe_rich(with_message, rich())
        await subscribe_rich(without, rich(withMessage=False))
        plain_op = await plain.subscribe()
        await wait_for_live_subscribers(gateway, client, 3)
        message = await send(client)
        live_with = await raw_frames(with_message, len(LIFECYCLE))
        live_without = await raw_frames(without, len(LIFECYCLE))
        await plain.events_until(delivered(message["id"]), plain_op)

    # Three shapes, three renderings per event (not one per subscriber, not zero).
    assert feeds.rendered - rendered_before >= 3 * len(LIFECYCLE)
    assert feeds.unrendered == unrendered_before
    # Under uvicorn, idle subscribers get their frames written by the feed itself.
    assert feeds.sent_directly > direct_before
    async with socket(client) as replaying, socket(client) as replaying_without:
        await subscribe_rich(replaying, rich(after="0"))
        await subscribe_rich(replaying_without, rich(after="0", withMessage=False))
        replayed_with = await raw_frames(replaying, len(LIFECYCLE))
        replayed_without = await raw_frames(replaying_without, len(LIFECYCLE))

    assert [same_order(f) for f in live_with] == [same_order(f) for f in replayed_with]
    assert [same_order(f) for f in live_without] == [same_order(f) for f in replayed_without]
    first = json.loads(live_with[0])
    assert first["type"] == "next" and first["id"] == "1"
    event = first["payload"]["data"]["feed"]
    assert list(event) == [
        "__typename",
        "id",
        "cursor",
        "messageId",
        "conversationId",
        "status",
        "occurredAt",
        "happened",
        "detail",
        "message",
    ]
    assert event["__typename"] == "MessageEvent" and event["happened"] == "accepted"
    assert event["message"] == {
        "__typename": "Message",
        "id": message["id"],
        "from": SENDER,
        "to": RECIPIENT,
        "body": "hello",
        "medium": "SMS",
    }
    assert "message" not in json.loads(live_without[0])["payload"]["data"]["feed"]


async def test_one_feed_per_shape_and_account_whatever_the_filters(
    gateway: RunningGateway, client: GraphQLClient
) -> None:
    other = await gateway.new_client()
    feeds = gateway.container.events.feeds
    mine = await account_id(gateway, client)
    before = len(feeds)
    conversation = (await send(client))["conversation"]["id"]
    async with (
        socket(client) as a,
        socket(client) as b,
        socket(client) as c,
        socket(other) as d,
    ):
        await subscribe_rich(a, rich())
        await subscribe_rich(b, rich(after="0"))
        await subscribe_rich(c, rich(conversationId=conversation))
        await wait_for_live_subscribers(gateway, client, 3)
        # Filters and cursors only choose events: one feed renders for all three.
        assert len(feeds) == before + 1
        await subscribe_rich(d, rich())
        await wait_for_live_subscribers(gateway, other, 1)
        assert len(feeds) == before + 2, "another account never shares a feed"
        assert feeds.members(mine) == 3
    for _ in range(100):
        if len(feeds) == before:
            break
        await asyncio.sleep(0.02)
    assert len(feeds) == before, "a feed outlived its members"


async def test_completing_one_subscription_leaves_the_others_of_its_feed_running(
    gateway: RunningGateway, client: GraphQLClient
) -> None:
    feeds = gateway.container.events.feeds
    mine = await account_id(gateway, client)
    async with socket(client) as sock, socket(client) as other:
        first = await sock.subscribe()
        second = await sock.subscribe()
        other_op = await other.subscribe()
        await wait_for_live_subscribers(gateway, client, 3)
        await sock.send({"id": first, "type": "complete"})
        for _ in range(100):
            if feeds.members(mine) == 2:
                break
            await asyncio.sleep(0.02)
        assert feeds.members(mine) == 2

        message = await send(client)
        frames = [json.loads(f) for f in await raw_frames(sock, len(LIFECYCLE))]
        await other.events_until(delivered(message["id"]), other_op)
        # Nothing for the completed operation, nothing twice for the running one.
        await sock.nothing_within(0.3)
    assert {f["id"] for f in frames} == {second}
    statuses = [f["payload"]["data"]["messageEvents"]["status"] for f in frames]
    assert statuses == LIFECYCLE


FAILING = """
subscription {
  messageEvents {
    status
    message { conversation { messages(first: 1, last: 1) { edges { cursor } } } }
  }
}
"""


async def test_an_event_whose_execution_fails_reports_the_error_to_each_subscriber(
    gateway: RunningGateway, client: GraphQLClient
) -> None:
    """A result with errors is never shared: each subscriber executes the event itself and
    gets its own error, and the subscriptions go on."""
    feeds = gateway.container.events.feeds
    unrendered_before = feeds.unrendered
    async with socket(client) as one, socket(client) as two, socket(client) as fine:
        one_op = await one.subscribe(query=FAILING)
        two_op = await two.subscribe(query=FAILING)
        fine_op = await fine.subscribe()
        await wait_for_live_subscribers(gateway, client, 3)
        message = await send(client)
        await fine.events_until(delivered(message["id"]), fine_op)
        for sock, op in ((one, one_op), (two, two_op)):
            for _ in LIFECYCLE:
                reply = await sock.recv()
                assert (reply["type"], reply["id"]) == ("next", op), reply
                assert reply["payload"]["data"] is None
                [error] = reply["payload"]["errors"]
                assert error["extensions"]["code"] == "BAD_USER_INPUT", error
                assert error["path"][0] == "messageEvents"
    assert feeds.unrendered - unrendered_before == len(LIFECYCLE)


LEAVES = """
subscription Leaves($after: String) {
  ev: messageEvents(after: $after) {
    __typename id cursor messageId conversationId status happened: kind detail occurredAt
  }
}
"""


async def test_plain_leaf_selections_render_as_executed_for_one_subscriber(
    gateway: RunningGateway, client: GraphQLClient
) -> None:
    """Plain leaf fields are rendered without an executor (schema.live._LeafPlan): the frames
    must equal those graphql-core executes for a replaying subscriber."""

    async def subscribe(sock: Socket, after: str | None) -> None:
        variables = {"after": after} if after else {}
        payload = {"query": LEAVES, "variables": variables, "operationName": "Leaves"}
        await sock.send({"id": "1", "type": "subscribe", "payload": payload})

    def comparable(frame: str) -> str:
        parsed = json.loads(frame)
        event = parsed["payload"]["data"]["ev"]
        event["detail"] = json.dumps(event["detail"], sort_keys=True)
        return json.dumps(parsed)

    async with socket(client) as live:
        await subscribe(live, None)
        await wait_for_live_subscribers(gateway, client, 1)
        await send(client)
        live_frames = await raw_frames(live, len(LIFECYCLE))
    async with socket(client) as replaying:
        await subscribe(replaying, "0")
        replayed = await raw_frames(replaying, len(LIFECYCLE))

    assert [comparable(f) for f in live_frames] == [comparable(f) for f in replayed]
    event = json.loads(live_frames[-1])["payload"]["data"]["ev"]
    assert list(event) == [
        "__typename",
        "id",
        "cursor",
        "messageId",
        "conversationId",
        "status",
        "happened",
        "detail",
        "occurredAt",
    ]
    assert event["__typename"] == "MessageEvent" and event["status"] == "DELIVERED"
