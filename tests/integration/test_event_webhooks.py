"""Event webhooks end to end, on PostgreSQL and SQLite: a real receiver on loopback checks
every delivery's Standard Webhooks signature, and answers 500s, redirects, timeouts
and 410s on purpose to exercise retries, redelivery and disabling.

The module runs a gateway of its own: one that lets endpoints use loopback ``http`` URLs
(``WEBHOOK_ALLOW_PRIVATE_URLS``), seals secrets with a key, and retries within moments.
The URL checks of the default settings run against the session's gateway.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select, update
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.domain.records import MessageEvent
from gateway.domain.statuses import MessageStatus
from gateway.domain.webhook_endpoints import UnsafeUrl
from harness.asgi import run_uvicorn
from harness.http import loopback_client
from persistence.webhook_endpoints import ENDPOINTS
from providers.http import ProviderSession
from providers.outbound_webhooks import WebhookPoster, signed_headers
from providers.signatures import twilio_signature
from schema.ids import decode_uuid
from tests.conftest import GraphQLClient, RunningGateway, backend_settings, serve
from tests.integration.test_batch_and_rules import MESSAGE, accepted, send, sms, wait_for_status
from tests.integration.test_webhooks import (
    FORM,
    TWILIO_SIGNATURE_HEADER,
    inbound_params,
    new_number,
)

#: Longer than the module gateway's WEBHOOK_TIMEOUT_SECONDS: the try times out.
SLOW_ANSWER = 2.5

ENDPOINT_FIELDS = """
    id url description eventKinds statuses enabled disabledReason disabledAt failingSince
    previousSecretExpiresAt createdAt updatedAt
