import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.domain import (
    TERMINAL,
    MessageStatus,
    can_advance,
    can_cancel,
    can_requeue,
    can_retry,
    rank,
)

S = MessageStatus
statuses = st.sampled_from(list(S))
FAST = settings(max_examples=300, deadline=None)

EXPECTED_FORWARD = {
    (S.SCHEDULED, S.QUEUED),
    (S.SCHEDULED, S.CANCELED),
    (S.QUEUED, S.SENDING),
    (S.QUEUED, S.CANCELED),
    (S.QUEUED, S.FAILED),
    (S.SENDING, S.SENT),
    (S.SENDING, S.DELIVERED),
    (S.SENDING, S.UNDELIVERED),
    (S.SENDING, S.FAILED),
    (S.SENT, S.DELIVERED),
    (S.SENT, S.UNDELIVERED),
    (S.SENT, S.FAILED),
}


def test_values_are_names() -> None:
    assert [s.value for s in S] == [
        "SCHEDULED",
        "QUEUED",
        "SENDING",
        "SENT",
        "DELIVERED",
        "UNDELIVERED",
        "FAILED",
        "CANCELED",
        "RECEIVED",
    ]


def test_terminal_set() -> None:
    assert {S.DELIVERED, S.UNDELIVERED, S.FAILED, S.CANCELED, S.RECEIVED} == TERMINAL


def test_rank_orders_progress() -> None:
    assert [rank(s) for s in (S.SCHEDULED, S.QUEUED, S.SENDING, S.SENT)] == [0, 1, 2, 3]
    assert {rank(s) for s in TERMINAL} == {4}


def test_forward_transition_table_is_exactly_the_contract() -> None:
    allowed = {(a, b) for a in S for b in S if can_advance(a, b)}
    assert allowed == EXPECTED_FORWARD


def test_late_sent_after_delivered_changes_nothing() -> None:
    assert not can_advance(S.DELIVERED, S.SENT)


def test_delivered_may_overtake_sent() -> None:
    assert can_advance(S.SENDING, S.DELIVERED)


def test_accepts_plain_strings_as_stored_in_the_database() -> None:
    assert can_advance("SENT", "DELIVERED")  # type: ignore[arg-type]
    assert rank("QUEUED") == 1  # type: ignore[arg-type]
    assert can_requeue("SENDING")  # type: ignore[arg-type]
    assert can_retry("FAILED")  # type: ignore[arg-type]
    assert can_cancel("SCHEDULED")  # type: ignore[arg-type]


@pytest.mark.parametrize("status", list(S))
def test_requeue_only_from_sending(status: MessageStatus) -> None:
    assert can_requeue(status) is (status is S.SENDING)


@pytest.mark.parametrize("status", list(S))
def test_retry_only_from_failed(status: MessageStatus) -> None:
    assert can_retry(status) is (status is S.FAILED)


@pytest.mark.parametrize("status", list(S))
def test_cancel_only_before_sending(status: MessageStatus) -> None:
    assert can_cancel(status) is (status in (S.SCHEDULED, S.QUEUED))
    # Canceling is an ordinary forward step, so both rules must agree.
    assert can_cancel(status) is can_advance(status, S.CANCELED)


@FAST
@given(statuses, statuses)
def test_advance_only_moves_up_and_never_leaves_terminal(current: S, new: S) -> None:
    if can_advance(current, new):
        assert rank(new) > rank(current)
        assert current not in TERMINAL
        assert new not in (S.SCHEDULED, S.RECEIVED)


@FAST
@given(statuses, st.lists(statuses, max_size=30))
def test_any_callback_sequence_is_monotonic_and_terminal_stable(
    start: S, callbacks: list[S]
) -> None:
    current = start
    applied = 0
    for incoming in callbacks:
        before = current
        if can_advance(current, incoming):
            current = incoming
            applied += 1
        assert rank(current) >= rank(before)
        if before in TERMINAL:
            assert current is before
    assert applied <= 4
    if current in (S.SCHEDULED, S.RECEIVED):
        assert current is start


@FAST
@given(
    st.sampled_from([S.DELIVERED, S.UNDELIVERED, S.FAILED]),
    st.lists(st.sampled_from([S.SENDING, S.SENT, S.QUEUED, S.SCHEDULED]), max_size=6),
    st.randoms(use_true_random=False),
)
def test_single_outcome_wins_whatever_the_callback_order(
    outcome: S, noise: list[S], rnd: random.Random
) -> None:
    callbacks = [outcome, *noise]
    rnd.shuffle(callbacks)
    current = S.SENDING
    for incoming in callbacks:
        if can_advance(current, incoming):
            current = incoming
    assert current is outcome
