"""Webhook endpoints and their deliveries.

Deliveries are written by a trigger on message_events, in the transaction of the event they
carry (migration 0012); this module claims them, records their tries and lists them. A claim
takes its batch under a transaction-scoped advisory lock on PostgreSQL, so workers claiming at
the same time cannot together exceed an endpoint's share of slots (SQLite has one writer).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import datetime, timedelta
from typing import Any, Final, TypeVar, cast
from uuid import UUID

from sqlalchemy import (
    Row,
    Select,
    Table,
    bindparam,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.domain.records import Page
from gateway.domain.statuses import MessageStatus
from gateway.domain.webhook_endpoints import (
    DeliveryState,
    DisabledReason,
    EndpointEvent,
    EndpointEventKind,
    EventFilter,
    WebhookDelivery,
    WebhookEndpoint,
)
from gateway.services.ports import AttemptRecord, DueDelivery, PageRequest
from persistence.base import Repository
from persistence.models import WebhookDeliveryRow, WebhookEndpointEventRow, WebhookEndpointRow
from persistence.queries import keyset_page
from persistence.rows import EVENTS, event_from_row
from persistence.sealed import SecretBox

ENDPOINTS = cast(Table, WebhookEndpointRow.__table__)
DELIVERIES = cast(Table, WebhookDeliveryRow.__table__)
ENDPOINT_EVENTS = cast(Table, WebhookEndpointEventRow.__table__)

T = TypeVar("T")

#: Longest error text kept for a try (response bodies are cut by the sender already).
ERROR_MAX: Final = 1000
#: One lock for every worker's claims: they are brief and a few a second at most.
_CLAIM_LOCK: Final = text("SELECT pg_advisory_xact_lock(7239410482)")


def _listed(values: frozenset[str]) -> str:
    """The comma-wrapped form the trigger matches: ``,a,b,``; empty for every value."""
    return "," + ",".join(sorted(values)) + "," if values else ""


def _unlisted(stored: str) -> frozenset[str]:
    return frozenset(v for v in stored.split(",") if v)


def endpoint_from_row(row: Row[Any]) -> WebhookEndpoint:
    e = row._mapping
    reason = e["disabled_reason"]
    return WebhookEndpoint(
        id=e["id"],
        account_id=e["account_id"],
        url=e["url"],
        description=e["description"],
        filter=EventFilter(
            _unlisted(e["event_kinds"]),
            frozenset(MessageStatus(s) for s in _unlisted(e["statuses"])),
        ),
        enabled=e["enabled"],
        disabled_reason=DisabledReason(reason) if reason else None,
        disabled_at=e["disabled_at"],
        failing_since=e["failing_since"],
        previous_secret_until=e["previous_secret_until"],
        created_at=e["created_at"],
        updated_at=e["updated_at"],
    )


def _with_event() -> Select[Any]:
    """Deliveries with their events' columns (prefixed ``ev_``), as delivery_from_row reads."""
    return select(DELIVERIES, *[c.label(f"ev_{c.name}") for c in EVENTS.c]).join(
        EVENTS, EVENTS.c.id == DELIVERIES.c.event_id
    )


def delivery_from_row(row: Row[Any]) -> WebhookDelivery:
    d = row._mapping
    return WebhookDelivery(
        id=d["id"],
        endpoint_id=d["endpoint_id"],
        account_id=d["account_id"],
        event=event_from_row(_prefixed(row, "ev_")),
        state=DeliveryState(d["state"]),
        attempts=d["attempts"],
        last_status_code=d["last_status_code"],
        last_error=d["last_error"],
        last_attempt_at=d["last_attempt_at"],
        next_attempt_at=d["next_attempt_at"],
        created_at=d["created_at"],
    )


def endpoint_event_from_row(row: Row[Any]) -> EndpointEvent:
    v = row._mapping
    return EndpointEvent(
        id=v["id"],
        endpoint_id=v["endpoint_id"],
        kind=EndpointEventKind(v["kind"]),
        reason=DisabledReason(v["reason"]) if v["reason"] else None,
        occurred_at=v["occurred_at"],
    )


def _logged(
    endpoint: WebhookEndpoint,
    kind: EndpointEventKind,
    at: datetime,
    reason: DisabledReason | None = None,
) -> Any:
    """The insert of one entry of ``endpoint``'s event log."""
    return insert(ENDPOINT_EVENTS).values(
        endpoint_id=endpoint.id,
        account_id=endpoint.account_id,
        kind=kind.value,
        reason=reason.value if reason else None,
        occurred_at=at,
    )


