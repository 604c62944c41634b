"""The audit-trail invariant that the process and fault tests apply to every message."""

from __future__ import annotations

from typing import Any

from tests.integration.traffic import trail_problems


def trail(*steps: tuple[str, str]) -> list[dict[str, Any]]:
    return [{"kind": kind, "status": status} for kind, status in steps]


def test_a_plain_delivery_and_a_retried_one_are_clean() -> None:
    assert (
        trail_problems(
            trail(
                ("accepted", "QUEUED"),
                ("claimed", "SENDING"),
                ("sent", "SENT"),
                ("delivered", "DELIVERED"),
            )
        )
        == []
    )
    assert (
        trail_problems(
            trail(
                ("accepted", "QUEUED"),
                ("claimed", "SENDING"),
                ("retry_scheduled", "QUEUED"),
                ("claimed", "SENDING"),
                ("sent", "SENT"),
            )
        )
        == []
    )


def test_quiet_hours_hold_at_accept_and_at_claim_are_clean() -> None:
    assert (
        trail_problems(
            trail(
                ("accepted", "SCHEDULED"),
                ("released", "QUEUED"),
                ("claimed", "SENDING"),
                ("deferred", "SCHEDULED"),
                ("released", "QUEUED"),
                ("claimed", "SENDING"),
                ("sent", "SENT"),
            )
        )
        == []
    )


def test_going_back_without_a_requeue_event_is_flagged() -> None:
    assert trail_problems(
        trail(("accepted", "QUEUED"), ("claimed", "SENDING"), ("claimed", "SCHEDULED"))
    ) == ["backwards SENDING -> SCHEDULED (claimed)"]
    assert trail_problems(
        trail(
            ("accepted", "QUEUED"), ("claimed", "SENDING"), ("sent", "SENT"), ("deferred", "QUEUED")
        )
    ) == ["backwards SENT -> QUEUED (deferred)"]


def test_a_second_terminal_status_and_a_bad_start_are_flagged() -> None:
    problems = trail_problems(
        trail(("accepted", "SENDING"), ("delivered", "DELIVERED"), ("dead_lettered", "FAILED"))
    )
    assert "first event accepted/SENDING" in problems
    assert "several terminal statuses ['DELIVERED', 'FAILED']" in problems
    assert "left terminal DELIVERED -> FAILED (dead_lettered)" in problems
    assert trail_problems([]) == ["no events"]


def test_a_throughput_requeue_from_sent_is_clean_and_only_that() -> None:
    requeued = trail(
        ("accepted", "QUEUED"),
        ("claimed", "SENDING"),
        ("provider_accepted", "SENT"),
        ("throughput_requeued", "QUEUED"),
        ("claimed", "SENDING"),
        ("provider_accepted", "SENT"),
        ("delivery_receipt", "DELIVERED"),
    )
    assert trail_problems(requeued) == []
    assert trail_problems(
        trail(("accepted", "QUEUED"), ("claimed", "SENDING"), ("sent", "SENT"), ("x", "QUEUED"))
    ) == ["backwards SENT -> QUEUED (x)"]
    # From SENDING too, when it overtakes the worker's record of the send (which then
    # notes the refused send at QUEUED); never to SCHEDULED.
    overtaken = trail(
        ("accepted", "QUEUED"),
        ("claimed", "SENDING"),
        ("throughput_requeued", "QUEUED"),
        ("provider_accepted", "QUEUED"),
        ("claimed", "SENDING"),
        ("provider_accepted", "SENT"),
    )
    assert trail_problems(overtaken) == []
    assert trail_problems(
        trail(("accepted", "QUEUED"), ("claimed", "SENDING"), ("throughput_requeued", "SCHEDULED"))
    ) == ["backwards SENDING -> SCHEDULED (throughput_requeued)"]
    assert trail_problems(
        trail(
            ("accepted", "QUEUED"), ("claimed", "SENDING"), ("sent", "SENT"), ("deferred", "QUEUED")
        )
    ) == ["backwards SENT -> QUEUED (deferred)"]
