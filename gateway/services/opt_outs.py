"""Use case: a recipient's keyword (STOP, START, HELP) acted on and answered; and the
account's setting of the words, their scope and the answers.

``handle`` runs inside the unit of work that stores the inbound message (the webhook service
calls it): it reads the account's setting and, when the body is one of its words, suppresses
the sender (STOP) or lifts the suppressions the sender's own keyword made (START), writes the
audit entries (the keyword received, what it changed) and accepts the auto-reply, all in that
unit. The reply is an ordinary message from the number written to, to the sender, in the same
conversation, sent by the workers like any other once the unit has committed.

So the inbound message, what its keyword changed and its answer commit together or not at all:
- The unit commits: the reply is QUEUED in the database and enqueued after the commit; should
  the enqueue fail or the process stop first, the sweeper enqueues it. It cannot be lost.
- Anything in the unit fails, the reply's accept included: none of it is stored, and the
  webhook is not acknowledged as applied (its payload is kept for replay, or the provider
  delivers it again), so the next attempt does all of it, the answer once.
- The webhook comes again after the commit: a duplicate to that unit, so nothing happens
  twice. The reply's idempotency key, derived from the inbound message, says the same.

The reply is exempt from suppressions (it confirms the opt-out that suppressed its recipient)
and from quiet hours (it answers the recipient's own message).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import structlog

from gateway.domain.channels import Channel
from gateway.domain.ids import encode_id
from gateway.domain.messages import FieldProblem, SendRequest
from gateway.domain.opt_outs import (
    AutoReply,
    KeywordKind,
    KeywordMatch,
    OptOutScope,
    OptOutSettings,
    could_be_keyword,
    match_keyword,
    parse_opt_out_settings,
)
from gateway.domain.records import Message, MessageEvent
from gateway.domain.results import Accepted
from gateway.domain.suppressions import NewSuppression, SuppressionReason
from gateway.services.clock import utcnow
from gateway.services.ports import OptOutStore, SuppressionStore, UnitOfWork
from gateway.services.sending import SendService

log = structlog.get_logger(__name__)

#: Audit-trail kinds of an inbound keyword: the keyword received, then what it changed.
KIND_KEYWORD = "keyword_received"
KIND_CHANGE = {
    KeywordKind.STOP: "opted_out",
    KeywordKind.START: "opted_in",
    KeywordKind.HELP: "help_requested",
}
#: The removal reason recorded when a recipient's own START lifts their opt-out.
LIFTED_BY_RECIPIENT = "lifted by the recipient: {keyword}"


@dataclass(frozen=True, slots=True)
class Handled:
    """A keyword acted on, in the unit of work that stores its inbound message."""

    inbound: Message
    match: KeywordMatch
    #: The auto-reply accepted in the unit; None when the account turned it off (or, never
    #: expected of an exempt answer, the accept refused it).
    reply: Message | None
    #: The audit entries written, already handed to the unit to publish after its commit.
    events: list[MessageEvent]


class OptOutService:
    def __init__(
        self, store: OptOutStore, suppressions: SuppressionStore, sending: SendService
    ) -> None:
        self._store = store
        self._suppressions = suppressions
        self._sending = sending

    async def of(self, account_id: UUID) -> OptOutSettings:
        return await self._store.opt_out_settings(account_id)

    async def set(
        self,
        account_id: UUID,
        keywords: dict[KeywordKind, list[str]],
        scope: OptOutScope,
        replies: dict[KeywordKind, str | None],
    ) -> OptOutSettings | list[FieldProblem]:
        checked = parse_opt_out_settings(keywords, scope, replies)
        if isinstance(checked, list):
            return checked
        await self._store.set_opt_out_settings(account_id, checked, utcnow())
        return checked

    async def handle(self, inbound: Message, now: datetime, work: UnitOfWork) -> Handled | None:
        """Act on ``inbound`` (just stored, in the unit ``work``) if it is a keyword, and
        accept its answer in the same unit."""
        if inbound.channel is Channel.EMAIL or not could_be_keyword(inbound.body):
            return None
        settings = await self._store.opt_out_settings(inbound.account_id)
        match = match_keyword(settings, inbound.body)
        if match is None:
            return None
        # SENDER: the one number written to; ACCOUNT: every number of the account.
        sender = inbound.recipient if settings.scope is OptOutScope.SENDER else None
        reply = settings.replies.get(match.kind)
        change: dict[str, Any] = {"scope": settings.scope.value, "autoReply": reply is not None}
        if match.kind is KeywordKind.STOP:
            change |= await self._opt_out(inbound, match, sender, now)
        elif match.kind is KeywordKind.START:
            change |= await self._opt_in(inbound, match, sender, now)
        events = await self._store.note(
            inbound, [(KIND_KEYWORD, match.detail()), (KIND_CHANGE[match.kind], change)], now
        )
        # Published before the answer's own events: the trail reads keyword, change, answer.
        work.publish(events)
        answer = None if reply is None else await self._answer(work, inbound, match, reply)
        return Handled(inbound, match, answer, events)

    async def _answer(
        self, work: UnitOfWork, inbound: Message, match: KeywordMatch, text: str
    ) -> Message | None:
        """Accept the auto-reply in ``work``. A failure raises, so the unit stores nothing of
        the keyword either (see the module docstring)."""
        marker = AutoReply(inbound.id, match.kind)
        request = SendRequest(
            channel=Channel.SMS,
            from_=inbound.recipient,
            to=inbound.sender,
            body=text,
            idempotency_key=marker.idempotency_key(),
            bypass_quiet_hours=True,
            auto_reply=marker,
        )
        outcome = await self._sending.accept_in(work, inbound.account_id, request)
        if not isinstance(outcome, Accepted):
            log.warning("auto_reply_refused", inbound_id=str(inbound.id), outcome=repr(outcome))
            return None
        return outcome.message

    async def _opt_out(
        self, inbound: Message, match: KeywordMatch, sender: str | None, now: datetime
    ) -> dict[str, Any]:
        # Every channel: a number opted out of SMS is opted out of MMS too.
        new = NewSuppression(
            inbound.account_id,
            inbound.sender,
            None,
            sender,
            SuppressionReason.STOP_KEYWORD,
            {"keyword": match.keyword, "inboundMessageId": encode_id("Message", inbound.id)},
        )
        suppression, created = await self._suppressions.add(new, now)
        return {"suppressionId": encode_id("Suppression", suppression.id), "created": created}

    async def _opt_in(
        self, inbound: Message, match: KeywordMatch, sender: str | None, now: datetime
    ) -> dict[str, Any]:
        """Lift what the recipient's own keyword suppressed (nothing the account or a provider
        did), recorded as lifted by the recipient."""
        reason = LIFTED_BY_RECIPIENT.format(keyword=match.keyword)
        lifted = []
        for found in await self._store.keyword_suppressions(
            inbound.account_id, inbound.sender, sender
        ):
            if await self._suppressions.remove(found, reason, now):
                lifted.append(encode_id("Suppression", found.id))
        return {"lifted": lifted}