def _endpoint_values(endpoint: WebhookEndpoint) -> dict[str, Any]:
    return {
        "url": endpoint.url,
        "description": endpoint.description,
        "event_kinds": _listed(endpoint.filter.kinds),
        "statuses": _listed(frozenset(s.value for s in endpoint.filter.statuses)),
        "enabled": endpoint.enabled,
        "disabled_reason": endpoint.disabled_reason.value if endpoint.disabled_reason else None,
        "disabled_at": endpoint.disabled_at,
        "failing_since": endpoint.failing_since,
        "previous_secret_until": endpoint.previous_secret_until,
        "updated_at": endpoint.updated_at,
    }


class WebhookEndpointRepository(Repository):
    def __init__(self, engine: AsyncEngine, box: SecretBox) -> None:
        super().__init__(engine)
        self._box = box

    async def create(self, endpoint: WebhookEndpoint, secret: str) -> None:
        async with self.transaction() as conn:
            await conn.execute(
                insert(ENDPOINTS).values(
                    id=endpoint.id,
                    account_id=endpoint.account_id,
                    created_at=endpoint.created_at,
                    secret=self._box.seal(secret),
                    **_endpoint_values(endpoint),
                )
            )
            await conn.execute(_logged(endpoint, EndpointEventKind.CREATED, endpoint.created_at))

    async def get(self, account_id: UUID, endpoint_id: UUID) -> WebhookEndpoint | None:
        e = ENDPOINTS.c
        async with self.transaction() as conn:
            row = (
                await conn.execute(
                    select(ENDPOINTS).where(e.account_id == account_id, e.id == endpoint_id)
                )
            ).first()
        return endpoint_from_row(row) if row else None

    async def update(
        self, endpoint: WebhookEndpoint, event: EndpointEventKind, *, secret: str | None = None
    ) -> WebhookEndpoint | None:
        e = ENDPOINTS.c
        values = _endpoint_values(endpoint)
        if secret is not None:
            # The secret it replaces keeps signing until previous_secret_until.
            values |= {"previous_secret": e.secret, "secret": self._box.seal(secret)}
        async with self.transaction() as conn:
            row = (
                await conn.execute(
                    update(ENDPOINTS)
                    .where(e.account_id == endpoint.account_id, e.id == endpoint.id)
                    .values(values)
                    .returning(ENDPOINTS)
                )
            ).first()
            if row is not None:
                reason = endpoint.disabled_reason if event is EndpointEventKind.DISABLED else None
                await conn.execute(_logged(endpoint, event, endpoint.updated_at, reason))
        return endpoint_from_row(row) if row else None

    async def delete(self, account_id: UUID, endpoint_id: UUID) -> bool:
        e = ENDPOINTS.c
        async with self.transaction() as conn:
            # Explicitly, not by cascade: SQLite enforces foreign keys only when told to.
            for table in (DELIVERIES, ENDPOINT_EVENTS):
                await conn.execute(
                    delete(table).where(
                        table.c.endpoint_id == endpoint_id, table.c.account_id == account_id
                    )
                )
            gone = await conn.execute(
                delete(ENDPOINTS).where(e.account_id == account_id, e.id == endpoint_id)
            )
        return bool(gone.rowcount)

    async def page(
        self, account_id: UUID, *, first: int, after: tuple[datetime, UUID] | None
    ) -> Page[WebhookEndpoint]:
        e = ENDPOINTS.c
        query = select(ENDPOINTS).where(e.account_id == account_id)
        return await keyset_page(
            self.engine, query, (e.created_at, e.id), endpoint_from_row, PageRequest(first, after)
        )

    async def deliveries_page(
        self, account_id: UUID, endpoint_id: UUID, *, first: int, after: int | None
    ) -> Page[WebhookDelivery]:
        d = DELIVERIES.c
        query = _with_event().where(d.account_id == account_id, d.endpoint_id == endpoint_id)
        return await self._newest_first(query, d.id, delivery_from_row, first, after)

    async def events_page(
        self, account_id: UUID, endpoint_id: UUID, *, first: int, after: int | None
    ) -> Page[EndpointEvent]:
        v = ENDPOINT_EVENTS.c
        query = select(ENDPOINT_EVENTS).where(
            v.account_id == account_id, v.endpoint_id == endpoint_id
        )
        return await self._newest_first(query, v.id, endpoint_event_from_row, first, after)

    async def _newest_first(
        self,
        query: Select[Any],
        id_column: Any,
        mapper: Callable[[Row[Any]], T],
        first: int,
        after: int | None,
    ) -> Page[T]:
        """A keyset page of ``query`` by a serial id, newest first, after the id ``after``."""
        if after is not None:
            query = query.where(id_column < after)
        async with self.engine.connect() as conn:
            rows = await conn.execute(query.order_by(id_column.desc()).limit(first + 1))
            items = [mapper(r) for r in rows]
        return Page(items[:first], len(items) > first, after is not None)

    async def redeliver(
        self, account_id: UUID, delivery_id: int, now: datetime
    ) -> WebhookDelivery | None:
        d = DELIVERIES.c
        async with self.transaction() as conn:
            await conn.execute(
                _due_again(now).where(d.account_id == account_id, d.id == delivery_id)
            )
            row = (
                await conn.execute(
                    _with_event().where(d.id == delivery_id, d.account_id == account_id)
                )
            ).first()
        return delivery_from_row(row) if row else None

    async def redeliver_failed(
        self, account_id: UUID, endpoint_id: UUID, since: datetime, now: datetime
    ) -> int:
        d = DELIVERIES.c
        async with self.transaction() as conn:
            result = await conn.execute(
                _due_again(now).where(
                    d.account_id == account_id,
                    d.endpoint_id == endpoint_id,
                    d.state == DeliveryState.FAILED.value,
                    d.created_at >= since,
                )
            )
        return int(result.rowcount or 0)

    async def claim(
        self, now: datetime, held: Collection[int], *, limit: int, batch: int, lease: timedelta
    ) -> list[DueDelivery]:
        d, e = DELIVERIES.c, ENDPOINTS.c
        pending = d.state == DeliveryState.PENDING.value
        free = or_(d.leased_until.is_(None), d.leased_until <= now)
        picked = (
            _claimable_by_endpoint(now, batch, held)
            if self.dialect == "postgresql"
            else _claimable_bounded(now, batch, held)
        ).limit(limit)
        leased_until = now + lease
        async with self.transaction() as conn:
            if self.dialect == "postgresql":
                await conn.execute(_CLAIM_LOCK)
            ids = list((await conn.scalars(picked)).all())
            if not ids:
                return []
            claimed = list(
                (
                    await conn.scalars(
                        update(DELIVERIES)
                        .where(d.id.in_(ids), pending, free)
                        .values(attempts=d.attempts + 1, leased_until=leased_until)
                        .returning(d.id)
                    )
                ).all()
            )
            rows = (
                await conn.execute(
                    _with_event()
                    .add_columns(*[c.label(f"ep_{c.name}") for c in ENDPOINTS.c])
                    .join(ENDPOINTS, e.id == d.endpoint_id)
                    .where(d.id.in_(claimed))
                    .order_by(d.next_attempt_at, d.id)
                )
            ).all()
        # A batch carries each endpoint on many rows: read and unsealed once.
        endpoints: dict[UUID, tuple[WebhookEndpoint, tuple[str, ...]]] = {}
        for row in rows:
            if row.endpoint_id not in endpoints:
                endpoints[row.endpoint_id] = self._endpoint_of(row, now)
        return [
            DueDelivery(delivery_from_row(row), *endpoints[row.endpoint_id], leased_until)
            for row in rows
        ]

    async def renew(self, ids: Collection[int], now: datetime, until: datetime) -> set[int]:
        d = DELIVERIES.c
        if not ids:
            return set()
        async with self.transaction() as conn:
            renewed = await conn.scalars(
                update(DELIVERIES)
                .where(
                    d.id.in_(list(ids)),
                    d.state == DeliveryState.PENDING.value,
                    d.leased_until > now,
                    d.endpoint_id.in_(select(ENDPOINTS.c.id).where(ENDPOINTS.c.enabled)),
                )
                .values(leased_until=until)
                .returning(d.id)
            )
            return set(renewed.all())

    async def release(self, ids: Collection[int], now: datetime) -> None:
        d = DELIVERIES.c
        if not ids:
            return
        async with self.transaction() as conn:
            await conn.execute(
                update(DELIVERIES)
                .where(
                    d.id.in_(list(ids)),
                    d.state == DeliveryState.PENDING.value,
                    d.leased_until > now,
                )
                .values(
                    leased_until=None,
                    attempts=case((d.attempts > 0, d.attempts - 1), else_=0),
                )
            )

    async def delete_settled(self, before: datetime, *, limit: int) -> int:
        """Delete up to ``limit`` delivered or failed deliveries created before ``before``,
        oldest first; how many went. Pending ones stay whatever their age."""
        d = DELIVERIES.c
        oldest = (
            select(d.id)
            .where(d.state != DeliveryState.PENDING.value, d.created_at < before)
            .order_by(d.created_at)
            .limit(limit)
        )
        async with self.transaction() as conn:
            result = await conn.execute(
                delete(DELIVERIES).where(d.id.in_(oldest.scalar_subquery()))
            )
        return int(result.rowcount or 0)

    def _endpoint_of(self, row: Row[Any], now: datetime) -> tuple[WebhookEndpoint, tuple[str, ...]]:
        """A claimed row's endpoint and the secrets it signs with now (the current one first)."""
        m = row._mapping
        endpoint = endpoint_from_row(_prefixed(row, "ep_"))
        secrets = [self._box.open(m["ep_secret"])]
        previous_until = m["ep_previous_secret_until"]
        if m["ep_previous_secret"] and previous_until is not None and previous_until > now:
            secrets.append(self._box.open(m["ep_previous_secret"]))
        return endpoint, tuple(secrets)

    async def record_all(self, attempts: Sequence[AttemptRecord], now: datetime) -> None:
        d, e = DELIVERIES.c, ENDPOINTS.c
        if not attempts:
            return
        outcome = update(DELIVERIES).where(d.id == bindparam("delivery_id"))
        async with self.transaction() as conn:
            await conn.execute(
                outcome.values(
                    state=bindparam("new_state"),
                    last_status_code=bindparam("status_code"),
                    last_error=bindparam("error"),
                    last_response=bindparam("response"),
                    last_attempt_at=now,
                    next_attempt_at=bindparam("next_attempt_at"),
                    leased_until=None,
                ),
                [
                    {
                        "delivery_id": a.delivery_id,
                        "new_state": a.state.value,
                        "status_code": a.status_code,
                        "error": a.error[:ERROR_MAX] if a.error else None,
                        "response": a.response,
                        "next_attempt_at": a.next_attempt_at,
                    }
                    for a in attempts
                ],
            )
            for failing_since, endpoints in _failing_since(attempts, now):
                await conn.execute(
                    update(ENDPOINTS).where(e.id.in_(endpoints)).values(failing_since=failing_since)
                )
            disabled: set[UUID] = set()
            for attempt in attempts:
                if attempt.disable is not None and attempt.endpoint_id not in disabled:
                    disabled.add(attempt.endpoint_id)
                    await _disable(conn, attempt.endpoint_id, attempt.disable, now)


