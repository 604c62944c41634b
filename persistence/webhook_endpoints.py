"""Webhook endpoints and their deliveries.

Deliveries are written by a trigger on message_events, in the transaction of the event they
carry (migration 0012); this module claims them, records their tries and lists them. A claim
takes its batch under a transaction-scoped advisory lock on PostgreSQL, so workers claiming at
the same time cannot together exceed an endpoint's share of slots (SQLite has one writer).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Final, TypeVar, cast
from uuid import UUID

from sqlalchemy import (
    Row,
    Select,
    Table,
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
from gateway.services.ports import AttemptRecord, DueDelivery
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
            self.engine, query, (e.created_at, e.id), endpoint_from_row, first, after
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
        self, now: datetime, *, limit: int, per_endpoint: int, lease: timedelta
    ) -> list[DueDelivery]:
        d, e = DELIVERIES.c, ENDPOINTS.c
        pending = d.state == DeliveryState.PENDING.value
        free = or_(d.leased_until.is_(None), d.leased_until <= now)
        picked = (
            _claimable_by_endpoint(now, per_endpoint)
            if self.dialect == "postgresql"
            else _claimable_ranked(now, per_endpoint)
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
        return [self._due(row, now, leased_until) for row in rows]

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

    def _due(self, row: Row[Any], now: datetime, leased_until: datetime) -> DueDelivery:
        m = row._mapping
        endpoint = endpoint_from_row(_prefixed(row, "ep_"))
        secrets = [self._box.open(m["ep_secret"])]
        previous_until = m["ep_previous_secret_until"]
        if m["ep_previous_secret"] and previous_until is not None and previous_until > now:
            secrets.append(self._box.open(m["ep_previous_secret"]))
        return DueDelivery(
            delivery=delivery_from_row(row),
            endpoint=endpoint,
            secrets=tuple(secrets),
            leased_until=leased_until,
        )

    async def record(self, attempt: AttemptRecord, now: datetime) -> None:
        d, e = DELIVERIES.c, ENDPOINTS.c
        endpoint: dict[str, Any] = {
            "failing_since": None if attempt.succeeded else func.coalesce(e.failing_since, now)
        }
        async with self.transaction() as conn:
            await conn.execute(
                update(DELIVERIES)
                .where(d.id == attempt.delivery_id)
                .values(
                    state=attempt.state.value,
                    last_status_code=attempt.status_code,
                    last_error=attempt.error[:ERROR_MAX] if attempt.error else None,
                    last_response=attempt.response,
                    last_attempt_at=now,
                    next_attempt_at=attempt.next_attempt_at,
                    leased_until=None,
                )
            )
            await conn.execute(
                update(ENDPOINTS).where(e.id == attempt.endpoint_id).values(endpoint)
            )
            if attempt.disable is not None:
                row = (
                    await conn.execute(
                        update(ENDPOINTS)
                        .where(e.id == attempt.endpoint_id, e.enabled)
                        .values(
                            enabled=False,
                            disabled_reason=attempt.disable.value,
                            disabled_at=now,
                            updated_at=now,
                        )
                        .returning(ENDPOINTS)
                    )
                ).first()
                # Only the try that disabled it logs it: others racing it find it disabled.
                if row is not None:
                    disabled = endpoint_from_row(row)
                    await conn.execute(
                        _logged(disabled, EndpointEventKind.DISABLED, now, attempt.disable)
                    )


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


def _claimable_by_endpoint(now: datetime, per_endpoint: int) -> Select[Any]:
    """PostgreSQL: each enabled endpoint's earliest due deliveries, as many as its free
    slots, read from its own index range; the claim reads what it may take, not the backlog."""
    d, e = DELIVERIES.c, ENDPOINTS.c
    order = (d.next_attempt_at, d.id)
    earliest = (
        select(d.id, d.next_attempt_at, func.row_number().over(order_by=order).label("rank"))
        .where(d.endpoint_id == e.id, *_due_free(now))
        .order_by(*order)
        .limit(per_endpoint)
        .lateral("earliest")
    )
    return (
        select(earliest.c.id)
        .select_from(ENDPOINTS)
        .join(earliest, true())
        .where(e.enabled, earliest.c.rank + _in_flight(now) <= per_endpoint)
        .order_by(earliest.c.next_attempt_at, earliest.c.id)
    )


def _claimable_ranked(now: datetime, per_endpoint: int) -> Select[Any]:
    """SQLite (no LATERAL; one writer, embedded scale): due deliveries ranked per endpoint."""
    d, e = DELIVERIES.c, ENDPOINTS.c
    busy = (
        select(d.endpoint_id, func.count().label("n"))
        .where(d.state == DeliveryState.PENDING.value, d.leased_until > now)
        .group_by(d.endpoint_id)
        .subquery()
    )
    ranked = (
        select(
            d.id,
            d.endpoint_id,
            d.next_attempt_at,
            func.row_number()
            .over(partition_by=d.endpoint_id, order_by=(d.next_attempt_at, d.id))
            .label("rank"),
        )
        .join(ENDPOINTS, e.id == d.endpoint_id)
        .where(*_due_free(now), e.enabled)
        .subquery()
    )
    return (
        select(ranked.c.id)
        .outerjoin(busy, busy.c.endpoint_id == ranked.c.endpoint_id)
        .where(ranked.c.rank + func.coalesce(busy.c.n, 0) <= per_endpoint)
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
