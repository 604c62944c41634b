"""Quiet hours over the API, on PostgreSQL and SQLite: the setting, messages held at accept
and at their claim (scheduled, retried), the bypass for one-time codes, and cancel.

Every window is placed around the present (``tests/quiet_windows.py``), and "the window is
over" is a window that ended an hour ago with the message's due time moved to now in the
database: nothing waits for a real night.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import update

from persistence.rows import MESSAGES
from schema.ids import decode_uuid
from tests.conftest import GraphQLClient, RunningGateway, SandboxRefuses, SandboxRequests
from tests.integration.operations import CANCEL, RETRY, set_mutation
from tests.quiet_windows import window_around_now, window_ended

SETTING = "enabled start end defaultTimeZone"
READ_SETTING = f"query {{ quietHours {{ {SETTING} }} }}"
SET = set_mutation(
    "setQuietHours", "QuietHoursInput", "QuietHoursSet", f"quietHours {{ {SETTING} }}"
)
SEND_MANY = """
mutation SendMany($inputs: [SendMessageInput!]!) {
  sendMessages(inputs: $inputs) {
    __typename
    ... on MessageAccepted { message { id status sendAt events { kind status detail } } }
    ... on InvalidInput { problems { field problem } }
  }
}
"""
MESSAGE = """
query One($id: ID!) { message(id: $id) { id status attempts events { kind status detail } } }
"""

LOS_ANGELES = "America/Los_Angeles"


def email(to: str, **extra: object) -> dict[str, object]:
    return {"channel": "EMAIL", "from": "alerts@example.com", "to": to, "body": "hi", **extra}


def sms(to: str, **extra: object) -> dict[str, object]:
    return {"channel": "SMS", "from": "+14155550100", "to": to, "body": "code 4321", **extra}


async def set_quiet_hours(client: GraphQLClient, **fields: object) -> dict[str, Any]:
    result: dict[str, Any] = (await client.execute(SET, {"input": fields}))["setQuietHours"]
    return result


async def quiet_now(client: GraphQLClient, zone: str, default: str = "UTC") -> str:
    """Quiet hours around the present in ``zone``; returns the window's end (HH:MM)."""
    start, end = window_around_now(zone)
    result = await set_quiet_hours(client, start=start, end=end, defaultTimeZone=default)
    assert result["__typename"] == "QuietHoursSet", result
    return end


async def send(client: GraphQLClient, *inputs: dict[str, object]) -> list[dict[str, Any]]:
    results = (await client.execute(SEND_MANY, {"inputs": list(inputs)}))["sendMessages"]
    assert all(r["__typename"] == "MessageAccepted" for r in results), results
    return [r["message"] for r in results]


async def wait_for(
    client: GraphQLClient, message_id: str, done: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for _ in range(400):
        found = (await client.execute(MESSAGE, {"id": message_id}))["message"]
        if done(found):
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"message never got there: {found}")


def delivered(found: dict[str, Any]) -> bool:
    return bool(found["status"] == "DELIVERED")


def held_again(found: dict[str, Any]) -> bool:
    # Both: the message and its events are read one after the other.
    deferred = any(e["kind"] == "deferred" for e in found["events"])
    return deferred and found["status"] == "SCHEDULED"


async def come_due(gateway: RunningGateway, message_id: str) -> None:
    """As if its time had come: the sweeper promotes it and a worker claims it."""
    async with gateway.container.engine.begin() as conn:
        await conn.execute(
            update(MESSAGES)
            .where(MESSAGES.c.id == decode_uuid(message_id, "Message"))
            .values(next_attempt_at=datetime.now(UTC))
        )


def assert_held_until_end(detail: dict[str, Any], end: str, zone: str) -> None:
    """The event of a message held for quiet hours: the reason, the zone, and until the next
    time the recipient's clock reads ``end``."""
    assert detail["reason"] == "quiet_hours"
    assert detail["timeZones"] == [zone]
    until = datetime.fromisoformat(detail["until"])
    assert until.astimezone(ZoneInfo(zone)).strftime("%H:%M") == end
    assert datetime.now(UTC) < until < datetime.now(UTC) + timedelta(hours=2)


# ------------------------------------------------------------------------------ the setting


async def test_quiet_hours_are_off_until_set_and_read_back_as_set(client: GraphQLClient) -> None:
    off = {"enabled": False, "start": None, "end": None, "defaultTimeZone": "UTC"}
    assert (await client.execute(READ_SETTING))["quietHours"] == off

    result = await set_quiet_hours(
        client, start="21:00", end="08:00", defaultTimeZone="Europe/Amsterdam"
    )
    night = {
        "enabled": True,
        "start": "21:00",
        "end": "08:00",
        "defaultTimeZone": "Europe/Amsterdam",
    }
    assert result == {"__typename": "QuietHoursSet", "quietHours": night}
    assert (await client.execute(READ_SETTING))["quietHours"] == night

    refused = await set_quiet_hours(client, start="9pm", defaultTimeZone="Atlantis/Capital")
    assert refused["__typename"] == "InvalidInput"
    assert sorted(p["field"] for p in refused["problems"]) == ["defaultTimeZone", "end", "start"]
    assert (await client.execute(READ_SETTING))["quietHours"] == night, "refused: unchanged"

    await set_quiet_hours(client)
    assert (await client.execute(READ_SETTING))["quietHours"] == off


async def test_each_account_has_its_own_quiet_hours(gateway: RunningGateway) -> None:
    quiet, other = await gateway.new_client(), await gateway.new_client()
    await set_quiet_hours(quiet, start="21:00", end="08:00")
    assert (await other.execute(READ_SETTING))["quietHours"]["enabled"] is False


# ----------------------------------------------------------------------------- at accept