def _failing_since(
    attempts: Sequence[AttemptRecord], now: datetime
) -> list[tuple[Any, list[UUID]]]:
    """Each endpoint's new ``failing_since`` after ``attempts`` (in the order they ended), with
    the endpoints it goes to: none after a success; ``now`` after failures that follow a
    success; after failures alone, the one it had (``now`` when it had none)."""
    last: dict[UUID, bool] = {}
    recovered: set[UUID] = set()
    for attempt in attempts:
        if attempt.succeeded:
            recovered.add(attempt.endpoint_id)
        last[attempt.endpoint_id] = attempt.succeeded
    failed = [endpoint for endpoint, succeeded in last.items() if not succeeded]
    changes: list[tuple[Any, list[UUID]]] = [
        (None, [endpoint for endpoint, succeeded in last.items() if succeeded]),
        (now, [endpoint for endpoint in failed if endpoint in recovered]),
        (
            func.coalesce(ENDPOINTS.c.failing_since, now),
            [endpoint for endpoint in failed if endpoint not in recovered],
        ),
    ]
    return [(since, endpoints) for since, endpoints in changes if endpoints]


async def _disable(conn: Any, endpoint_id: UUID, reason: DisabledReason, now: datetime) -> None:
    e = ENDPOINTS.c
    row = (
        await conn.execute(
            update(ENDPOINTS)
            .where(e.id == endpoint_id, e.enabled)
            .values(enabled=False, disabled_reason=reason.value, disabled_at=now, updated_at=now)
            .returning(ENDPOINTS)
        )
    ).first()
    # Only the try that disabled it logs it: others racing it find it disabled.
    if row is not None:
        await conn.execute(_logged(endpoint_from_row(row), EndpointEventKind.DISABLED, now, reason))


