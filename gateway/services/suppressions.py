"""Use cases: an account lists, adds and removes the recipients it must not send to.

The refusal itself happens where messages are written: at accept and at claim, inside their
own statements (see ``persistence/accept_sql.py`` and ``persistence/delivery_sql.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from gateway.domain.addresses import (
    AddressError,
    normalize_email,
    normalize_number,
    normalize_phone,
)
from gateway.domain.channels import Channel
from gateway.domain.messages import FieldProblem, text_problem
from gateway.domain.records import Page
from gateway.domain.suppressions import (
    NewSuppression,
    Suppression,
    SuppressionReason,
    removal_needs_reason,
)
from gateway.services.clock import utcnow
from gateway.services.ports import PageRequest, SuppressionStore, UnitsOfWork


@dataclass(frozen=True, slots=True)
class Added:
    suppression: Suppression
    #: False: an entry of the same scope was there already, and is kept as it was.
    created: bool


@dataclass(frozen=True, slots=True)
class Refused:
    problems: list[FieldProblem]


@dataclass(frozen=True, slots=True)
class Removed:
    suppression: Suppression


@dataclass(frozen=True, slots=True)
class ReasonRequired:
    suppression: Suppression


@dataclass(frozen=True, slots=True)
class Unknown:
    pass


RemoveOutcome = Removed | ReasonRequired | Unknown | Refused

#: Longest note or removal reason kept.
NOTE_MAX = 1000


def _note_problems(field: str, text: str | None) -> list[FieldProblem]:
    if text is None:
        return []
    problem = text_problem(text)
    if problem is None and len(text) > NOTE_MAX:
        problem = f"must be at most {NOTE_MAX} characters"
    return [FieldProblem(field, problem)] if problem else []


def normalize_address(raw: str, channel: Channel | None, region: str, *, ours: bool = False) -> str:
    """An address as messages carry it: e-mail for EMAIL (or when it has an ``@``), else
    E.164; ``ours`` (a sender of the account) may also be a short code. Raises
    ``AddressError``."""
    if channel is Channel.EMAIL or (channel is None and "@" in raw):
        return normalize_email(raw)
    return normalize_number(raw, region) if ours else normalize_phone(raw, region)


class SuppressionService:
    def __init__(self, store: SuppressionStore, units: UnitsOfWork, *, region: str) -> None:
        self._store = store
        self._units = units
        self._region = region

    async def page(
        self, account_id: UUID, request: PageRequest, *, address: str | None
    ) -> Page[Suppression] | None:
        """None when ``address`` is no address at all (nothing can match)."""
        normalized = None
        if address is not None:
            try:
                normalized = normalize_address(address, None, self._region)
            except AddressError:
                return None
        return await self._store.page(account_id, request, address=normalized)

    async def add(
        self,
        account_id: UUID,
        address: str,
        *,
        channel: Channel | None,
        sender: str | None,
        note: str | None,
    ) -> Added | Refused:
        """Suppress ``address`` for ``channel`` and ``sender`` (None: every one) by the
        account's own decision."""
        problems = _note_problems("note", note)
        normalized: str | None = None
        own: str | None = None
        try:
            normalized = normalize_address(address, channel, self._region)
        except AddressError as exc:
            problems.append(FieldProblem("address", str(exc)))
        if sender is not None:
            try:
                own = normalize_address(sender, channel, self._region, ours=True)
            except AddressError as exc:
                problems.append(FieldProblem("from", str(exc)))
        if problems or normalized is None:
            return Refused(problems)
        new = NewSuppression(
            account_id,
            normalized,
            channel,
            own,
            SuppressionReason.API,
            {"note": note} if note else None,
        )
        return Added(*await self._store.add(new, utcnow()))

    async def remove(
        self, account_id: UUID, suppression_id: UUID, reason: str | None
    ) -> RemoveOutcome:
        """Lift a suppression; one the recipient asked for (STOP) only with a reason. Every
        removal is recorded, with its reason when given."""
        reason = (reason or "").strip() or None
        problems = _note_problems("reason", reason)
        if problems:
            return Refused(problems)
        async with self._units():
            found = await self._store.get(account_id, suppression_id)
            if found is None:
                return Unknown()
            if reason is None and removal_needs_reason(found.reason):
                return ReasonRequired(found)
            if not await self._store.remove(found, reason, utcnow()):
                return Unknown()
        return Removed(found)