"""

CREATE = f"""
mutation Create($input: CreateWebhookEndpointInput!) {{
  createWebhookEndpoint(input: $input) {{
    __typename
    ... on WebhookEndpointCreated {{ secret endpoint {{ {ENDPOINT_FIELDS} }} }}
    ... on InvalidInput {{ problems {{ field problem }} }}
  }}
}}
"""
UPDATE = f"""
mutation Update($id: ID!, $input: UpdateWebhookEndpointInput!) {{
  updateWebhookEndpoint(id: $id, input: $input) {{
    __typename
    ... on WebhookEndpoint {{ {ENDPOINT_FIELDS} }}
    ... on NotFound {{ id }}
    ... on InvalidInput {{ problems {{ field problem }} }}
  }}
}}
"""
SIMPLE = """
mutation Simple($id: ID!) {{
  {field}(id: $id) {{
    __typename
    ... on WebhookEndpoint {{ {fields} }}
    ... on NotFound {{ id }}
  }}
}}
"""
ROTATE = f"""
mutation Rotate($id: ID!) {{
  rotateWebhookSecret(id: $id) {{
    __typename
    ... on WebhookSecretRotated {{ secret endpoint {{ {ENDPOINT_FIELDS} }} }}
    ... on NotFound {{ id }}
  }}
}}
"""
LIST = f"""
query List($first: Int, $after: String) {{
  webhookEndpoints(first: $first, after: $after) {{
    edges {{ cursor node {{ {ENDPOINT_FIELDS} }} }}
    pageInfo {{ hasNextPage hasPreviousPage endCursor }}
  }}
}}
"""
ONE = f"query One($id: ID!) {{ webhookEndpoint(id: $id) {{ {ENDPOINT_FIELDS} }} }}"
DELIVERIES = """
query Deliveries($id: ID!, $first: Int, $after: String) {
  webhookEndpoint(id: $id) {
    enabled disabledReason
    deliveries(first: $first, after: $after) {
      edges { cursor node {
        id state attempts lastStatusCode lastError lastAttemptAt nextAttemptAt createdAt
        event { id cursor kind status messageId }
      } }
      pageInfo { hasNextPage hasPreviousPage endCursor }
    }
  }
}
"""
EVENTS = """
query Events($id: ID!, $first: Int, $after: String) {
  webhookEndpoint(id: $id) {
    events(first: $first, after: $after) {
      edges { cursor node { id kind reason occurredAt } }
      pageInfo { hasNextPage hasPreviousPage endCursor }
    }
  }
}
"""
REDELIVER = """
mutation Redeliver($id: ID!) {
  redeliverWebhook(id: $id) {
    __typename
    ... on WebhookDelivery { id state attempts }
    ... on NotFound { id }
  }
}
"""
REDELIVER_FAILED = """
mutation RedeliverFailed($id: ID!, $since: DateTime!) {
  redeliverFailedWebhooks(endpointId: $id, since: $since) {
    __typename
    ... on WebhookDeliveriesRedelivered { count }
    ... on NotFound { id }
  }
}
"""


# --- the receiver -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def payload(self) -> dict[str, Any]:
        loaded: dict[str, Any] = orjson.loads(self.body)
        return loaded

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


#: What the receiver answers: a status (the body says which), SLOW (200 too late), or HOLD
#: (200 once the receiver's gate opens, however long that takes).
Answer = int | str
SLOW = "slow"
HOLD = "hold"
BIG_BODY = "x" * 5000


@dataclass
class Receiver:
    base_url: str = ""
    received: list[Received] = field(default_factory=list)
    #: Per path, the answers still to give, in order; then ``always`` (default 200).
    plans: dict[str, list[Answer]] = field(default_factory=dict)
    always: dict[str, Answer] = field(default_factory=dict)
    #: HOLD answers wait for it; per path, the requests held open now.
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    holding: dict[str, int] = field(default_factory=dict)

    def endpoint(self, *plan: Answer, always: Answer = 200) -> str:
        path = "/hook/" + uuid.uuid4().hex[:12]
        self.plans[path] = list(plan)
        self.always[path] = always
        return self.base_url + path

    def at(self, url: str) -> list[Received]:
        path = url.removeprefix(self.base_url)
        return [r for r in self.received if r.path == path]

    async def handle(self, request: Request) -> Response:
        path = request.url.path
        self.received.append(Received(path, dict(request.headers), await request.body()))
        plan = self.plans.get(path, [])
        answer = plan.pop(0) if plan else self.always.get(path, 200)
        if answer == SLOW:
            await asyncio.sleep(SLOW_ANSWER)
            return Response("late")
        if answer == HOLD:
            self.holding[path] = self.holding.get(path, 0) + 1
            try:
                await self.gate.wait()
            finally:
                self.holding[path] -= 1
            return Response("at last")
        if answer in (301, 302, 307):
            return Response(status_code=int(answer), headers={"Location": self.base_url + "/ok"})
        return Response(BIG_BODY if answer == 500 else f"answer {answer}", int(answer))


@pytest.fixture(scope="module")
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    app = Starlette(routes=[Route("/{path:path}", found.handle, methods=["POST"])])
    async with run_uvicorn(app) as url:
        found.base_url = url
        yield found


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
async def hooks(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningGateway]:
    backend, settings = backend_settings(request, tmp_path_factory, "hooks")
    settings.webhook_allow_private_urls = True
    settings.webhook_secrets_key = Fernet.generate_key().decode()
    settings.webhook_timeout_seconds = 1.0
    settings.webhook_retry_base_seconds = 0.05
    settings.webhook_retry_max_seconds = 0.2
    settings.webhook_max_attempts = 4
    settings.webhook_poll_interval = 0.05
    async with (
        serve(settings) as (base_url, container),
        loopback_client(timeout=30) as http,
    ):
        yield RunningGateway(backend, base_url, container, http)


# --- helpers ----------------------------------------------------------------------------------


async def create(client: GraphQLClient, url: str, **fields: object) -> dict[str, Any]:
    result: dict[str, Any] = (await client.execute(CREATE, {"input": {"url": url, **fields}}))[
        "createWebhookEndpoint"
    ]
    return result


async def created(client: GraphQLClient, url: str, **fields: object) -> tuple[dict[str, Any], str]:
    result = await create(client, url, **fields)
    assert result["__typename"] == "WebhookEndpointCreated", result
    return result["endpoint"], result["secret"]


async def simple(client: GraphQLClient, name: str, endpoint_id: str) -> dict[str, Any]:
    query = SIMPLE.format(field=name, fields=ENDPOINT_FIELDS)
    result: dict[str, Any] = (await client.execute(query, {"id": endpoint_id}))[name]
    return result


async def deliveries(client: GraphQLClient, endpoint_id: str, **args: object) -> dict[str, Any]:
    found: dict[str, Any] = (await client.execute(DELIVERIES, {"id": endpoint_id, **args}))[
        "webhookEndpoint"
    ]
    return found


async def endpoint_events(client: GraphQLClient, endpoint_id: str) -> list[tuple[str, str | None]]:
    """The endpoint's event log, newest first, as (kind, reason)."""
    found = (await client.execute(EVENTS, {"id": endpoint_id}))["webhookEndpoint"]
    return [(e["node"]["kind"], e["node"]["reason"]) for e in found["events"]["edges"]]


