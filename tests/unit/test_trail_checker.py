"""The audit-trail invariant that the process and fault tests apply to every message."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.traffic import trail_problems

Steps = tuple[tuple[str, str], ...]

CLEAN: dict[str, Steps] = {
    "plain delivery": (
        ("accepted", "QUEUED"),
        ("claimed", "SENDING"),
        ("sent", "SENT"),
        ("delivered", "DELIVERED"),
    ),
    "retried delivery": (
        ("accepted", "QUEUED"),
        ("claimed", "SENDING"),
        ("retry_scheduled", "QUEUED"),
        ("claimed", "SENDING"),
        ("sent", "SENT"),
    ),
    "quiet hours hold at accept and at claim": (
        ("accepted", "SCHEDULED"),
        ("released", "QUEUED"),
        ("claimed", "SENDING"),
        ("deferred", "SCHEDULED"),
        ("released", "QUEUED"),
        ("claimed", "SENDING"),
        ("sent", "SENT"),
    ),
    "throughput requeue from sent": (
        ("accepted", "QUEUED"),
        ("claimed", "SENDING"),
        ("provider_accepted", "SENT"),
        ("throughput_requeued", "QUEUED"),
        ("claimed", "SENDING"),
        ("provider_accepted", "SENT"),
        ("delivery_receipt", "DELIVERED"),
    ),
    # From SENDING too, when it overtakes the worker's record of the send (which then
    # notes the refused send at QUEUED).
    "throughput requeue overtaking the send": (
        ("accepted", "QUEUED"),
        ("claimed", "SENDING"),
        ("throughput_requeued", "QUEUED"),
        ("provider_accepted", "QUEUED"),
        ("claimed", "SENDING"),
        ("provider_accepted", "SENT"),
    ),
}

#: Backwards moves: only a requeue event may go back from SENDING, and only a throughput
#: requeue from SENT, never to SCHEDULED.
FLAGGED: dict[str, tuple[Steps, list[str]]] = {
    "back to scheduled without a requeue event": (
        (("accepted", "QUEUED"), ("claimed", "SENDING"), ("claimed", "SCHEDULED")),
        ["backwards SENDING -> SCHEDULED (claimed)"],
    ),
    "deferred from sent": (
        (("accepted", "QUEUED"), ("claimed", "SENDING"), ("sent", "SENT"), ("deferred", "QUEUED")),
        ["backwards SENT -> QUEUED (deferred)"],
    ),
    "another event from sent": (
        (("accepted", "QUEUED"), ("claimed", "SENDING"), ("sent", "SENT"), ("x", "QUEUED")),
        ["backwards SENT -> QUEUED (x)"],
    ),
    "throughput requeue to scheduled": (
        (("accepted", "QUEUED"), ("claimed", "SENDING"), ("throughput_requeued", "SCHEDULED")),
        ["backwards SENDING -> SCHEDULED (throughput_requeued)"],
    ),
}


def trail(*steps: tuple[str, str]) -> list[dict[str, Any]]:
    return [{"kind": kind, "status": status} for kind, status in steps]


@pytest.mark.parametrize("steps", CLEAN.values(), ids=CLEAN.keys())
def test_a_trail_that_only_moves_forward_or_back_by_a_requeue_is_clean(steps: Steps) -> None:
    assert trail_problems(trail(*steps)) == []


@pytest.mark.parametrize(("steps", "problems"), FLAGGED.values(), ids=FLAGGED.keys())
def test_going_back_without_the_right_requeue_event_is_flagged(
    steps: Steps, problems: list[str]
) -> None:
    assert trail_problems(trail(*steps)) == problems


def test_a_second_terminal_status_and_a_bad_start_are_flagged() -> None:
    problems = trail_problems(
        trail(("accepted", "SENDING"), ("delivered", "DELIVERED"), ("dead_lettered", "FAILED"))
    )
    assert "first event accepted/SENDING" in problems
    assert "several terminal statuses ['DELIVERED', 'FAILED']" in problems
    assert "left terminal DELIVERED -> FAILED (dead_lettered)" in problems
    assert trail_problems([]) == ["no events"]
