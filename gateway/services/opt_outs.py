"""Use case: a recipient's keyword (STOP, START, HELP) acted on and answered; and the
account's setting of the words, their scope and the answers.

An inbound message is handled in two steps, both called by the webhook service:

- ``handle`` runs inside the unit of work that stores the inbound message: it reads the
  account's setting and, when the body is one of its words, suppresses the sender (STOP) or
  lifts the suppressions the sender's own keyword made (START), and writes the audit entries
  (the keyword received, what it changed). The unit commits all of it with the message or
  none of it; a redelivered webhook is a duplicate to that unit, so nothing happens twice.
- ``answer`` runs after the commit: the auto-reply goes through the normal send path, from the
  number written to, to the sender, in the same conversation. Its idempotency key is derived
  from the inbound message, so it is sent once however often it is asked for; it is exempt
  from suppressions (it confirms the opt-out that suppressed its recipient) and from quiet
  hours (it answers the recipient's own message). A failure to send it is logged, not raised:
  the opt-out itself is committed and the webhook must not be refused for the answer.
  ``answer_again`` is asked when the webhook comes again (a duplicate): should the process have
  stopped between the commit and the answer, the provider's redelivery gets it sent.
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
from gateway.services.ports import OptOutStore, SuppressionStore
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
    """A keyword acted on: what to publish after the commit, and the answer to send."""

    inbound: Message
    match: KeywordMatch
    #: The auto-reply's text; None when the account turned it off.
    reply: str | None
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

    async def handle(self, inbound: Message, now: datetime) -> Handled | None:
        """Act on ``inbound`` (just stored, in the same unit of work) if it is a keyword."""
        found = await self._keyword(inbound)
        if found is None:
            return None
        settings, match = found
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
        return Handled(inbound, match, reply, events)

    async def answer_again(self, inbound: Message) -> Message | None:
        """The answer to a keyword whose webhook came again: sent now if the first delivery's
        answer never was (the process stopped right after the commit), else only found again
        by its idempotency key. Nothing else is done again."""
        found = await self._keyword(inbound)
        if found is None:
            return None
        settings, match = found
        return await self.answer(Handled(inbound, match, settings.replies.get(match.kind), []))

    async def _keyword(self, inbound: Message) -> tuple[OptOutSettings, KeywordMatch] | None:
        """The account's setting and the keyword ``inbound`` is, if it is one."""
        if inbound.channel is Channel.EMAIL or not could_be_keyword(inbound.body):
            return None
        settings = await self._store.opt_out_settings(inbound.account_id)
        match = match_keyword(settings, inbound.body)
        return None if match is None else (settings, match)

    async def answer(self, handled: Handled) -> Message | None:
        """Send the auto-reply of a handled keyword; the reply sent (or sent before), if any."""
        if handled.reply is None:
            return None
        inbound = handled.inbound
        marker = AutoReply(inbound.id, handled.match.kind)
        request = SendRequest(
            channel=Channel.SMS,
            from_=inbound.recipient,
            to=inbound.sender,
            body=handled.reply,
            idempotency_key=marker.idempotency_key(),
            bypass_quiet_hours=True,
            auto_reply=marker,
        )
        try:
            [outcome] = await self._sending.send(inbound.account_id, [request])
        except Exception:
            log.exception("auto_reply_failed", inbound_id=str(inbound.id))
            return None
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