def _in_flight(now: datetime) -> Any:
    """An endpoint's deliveries leased now, for a query over webhook_endpoints."""
    d = DELIVERIES.c
    return (
        select(func.count())
        .select_from(DELIVERIES)
        .where(
            d.endpoint_id == ENDPOINTS.c.id,
            d.state == DeliveryState.PENDING.value,
            d.leased_until > now,
        )
        .correlate(ENDPOINTS)
        .scalar_subquery()
    )


def _due_free(now: datetime) -> list[Any]:
    d = DELIVERIES.c
    return [
        d.state == DeliveryState.PENDING.value,
        d.next_attempt_at <= now,
        or_(d.leased_until.is_(None), d.leased_until <= now),
    ]


def _held_elsewhere(now: datetime, held: Collection[int]) -> Any:
    """Whether the endpoint has deliveries leased now other than ``held``, for a query over
    webhook_endpoints: another worker is sending to it."""
    d = DELIVERIES.c
    leased = [
        d.endpoint_id == ENDPOINTS.c.id,
        d.state == DeliveryState.PENDING.value,
        d.leased_until > now,
    ]
    if held:
        leased.append(d.id.not_in(list(held)))
    return select(d.id).where(*leased).correlate(ENDPOINTS).exists()


def _earliest_due(now: datetime, batch: int) -> Select[Any]:
    """An endpoint's earliest due deliveries, at most ``batch``, read from its own
    index range (for a query over webhook_endpoints)."""
    d, e = DELIVERIES.c, ENDPOINTS.c
    order = (d.next_attempt_at, d.id)
    return (
        select(d.id, d.next_attempt_at, func.row_number().over(order_by=order).label("rank"))
        .where(d.endpoint_id == e.id, *_due_free(now))
        .order_by(*order)
        .limit(batch)
    )


