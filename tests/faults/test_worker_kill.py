"""A worker killed with -9 while the provider is slow, with the product's default settings.

The provider takes about six seconds per call, so that when one of the two workers dies it
holds a full set of messages in flight (SENDING) and of unacknowledged stream entries. The
surviving worker must take the dead one's messages back (each recorded as an ambiguous
attempt, within about fifteen seconds of its death), its stream entries too, without ever
jamming: it keeps reading new work, its sweeper keeps running, its /health stays 200, and every
message ends terminal. The scenario keeps sending a message every two seconds for longer than
``RECLAIM_IDLE_MS`` (the moment the dead worker's entries are reclaimed) to see that.
"""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from harness.pipeline import Sent
from harness.servers import free_port
from tests.faults.scenario import (
    FaultReport,
    FaultStack,
    HealthWatch,
    prepare,
    product_defaults,
    settle,
)
from tests.integration.traffic import REQUEUE_KINDS, mixed, sms

pytestmark = [pytest.mark.fault, pytest.mark.slow_fault]

SLOW_CALL = 6.0
MESSAGES = 120
PROBE_EVERY = 2.0
#: Past the default RECLAIM_IDLE_MS (60 s), with room for one slow call after it.
OBSERVE_FOR = 75.0


@pytest.mark.timeout(420)
async def test_worker_killed_while_provider_is_slow(
    fault_stack: FaultStack, fault_report: FaultReport
) -> None:
    pipe = fault_stack.pipe
    # Each worker serves /health on a port of its own, on loopback (by default it binds every
    # address).
    health_ports = [free_port(), free_port()]
    envs = [
        product_defaults() | {"WORKER_HEALTH_PORT": str(port), "WORKER_HEALTH_HOST": "127.0.0.1"}
        for port in health_ports
    ]
    account = await prepare(fault_stack, envs)
    victim, survivor = pipe.workers
    # Slow but successful: every call answers after SLOW_CALL, under PROVIDER_READ_TIMEOUT.
    await pipe.sandbox_configure(rate_timeout=1.0, timeout_seconds=SLOW_CALL)

    sent = await pipe.send_many(0, account, [mixed(i, "kill") for i in range(MESSAGES)])
    ids = [s.id for s in sent]
    consumer = f"{socket.gethostname()}-{victim.pid}"
    deadline = time.monotonic() + 30
    while True:
        held = (await pipe.pending_by_consumer()).get(consumer, 0)
        statuses = await pipe.statuses(ids)
        sending = [i for i, s in statuses.items() if s == "SENDING"]
        if held >= 30 and len(sending) >= 60:
            break
        assert time.monotonic() < deadline, (
            f"the workers never held the messages: victim {held} entries, {len(sending)} "
            f"SENDING{pipe.diagnostics(6)}"
        )
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)  # its claims are committed, its calls under way
    await victim.kill()
    killed, killed_wall = time.monotonic(), time.time()
    pipe.retire(victim)
    sending_at_kill = {i for i, s in (await pipe.statuses(ids)).items() if s == "SENDING"}

    targets = {f"api{i + 1}": pipe.api_url(i) + "/health" for i in range(2)}
    targets["survivor"] = f"http://127.0.0.1:{health_ports[1]}/health"
    probes: list[Sent] = []
    batch_settled = asyncio.create_task(settle(pipe, ids, within=OBSERVE_FOR + 60))
    last_probe = killed
    async with HealthWatch(pipe.http, targets, every=1.0) as watch:
        n = 0
        while time.monotonic() - killed < OBSERVE_FOR:
            probes.append(await pipe.send_one(n % 2, account, sms(n, "probe")))
            last_probe = time.monotonic()
            n += 1
            await asyncio.sleep(PROBE_EVERY)
        probe_ids = [p.id for p in probes]
        settled = await settle(pipe, probe_ids, within=60)
        batch_terminal = await batch_settled

    # Taken back: the dead worker's messages whose next event after the kill is a requeue.
    trails = await pipe.trails([*ids, *probe_ids], timed=True)
    taken_back: list[float] = []
    for message_id in sending_at_kill:
        later = [e for e in trails[message_id] if e["at"] >= killed_wall]
        if later and later[0]["kind"] in REQUEUE_KINDS:
            taken_back.append(later[0]["at"])
    probe_waits = []
    for probe in probe_ids:
        trail = trails[probe]
        if trail and trail[-1]["status"] == "DELIVERED":
            probe_waits.append(trail[-1]["at"] - trail[0]["at"])

    fault_report.took("takeback_after_kill", killed_wall, max(taken_back, default=None))
    fault_report.took("batch_terminal_after_kill", killed, batch_terminal)
    fault_report.took("probes_terminal_after_last_probe", last_probe, settled)
    fault_report.note(
        victim_entries=held,
        sending_at_kill=len(sending_at_kill),
        taken_back=len(taken_back),
        probes=len(probes),
        probes_delivered=len(probe_waits),
        probe_send_to_delivered_max_s=round(max(probe_waits, default=0), 1),
        health_failures={name: len(watch.failed(name)) for name in targets},
    )

    await fault_report.judge(pipe, [*ids, *probe_ids], answers_may_be_lost=True)
    if not survivor.alive:
        fault_report.problem("the surviving worker exited")
    for name in targets:
        failures = watch.failed(name)
        if failures:
            first = failures[0]
            fault_report.problem(
                f"{name} /health failed {len(failures)} time(s), first {first[0] - killed:.0f}s "
                f"after the kill: {first[2]}"
            )
    fault_report.check(pipe)
