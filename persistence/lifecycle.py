"""Status changes after acceptance: claims, outcomes, callbacks, cancel, retry, scheduling.

Every change is a conditional UPDATE whose WHERE clause names the statuses it may leave, so two
processes racing on one message cannot both win, and a status never moves backwards whatever
order callbacks arrive in. Each change writes its audit-trail event in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import structlog
from sqlalchemy import (
    ColumnElement,
    Select,
    any_,
    bindparam,
    literal,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.domain.pacing import Queued
from gateway.domain.records import DeliveryError, Message
from gateway.domain.results import Change, Failure, Hold, Outcome, Release, Retry, Sent
from gateway.domain.routing import ABANDONED_CODE
from gateway.domain.statuses import MessageStatus, can_cancel, can_retry
from gateway.domain.suppressions import suppression_after_failure
from persistence.base import Repository, event_row, insert_events
from persistence.delivery_sql import (
    DriverRow,
    DriverStatement,
    change_from_row,
    claim_statement,
    sent_statement,
    suppressed_values,
)
from persistence.rows import CONVERSATIONS, MESSAGES, message_from_row
from persistence.suppressions import SUPPRESSIONS, holds_back, insert_new

S = MessageStatus
log = structlog.get_logger(__name__)


def _from(statuses: list[MessageStatus]) -> ColumnElement[bool]:
    # Literals, not parameters: the planner must see the statuses to use the partial
    # indexes, also in a prepared statement's generic plan. (Enum values: nothing to quote.)
    return MESSAGES.c.status.in_([literal_column(f"'{s.value}'") for s in statuses])


def _error_columns(error: DeliveryError | None) -> dict[str, Any]:
    return {
        "error_code": error.code if error else None,
        "error_description": error.description if error else None,
        "error_permanent": error.permanent if error else None,
    }


def _untried(status: MessageStatus, until: datetime) -> dict[str, Any]:
    """The columns of a claimed message given back untried: ``status`` until ``until``, its
    claim not counted as an attempt."""
    return {
        "status": status.value,
        "next_attempt_at": until,
        "attempts": MESSAGES.c.attempts - 1,
    }


async def change_status(
    conn: AsyncConnection,
    where: list[ColumnElement[bool]],
    values: dict[str, Any],
    kind: str,
    detail: dict[str, Any] | Callable[[Message], dict[str, Any]] | None,
    now: datetime,
) -> list[Change]:
    """Conditional UPDATE of messages plus one audit-trail event per changed message
    (``detail``: the events' detail, or what makes it of each changed message)."""
    rows = await conn.execute(
        update(MESSAGES).where(*where).values(updated_at=now, **values).returning(MESSAGES)
    )
    messages = [message_from_row(r) for r in rows]
    events = await insert_events(
        conn,
        [
            event_row(m, m.status, kind, detail(m) if callable(detail) else detail, now)
            for m in messages
        ],
    )
    return [Change(m, e) for m, e in zip(messages, events, strict=True)]


def _suppressed_detail(message: Message) -> dict[str, Any]:
    """The event detail of a message canceled for a suppressed recipient, as the
    one-statement claim writes it."""
    error = message.error
    return {"code": error.code if error else None, "reason": error.description if error else None}


def _change_from(row: Any, now: datetime) -> Change:
    message, event = change_from_row(row, now)
    return Change(message, event)


def _sent_params(sent: Sequence[Sent], now: datetime) -> dict[str, Any]:
    return {
        "ids": [o.message_id for o in sent],
        "providers": [o.provider for o in sent],
        "provider_ids": [o.provider_message_id for o in sent],
        "now": now,
    }


class LifecycleRepository(Repository):
    _change = staticmethod(change_status)

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine)
        self._driver_statements: dict[Select[Any], DriverStatement] = {}

    def _among(self, message_ids: Sequence[UUID]) -> ColumnElement[bool]:
        """WHERE the message is one of ``message_ids``.

        On PostgreSQL one array parameter, so that every batch size shares one prepared
        statement instead of compiling and preparing one per IN-list length.
        """
        if self.dialect == "postgresql":
            return MESSAGES.c.id == any_(literal(list(message_ids), ARRAY(MESSAGES.c.id.type)))
        return MESSAGES.c.id.in_(message_ids)

    async def claim_many(
        self, message_ids: Sequence[UUID], now: datetime, *, worker: str | None = None
    ) -> dict[UUID, Change]:
        """Claim many messages in one statement and one transaction; only those that are
        QUEUED and due are taken, each by exactly one of the claimers racing for it.
        ``worker`` is recorded as their holder: its heartbeat tells when to take them back.

        Those whose recipient has been suppressed meanwhile are CANCELED instead of claimed:
        their changes are returned too, with that status."""
        if not message_ids:
            return {}
        m = MESSAGES.c
        if self.dialect == "postgresql" and self.may_commit_alone:
            # One statement, no BEGIN and COMMIT round trips: it fails as a whole, claiming
            # nothing, when a row it would claim could not be read back (a poison row), so
            # the claims of a batch are never committed with one of them stranded.
            params = {"ids": list(message_ids), "now": now, "worker": worker}
            changes = await self._autocommit(claim_statement(), params, now)
            return {c.message.id: c for c in changes}
        due = [self._among(message_ids), _from([S.QUEUED]), m.next_attempt_at <= now]
        async with self.transaction() as conn:
            canceled = await self._cancel_suppressed(conn, due, now)
            changes = await self._change(
                conn,
                due,
                {"status": S.SENDING.value, "attempts": m.attempts + 1, "claimed_by": worker},
                "attempt",
                None,
                now,
            )
        return {c.message.id: c for c in [*canceled, *changes]}

    async def _cancel_suppressed(
        self, conn: AsyncConnection, due: list[ColumnElement[bool]], now: datetime
    ) -> list[Change]:
        """Of the messages ``due`` selects, cancel those whose recipient is suppressed; the
        one-statement claim does the same (persistence/delivery_sql.py)."""
        m = MESSAGES.c
        scope = (m.account_id, m.recipient, m.channel, m.sender)
        return await self._change(
            conn,
            [*due, holds_back(m)],
            suppressed_values(scope),
            "canceled",
            _suppressed_detail,
            now,
        )

    async def record_outcomes(
        self, outcomes: Sequence[Outcome], now: datetime
    ) -> list[Change | None]:
        """Record the outcomes of many attempts in ONE transaction (group commit).

        Returns each outcome's change in input order; None where the message had moved on
        (e.g. it was canceled meanwhile). Successful sends, the common case, take three
        statements whatever their number.
        """
        results: list[Change | None] = [None] * len(outcomes)
        only_sent = [o for o in outcomes if isinstance(o, Sent)]
        if (
            self.dialect == "postgresql"
            and self.may_commit_alone
            and len(only_sent) == len(outcomes)
            and not any(o.detail for o in only_sent)
        ):
            # The common case, and one statement: no transaction around it needed.
            recorded = await self._autocommit(sent_statement(), _sent_params(only_sent, now), now)
            by_id = {c.message.id: c for c in recorded}
            return [by_id.get(o.message_id) for o in only_sent]
        async with self.transaction() as conn:
            sent = [(i, o) for i, o in enumerate(outcomes) if isinstance(o, Sent)]
            if sent:
                by_sent = await self._record_sent(conn, [o for _, o in sent], now)
                for i, done in sent:
                    results[i] = by_sent.get(done.message_id)
            # In id order, as every batch writer locks its rows, so batches cannot deadlock.
            for i, outcome in sorted(enumerate(outcomes), key=lambda pair: pair[1].message_id):
                if not isinstance(outcome, Sent):
                    results[i] = await self._record_other(conn, outcome, now)
        return results

    async def _autocommit(
        self, statement: Select[Any], params: dict[str, Any], now: datetime
    ) -> list[Change]:
        """Run one self-contained statement (PostgreSQL) as its own transaction, on the
        driver's connection: no BEGIN and COMMIT round trips around it. What it wrote is
        committed once it returns, so a row that cannot be read back is skipped (logged),
        never a reason to raise and be run again."""
        prepared = self._driver_statements.get(statement)
        if prepared is None:
            prepared = DriverStatement.compile(statement, self.engine.dialect, tuple(params))
            self._driver_statements[statement] = prepared
        async with self.driver() as driver:
            records = await driver.fetch(prepared.sql, *prepared.arguments(params))
        rows = [DriverRow(record) for record in records]
        changes = []
        for row in rows:
            try:
                changes.append(_change_from(row, now))
            except Exception:
                log.exception("changed_row_unreadable", message_id=str(row._mapping["id"]))
        return changes

    async def _record_sent(
        self, conn: AsyncConnection, sent: list[Sent], now: datetime
    ) -> dict[UUID, Change]:
        if self.dialect == "postgresql" and not any(o.detail for o in sent):
            changes = [
                _change_from(row, now)
                for row in await conn.execute(sent_statement(), _sent_params(sent, now))
            ]
            return {c.message.id: c for c in changes}
        # Below: SQLite, and the rare sends whose event lists the vendors failed over from.
        m = MESSAGES.c
        # Who carried the message is recorded whatever its status: a delivery receipt may
        # have overtaken the provider's answer. Rows are locked in id order, as every batch
        # writer does, so that two batches cannot deadlock on each other.
        ordered = sorted(sent, key=lambda o: o.message_id)
        await conn.execute(
            update(MESSAGES)
            .where(m.id == bindparam("mid"))
            .values(
                provider=bindparam("prov"),
                provider_message_id=bindparam("pmid"),
                sent_at=bindparam("at"),
                updated_at=bindparam("at"),
            ),
            [
                {"mid": o.message_id, "prov": o.provider, "pmid": o.provider_message_id, "at": now}
                for o in ordered
            ],
        )
        ids = [o.message_id for o in ordered]
        rows = await conn.execute(
            update(MESSAGES)
            .where(self._among(ids), _from([S.SENDING]))
            .values(status=S.SENT.value)
            .returning(MESSAGES)
        )
        messages = {msg.id: msg for msg in map(message_from_row, rows)}
        overtaken = [mid for mid in ids if mid not in messages]
        if overtaken:
            # Their status stays what the receipt made it; the event still says who carried it.
            found = await conn.execute(select(MESSAGES).where(self._among(overtaken)))
            messages.update((msg.id, msg) for msg in map(message_from_row, found))
        recorded = [o for o in ordered if o.message_id in messages]
        events = await insert_events(
            conn,
            [
                event_row(
                    messages[o.message_id],
                    messages[o.message_id].status,
                    "provider_accepted",
                    {
                        "provider": o.provider,
                        "providerMessageId": o.provider_message_id,
                        **(o.detail or {}),
                    },
                    now,
                )
                for o in recorded
            ],
        )
        return {
            o.message_id: Change(messages[o.message_id], event)
            for o, event in zip(recorded, events, strict=True)
        }

    async def _record_other(
        self, conn: AsyncConnection, outcome: Outcome, now: datetime
    ) -> Change | None:
        m = MESSAGES.c
        where: list[ColumnElement[bool]] = [m.id == outcome.message_id, _from([S.SENDING])]
        values: dict[str, Any]
        if isinstance(outcome, Retry):
            error = outcome.error
            values = {
                "status": S.QUEUED.value,
                "next_attempt_at": outcome.next_attempt_at,
                **_error_columns(error),
            }
            if outcome.provider is not None:
                # It may be out through this vendor: kept to it from now on.
                values["provider"] = outcome.provider
            kind = "retry_scheduled"
            detail = {
                "code": error.code,
                "nextAttemptAt": outcome.next_attempt_at.isoformat(),
                **(outcome.detail or {}),
            }
        elif isinstance(outcome, Release):
            values = _untried(S.QUEUED, outcome.next_attempt_at)
            kind = "deferred"
            detail = {
                "reason": outcome.reason,
                "nextAttemptAt": outcome.next_attempt_at.isoformat(),
            }
        elif isinstance(outcome, Hold):
            # Untried, like a release, but waiting as a scheduled message does: until the
            # recipient's quiet hours end, and cancelable meanwhile.
            values = {**_untried(S.SCHEDULED, outcome.until), "claimed_by": None}
            kind = "deferred"
            detail = outcome.detail
        elif isinstance(outcome, Failure):
            error = outcome.error
            # QUEUED too: a poison entry is dead-lettered without having been claimed.
            where = [m.id == outcome.message_id, _from([S.SENDING, S.QUEUED])]
            values = {"status": S.FAILED.value, **_error_columns(error)}
            kind = "dead_lettered"
            detail = {
                "code": error.code,
                "description": error.description,
                "permanent": error.permanent,
                **(outcome.detail or {}),
            }
            if error.recipient_unsubscribed:
                detail["recipientUnsubscribed"] = True
        else:
            raise TypeError(f"not a recordable outcome: {outcome!r}")
        changes = await self._change(conn, where, values, kind, detail, now)
        if changes and isinstance(outcome, Failure):
            await self._suppress_after(conn, changes[0].message, outcome, now)
        return changes[0] if changes else None

    async def _suppress_after(
        self, conn: AsyncConnection, message: Message, failure: Failure, now: datetime
    ) -> None:
        """The suppression the failure leaves (a provider refused the recipient as
        unsubscribed), in the transaction that records the failure."""
        provider = (failure.detail or {}).get("provider")
        new = suppression_after_failure(message, failure.error, provider)
        if new is not None:
            await insert_new(conn, self.upsert(SUPPRESSIONS), [new], now)

    async def _record_one(self, outcome: Outcome, now: datetime) -> Change | None:
        return (await self.record_outcomes([outcome], now))[0]

    async def record_failure(
        self,
        message_id: UUID,
        error: DeliveryError,
        now: datetime,
        *,
        detail: dict[str, Any] | None = None,
    ) -> Change | None:
        return await self._record_one(Failure(message_id, error, detail), now)

    async def dead_letter_unread(
        self, message_id: UUID, error: DeliveryError, now: datetime
    ) -> None:
        """FAILED without reading the row back (it may be what cannot be decoded)."""
        m = MESSAGES.c
        async with self.transaction() as conn:
            rows = await conn.execute(
                update(MESSAGES)
                .where(m.id == message_id, _from([S.SENDING, S.QUEUED]))
                .values(status=S.FAILED.value, updated_at=now, **_error_columns(error))
                .returning(m.id, m.account_id, m.conversation_id)
            )
            detail = {"code": error.code, "description": error.description, "permanent": False}
            await insert_events(
                conn,
                [
                    {
                        "account_id": account_id,
                        "message_id": mid,
                        "conversation_id": conversation_id,
                        "status": S.FAILED.value,
                        "kind": "dead_lettered",
                        "detail": detail,
                        "occurred_at": now,
                    }
                    for mid, account_id, conversation_id in rows.all()
                ],
            )

    async def cancel(
        self, account_id: UUID, message_id: UUID, now: datetime
    ) -> tuple[Change | None, Message | None]:
        """(change, None): canceled; (None, current): not cancelable; (None, None): unknown."""
        return await self._operator_change(
            account_id, message_id, can_cancel, {"status": S.CANCELED.value}, "canceled", now
        )

    async def retry(
        self, account_id: UUID, message_id: UUID, now: datetime
    ) -> tuple[Change | None, Message | None]:
        return await self._operator_change(
            account_id,
            message_id,
            can_retry,
            {"status": S.QUEUED.value, "next_attempt_at": now, **_error_columns(None)},
            "retry_requested",
            now,
        )

    async def _operator_change(
        self,
        account_id: UUID,
        message_id: UUID,
        allowed: Callable[[MessageStatus], bool],
        values: dict[str, Any],
        kind: str,
        now: datetime,
    ) -> tuple[Change | None, Message | None]:
        m = MESSAGES.c
        scope = [m.id == message_id, m.account_id == account_id]
        movable = _from([s for s in MessageStatus if allowed(s)])
        async with self.transaction() as conn:
            changes = await self._change(conn, [*scope, movable], values, kind, None, now)
            if changes:
                return changes[0], None
            row = (await conn.execute(select(MESSAGES).where(*scope))).first()
        return None, message_from_row(row) if row else None

    async def promote_scheduled(self, now: datetime, limit: int = 500) -> list[Change]:
        """SCHEDULED messages whose time has come -> QUEUED."""
        m = MESSAGES.c
        due = (
            select(m.id)
            .where(_from([S.SCHEDULED]), m.next_attempt_at <= now)
            .order_by(m.next_attempt_at)
            .limit(limit)
            .scalar_subquery()
        )
        async with self.transaction() as conn:
            return await self._change(
                conn,
                [m.id.in_(due), _from([S.SCHEDULED])],
                {"status": S.QUEUED.value},
                "enqueued",
                None,
                now,
            )

    async def requeue_abandoned(
        self,
        now: datetime,
        *,
        stale_before: datetime,
        live_workers: frozenset[str] | None,
        keep: Collection[UUID] = (),
        max_attempts: int,
    ) -> list[Change]:
        """SENDING messages whose worker is gone, back to QUEUED and due at once, marked
        ambiguous because the provider may or may not have taken them; dead-lettered instead
        once their attempts are used up (a message that kills its worker every time).

        A message held by a worker that is not in ``live_workers`` is taken back whatever its
        age; one with no recorded holder once it is older than ``stale_before``. With
        ``live_workers`` None (liveness unknown) only the age rule applies. Messages in
        ``keep`` (their outcome is known but not yet written) are left alone."""
        m = MESSAGES.c
        gone: ColumnElement[bool] = m.claimed_by.is_(None) & (m.updated_at < stale_before)
        if live_workers is not None:
            gone = gone | (m.claimed_by.is_not(None) & m.claimed_by.not_in(list(live_workers)))
        stale = [_from([S.SENDING]), gone]
        if keep:
            stale.append(m.id.not_in(list(keep)))
        # Its error says it was abandoned until a vendor answers for it: the next attempt
        # may then use its route's first vendor only (``routing.plan_attempt``).
        error = DeliveryError(ABANDONED_CODE, "the worker handling it stopped", permanent=False)
        async with self.transaction() as conn:
            failed = await self._change(
                conn,
                [*stale, m.attempts >= max_attempts],
                {"status": S.FAILED.value, "claimed_by": None, **_error_columns(error)},
                "dead_lettered",
                {"code": error.code, "description": error.description, "ambiguous": True},
                now,
            )
            requeued = await self._change(
                conn,
                [*stale, m.attempts < max_attempts],
                {
                    "status": S.QUEUED.value,
                    "next_attempt_at": now,
                    "claimed_by": None,
                    **_error_columns(error),
                },
                "attempt_abandoned",
                {"ambiguous": True},
                now,
            )
        return [*failed, *requeued]

    async def due_work(
        self,
        now: datetime,
        *,
        since: datetime | None = None,
        grace_before: datetime | None = None,
        limit: int = 500,
    ) -> list[Queued]:
        """QUEUED messages to hand to the broker, soonest due first, each with what its lane
        needs (account, sender, segments).

        Those that became due after ``since`` at a time set after their acceptance (a retry,
        a deferral, a scheduled time, a take-back): nobody else enqueues them. And those due
        before ``grace_before``, whatever set their time: an accepted message whose enqueue
        was lost with the process that accepted it. Both default to everything due by now.
        """
        m = MESSAGES.c
        lost = m.next_attempt_at <= (grace_before or now)
        which = lost
        if since is not None:
            newly_due = (m.next_attempt_at > since) & (m.next_attempt_at > m.created_at)
            which = newly_due | lost
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(m.id, m.account_id, m.sender, m.segments)
                .where(_from([S.QUEUED]), m.next_attempt_at <= now, which)
                .order_by(m.next_attempt_at)
                .limit(limit)
            )
        return [Queued(r.id, r.account_id, r.sender, max(1, r.segments or 1)) for r in rows]

    async def touch_conversations(self, activity: dict[UUID, datetime]) -> None:
        """Move each conversation's last activity forward (never back).

        Run after the accept transaction committed, in its own short transaction, so that the
        conversation row is never locked for the length of an accept.
        """
        if not activity:
            return
        c = CONVERSATIONS.c
        statement = (
            update(CONVERSATIONS)
            .where(c.id == bindparam("cid"), c.last_message_at < bindparam("at"))
            .values(last_message_at=bindparam("at"))
        )
        # Never a unit of work's: its relaxed commit below must not cover anybody's messages.
        async with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                # Derived data: losing it in a crash costs an ordering nudge, not a message,
                # so it need not wait for its own WAL flush.
                await conn.execute(text("SET LOCAL synchronous_commit = off"))
            await conn.execute(
                statement, [{"cid": cid, "at": at} for cid, at in sorted(activity.items())]
            )