def _claimable_by_endpoint(now: datetime, batch: int, held: Collection[int]) -> Select[Any]:
    """PostgreSQL: each enabled endpoint's earliest due deliveries, as many as its queue has
    room for, read from its own index range; the claim reads what it may take, not the
    backlog. Endpoints another worker is sending to are left to it."""
    e = ENDPOINTS.c
    earliest = _earliest_due(now, batch).lateral("earliest")
    return (
        select(earliest.c.id)
        .select_from(ENDPOINTS)
        .join(earliest, true())
        .where(
            e.enabled,
            ~_held_elsewhere(now, held),
            earliest.c.rank + _in_flight(now) <= batch,
        )
        .order_by(earliest.c.next_attempt_at, earliest.c.id)
    )


def _claimable_bounded(now: datetime, batch: int, held: Collection[int]) -> Select[Any]:
    """SQLite (no LATERAL): the same choice, each endpoint's due deliveries read from its
    index range by a correlated subquery bounded like the lateral one."""
    e = ENDPOINTS.c
    picked = DELIVERIES.alias("picked")
    p = picked.c
    earliest = _earliest_due(now, batch).with_only_columns(DELIVERIES.c.id)
    ranked = (
        select(
            p.id,
            p.next_attempt_at,
            func.row_number()
            .over(partition_by=p.endpoint_id, order_by=(p.next_attempt_at, p.id))
            .label("rank"),
            _in_flight(now).label("in_flight"),
        )
        .select_from(ENDPOINTS)
        .join(picked, p.id.in_(earliest.correlate(ENDPOINTS).scalar_subquery()))
        .where(e.enabled, ~_held_elsewhere(now, held))
        .subquery()
    )
    return (
        select(ranked.c.id)
        .where(ranked.c.rank + ranked.c.in_flight <= batch)
        .order_by(ranked.c.next_attempt_at, ranked.c.id)
    )


def _due_again(now: datetime) -> Any:
    """The update that gives a delivery a fresh set of tries, due now. A try in progress
    keeps its lease: the delivery is claimed again once that try has let go of it."""
    return update(DELIVERIES).values(
        state=DeliveryState.PENDING.value, attempts=0, next_attempt_at=now
    )


class _Prefixed:
    """A row's columns that carry a prefix, under their own names (for the row mappers)."""

    def __init__(self, row: Row[Any], prefix: str) -> None:
        self._mapping = {
            key.removeprefix(prefix): value
            for key, value in row._mapping.items()
            if isinstance(key, str) and key.startswith(prefix)
        }


def _prefixed(row: Row[Any], prefix: str) -> Row[Any]:
    return cast(Row[Any], _Prefixed(row, prefix))
