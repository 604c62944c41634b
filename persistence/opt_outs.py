"""Opt-out keywords: each account's setting, the suppressions a recipient's own keyword made,
and the audit entries of a keyword received.

Every method takes its connection from ``Repository.transaction``: the handling of a keyword
runs in the unit of work that stores the inbound message, so that a redelivered webhook (a
duplicate, refused by that unit) repeats none of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast
from uuid import UUID

from sqlalchemy import Table, select

from gateway.domain.opt_outs import DEFAULTS, KeywordKind, OptOutScope, OptOutSettings
from gateway.domain.records import Message, MessageEvent
from gateway.domain.suppressions import EVERY, Suppression, SuppressionReason
from persistence.base import Repository, event_row, insert_events
from persistence.models import OptOutSettingsRow
from persistence.suppressions import SUPPRESSIONS, suppression_from_row

SETTINGS = cast(Table, OptOutSettingsRow.__table__)

_KEYWORD_COLUMNS = {
    KeywordKind.STOP: "stop_keywords",
    KeywordKind.START: "start_keywords",
    KeywordKind.HELP: "help_keywords",
}
_REPLY_COLUMNS = {
    KeywordKind.STOP: "stop_reply",
    KeywordKind.START: "start_reply",
    KeywordKind.HELP: "help_reply",
}


class OptOutRepository(Repository):
    async def opt_out_settings(self, account_id: UUID) -> OptOutSettings:
        async with self.transaction() as conn:
            row = (
                await conn.execute(select(SETTINGS).where(SETTINGS.c.account_id == account_id))
            ).first()
        if row is None:
            return DEFAULTS
        r = row._mapping
        return OptOutSettings(
            keywords={kind: tuple(r[column]) for kind, column in _KEYWORD_COLUMNS.items()},
            scope=OptOutScope(r["scope"]),
            replies={kind: r[column] for kind, column in _REPLY_COLUMNS.items()},
        )

    async def set_opt_out_settings(
        self, account_id: UUID, settings: OptOutSettings, now: datetime
    ) -> None:
        values: dict[str, Any] = {
            **{
                column: list(settings.keywords.get(kind, ()))
                for kind, column in _KEYWORD_COLUMNS.items()
            },
            **{column: settings.replies.get(kind) for kind, column in _REPLY_COLUMNS.items()},
            "scope": settings.scope.value,
            "updated_at": now,
        }
        await self.put_account_row(SETTINGS, account_id, values)

    async def keyword_suppressions(
        self, account_id: UUID, address: str, sender: str | None
    ) -> list[Suppression]:
        """The suppressions of ``address`` its own keyword made: those covering ``sender``
        (its own and the account-wide ones), or all of them (``sender`` None)."""
        s = SUPPRESSIONS.c
        query = select(SUPPRESSIONS).where(
            s.account_id == account_id,
            s.address == address,
            s.reason == SuppressionReason.STOP_KEYWORD.value,
        )
        if sender is not None:
            query = query.where(s.sender.in_([sender, EVERY]))
        async with self.transaction() as conn:
            rows = await conn.execute(query.order_by(s.created_at, s.id))
        return [suppression_from_row(row) for row in rows]

    async def note(
        self, inbound: Message, entries: Sequence[tuple[str, dict[str, Any] | None]], now: datetime
    ) -> list[MessageEvent]:
        """Audit-trail entries (kind, detail) of an inbound message, in order."""
        async with self.transaction() as conn:
            return await insert_events(
                conn,
                [event_row(inbound, inbound.status, kind, detail, now) for kind, detail in entries],
            )
