"""inboxChanges across API processes: PostgreSQL, Redis and two API processes (no worker).

Changes made through API 1 (a read mark, a signed inbound webhook) reach the tabs subscribed on
API 2 only through Redis pub/sub; another account's tab on API 2 gets none of them. The other
process cannot be looked into, and graphql-transport-ws acknowledges no subscribe: a tab counts
as registered once a read mark (which changes nothing after the first) has been heard on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.settings import Settings
from harness.pipeline import Account, Pipeline
from tests.conftest import GraphQLClient
from tests.integration.test_inbox import INBOX
from tests.integration.test_inbox_live import CHANGES, MARK, Tab, told
from tests.integration.test_opt_outs import post_twilio_inbound
from tests.integration.test_subscriptions import socket
from tests.integration.test_webhooks import inbound_params

OURS, THEIRS = "+14155553311", "+14155553312"
STRANGERS, STRANGERS_CONTACT = "+14155553313", "+14155553314"


def client(pipe: Pipeline, api: int, account: Account) -> GraphQLClient:
    return GraphQLClient(pipe.api_url(api), account.key, account.name, pipe.http)


async def inbound(pipe: Pipeline, sender: str, to: str, body: str) -> None:
    """A signed Twilio inbound SMS, posted to API 1."""
    response = await post_twilio_inbound(
        pipe.http,
        pipe.api_url(0),
        inbound_params(sender, to, body),
        auth_token=Settings().twilio_auth_token,
        public_base_url=pipe.api_url(0),
    )
    assert response.status_code == 200, response.text


async def conversation(writer: GraphQLClient, participant: str) -> tuple[dict[str, Any], str]:
    """The conversation with ``participant`` and its newest message's id."""
    [edge] = (await writer.execute(INBOX, {"participant": participant}))["conversations"]["edges"]
    node: dict[str, Any] = edge["node"]
    return node, node["messages"]["edges"][-1]["node"]["id"]


async def heard(tab: Tab, op: str, probe: Callable[[], Awaitable[object]]) -> dict[str, Any]:
    """The first change the tab gets while ``probe`` (a read mark) is repeated until it does."""
    for _ in range(60):
        await probe()
        try:
            change: dict[str, Any] = (await asyncio.wait_for(tab.next_of(op), 1.0))["inboxChanges"]
        except TimeoutError:
            continue
        return change
    raise AssertionError("the tab never heard a change: not subscribed through Redis")


async def next_change(tab: Tab, op: str, probe_of: str) -> dict[str, Any]:
    """The next change other than a late echo of the probing read marks (up to ``probe_of``)."""
    while True:
        change: dict[str, Any] = (await tab.next_of(op))["inboxChanges"]
        if (change["kind"], change["messageId"]) != ("READ", probe_of):
            return change


async def test_changes_through_one_api_process_reach_the_tabs_on_the_other(
    apis: Pipeline,
) -> None:
    pipe = apis
    ours, stranger = await pipe.new_account(), await pipe.new_account()
    await pipe.cli("add-address", "--account", ours.name, OURS)
    await pipe.cli("add-address", "--account", stranger.name, STRANGERS)
    await inbound(pipe, THEIRS, OURS, "first")
    await inbound(pipe, STRANGERS_CONTACT, STRANGERS, "hi")
    writer, strangers_writer = client(pipe, 0, ours), client(pipe, 0, stranger)
    talk, first = await conversation(writer, THEIRS)
    their_talk, their_first = await conversation(strangers_writer, STRANGERS_CONTACT)

    async with (
        socket(client(pipe, 1, ours)) as our_socket,
        socket(client(pipe, 1, stranger)) as their_socket,
    ):
        tab, other = Tab(our_socket), Tab(their_socket)
        op, other_op = await tab.operation(CHANGES), await other.operation(CHANGES)
        read = await heard(tab, op, lambda: writer.execute(MARK, {"id": talk["id"]}))
        assert read == told(talk, "READ", first, 0, first)
        await heard(
            other, other_op, lambda: strangers_writer.execute(MARK, {"id": their_talk["id"]})
        )

        # Through API 1, heard on API 2: an arrival, then a read mark.
        await inbound(pipe, THEIRS, OURS, "second")
        _, second = await conversation(writer, THEIRS)
        arrival = await next_change(tab, op, first)
        assert arrival == told(talk, "RECEIVED", second, 1, first)
        await writer.execute(MARK, {"id": talk["id"]})
        assert await next_change(tab, op, first) == told(talk, "READ", second, 0, second)

        # The other account's next change is its own arrival: none of ours came before it.
        await inbound(pipe, STRANGERS_CONTACT, STRANGERS, "again")
        own = await next_change(other, other_op, their_first)
        assert (own["conversationId"], own["kind"], own["unreadCount"]) == (
            their_talk["id"],
            "RECEIVED",
            1,
        )