async def settled(
    client: GraphQLClient, endpoint_id: str, count: int, done: Callable[[dict[str, Any]], bool]
) -> list[dict[str, Any]]:
    """The endpoint's deliveries once there are ``count`` of them and ``done`` holds for each."""
    nodes: list[dict[str, Any]] = []
    for _ in range(400):
        page = await deliveries(client, endpoint_id, first=50)
        nodes = [e["node"] for e in page["deliveries"]["edges"]]
        if len(nodes) == count and all(done(n) for n in nodes):
            return nodes
        await asyncio.sleep(0.05)
    raise AssertionError(f"deliveries never settled: {nodes}")


def succeeded(node: dict[str, Any]) -> bool:
    return bool(node["state"] == "SUCCEEDED")


async def arrived(receiver: Receiver, url: str, count: int) -> list[Received]:
    for _ in range(400):
        found = receiver.at(url)
        if len(found) >= count:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"{url} received {len(receiver.at(url))}, not {count}")


def signed_by(secret: str, delivery: Received) -> bool:
    """Whether the Standard Webhooks reference library accepts the delivery under ``secret``
    (its own tolerance: the timestamp within 5 minutes)."""
    try:
        Webhook(secret).verify(delivery.body, dict(delivery.headers))
    except WebhookVerificationError:
        return False
    return True


def verified(secret: str, delivery: Received) -> dict[str, Any]:
    """The payload of a delivery that verifies with ``secret``."""
    assert signed_by(secret, delivery), delivery.headers
    return delivery.payload


async def delivered_message(client: GraphQLClient, body: str) -> dict[str, Any]:
    message = accepted(await send(client, sms(body)))
    await wait_for_status(client, message["id"], "DELIVERED")
    found: dict[str, Any] = (await client.execute(MESSAGE, {"id": message["id"]}))["message"]
    return found


# --- endpoints --------------------------------------------------------------------------------


async def test_an_endpoint_is_managed_and_its_secret_is_shown_once_and_sealed(
    hooks: RunningGateway, receiver: Receiver
) -> None:
    client = await hooks.new_client()
    url = receiver.endpoint()
    endpoint, secret = await created(
        client, url, description="orders", eventKinds=["delivery_receipt"], statuses=["DELIVERED"]
    )
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
    assert endpoint["id"].startswith("whe_") and endpoint["url"] == url
    assert endpoint["eventKinds"] == ["delivery_receipt"] and endpoint["statuses"] == ["DELIVERED"]
    assert endpoint["enabled"] is True and endpoint["disabledReason"] is None
    second, _ = await created(client, receiver.endpoint())

    first_page = (await client.execute(LIST, {"first": 1}))["webhookEndpoints"]
    assert [e["node"]["id"] for e in first_page["edges"]] == [second["id"]]
    assert first_page["pageInfo"]["hasNextPage"] is True
    rest = await client.execute(LIST, {"first": 5, "after": first_page["pageInfo"]["endCursor"]})
    assert [e["node"]["id"] for e in rest["webhookEndpoints"]["edges"]] == [endpoint["id"]]

    changed = (
        await client.execute(
            UPDATE, {"id": endpoint["id"], "input": {"eventKinds": [], "description": "all"}}
        )
    )["updateWebhookEndpoint"]
    assert changed["eventKinds"] == [] and changed["statuses"] == ["DELIVERED"]
    assert changed["description"] == "all" and changed["url"] == url

    disabled = await simple(client, "disableWebhookEndpoint", endpoint["id"])
    assert disabled["enabled"] is False and disabled["disabledReason"] == "MANUAL"
    enabled = await simple(client, "enableWebhookEndpoint", endpoint["id"])
    assert enabled["enabled"] is True and enabled["disabledReason"] is None

    rotated = (await client.execute(ROTATE, {"id": endpoint["id"]}))["rotateWebhookSecret"]
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != secret
    overlap = datetime.fromisoformat(rotated["endpoint"]["previousSecretExpiresAt"])
    assert timedelta(hours=23) < overlap - datetime.now(UTC) <= timedelta(hours=24)

    # Neither secret is in the database as given: sealed with WEBHOOK_SECRETS_KEY.
    async with hooks.container.engine.connect() as conn:
        row = (
            await conn.execute(
                select(ENDPOINTS.c.secret, ENDPOINTS.c.previous_secret).where(
                    ENDPOINTS.c.id == decode_uuid(endpoint["id"], "WebhookEndpoint")
                )
            )
        ).one()
    stored = " ".join(row)
    assert row.secret.startswith("fernet:") and row.previous_secret.startswith("fernet:")
    for plain in (secret, rotated["secret"]):
        assert plain not in stored and plain.removeprefix("whsec_") not in stored

    # Another account sees none of it.
    other = await hooks.new_client()
    assert (await other.execute(ONE, {"id": endpoint["id"]}))["webhookEndpoint"] is None
    for name in ("disableWebhookEndpoint", "deleteWebhookEndpoint"):
        assert (await simple(other, name, endpoint["id"]))["__typename"] == "NotFound"
    assert (await other.execute(ROTATE, {"id": endpoint["id"]}))["rotateWebhookSecret"] == {
        "__typename": "NotFound",
        "id": endpoint["id"],
    }

    deleted = await simple(client, "deleteWebhookEndpoint", endpoint["id"])
    assert deleted["__typename"] == "WebhookEndpoint" and deleted["id"] == endpoint["id"]
    assert (await simple(client, "deleteWebhookEndpoint", endpoint["id"]))[
        "__typename"
    ] == "NotFound"
    assert (await client.execute(ONE, {"id": endpoint["id"]}))["webhookEndpoint"] is None


