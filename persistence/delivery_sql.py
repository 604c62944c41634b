"""PostgreSQL statements of the delivery worker's batches, built once.

Each is ONE statement: a data-modifying CTE changes the messages and a second one writes an
audit event per changed message, so the changes and their events commit together without a
transaction around them. They are built once and run with parameters (arrays for the
batch), so that neither the statement construction nor SQLAlchemy's cache key is paid again
per batch, and every batch size shares one prepared statement.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    String,
    bindparam,
    case,
    cast,
    func,
    insert,
    literal,
    null,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Dialect

from gateway.domain.channels import Channel, Direction
from gateway.domain.records import MessageEvent
from gateway.domain.statuses import MessageStatus
from gateway.domain.suppressions import SUPPRESSED_CODE
from persistence.rows import EVENTS, MESSAGES, message_from_row
from persistence.suppressions import first_reason, holds_back

S = MessageStatus

_EVENT_COLUMNS = [
    "account_id",
    "message_id",
    "conversation_id",
    "status",
    "kind",
    "detail",
    "occurred_at",
]


def _now() -> Any:
    return bindparam("now", type_=MESSAGES.c.updated_at.type)


def _with_events(
    changed: Any, kind: str, detail: ColumnElement[Any] | None, name: str = "events"
) -> Select[Any]:
    """The rows a data-modifying CTE returned, each with the audit event written for it."""
    ev = EVENTS.c
    events = (
        insert(EVENTS)
        .from_select(
            _EVENT_COLUMNS,
            select(
                changed.c.account_id,
                changed.c.id,
                changed.c.conversation_id,
                changed.c.status,
                literal(kind, String()),
                detail if detail is not None else null(),
                _now(),
            ),
        )
        .returning(ev.id, ev.message_id, ev.kind, ev.detail)
        .cte(name)
    )
    return select(
        changed,
        events.c.id.label("event_id"),
        events.c.kind.label("event_kind"),
        events.c.detail.label("event_detail"),
    ).join(events, events.c.message_id == changed.c.id)


def _readable_or_fail() -> ColumnElement[Any]:
    """``attempts + 1`` for a row this release can read back; for any other row an error
    that fails the whole statement (the cast of its unknown channel/direction to an integer,
    which also names the values), so that nothing of the batch is claimed.

    This is what lets a claim run as one statement without BEGIN and COMMIT around it: a
    row claimed and then found unreadable would otherwise be left SENDING, committed."""
    m = MESSAGES.c
    return case(
        (
            (m.channel == func.any(literal([c.value for c in Channel], ARRAY(String()))))
            & (m.direction == func.any(literal([d.value for d in Direction], ARRAY(String())))),
            m.attempts + 1,
        ),
        else_=cast(m.channel + literal("/", String()) + m.direction, Integer()),
    )


@cache
def claim_statement() -> Select[Any]:
    """QUEUED and due -> SENDING, one attempt more, held by ``worker``; parameters ``ids``,
    ``now`` and ``worker``. Fails as a
    whole when one of the rows could not be read back (see :func:`_readable_or_fail`).

    A message whose recipient has been suppressed since it was accepted is CANCELED instead,
    with the suppression's reason as its error, in the same statement: the suppression check
    costs the claim an index probe per message, not a round trip."""
    m = MESSAGES.c
    due = (
        m.id == func.any(bindparam("ids", type_=ARRAY(m.id.type))),
        m.status == S.QUEUED.value,
        m.next_attempt_at <= _now(),
    )
    scope = (m.account_id, m.recipient, m.channel, m.sender)
    claimed = (
        update(MESSAGES)
        .where(*due, ~holds_back(m))
        .values(
            status=S.SENDING.value,
            attempts=_readable_or_fail(),
            updated_at=_now(),
            claimed_by=bindparam("worker", type_=m.claimed_by.type),
        )
        .returning(*MESSAGES.c)
        .cte("claimed")
    )
    canceled = (
        update(MESSAGES)
        .where(*due, holds_back(m))
        .values(updated_at=_now(), **suppressed_values(scope))
        .returning(*MESSAGES.c)
        .cte("canceled")
    )
    detail = func.jsonb_build_object(
        "code", canceled.c.error_code, "reason", canceled.c.error_description
    )
    both = union_all(
        _with_events(claimed, "attempt", None),
        _with_events(canceled, "canceled", detail, "cancel_events"),
    ).subquery("changes")
    return select(*both.c)


def suppressed_values(
    scope: tuple[ColumnElement[Any], ColumnElement[Any], ColumnElement[Any], ColumnElement[Any]],
) -> dict[str, Any]:
    """The columns of a message canceled because its recipient is suppressed (``scope``: its
    account, recipient, channel and sender columns)."""
    return {
        "status": S.CANCELED.value,
        "error_code": SUPPRESSED_CODE,
        "error_description": first_reason(*scope),
        "error_permanent": True,
    }


@cache
def sent_statement() -> Select[Any]:
    """Successful sends; parameters ``ids``, ``providers``, ``provider_ids`` (one element per
    send, same order) and ``now``. SENDING -> SENT; a message a delivery receipt already moved
    on keeps its status, and who carried the message is recorded either way."""
    m = MESSAGES.c
    ids = bindparam("ids", type_=ARRAY(m.id.type))
    # The rows are locked in id order first, as every batch writer does (the status-callback
    # batches too): in the order of the answers, two batches could deadlock on each other,
    # each then waiting PostgreSQL's deadlock_timeout (1 s) for one of them to be failed.
    locked = (
        select(m.id)
        .where(m.id == func.any(ids))
        .order_by(m.id)
        .with_for_update(key_share=True)
        .cte("locked")
    )
    answers = select(
        func.unnest(ids).label("mid"),
        func.unnest(bindparam("providers", type_=ARRAY(String()))).label("prov"),
        func.unnest(bindparam("provider_ids", type_=ARRAY(String()))).label("pmid"),
    ).subquery("answers")
    source = (
        select(locked.c.id, answers.c.prov, answers.c.pmid)
        .join(answers, answers.c.mid == locked.c.id)
        .subquery("source")
    )
    recorded = (
        update(MESSAGES)
        .where(m.id == source.c.id)
        .values(
            status=case((m.status == S.SENDING.value, S.SENT.value), else_=m.status),
            provider=source.c.prov,
            provider_message_id=source.c.pmid,
            sent_at=_now(),
            updated_at=_now(),
        )
        .returning(*MESSAGES.c)
        .cte("recorded")
    )
    detail = func.jsonb_build_object(
        "provider", recorded.c.provider, "providerMessageId", recorded.c.provider_message_id
    )
    return _with_events(recorded, "provider_accepted", detail)


def change_from_row(row: Any, now: datetime) -> tuple[Any, MessageEvent]:
    """(message, event) of one row of these statements."""
    message = message_from_row(row)
    mapping = row._mapping
    event = MessageEvent(
        id=mapping["event_id"],
        account_id=message.account_id,
        message_id=message.id,
        conversation_id=message.conversation_id,
        status=message.status,
        kind=mapping["event_kind"],
        detail=mapping["event_detail"],
        occurred_at=now,
    )
    return message, event


@dataclass(frozen=True, slots=True)
class DriverStatement:
    """A statement compiled once for the driver itself: SQLAlchemy's per-execution work
    (cache key, parameter processing, result rows) cost more than the batch's round trip."""

    sql: str
    names: tuple[str, ...]
    constants: dict[str, Any]

    @classmethod
    def compile(
        cls, statement: Select[Any], dialect: Dialect, runtime: tuple[str, ...]
    ) -> DriverStatement:
        """``runtime``: the parameters given per execution; the others are constants."""
        compiled = statement.compile(dialect=dialect)
        constants = compiled.construct_params(dict.fromkeys(runtime))
        return cls(compiled.string, tuple(compiled.positiontup or ()), dict(constants))

    def arguments(self, params: Mapping[str, Any]) -> list[Any]:
        return [params[n] if n in params else self.constants[n] for n in self.names]


class DriverRow:
    """A driver's record where :func:`change_from_row` expects a SQLAlchemy row."""

    __slots__ = ("_mapping",)

    def __init__(self, record: Mapping[str, Any]) -> None:
        self._mapping = record
