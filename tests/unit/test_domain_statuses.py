import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.domain.statuses import (
    TERMINAL,
    THROUGHPUT_REQUEUE_REASON,
    Advance,
    MessageStatus,
    Record,
    Requeue,
    Stale,
    can_advance,
    can_cancel,
    can_requeue,
    can_requeue_unsent,
    can_retry,
    decide_report,
    rank,
)

S = MessageStatus
statuses = st.sampled_from(list(S))
FAST = settings(max_examples=300, deadline=None)

#: Each status and those it may move forward to; any other move is refused.
EXPECTED_FORWARD = {
    S.SCHEDULED: {S.QUEUED, S.CANCELED},
    S.QUEUED: {S.SENDING, S.CANCELED, S.FAILED},
    S.SENDING: {S.SENT, S.DELIVERED, S.UNDELIVERED, S.FAILED},
    S.SENT: {S.DELIVERED, S.UNDELIVERED, S.FAILED},
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
    assert allowed == {(a, b) for a, targets in EXPECTED_FORWARD.items() for b in targets}


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


# The decision a provider's report gets, from the status its message has when it is applied.


@pytest.mark.parametrize(
    ("current", "reported", "decision"),
    [
        # A late SENT after DELIVERED changes nothing.
        (S.DELIVERED, S.SENT, Stale()),
        # A final status is final: a FAILED or UNDELIVERED after DELIVERED moves nothing.
        (S.DELIVERED, S.FAILED, Stale()),
        (S.DELIVERED, S.UNDELIVERED, Stale()),
        (S.UNDELIVERED, S.DELIVERED, Stale()),
        # The same status again (Twilio's "read" after "delivered") is nothing new.
        (S.DELIVERED, S.DELIVERED, Stale()),
        (S.SENT, S.SENT, Stale()),
        # DELIVERED may overtake SENT, and SENT follows the send attempt.
        (S.SENDING, S.DELIVERED, Advance(S.DELIVERED)),
        (S.SENDING, S.SENT, Advance(S.SENT)),
        (S.SENT, S.FAILED, Advance(S.FAILED)),
        # A report on a message we never handed over is refused, not taken at its word.
        (S.QUEUED, S.SENT, Stale()),
        (S.CANCELED, S.DELIVERED, Stale()),
        (S.RECEIVED, S.DELIVERED, Stale()),
        # A vendor status that stands for none of ours (Twilio's "queued", an e-mail opened,
        # an event name SendGrid adds later) is recorded as it is, on any message.
        (S.SENT, None, Record()),
        (S.DELIVERED, None, Record()),
        (S.QUEUED, None, Record()),
    ],
)
def test_report_decisions(current: S, reported: S | None, decision: object) -> None:
    assert decide_report(current, reported) == decision


@FAST
@given(statuses, statuses)
def test_a_report_advances_exactly_along_the_forward_table(current: S, reported: S) -> None:
    decision = decide_report(current, reported)
    if can_advance(current, reported):
        assert decision == Advance(reported)
        assert rank(decision.to) > rank(current)
    else:
        assert decision == Stale()


@FAST
@given(statuses, st.lists(st.one_of(st.none(), statuses), max_size=30))
def test_reports_in_any_order_never_move_a_status_back(start: S, reports: list[S | None]) -> None:
    current = start
    for reported in reports:
        before = current
        decision = decide_report(current, reported)
        if isinstance(decision, Advance):
            current = decision.to
        assert rank(current) >= rank(before)
        if before in TERMINAL:
            assert current is before


@pytest.mark.parametrize("status", list(S))
def test_requeue_unsent_only_from_sending_or_sent(status: MessageStatus) -> None:
    assert can_requeue_unsent(status) is (status in (S.SENDING, S.SENT))


@pytest.mark.parametrize(
    ("current", "reported", "decision"),
    [
        # Failed unsent for the sender's throughput: back to QUEUED, with its reason.
        (S.SENT, S.FAILED, Requeue(THROUGHPUT_REQUEUE_REASON)),
        # The same when the report overtakes the worker's record of the send.
        (S.SENDING, S.FAILED, Requeue(THROUGHPUT_REQUEUE_REASON)),
        # Anywhere else it is an ordinary failure report, forward only.
        (S.DELIVERED, S.FAILED, Stale()),
        (S.FAILED, S.FAILED, Stale()),
        (S.QUEUED, S.FAILED, Advance(S.FAILED)),
        (S.CANCELED, S.FAILED, Stale()),
        # The mark means nothing on a report that is no failure.
        (S.SENT, S.DELIVERED, Advance(S.DELIVERED)),
        (S.SENT, S.UNDELIVERED, Advance(S.UNDELIVERED)),
        (S.SENT, None, Record()),
    ],
)
def test_throughput_refusal_decisions(current: S, reported: S | None, decision: object) -> None:
    assert decide_report(current, reported, throughput_refusal=True) == decision


@FAST
@given(statuses, st.one_of(st.none(), statuses))
def test_only_a_marked_failure_of_a_sent_message_goes_back(current: S, reported: S | None) -> None:
    plain = decide_report(current, reported)
    marked = decide_report(current, reported, throughput_refusal=True)
    assert not isinstance(plain, Requeue)
    if current in (S.SENDING, S.SENT) and reported is S.FAILED:
        assert isinstance(marked, Requeue)
    else:
        assert marked == plain