async def test_bad_endpoint_input_is_refused_per_field(
    hooks: RunningGateway, receiver: Receiver
) -> None:
    client = await hooks.new_client()
    result = await create(client, "ftp://127.0.0.1/hook", eventKinds=["sent,failed", "Nope"])
    assert result["__typename"] == "InvalidInput"
    assert sorted(p["field"] for p in result["problems"]) == ["eventKinds", "url"]
    assert (await client.execute(LIST))["webhookEndpoints"]["edges"] == []


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/hook",
        "https://127.0.0.1/hook",
        "https://[::1]/hook",
        "https://[::ffff:10.0.0.1]/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://localhost/hook",
        "https://user:pw@example.com/hook",
    ],
)
async def test_by_default_only_https_to_public_addresses_is_accepted(
    client: GraphQLClient, url: str
) -> None:
    result = await create(client, url)
    assert result["__typename"] == "InvalidInput", result
    assert [p["field"] for p in result["problems"]] == ["url"]


# --- deliveries -------------------------------------------------------------------------------


async def test_every_wanted_event_arrives_signed_in_the_documented_shape(
    hooks: RunningGateway, receiver: Receiver
) -> None:
    client = await hooks.new_client()
    everything, secret = await created(client, receiver.endpoint())
    only_delivered, other_secret = await created(
        client, receiver.endpoint(), statuses=["DELIVERED"]
    )
    message = await delivered_message(client, "signed")
    events = message["events"]
    assert events[-1]["kind"] == "delivery_receipt"

    got = await arrived(receiver, everything["url"], len(events))
    payloads = [verified(secret, r) for r in got]
    assert sorted((p["data"]["cursor"] for p in payloads), key=int) == [e["cursor"] for e in events]
    by_cursor = {p["data"]["cursor"]: (p, r) for p, r in zip(payloads, got, strict=True)}
    for event in events:
        payload, request = by_cursor[event["cursor"]]
        assert payload["type"] == f"message.{event['kind']}"
        assert payload["data"]["status"] == event["status"]
        assert payload["data"]["kind"] == event["kind"]
        assert payload["data"]["messageId"] == message["id"]
        assert payload["data"]["conversationId"] == message["conversation"]["id"]
        assert datetime.fromisoformat(payload["timestamp"]).tzinfo is not None
        assert request.webhook_id == f"evt_{event['cursor']}"
        assert request.headers["content-type"] == "application/json"
        # Signed with this endpoint's secret only.
        assert not signed_by(other_secret, request)

    [only] = await arrived(receiver, only_delivered["url"], 1)
    assert verified(other_secret, only)["data"]["status"] == "DELIVERED"

    nodes = await settled(client, everything["id"], len(events), succeeded)
    assert [n["event"]["cursor"] for n in nodes] == [e["cursor"] for e in reversed(events)]
    assert all(n["attempts"] == 1 and n["lastStatusCode"] == 200 for n in nodes)
    assert all(n["lastError"] is None and n["nextAttemptAt"] is None for n in nodes)
    page = await deliveries(client, everything["id"], first=1)
    assert page["deliveries"]["pageInfo"]["hasNextPage"] is True
    after = await deliveries(
        client, everything["id"], first=50, after=page["deliveries"]["pageInfo"]["endCursor"]
    )
    assert [e["node"]["id"] for e in after["deliveries"]["edges"]] == [n["id"] for n in nodes[1:]]
    assert len(receiver.at(only_delivered["url"])) == 1


