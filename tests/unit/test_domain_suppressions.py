"""Suppression scopes as stored, which removals must give a reason, and how far a provider's
word about a recipient reaches."""

from __future__ import annotations

from uuid import UUID

import pytest

from gateway.domain.channels import Channel
from gateway.domain.records import DeliveryError
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
from tests.unit.messages import outbound_message

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


def test_only_a_failure_the_provider_marked_unsubscribed_suppresses() -> None:
    message = outbound_message(
        account_id=ACCOUNT,
        sender="+14155550100",
        recipient="+14155550142",
        status=MessageStatus.FAILED,
    )
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
