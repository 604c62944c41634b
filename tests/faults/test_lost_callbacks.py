"""Status callbacks lost: the provider took every message, but none of its callbacks arrives.

Every Twilio status callback goes to a URL that answers 503, every SendGrid event too, and the
vendor gives up after a couple of tries, as vendors do. Nothing will ever tell the gateway what
became of these messages unless it asks: reconciliation must look them up through the vendors'
fetch APIs and settle every one of them, without sending any of them again.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from harness.servers import free_port
from tests.faults.scenario import (
    FAST_RECONCILIATION,
    FaultReport,
    FaultStack,
    prepare,
    settle,
    statuses_or_none,
)
from tests.integration.traffic import mixed

pytestmark = [pytest.mark.fault]

MESSAGES = 40
CALLBACK_ATTEMPTS = 2


class Refuser:
    """A webhook receiver that is down: answers 503 to everything, and counts."""

    def __init__(self) -> None:
        self.port = free_port()
        self.hits = 0
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> Refuser:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                await reader.readexactly(length)
                self.hits += 1
                writer.write(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                    b"Connection: close\r\n\r\n"
                )
                await writer.drain()
                break
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.mark.timeout(240)
async def test_lost_callbacks_are_reconciled(
    fault_stack: FaultStack, fault_report: FaultReport
) -> None:
    pipe = fault_stack.pipe
    async with Refuser() as refuser:
        # The workers tell Twilio to call back where nobody answers; SendGrid posts its
        # events there too.
        workers = FAST_RECONCILIATION | {"PUBLIC_BASE_URL": refuser.url}
        account = await prepare(fault_stack, [workers, workers])
        assert pipe.sandbox is not None
        pipe.sandbox.config.callback_attempts = CALLBACK_ATTEMPTS
        await pipe.sandbox_configure(event_webhook_url=refuser.url + "/webhooks/sendgrid/events")

        sent = await pipe.send_many(0, account, [mixed(i, "lost") for i in range(MESSAGES // 2)])
        sent += await pipe.send_many(
            1, account, [mixed(i, "lost") for i in range(MESSAGES // 2, MESSAGES)]
        )
        ids = [s.id for s in sent]
        # Lost for good once the provider took every message and gave up on every callback.
        deadline = time.monotonic() + 60
        while True:
            calls = await pipe.accepted_calls(ids)
            callbacks = list(pipe.sandbox.callbacks)
            given_up = [
                c for c in callbacks if c.get("error") and c["attempts"] >= CALLBACK_ATTEMPTS
            ]
            if all(calls.values()) and callbacks and len(given_up) == len(callbacks):
                break
            assert time.monotonic() < deadline, (
                f"the provider did not take every message, or callbacks kept going: "
                f"{sum(1 for c in calls.values() if c)} of {len(ids)} taken, "
                f"{len(given_up)} of {len(callbacks)} callbacks given up"
            )
            await asyncio.sleep(0.25)
        lost = time.monotonic()
        before = await statuses_or_none(pipe, ids) or {}
        settled = await settle(pipe, ids, within=90)

    fault_report.took("all_terminal_after_callbacks_lost", lost, settled)
    fault_report.note(
        accepted=len(ids),
        callbacks_lost=len(given_up),
        refused_posts=refuser.hits,
        statuses_when_lost={s: list(before.values()).count(s) for s in set(before.values())},
    )
    await fault_report.judge(pipe, ids, answers_may_be_lost=False)
    fault_report.check(pipe)
