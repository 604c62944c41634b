"""REQUIRE_SENDER_OWNERSHIP: an account may only send from the addresses it owns."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.services.clock import utcnow
from harness.http import loopback_client
from tests.conftest import GraphQLClient, RunningGateway, gateway_settings, serve

SEND = """mutation S($i: SendMessageInput!) { sendMessage(input: $i) {
  __typename ... on InvalidInput { problems { field problem } } } }"""


@pytest.fixture(scope="module")
async def strict(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningGateway]:
    settings = gateway_settings("sqlite", tmp_path_factory.mktemp("strict"), None)
    settings.require_sender_ownership = True
    async with serve(settings) as (url, container), loopback_client(timeout=30) as http:
        yield RunningGateway("sqlite", url, container, http)


async def test_sending_from_an_unowned_address_is_invalid_until_the_account_owns_it(
    strict: RunningGateway,
) -> None:
    client: GraphQLClient = await strict.new_client()
    message = {"channel": "SMS", "from": "(415) 555-0177", "to": "+14155550178", "body": "x"}
    refused = (await client.execute(SEND, {"i": message}))["sendMessage"]
    assert refused["__typename"] == "InvalidInput"
    assert [p["field"] for p in refused["problems"]] == ["from"]

    account = await strict.container.accounts.ensure_account(client.account, utcnow())
    await strict.container.webhook_repo.add_address(account.id, "+14155550177", utcnow())
    accepted = (await client.execute(SEND, {"i": message}))["sendMessage"]
    assert accepted["__typename"] == "MessageAccepted"

    other = await strict.new_client()
    stolen = (await other.execute(SEND, {"i": message}))["sendMessage"]
    assert stolen["__typename"] == "InvalidInput", "another account does not own it"