async def test_a_message_due_inside_the_window_is_scheduled_until_it_ends_and_cancelable(
    client: GraphQLClient, sandbox_requests: SandboxRequests
) -> None:
    end = await quiet_now(client, "UTC")
    [held] = await send(client, email("night@example.com"))
    assert held["status"] == "SCHEDULED" and held["sendAt"] is None
    [accepted] = held["events"]
    assert (accepted["kind"], accepted["status"]) == ("accepted", "SCHEDULED")
    assert_held_until_end(accepted["detail"], end, "UTC")

    canceled = (await client.execute(CANCEL, {"id": held["id"]}))["cancelMessage"]
    assert canceled["message"]["status"] == "CANCELED"
    assert sandbox_requests("night@example.com") == []


async def test_phone_numbers_follow_their_own_zone_and_e_mail_the_default(
    client: GraphQLClient,
) -> None:
    # Quiet around now in Los Angeles; Tokyo's clock is far from it.
    end = await quiet_now(client, LOS_ANGELES, default="Asia/Tokyo")
    los_angeles, london, mail = await send(
        client, sms("+14155550161"), sms("+442079460161"), email("tokyo@example.com")
    )
    assert los_angeles["status"] == "SCHEDULED"
    assert_held_until_end(los_angeles["events"][0]["detail"], end, LOS_ANGELES)
    for free in (london, mail):
        await wait_for(client, free["id"], delivered)


async def test_a_batch_holds_only_what_is_due_inside_the_window_and_does_not_bypass_it(
    client: GraphQLClient, sandbox_requests: SandboxRequests
) -> None:
    end = await quiet_now(client, "UTC")
    now = datetime.now(UTC)
    inside, code, later, soon = await send(
        client,
        email("batch-a@example.com"),
        email("batch-b@example.com", bypassQuietHours=True),
        email("batch-c@example.com", sendAt=(now + timedelta(hours=3)).isoformat()),
        email("batch-d@example.com", sendAt=(now + timedelta(minutes=30)).isoformat()),
    )
    assert inside["status"] == "SCHEDULED"
    assert_held_until_end(inside["events"][0]["detail"], end, "UTC")
    # A one-time code goes now, and its claim lets it through too.
    assert code["status"] == "QUEUED" and code["events"][0]["detail"] is None
    sent = await wait_for(client, code["id"], delivered)
    assert "deferred" not in [e["kind"] for e in sent["events"]]
    assert sandbox_requests("batch-b@example.com", accepted_only=True)
    assert sandbox_requests("batch-a@example.com") == []
    # Scheduled for after the window: as asked. For inside it: held until it ends.
    assert later["status"] == "SCHEDULED" and later["events"][0]["detail"] is None
    assert soon["status"] == "SCHEDULED"
    assert_held_until_end(soon["events"][0]["detail"], end, "UTC")


async def test_a_held_message_is_sent_once_the_window_is_over(
    gateway: RunningGateway, client: GraphQLClient
) -> None:
    await quiet_now(client, "UTC")
    [held] = await send(client, email("morning@example.com"))
    start, end = window_ended("UTC")
    await set_quiet_hours(client, start=start, end=end)
    await come_due(gateway, held["id"])
    found = await wait_for(client, held["id"], delivered)
    trail = [(e["kind"], e["status"]) for e in found["events"]]
    assert trail[:3] == [("accepted", "SCHEDULED"), ("enqueued", "QUEUED"), ("attempt", "SENDING")]
    assert found["attempts"] == 1


# ------------------------------------------------------------------------------ at claim


async def test_a_scheduled_message_coming_due_inside_the_window_is_held_at_its_claim(
    gateway: RunningGateway, client: GraphQLClient, sandbox_requests: SandboxRequests
) -> None:
    # Accepted while quiet hours were off, for later; they start before it comes due.
    later = (datetime.now(UTC) + timedelta(hours=5)).isoformat()
    [scheduled] = await send(client, email("due@example.com", sendAt=later))
    end = await quiet_now(client, "UTC")
    await come_due(gateway, scheduled["id"])
    found = await wait_for(client, scheduled["id"], held_again)
    trail = [(e["kind"], e["status"]) for e in found["events"]]
    assert trail == [
        ("accepted", "SCHEDULED"),
        ("enqueued", "QUEUED"),
        ("attempt", "SENDING"),
        ("deferred", "SCHEDULED"),
    ]
    assert found["status"] == "SCHEDULED" and found["attempts"] == 0, "untried"
    assert_held_until_end(found["events"][-1]["detail"], end, "UTC")
    assert sandbox_requests("due@example.com") == []
    canceled = (await client.execute(CANCEL, {"id": scheduled["id"]}))["cancelMessage"]
    assert canceled["message"]["status"] == "CANCELED"


async def test_a_retried_message_is_held_at_its_claim(
    client: GraphQLClient, sandbox_refuses: SandboxRefuses
) -> None:
    recipient = "+14155550162"
    with sandbox_refuses(recipient):
        [failing] = await send(client, sms(recipient))
        await wait_for(client, failing["id"], lambda m: bool(m["status"] == "FAILED"))
    end = await quiet_now(client, LOS_ANGELES)
    retried = (await client.execute(RETRY, {"id": failing["id"]}))["retryMessage"]
    assert retried["message"]["status"] == "QUEUED"
    found = await wait_for(client, failing["id"], held_again)
    trail = [(e["kind"], e["status"]) for e in found["events"]]
    assert trail[-3:] == [
        ("retry_requested", "QUEUED"),
        ("attempt", "SENDING"),
        ("deferred", "SCHEDULED"),
    ]
    assert found["status"] == "SCHEDULED" and found["attempts"] == 1, "only the first try"
    assert_held_until_end(found["events"][-1]["detail"], end, LOS_ANGELES)