async def test_an_inbound_message_is_delivered_too(
    hooks: RunningGateway, receiver: Receiver
) -> None:
    client = await hooks.new_client()
    account = await hooks.container.accounts.ensure_account(client.account, datetime.now(UTC))
    ours, theirs = new_number(), new_number()
    await hooks.container.webhook_repo.add_address(account.id, ours, datetime.now(UTC))
    endpoint, secret = await created(client, receiver.endpoint(), eventKinds=["received"])
    params = inbound_params(theirs, ours, "a reply")
    path = "/webhooks/twilio/messages"
    settings = hooks.container.settings
    signature = twilio_signature(
        settings.twilio_auth_token, settings.public_base_url + path, params
    )
    response = await hooks.http.post(
        hooks.base_url + path,
        content=urlencode(params).encode(),
        headers={"Content-Type": FORM, TWILIO_SIGNATURE_HEADER: signature},
    )
    assert response.status_code == 200, response.text
    [request] = await arrived(receiver, endpoint["url"], 1)
    payload = verified(secret, request)
    assert payload["type"] == "message.received"
    assert payload["data"]["status"] == "RECEIVED" and payload["data"]["messageId"].startswith(
        "msg_"
    )


async def test_during_a_rotation_both_secrets_sign_each_delivery(
    hooks: RunningGateway, receiver: Receiver
) -> None:
    client = await hooks.new_client()
    endpoint, old = await created(client, receiver.endpoint(), eventKinds=["accepted"])
    rotated = (await client.execute(ROTATE, {"id": endpoint["id"]}))["rotateWebhookSecret"]
    new = rotated["secret"]
    accepted(await send(client, sms("rotated")))
    [request] = await arrived(receiver, endpoint["url"], 1)
    assert len(request.headers["webhook-signature"].split()) == 2
    assert verified(old, request) == verified(new, request)
    assert verified(new, request)["type"] == "message.accepted"


#: The patient gateway's tries in flight per endpoint.
PATIENT_CAP = 2


@pytest.fixture(scope="module", params=["postgresql"])
async def patient(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningGateway]:
    """A gateway whose deliveries wait long for their answers: a held try stays held for the
    whole test, so what happens meanwhile cannot have waited for it to time out."""
    backend, settings = backend_settings(request, tmp_path_factory, "patient")
    settings.webhook_allow_private_urls = True
    settings.webhook_timeout_seconds = 300.0
    settings.webhook_endpoint_concurrency = PATIENT_CAP
    settings.webhook_poll_interval = 0.05
    async with (
        serve(settings) as (base_url, container),
        loopback_client(timeout=30) as http,
    ):
        yield RunningGateway(backend, base_url, container, http)


async def test_an_endpoint_that_never_answers_holds_up_neither_messages_nor_another_account(
    patient: RunningGateway, receiver: Receiver
) -> None:
    cap = PATIENT_CAP
    receiver.gate = asyncio.Event()
    stuck_client, other_client = await patient.new_client(), await patient.new_client()
    stuck_url, other_url = receiver.endpoint(always=HOLD), receiver.endpoint()
    stuck, _ = await created(stuck_client, stuck_url)
    _, other_secret = await created(other_client, other_url)
    stuck_path = stuck_url.removeprefix(receiver.base_url)
    try:
        # The account's own messages are delivered while its endpoint holds every try open,
        # and no more tries than the endpoint's cap are open at once.
        held = [await delivered_message(stuck_client, f"held {n}") for n in range(3)]
        waiting = sum(len(m["events"]) for m in held)
        assert waiting > cap
        for _ in range(400):
            if receiver.holding.get(stuck_path) == cap:
                break
            await asyncio.sleep(0.05)
        assert receiver.holding.get(stuck_path) == cap, receiver.holding
        # Another account's events all arrive, signed, while those tries are still open: none
        # of them ended (the gate is shut and the timeout far away), so nothing waited for them.
        mine = await delivered_message(other_client, "not held")
        got = await arrived(receiver, other_url, len(mine["events"]))
        assert {verified(other_secret, r)["data"]["messageId"] for r in got} == {mine["id"]}
        assert receiver.holding[stuck_path] == cap
        assert len(receiver.at(stuck_url)) == cap
    finally:
        receiver.gate.set()
    # Answered at last: every event of the stuck account reaches its endpoint once.
    nodes = await settled(stuck_client, stuck["id"], waiting, succeeded)
    assert len(nodes) == waiting
    assert len({r.webhook_id for r in await arrived(receiver, stuck_url, waiting)}) == waiting


