"""Suppression scopes as stored, and which removals must give a reason."""

from __future__ import annotations

import pytest

from gateway.domain.channels import Channel
from gateway.domain.suppressions import (
    EVERY,
    SuppressionReason,
    removal_needs_reason,
    scope_of,
    stored_scope,
)


@pytest.mark.parametrize(
    ("channel", "sender", "stored"),
    [
        (None, None, (EVERY, EVERY)),
        (Channel.SMS, None, ("SMS", EVERY)),
        (None, "+14155550100", (EVERY, "+14155550100")),
        (Channel.EMAIL, "ops@example.com", ("EMAIL", "ops@example.com")),
    ],
)
def test_a_scope_is_stored_without_nulls_and_read_back_as_it_was(
    channel: Channel | None, sender: str | None, stored: tuple[str, str]
) -> None:
    assert stored_scope(channel, sender) == stored
    assert scope_of(*stored) == (channel, sender)


def test_only_the_recipients_own_opt_out_needs_a_reason_to_be_lifted() -> None:
    assert [r for r in SuppressionReason if removal_needs_reason(r)] == [
        SuppressionReason.STOP_KEYWORD
    ]
