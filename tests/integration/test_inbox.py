"""Inbox state on PostgreSQL and SQLite: inbound messages are unread until the account marks
their conversation read, and the read cursor only moves forward."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.conftest import RunningGateway
from tests.integration.test_opt_outs import Tenant

OURS, THEIRS = "+14155550981", "+14155550982"

INBOX = """
query I($participant: String!) {
  conversations(first: 5, participant: $participant) { edges { node {
    id unreadCount lastReadMessageId
    messages(first: 50) { edges { node { id direction } } }
  } } }
}
"""

MARK = """
mutation M($id: ID!, $upTo: ID) {
  markConversationRead(conversationId: $id, upTo: $upTo) {
    __typename
    ... on ConversationRead { conversation { id unreadCount lastReadMessageId } }
    ... on NotFound { id }
  }
}
"""


async def _inbox(tenant: Tenant) -> dict[str, Any]:
    data = await tenant.client.execute(INBOX, {"participant": THEIRS})
    [edge] = data["conversations"]["edges"]
    node: dict[str, Any] = edge["node"]
    return node


async def _mark(tenant: Tenant, conversation: str, up_to: str | None = None) -> dict[str, Any]:
    data = await tenant.client.execute(MARK, {"id": conversation, "upTo": up_to})
    result: dict[str, Any] = data["markConversationRead"]
    return result


async def test_unread_counts_inbound_messages_after_the_read_cursor(
    gateway: RunningGateway,
) -> None:
    tenant = await Tenant.new(gateway, OURS)
    # Several arrive at once: each is counted, none lost to a race on a counter.
    await asyncio.gather(*(tenant.inbound(THEIRS, OURS, f"hello {n}") for n in range(3)))
    inbox = await _inbox(tenant)
    assert inbox["unreadCount"] == 3
    assert inbox["lastReadMessageId"] is None
    ids = [e["node"]["id"] for e in inbox["messages"]["edges"]]
    # Our own replies are never unread.
    await tenant.client.execute(
        """mutation S($input: SendMessageInput!) { sendMessage(input: $input) { __typename } }""",
        {"input": {"channel": "SMS", "from": OURS, "to": THEIRS, "body": "hi"}},
    )
    assert (await _inbox(tenant))["unreadCount"] == 3

    read = await _mark(tenant, inbox["id"], ids[1])
    assert read["__typename"] == "ConversationRead"
    assert read["conversation"] == {
        "id": inbox["id"],
        "unreadCount": 1,
        "lastReadMessageId": ids[1],
    }
    # A stale tab marking an older message does not unread the newer ones.
    again = await _mark(tenant, inbox["id"], ids[0])
    assert again["conversation"]["lastReadMessageId"] == ids[1]
    assert again["conversation"]["unreadCount"] == 1
    # Without upTo: everything up to the newest message.
    everything = await _mark(tenant, inbox["id"])
    assert everything["conversation"]["unreadCount"] == 0

    await tenant.inbound(THEIRS, OURS, "one more")
    assert (await _inbox(tenant))["unreadCount"] == 1


async def test_marking_what_is_not_there_is_not_found(gateway: RunningGateway) -> None:
    tenant = await Tenant.new(gateway, "+14155550983")
    other = await Tenant.new(gateway, "+14155550984")
    await tenant.inbound("+14155550985", "+14155550983", "hi")
    data = await tenant.client.execute(INBOX, {"participant": "+14155550985"})
    [edge] = data["conversations"]["edges"]
    conversation = edge["node"]["id"]
    message = edge["node"]["messages"]["edges"][0]["node"]["id"]
    for variables, missing in (
        ({"id": "conv_nothex"}, "conv_nothex"),
        ({"id": message}, message),  # a message id where a conversation's goes
        ({"id": conversation, "upTo": conversation}, conversation),
    ):
        result = (await tenant.client.execute(MARK, variables))["markConversationRead"]
        assert result == {"__typename": "NotFound", "id": missing}
    # Another account's conversation answers as one that does not exist, and stays unread.
    foreign = (await other.client.execute(MARK, {"id": conversation}))["markConversationRead"]
    assert foreign == {"__typename": "NotFound", "id": conversation}
    assert edge["node"]["unreadCount"] == 1
    data = await tenant.client.execute(INBOX, {"participant": "+14155550985"})
    assert data["conversations"]["edges"][0]["node"]["unreadCount"] == 1