async def test_failed_tries_are_retried_under_the_same_id_and_redirects_are_not_followed(
    hooks: RunningGateway, receiver: Receiver
) -> None:
    client = await hooks.new_client()
    url = receiver.endpoint(500, SLOW, 302)
    endpoint, secret = await created(client, url, eventKinds=["accepted"])
    followed = len(receiver.at(receiver.base_url + "/ok"))
    accepted(await send(client, sms("retried")))
    [node] = await settled(client, endpoint["id"], 1, succeeded)
    assert node["attempts"] == 4 and node["lastStatusCode"] == 200
    tries = receiver.at(url)
    assert len(tries) == 4
    assert {t.webhook_id for t in tries} == {f"evt_{node['event']['cursor']}"}
    assert all(verified(secret, t)["data"]["cursor"] == node["event"]["cursor"] for t in tries)
    assert len(receiver.at(receiver.base_url + "/ok")) == followed
    # The success ended its failing streak.
    found = (await client.execute(ONE, {"id": endpoint["id"]}))["webhookEndpoint"]
    assert found["failingSince"] is None and found["enabled"] is True


async def test_exhausted_deliveries_fail_and_are_sent_again_on_request(
    hooks: RunningGateway, receiver: Receiver
) -> None:
    client = await hooks.new_client()
    started = datetime.now(UTC) - timedelta(seconds=1)
    url = receiver.endpoint(always=500)
    endpoint, secret = await created(client, url, eventKinds=["accepted"])
    accepted(await send(client, sms("exhausted")))
    [node] = await settled(client, endpoint["id"], 1, lambda n: n["state"] == "FAILED")
    assert node["attempts"] == 4 and node["lastStatusCode"] == 500
    # The answer's body is kept cut short.
    assert node["lastError"].startswith("xxx") and len(node["lastError"]) <= 1024
    failing = (await client.execute(ONE, {"id": endpoint["id"]}))["webhookEndpoint"]
    assert failing["failingSince"] is not None and failing["enabled"] is True

    receiver.always[url.removeprefix(receiver.base_url)] = 200
    again = (
        await client.execute(REDELIVER_FAILED, {"id": endpoint["id"], "since": started.isoformat()})
    )["redeliverFailedWebhooks"]
    assert again == {"__typename": "WebhookDeliveriesRedelivered", "count": 1}
    [node] = await settled(client, endpoint["id"], 1, succeeded)
    assert node["attempts"] == 1
    assert (await client.execute(ONE, {"id": endpoint["id"]}))["webhookEndpoint"][
        "failingSince"
    ] is None

    one = (await client.execute(REDELIVER, {"id": node["id"]}))["redeliverWebhook"]
    assert one["__typename"] == "WebhookDelivery" and one["id"] == node["id"]
    await arrived(receiver, url, 6)
    [node] = await settled(client, endpoint["id"], 1, succeeded)
    tries = receiver.at(url)
    assert {t.webhook_id for t in tries} == {f"evt_{node['event']['cursor']}"}
    verified(secret, tries[-1])
    # Nothing of another account's, and nothing that is not a delivery id.
    other = await hooks.new_client()
    assert (await other.execute(REDELIVER, {"id": node["id"]}))["redeliverWebhook"][
        "__typename"
    ] == "NotFound"
    assert (await client.execute(REDELIVER, {"id": "whd_x"}))["redeliverWebhook"][
        "__typename"
    ] == "NotFound"


async def test_an_endpoint_answering_410_is_disabled_and_gets_nothing_more(
    hooks: RunningGateway, receiver: Receiver
) -> None:
    client = await hooks.new_client()
    url = receiver.endpoint(410)
    endpoint, _ = await created(client, url, eventKinds=["accepted"])
    accepted(await send(client, sms("gone")))
    [node] = await settled(client, endpoint["id"], 1, lambda n: n["state"] == "FAILED")
    assert node["attempts"] == 1 and node["lastStatusCode"] == 410
    found = (await client.execute(ONE, {"id": endpoint["id"]}))["webhookEndpoint"]
    assert found["enabled"] is False and found["disabledReason"] == "GONE"
    assert found["disabledAt"] is not None
    assert await endpoint_events(client, endpoint["id"]) == [
        ("DISABLED", "GONE"),
        ("CREATED", None),
    ]
    # Events while it is disabled are not its business.
    accepted(await send(client, sms("after gone")))
    page = await deliveries(client, endpoint["id"])
    assert len(page["deliveries"]["edges"]) == 1
    assert len(receiver.at(url)) == 1


