"""Subscription.inboxChanges over real websockets (graphql-transport-ws), on both databases:
two tabs of one account stay in step, and another account hears nothing of it.

A tab marks read over its own socket (a mutation on the same connection) and the other tab
gets the change; a signed inbound webhook raises the count in both. Registration is waited
for white-box (the protocol acknowledges no subscribe); the negative check is made with a
marker: once the other account's own change arrived, anything published before it would
have been delivered in front of it.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

from tests.conftest import RunningGateway
from tests.integration.test_inbox import INBOX
from tests.integration.test_opt_outs import Tenant
from tests.integration.test_subscriptions import Socket, socket

# Numbers of these tests alone: an address has one owner in the session's gateway.
OURS, THEIRS = "+14155553301", "+14155553302"
STRANGERS, STRANGERS_CONTACT = "+14155553303", "+14155553304"

CHANGES = """
subscription Inbox($conversationId: ID) {
  inboxChanges(conversationId: $conversationId) {
    conversationId kind messageId unreadCount lastReadMessageId
  }
}
"""

MARK = """
mutation Read($id: ID!) {
  markConversationRead(conversationId: $id) {
    ... on ConversationRead { conversation { unreadCount lastReadMessageId } }
  }
}
"""


class Tab:
    """One socket of the console: its operations' payloads, read in arrival order."""

    def __init__(self, sock: Socket) -> None:
        self.sock = sock
        self._by_op: dict[str, list[dict[str, Any]]] = defaultdict(list)

    async def operation(self, query: str, variables: dict[str, Any] | None = None) -> str:
        return await self.sock.subscribe(variables or {}, query=query)

    async def next_of(self, op: str) -> dict[str, Any]:
        """The next ``next`` payload's data of ``op`` (those of other operations are kept)."""
        while not self._by_op[op]:
            message = await self.sock.recv()
            if message["type"] == "complete":
                continue
            assert message["type"] == "next", message
            assert "errors" not in message["payload"], message
            self._by_op[message["id"]].append(message["payload"]["data"])
        return self._by_op[op].pop(0)


async def registered(gateway: RunningGateway, tenant: Tenant, count: int) -> None:
    hub = gateway.container.broker.inbox_hub
    for _ in range(500):
        if hub.subscribers(tenant.account_id) >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{count} inbox watchers never registered")


async def conversation_of(tenant: Tenant, participant: str) -> dict[str, Any]:
    data = await tenant.client.execute(INBOX, {"participant": participant})
    [edge] = data["conversations"]["edges"]
    node: dict[str, Any] = edge["node"]
    return node


def told(
    talk: dict[str, Any], kind: str, message: str, unread: int, last_read: str | None
) -> dict[str, Any]:
    return {
        "conversationId": talk["id"],
        "kind": kind,
        "messageId": message,
        "unreadCount": unread,
        "lastReadMessageId": last_read,
    }


async def test_a_read_mark_in_one_tab_clears_the_other_and_an_arrival_raises_both(
    gateway: RunningGateway,
) -> None:
    tenant = await Tenant.new(gateway, OURS)
    stranger = await Tenant.new(gateway, STRANGERS)
    await tenant.inbound(THEIRS, OURS, "first")
    talk = await conversation_of(tenant, THEIRS)
    [first] = [e["node"]["id"] for e in talk["messages"]["edges"]]
    assert talk["unreadCount"] == 1

    async with (
        socket(tenant.client) as one,
        socket(tenant.client) as two,
        socket(stranger.client) as theirs,
    ):
        tabs = [Tab(one), Tab(two)]
        ops = [await tab.operation(CHANGES) for tab in tabs]
        other = Tab(theirs)
        other_op = await other.operation(CHANGES)
        await registered(gateway, tenant, 2)
        await registered(gateway, stranger, 1)

        # Tab one reads the conversation over its own socket; tab two's badge clears.
        mark = await tabs[0].operation(MARK, {"id": talk["id"]})
        read = (await tabs[0].next_of(mark))["markConversationRead"]["conversation"]
        assert read == {"unreadCount": 0, "lastReadMessageId": first}
        for tab, op in zip(tabs, ops, strict=True):
            assert (await tab.next_of(op))["inboxChanges"] == told(talk, "READ", first, 0, first)

        # A message arrives: both badges show it.
        await tenant.inbound(THEIRS, OURS, "second")
        talk = await conversation_of(tenant, THEIRS)
        second = talk["messages"]["edges"][-1]["node"]["id"]
        for tab, op in zip(tabs, ops, strict=True):
            change = (await tab.next_of(op))["inboxChanges"]
            assert change == told(talk, "RECEIVED", second, 1, first)

        # The other account's first change is its own: none of the above reached it.
        await stranger.inbound(STRANGERS_CONTACT, STRANGERS, "hello")
        own = (await other.next_of(other_op))["inboxChanges"]
        assert own["conversationId"] == (await conversation_of(stranger, STRANGERS_CONTACT))["id"]
        assert (own["kind"], own["unreadCount"]) == ("RECEIVED", 1)


async def test_a_conversation_filter_keeps_other_conversations_out(
    gateway: RunningGateway,
) -> None:
    ours, first_contact, second_contact = "+14155553305", "+14155553306", "+14155553307"
    tenant = await Tenant.new(gateway, ours)
    await tenant.inbound(first_contact, ours, "one")
    await tenant.inbound(second_contact, ours, "two")
    watched = await conversation_of(tenant, second_contact)
    async with socket(tenant.client) as sock:
        tab = Tab(sock)
        op = await tab.operation(CHANGES, {"conversationId": watched["id"]})
        await registered(gateway, tenant, 1)
        await tenant.inbound(first_contact, ours, "not this one")
        await tenant.inbound(second_contact, ours, "this one")
        change = (await tab.next_of(op))["inboxChanges"]
        assert (change["conversationId"], change["unreadCount"]) == (watched["id"], 2)
