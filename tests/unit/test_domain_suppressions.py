"""Suppression scopes as stored, which removals must give a reason, and how far a provider's
word about a recipient reaches."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest

from gateway.domain.channels import Channel, Direction
from gateway.domain.records import DeliveryError, Message
from gateway.domain.statuses import MessageStatus
from gateway.domain.suppressions import (
    EVERY,
    NewSuppression,
    SuppressionReason,
    provider_suppression,
    removal_needs_reason,
    scope_of,
    stored_scope,
    suppression_after_failure,
)

ACCOUNT = UUID(int=7)


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


def test_a_providers_word_on_a_number_holds_for_its_one_sender_on_every_phone_channel() -> None:
    for channel in (Channel.SMS, Channel.MMS):
        assert provider_suppression(
            ACCOUNT,
            channel,
            "+14155550100",
            "+14155550142",
            SuppressionReason.PROVIDER_UNSUBSCRIBED,
            {"code": "21610"},
        ) == NewSuppression(
            ACCOUNT,
            "+14155550142",
            None,
            "+14155550100",
            SuppressionReason.PROVIDER_UNSUBSCRIBED,
            {"code": "21610"},
        )


def test_a_providers_word_on_an_e_mail_address_holds_for_every_sender() -> None:
    assert provider_suppression(
        ACCOUNT,
        Channel.EMAIL,
        "news@example.com",
        "bob@example.com",
        SuppressionReason.SPAM_REPORT,
        None,
    ) == NewSuppression(
        ACCOUNT, "bob@example.com", Channel.EMAIL, None, SuppressionReason.SPAM_REPORT, None
    )


def _message(channel: Channel, sender: str, recipient: str) -> Message:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return Message(
        id=uuid4(),
        account_id=ACCOUNT,
        conversation_id=uuid4(),
        channel=channel,
        direction=Direction.OUTBOUND,
        sender=sender,
        recipient=recipient,
        body="hi",
        attachments=(),
        status=MessageStatus.FAILED,
        provider=None,
        provider_message_id=None,
        attempts=1,
        segments=1,
        encoding="GSM-7",
        error=None,
        idempotency_key=None,
        send_at=None,
        next_attempt_at=None,
        metadata=None,
        created_at=now,
        updated_at=now,
    )


def test_only_a_failure_the_provider_marked_unsubscribed_suppresses() -> None:
    message = _message(Channel.SMS, "+14155550100", "+14155550142")
    refused = DeliveryError("21610", "unsubscribed", permanent=True, recipient_unsubscribed=True)
    assert suppression_after_failure(message, refused, "twilio") == NewSuppression(
        ACCOUNT,
        "+14155550142",
        None,
        "+14155550100",
        SuppressionReason.PROVIDER_UNSUBSCRIBED,
        {"provider": "twilio", "code": "21610", "messageId": "msg_" + message.id.hex},
    )
    for error in (
        DeliveryError("21211", "invalid 'To'", permanent=True),
        DeliveryError("500", "server error", permanent=False),
    ):
        assert suppression_after_failure(message, error, "twilio") is None