async def test_an_endpoint_failing_for_too_long_is_disabled(
    hooks: RunningGateway, receiver: Receiver
) -> None:
    client = await hooks.new_client()
    url = receiver.endpoint(always=503)
    endpoint, _ = await created(client, url, eventKinds=["accepted"])
    # As if it had been failing for six days (WEBHOOK_DISABLE_AFTER_SECONDS: five).
    async with hooks.container.engine.begin() as conn:
        await conn.execute(
            update(ENDPOINTS)
            .where(ENDPOINTS.c.id == decode_uuid(endpoint["id"], "WebhookEndpoint"))
            .values(failing_since=datetime.now(UTC) - timedelta(days=6))
        )
    accepted(await send(client, sms("failing")))
    for _ in range(400):
        found = (await client.execute(ONE, {"id": endpoint["id"]}))["webhookEndpoint"]
        if not found["enabled"]:
            break
        await asyncio.sleep(0.05)
    assert found["enabled"] is False and found["disabledReason"] == "FAILING"
    assert (await endpoint_events(client, endpoint["id"]))[0] == ("DISABLED", "FAILING")
    # Its delivery waits, due, for the endpoint to be enabled again.
    [node] = (await deliveries(client, endpoint["id"]))["deliveries"]["edges"]
    assert node["node"]["state"] == "PENDING" and node["node"]["attempts"] == 1
    receiver.always[url.removeprefix(receiver.base_url)] = 200
    assert (await simple(client, "enableWebhookEndpoint", endpoint["id"]))["enabled"] is True
    [done] = await settled(client, endpoint["id"], 1, succeeded)
    assert done["attempts"] == 2
    assert await endpoint_events(client, endpoint["id"]) == [
        ("ENABLED", None),
        ("DISABLED", "FAILING"),
        ("CREATED", None),
    ]


