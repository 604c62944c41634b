"""Sender rates over the API and the command line, on PostgreSQL and SQLite: an account sees
its sender addresses with their rates (their own or their kind's default), sets the rate of
its own addresses only, and bad rates are refused with the field that is wrong."""

from __future__ import annotations

import uuid
from typing import Any

from gateway.services.clock import utcnow
from tests.conftest import GraphQLClient, RunningGateway
from tests.integration.operations import set_mutation

FIELDS = "address kind segmentsPerSecond rateIsDefault"
SENDERS = f"query {{ senderAddresses {{ {FIELDS} }} }}"
SET_RATE = set_mutation(
    "setSenderRate", "SetSenderRateInput", "SenderRateSet", f"senderAddress {{ {FIELDS} }}"
)


def fresh_number(prefix: str) -> str:
    """A number no other test owns (addresses belong to one account for good); its exchange
    starts with 2-9, as a valid NANP number's does."""
    digits = str(uuid.uuid4().int)
    return prefix + str(2 + int(digits[0]) % 8) + digits[1:7]


async def set_rate(client: GraphQLClient, address: str, rate: float | None) -> dict[str, Any]:
    data = await client.execute(
        SET_RATE, {"input": {"address": address, "segmentsPerSecond": rate}}
    )
    result: dict[str, Any] = data["setSenderRate"]
    return result


async def test_an_account_lists_and_sets_the_rates_of_its_own_senders(
    gateway: RunningGateway, client: GraphQLClient
) -> None:
    long_code, toll_free = fresh_number("+1415"), fresh_number("+1800")
    mailbox = f"news@{uuid.uuid4().hex[:8]}.example.com"
    account = await gateway.container.accounts.ensure_account(client.account, utcnow())
    for address in (long_code, toll_free, mailbox):
        await gateway.container.webhook_repo.add_address(account.id, address, utcnow())

    # The defaults of this gateway's settings (the tests raise them).
    defaults = gateway.container.settings.default_rates
    listed = (await client.execute(SENDERS))["senderAddresses"]
    shown = {s["address"]: (s["kind"], s["segmentsPerSecond"], s["rateIsDefault"]) for s in listed}
    assert shown == {
        long_code: ("LONG_CODE", defaults.long_code, True),
        toll_free: ("TOLL_FREE", defaults.toll_free, True),
        mailbox: ("EMAIL_DOMAIN", defaults.email_domain, True),
    }

    # Written any way the address can be: it is normalized like a sender.
    spelled = f"({toll_free[2:5]}) {toll_free[5:8]}-{toll_free[8:]}"
    done = await set_rate(client, spelled, 20)
    assert done["__typename"] == "SenderRateSet", done
    assert done["senderAddress"] == {
        "address": toll_free,
        "kind": "TOLL_FREE",
        "segmentsPerSecond": 20.0,
        "rateIsDefault": False,
    }
    domain = await set_rate(client, mailbox.upper(), 2.5)
    assert domain["senderAddress"]["segmentsPerSecond"] == 2.5
    listed = (await client.execute(SENDERS))["senderAddresses"]
    rates = {s["address"]: s["segmentsPerSecond"] for s in listed}
    assert rates == {long_code: defaults.long_code, toll_free: 20.0, mailbox: 2.5}
    assert await gateway.container.sender_rates.rate_of(toll_free) == 20.0

    back = await set_rate(client, toll_free, None)
    assert back["senderAddress"]["rateIsDefault"] is True
    assert back["senderAddress"]["segmentsPerSecond"] == defaults.toll_free


async def test_bad_rates_and_addresses_of_others_are_refused(
    gateway: RunningGateway, client: GraphQLClient
) -> None:
    mine = fresh_number("+1415")
    account = await gateway.container.accounts.ensure_account(client.account, utcnow())
    await gateway.container.webhook_repo.add_address(account.id, mine, utcnow())
    for rate in (0, -3, 10_001):
        refused = await set_rate(client, mine, rate)
        assert refused["__typename"] == "InvalidInput", refused
        assert [p["field"] for p in refused["problems"]] == ["segmentsPerSecond"]
    other = await gateway.new_client()
    for address in (mine, "not a number"):
        refused = await set_rate(other, address, 5)
        assert [p["field"] for p in refused["problems"]] == ["address"], refused
    assert (await client.execute(SENDERS))["senderAddresses"][0]["rateIsDefault"] is True
