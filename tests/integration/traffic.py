"""What the tests send through a pipeline of real processes (``harness.pipeline``) and what
they check in what comes back: messages to send, a subscriber that follows one account's
events across reconnects, and the invariants every audit trail must keep."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import time
import uuid
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import websockets

from gateway.domain.reports import KIND_THROUGHPUT_REQUEUED
from gateway.domain.statuses import TERMINAL, MessageStatus, rank
from harness.pipeline import uuid_of

EVENTS_SUBSCRIPTION = """
subscription Events($after: String) {
  messageEvents(after: $after) { cursor kind status messageId }
}
"""

AMBIGUOUS_KINDS = frozenset({"retry_scheduled", "dead_lettered"})
#: The only ways back from SENDING to QUEUED or SCHEDULED.
REQUEUE_KINDS = frozenset({"retry_scheduled", "attempt_abandoned", "deferred"})
#: The only way back from SENT to QUEUED: the provider failed it unsent for its throughput
#: (from SENDING too, when its report overtakes the worker's record of the send).
UNSENT_KINDS = frozenset({KIND_THROUGHPUT_REQUEUED})


class EventCollector:
    """A websocket subscriber (``messageEvents`` of one account) on one API process.

    Collects every event it is sent. When the server ends the subscription (an error, e.g.
    a subscriber that fell behind, or a closed socket) it resubscribes with ``after`` set to
    the last cursor seen, as the contract tells clients to; each restart is recorded.
    """

    def __init__(self, url: str, key: str) -> None:
        self.url = url.replace("http://", "ws://") + "/graphql"
        self.key = key
        self.events: list[dict[str, Any]] = []
        self.restarts: list[str] = []
        self.connected = asyncio.Event()
        self.last_cursor: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"collector {self.url}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                await self._session()
                reason = "completed by server"
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"[:300]
            self.restarts.append(reason)
            self.connected.clear()
            await asyncio.sleep(0.2)

    async def _session(self) -> None:
        async with websockets.connect(
            self.url,
            subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
            open_timeout=10,
            ping_interval=None,
            max_size=None,
        ) as ws:
            await ws.send(
                json.dumps(
                    {"type": "connection_init", "payload": {"authorization": f"Bearer {self.key}"}}
                )
            )
            ack = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if ack.get("type") != "connection_ack":
                raise RuntimeError(f"no connection_ack: {ack}")
            variables = {"after": self.last_cursor} if self.last_cursor else {}
            await ws.send(
                json.dumps(
                    {
                        "id": "1",
                        "type": "subscribe",
                        "payload": {"query": EVENTS_SUBSCRIPTION, "variables": variables},
                    }
                )
            )
            self.connected.set()
            async for raw in ws:
                message = json.loads(raw)
                kind = message.get("type")
                if kind == "ping":
                    await ws.send(json.dumps({"type": "pong"}))
                elif kind == "next":
                    payload = message["payload"]
                    if payload.get("errors"):
                        raise RuntimeError(f"subscription errors: {payload['errors']}")
                    event = payload["data"]["messageEvents"]
                    self.events.append(event)
                    self.last_cursor = event["cursor"]
                    self._changed.set()
                elif kind == "error":
                    raise RuntimeError(f"subscription error: {message.get('payload')}")
                elif kind == "complete":
                    return

    def message_ids(self) -> set[uuid.UUID]:
        return {uuid_of(e["messageId"]) for e in self.events}

    def cursors(self) -> set[str]:
        return {e["cursor"] for e in self.events}

    def delivered(self) -> set[uuid.UUID]:
        return {uuid_of(e["messageId"]) for e in self.events if e["status"] == "DELIVERED"}

    async def wait_for(
        self, predicate: Callable[[], bool], within: float, describe: Callable[[], str]
    ) -> None:
        deadline = time.monotonic() + within
        while not predicate():
            remaining = deadline - time.monotonic()
            assert remaining > 0, describe()
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.5))


async def wait_for_each(
    collectors: Mapping[str, EventCollector],
    done: Callable[[EventCollector], bool],
    within: float,
    describe: Callable[[str, EventCollector], str],
) -> None:
    """Wait until ``done`` holds for each collector in turn (``within`` seconds each);
    ``describe`` is told the name of one that did not get there."""
    for name, collector in collectors.items():
        await collector.wait_for(
            partial(done, collector), within, partial(describe, name, collector)
        )


# --- invariants over audit trails ----------------------------------------------------------


def ambiguous_marker(trail: list[dict[str, Any]]) -> bool:
    """Did an attempt of this message end without knowing whether the provider took it?"""
    return any(
        e["kind"] == "attempt_abandoned"
        or (e["kind"] in AMBIGUOUS_KINDS and e["detail"].get("ambiguous") is True)
        for e in trail
    )


def trail_problems(trail: list[dict[str, Any]]) -> list[str]:
    """Everything wrong with one audit trail: statuses go forward in rank (back from SENDING
    only through a requeue event: to QUEUED for a retry or release, to SCHEDULED for a
    quiet-hours hold; back from SENT (or SENDING) to QUEUED only when the provider failed it
    unsent for its throughput) and a message reaches at most one terminal status."""
    problems: list[str] = []
    if not trail:
        return ["no events"]
    first = trail[0]
    if first["kind"] != "accepted" or first["status"] not in ("QUEUED", "SCHEDULED"):
        problems.append(f"first event {first['kind']}/{first['status']}")
    terminal = {e["status"] for e in trail if MessageStatus(e["status"]) in TERMINAL}
    if len(terminal) > 1:
        problems.append(f"several terminal statuses {sorted(terminal)}")
    for before, after in itertools.pairwise(trail):
        old, new = MessageStatus(before["status"]), MessageStatus(after["status"])
        if old in TERMINAL and new != old:
            problems.append(f"left terminal {old} -> {new} ({after['kind']})")
        elif rank(new) < rank(old) and not (
            (
                old is MessageStatus.SENDING
                and new in (MessageStatus.QUEUED, MessageStatus.SCHEDULED)
                and after["kind"] in REQUEUE_KINDS
            )
            or (
                old in (MessageStatus.SENDING, MessageStatus.SENT)
                and new is MessageStatus.QUEUED
                and after["kind"] in UNSENT_KINDS
            )
        ):
            problems.append(f"backwards {old} -> {new} ({after['kind']})")
    return problems


def sms(i: int, tag: str = "load") -> dict[str, Any]:
    return {
        "channel": "SMS",
        "from": "+14155550100",
        "to": f"+1415555{1000 + i % 9000:04d}",
        "body": f"{tag} {i}",
    }


def email(i: int, tag: str = "load") -> dict[str, Any]:
    return {
        "channel": "EMAIL",
        "from": "noreply@example.com",
        "to": f"user{i}@example.com",
        "body": f"{tag} {i}",
        "metadata": {"subject": f"{tag} {i}"},
    }


def mixed(i: int, tag: str = "load") -> dict[str, Any]:
    return sms(i, tag) if i % 3 else email(i, tag)


_LOG_EVENT = re.compile(r'"event":\s*"([a-z_]+)"')


def log_events(text_: str) -> list[str]:
    """The ``event`` names of JSON log lines."""
    return _LOG_EVENT.findall(text_)