async def test_an_endpoint_s_event_log_records_each_change_newest_first_in_pages(
    hooks: RunningGateway, receiver: Receiver
) -> None:
    client = await hooks.new_client()
    endpoint, _ = await created(client, receiver.endpoint(), eventKinds=["accepted"])
    endpoint_id = endpoint["id"]
    updated = await client.execute(UPDATE, {"id": endpoint_id, "input": {"description": "d"}})
    assert updated["updateWebhookEndpoint"]["__typename"] == "WebhookEndpoint"
    assert (await client.execute(ROTATE, {"id": endpoint_id}))["rotateWebhookSecret"][
        "__typename"
    ] == "WebhookSecretRotated"
    assert (await simple(client, "disableWebhookEndpoint", endpoint_id))["enabled"] is False
    assert (await simple(client, "enableWebhookEndpoint", endpoint_id))["enabled"] is True
    # A refused change changes nothing, and logs nothing.
    refused = await client.execute(UPDATE, {"id": endpoint_id, "input": {"url": "ftp://x"}})
    assert refused["updateWebhookEndpoint"]["__typename"] == "InvalidInput"
    assert await endpoint_events(client, endpoint_id) == [
        ("ENABLED", None),
        ("DISABLED", "MANUAL"),
        ("SECRET_ROTATED", None),
        ("UPDATED", None),
        ("CREATED", None),
    ]

    # Keyset pages: ids are the cursors, and no entry is seen twice or skipped.
    kinds: list[str] = []
    after: str | None = None
    while True:
        page = (await client.execute(EVENTS, {"id": endpoint_id, "first": 2, "after": after}))[
            "webhookEndpoint"
        ]["events"]
        assert all(e["cursor"] == e["node"]["id"] for e in page["edges"])
        assert all(e["node"]["id"].startswith("whev_") for e in page["edges"])
        kinds += [e["node"]["kind"] for e in page["edges"]]
        assert page["pageInfo"]["hasPreviousPage"] is (after is not None)
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert kinds == ["ENABLED", "DISABLED", "SECRET_ROTATED", "UPDATED", "CREATED"]

    # Another account sees none of it; a bad cursor is refused.
    other = await hooks.new_client()
    assert (await other.execute(EVENTS, {"id": endpoint_id}))["webhookEndpoint"] is None
    bad = (await client.post(EVENTS, {"id": endpoint_id, "after": "whd_1"})).json()
    assert bad["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", bad
    # The log goes with the endpoint.
    assert (await simple(client, "deleteWebhookEndpoint", endpoint_id))["id"] == endpoint_id


async def test_the_connection_goes_only_to_addresses_the_check_accepted(
    receiver: Receiver,
) -> None:
    """The check runs inside the resolver the connection uses: a name whose addresses are
    refused is never connected to, whatever it resolved to before."""
    seen: list[list[ipaddress.IPv4Address | ipaddress.IPv6Address]] = []

    def refuse(addresses: list[ipaddress.IPv4Address | ipaddress.IPv6Address]) -> None:
        seen.append(addresses)
        raise UnsafeUrl("refused by the test")

    session = ProviderSession(
        max_connections=2, connect_timeout=2, read_timeout=2, check_addresses=refuse
    )
    poster = WebhookPoster(session, allow_private=True)
    target = receiver.endpoint()
    url = target.replace("127.0.0.1", "localhost")
    event = MessageEvent(
        id=1,
        account_id=uuid.uuid4(),
        message_id=uuid.uuid4(),
        conversation_id=uuid.uuid4(),
        status=MessageStatus.SENT,
        kind="provider_accepted",
        detail=None,
        occurred_at=datetime.now(UTC),
    )
    try:
        with pytest.raises(UnsafeUrl):
            await poster.send(url, webhook_id="evt_1", secrets=["whsec_" + "A" * 44], event=event)
    finally:
        with contextlib.suppress(Exception):
            await session.aclose()
    assert seen and ipaddress.ip_address("127.0.0.1") in seen[0]
    assert receiver.at(target) == []


# --- the Node example -------------------------------------------------------------------------

NODE_EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "verify-webhook.mjs"


@contextlib.asynccontextmanager
async def node_receiver(node: str, secret: str) -> AsyncIterator[tuple[str, asyncio.StreamReader]]:
    """The README's Node receiver on a free loopback port: its URL and the lines it prints."""
    process = await asyncio.create_subprocess_exec(
        node,
        str(NODE_EXAMPLE),
        env={**os.environ, "WEBHOOK_SECRET": secret, "PORT": "0", "HOST": "127.0.0.1"},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    try:
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        assert line.startswith("listening on http://127.0.0.1:"), line
        yield line.split()[-1], process.stdout
    finally:
        process.kill()
        await process.wait()


async def printed(lines: asyncio.StreamReader) -> str:
    return (await asyncio.wait_for(lines.readline(), 30)).decode().strip()


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
async def test_the_node_example_accepts_our_deliveries_and_rejects_tampered_or_old_ones(
    hooks: RunningGateway, receiver: Receiver
) -> None:
    node = shutil.which("node")
    assert node is not None
    client = await hooks.new_client()
    endpoint, secret = await created(client, receiver.endpoint(), eventKinds=["accepted"])
    # A delivery exactly as the gateway sent it, caught by the Python receiver.
    accepted(await send(client, sms("caught")))
    [caught] = await arrived(receiver, endpoint["url"], 1)
    async with node_receiver(node, secret) as (url, lines):
        # The gateway delivers to the example itself: it answers 204 only to what verifies.
        moved = await client.execute(UPDATE, {"id": endpoint["id"], "input": {"url": url + "/in"}})
        assert moved["updateWebhookEndpoint"]["url"] == url + "/in"
        accepted(await send(client, sms("straight")))
        nodes = await settled(client, endpoint["id"], 2, succeeded)
        assert nodes[0]["attempts"] == 1 and nodes[0]["lastStatusCode"] == 204
        assert (
            await printed(lines) == f"accepted evt_{nodes[0]['event']['cursor']} message.accepted"
        )

        async def replay(body: bytes, headers: dict[str, str]) -> tuple[int, str]:
            answer = await hooks.http.post(url + "/in", content=body, headers=headers)
            return answer.status_code, await printed(lines)

        headers = {k: v for k, v in caught.headers.items() if k.startswith("webhook-")}
        assert await replay(caught.body, headers) == (
            204,
            f"accepted {caught.webhook_id} message.accepted",
        )
        tampered = caught.body.replace(b'"status":"QUEUED"', b'"status":"FAILED"')
        assert tampered != caught.body
        assert await replay(tampered, headers) == (400, "rejected no signature matches")
        # Signed by our code with the right secret, but ten minutes ago.
        old = signed_headers(caught.webhook_id, [secret], caught.body, int(time.time()) - 600)
        assert await replay(caught.body, old) == (400, "rejected timestamp outside the tolerance")
        fresh = signed_headers(caught.webhook_id, [secret], caught.body, int(time.time()))
        assert (await replay(caught.body, fresh))[0] == 204
