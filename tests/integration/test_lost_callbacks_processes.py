"""Callbacks that cannot be applied when they arrive, with real processes only.

The production shape of ``processes.py`` (two API processes, two workers, a standalone
sandbox) on a PostgreSQL server of this module's own, which the first test stops and starts
again. The sandbox tries each callback once only, so nothing but the gateway's own recovery
can settle a message:

1. PostgreSQL is down while the callbacks arrive: the APIs keep the verified payloads in the
   Redis spool and answer 2xx, so the provider does not retry; once PostgreSQL is back, the
   workers replay them and every message is DELIVERED. A payload with a wrong signature is
   refused and never kept.
2. The callbacks never arrive at all: the workers look the messages up at the provider after
   RECONCILE_AFTER_SECONDS and settle them; a message the provider does not know keeps its
   status.

Everything listens on loopback; no timing is asserted, every wait polls with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from typing import Any
from urllib.parse import urlencode

import pytest
from redis.asyncio import Redis

from harness.pipeline import SEND_MANY, Account, Pipeline, Sent, uuid_of
from harness.servers import PostgresServer
from providers.signatures import TWILIO_SIGNATURE_HEADER
from tests.integration.traffic import email, log_events, sms, trail_problems
from workers.webhook_spool import SPOOL

UNKNOWN_RECIPIENT = "+14155559876"


@contextlib.asynccontextmanager
async def single_attempt_callbacks(pipe: Pipeline) -> AsyncIterator[asyncio.Event]:
    """A provider that never retries a callback (whatever is refused is lost), and that holds
    its callbacks until the returned event is set."""
    sandbox = pipe.sandbox
    assert sandbox is not None
    attempts, deliver = sandbox.config.callback_attempts, sandbox.deliver
    release = asyncio.Event()

    async def held(*args: Any, **kwargs: Any) -> bool:
        await release.wait()
        return await deliver(*args, **kwargs)

    sandbox.config.callback_attempts = 1
    sandbox.deliver = held  # type: ignore[method-assign]
    try:
        yield release
    finally:
        release.set()
        sandbox.config.callback_attempts = attempts
        sandbox.deliver = deliver  # type: ignore[method-assign]


async def statuses_once_up(pipe: Pipeline, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
    """Statuses, through connections the database restart may have broken (they fail once)."""
    for _ in range(20):
        with contextlib.suppress(Exception):
            return await pipe.statuses(ids)
        await asyncio.sleep(0.25)
    return await pipe.statuses(ids)


async def wait_sent(pipe: Pipeline, ids: list[uuid.UUID]) -> None:
    await pipe.wait_until(ids, {"SENT", "DELIVERED"}.__contains__, within=60, what="SENT")


async def wait_callbacks_answered(pipe: Pipeline, expected: int, within: float) -> None:
    assert pipe.sandbox is not None
    deadline = time.monotonic() + within
    while True:
        callbacks = list(pipe.sandbox.callbacks)
        answered = [c for c in callbacks if c["http_status"] is not None or c["error"]]
        if len(answered) >= expected:
            return
        assert time.monotonic() < deadline, (
            f"{len(answered)} of {expected} callbacks answered{pipe.diagnostics()}"
        )
        await asyncio.sleep(0.1)


async def spool_length(pipe: Pipeline) -> int:
    redis: Redis = pipe.redis()
    try:
        return int(await redis.xlen(SPOOL))
    finally:
        await redis.aclose()


async def send(
    pipe: Pipeline, api: int, account: Account, messages: list[dict[str, Any]]
) -> list[Sent]:
    """``send_many``, retried as the answer asks while an API process still finds broken
    connections in its pool after the database restart."""
    for _ in range(50):
        response = await pipe.graphql(api, account, SEND_MANY, {"inputs": messages})
        body = response.json()
        if response.status_code == 503 and body["errors"][0]["extensions"]["code"] == "UNAVAILABLE":
            await asyncio.sleep(0.2)
            continue
        assert response.status_code == 200 and "errors" not in body, body
        results = body["data"]["sendMessages"]
        assert {r["__typename"] for r in results} == {"MessageAccepted"}, results
        return [
            Sent(uuid_of(r["message"]["id"]), api, m["channel"])
            for r, m in zip(results, messages, strict=True)
        ]
    raise AssertionError(f"API {api} stayed unavailable{pipe.diagnostics()}")


async def check_trails(pipe: Pipeline, sent: list[Sent]) -> dict[uuid.UUID, list[dict[str, Any]]]:
    trails = await pipe.trails(s.id for s in sent)
    problems = {k: trail_problems(v) for k, v in trails.items() if trail_problems(v)}
    assert not problems, problems
    calls = await pipe.accepted_calls(s.id for s in sent)
    assert set(calls.values()) == {1}, f"sent to the provider more than once: {calls}"
    return trails


@pytest.mark.timeout(240)
async def test_callbacks_during_a_database_outage_are_kept_and_applied_when_it_is_back(
    own_pipeline: Pipeline, own_postgres: PostgresServer
) -> None:
    pipe = own_pipeline
    await pipe.ensure()
    await pipe.sandbox_reset()
    account = await pipe.new_account()
    async with single_attempt_callbacks(pipe) as release_callbacks:
        sent = await pipe.send_many(0, account, [sms(i, "outage") for i in range(8)])
        sent += await pipe.send_many(1, account, [email(i, "outage") for i in range(4)])
        ids = [s.id for s in sent]
        await wait_sent(pipe, ids)
        assert pipe.sandbox is not None

        await asyncio.to_thread(own_postgres.stop_process)
        release_callbacks.set()
        try:
            # Two status callbacks per SMS (sent, delivered), one event batch per e-mail.
            await wait_callbacks_answered(pipe, 8 * 2 + 4, within=60)
            kept = await spool_length(pipe)
            assert kept > 0, f"nothing was spooled{pipe.diagnostics()}"

            # A forged callback is refused, and never kept, database or not.
            forged = {"MessageSid": "SM" + "f" * 32, "MessageStatus": "delivered"}
            response = await pipe.http.post(
                pipe.api_url(0) + "/webhooks/twilio/status",
                content=urlencode(forged).encode(),
                headers={
                    "Content-Type": "application/x-www-form-urlencoded",
                    TWILIO_SIGNATURE_HEADER: "bm90IGEgc2lnbmF0dXJl",
                },
            )
            assert response.status_code == 403, response.text
            assert await spool_length(pipe) == kept
        finally:
            await asyncio.to_thread(own_postgres.restart)
        restarted = time.monotonic()

        callbacks = list(pipe.sandbox.callbacks)
        # The provider was answered 2xx at once: it had nothing to retry.
        assert [c for c in callbacks if c["attempts"] != 1 or c["error"]] == [], callbacks
        assert {c["http_status"] for c in callbacks} <= {200, 202, 204}, callbacks

        deadline = time.monotonic() + 90
        while (statuses := await statuses_once_up(pipe, ids)) and set(statuses.values()) != {
            "DELIVERED"
        }:
            assert time.monotonic() < deadline, f"{statuses}{pipe.diagnostics()}"
            await asyncio.sleep(0.25)
    # Reported, not asserted: how long the replay took once PostgreSQL was back.
    print(f"all {len(ids)} DELIVERED {time.monotonic() - restarted:.1f}s after the restart")
    assert await spool_length(pipe) == 0
    await check_trails(pipe, sent)


@pytest.mark.timeout(180)
async def test_lost_callbacks_are_settled_by_looking_the_messages_up(
    own_pipeline: Pipeline,
) -> None:
    pipe = own_pipeline
    # Connections of ours that a database restart before this test broke: drop them.
    await pipe.engine.dispose()
    await pipe.ensure(RECONCILE_AFTER_SECONDS="1", LOG_LEVEL="INFO")
    await pipe.sandbox_reset()
    await pipe.sandbox_configure(
        lose_callbacks=True,
        undeliverable_recipients=[sms(1)["to"]],
        bounce_recipients=[email(1)["to"]],
    )
    sandbox = pipe.sandbox
    assert sandbox is not None
    # A provider that has forgotten one message (its retention ended, say): 20404 on lookup.
    remember = sandbox.remember

    def forgetful(vendor: str, vendor_id: str, resource: dict[str, Any]) -> None:
        if resource.get("to") != UNKNOWN_RECIPIENT:
            remember(vendor, vendor_id, resource)

    sandbox.remember = forgetful  # type: ignore[method-assign]
    try:
        account = await pipe.new_account()
        started = time.monotonic()
        sent = await send(pipe, 0, account, [sms(i, "lost") for i in range(6)])
        sent += await send(pipe, 1, account, [email(i, "lost") for i in range(4)])
        [unknown] = await send(pipe, 0, account, [{**sms(0, "unknown"), "to": UNKNOWN_RECIPIENT}])
        expected = {s.id: "DELIVERED" for s in sent}
        expected[sent[1].id] = "UNDELIVERED"
        expected[sent[7].id] = "FAILED"  # email(1), the bouncing one
        await pipe.wait_until(
            expected,
            lambda status: status in {"DELIVERED", "UNDELIVERED", "FAILED"},
            within=60,
            what="settled",
        )
        assert await pipe.statuses(expected) == expected
        # Reported, not asserted: send to settled, with RECONCILE_AFTER_SECONDS=1.
        print(f"all {len(expected)} settled {time.monotonic() - started:.1f}s after sending")
        deadline = time.monotonic() + 30
        while "reconcile_message_unknown" not in log_events(pipe.worker_logs()):
            assert time.monotonic() < deadline, pipe.diagnostics()
            await asyncio.sleep(0.2)
    finally:
        sandbox.remember = remember  # type: ignore[method-assign]
        await pipe.sandbox_configure(
            lose_callbacks=False, undeliverable_recipients=[], bounce_recipients=[]
        )
    assert (await pipe.statuses([unknown.id]))[unknown.id] == "SENT"
    assert {c["error"] for c in sandbox.callbacks} <= {"lost"}

    trails = await check_trails(pipe, sent)
    for message_id, status in expected.items():
        settled = [e for e in trails[message_id] if e["kind"] == "reconciled"]
        assert [e["status"] for e in settled] == [status], trails[message_id]
    # One log line per settled message.
    assert log_events(pipe.worker_logs()).count("message_reconciled") == len(expected)
