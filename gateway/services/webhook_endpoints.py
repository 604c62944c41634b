"""Use cases: an account manages the endpoints its events are POSTed to.

The signing secret is made here and handed back only by ``create`` and ``rotate``; nothing
reads it back later. An endpoint's URL is checked on every change (and again by the worker at
every delivery, since what a name resolves to can change in between).
"""

from __future__ import annotations

import base64
import re
import secrets
from dataclasses import dataclass, field, replace
from datetime import datetime
from uuid import UUID

from gateway.domain.ids import new_id
from gateway.domain.messages import FieldProblem, text_problem
from gateway.domain.records import Page
from gateway.domain.statuses import MessageStatus
from gateway.domain.webhook_endpoints import (
    DESCRIPTION_MAX,
    KIND_MAX,
    ROTATION_OVERLAP,
    DisabledReason,
    EndpointEvent,
    EndpointEventKind,
    EventFilter,
    UnsafeUrl,
    WebhookDelivery,
    WebhookEndpoint,
    check_addresses,
    parse_endpoint_url,
)
from gateway.services.clock import utcnow
from gateway.services.ports import HostResolver, WebhookEndpointStore

SECRET_PREFIX = "whsec_"
#: Random bytes in a secret: the Standard Webhooks range is 24 to 64.
SECRET_BYTES = 32
_KIND = re.compile(rf"[a-z][a-z_]{{0,{KIND_MAX - 1}}}")


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


class UrlGuard:
    """Whether an endpoint URL may be called now: its scheme and host, and every address the
    host resolves to. ``allow_private`` (development, tests) lets http and private hosts by."""

    def __init__(self, resolver: HostResolver, *, allow_private: bool) -> None:
        self._resolver = resolver
        self.allow_private = allow_private

    async def check(self, url: str) -> None:
        """Raises ``UnsafeUrl``."""
        parsed = parse_endpoint_url(url, allow_private=self.allow_private)
        if parsed.literal is None and not self.allow_private:
            check_addresses(await self._resolver.resolve(parsed.host))


@dataclass(frozen=True, slots=True)
class EndpointChange:
    """What create and update accept; None leaves a field as it is (update)."""

    url: str | None = None
    description: str | None = None
    kinds: list[str] | None = None
    statuses: list[MessageStatus] | None = None


@dataclass(frozen=True, slots=True)
class WithSecret:
    """An endpoint and its new signing secret: the only time the secret is shown."""

    endpoint: WebhookEndpoint
    secret: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Refused:
    problems: list[FieldProblem]


@dataclass(frozen=True, slots=True)
class Unknown:
    pass


class WebhookEndpointService:
    def __init__(self, store: WebhookEndpointStore, guard: UrlGuard) -> None:
        self._store = store
        self._guard = guard

    async def _problems(self, change: EndpointChange) -> list[FieldProblem]:
        problems: list[FieldProblem] = []
        if change.url is not None:
            try:
                await self._guard.check(change.url)
            except UnsafeUrl as exc:
                problems.append(FieldProblem("url", str(exc)))
        if change.description is not None:
            problem = text_problem(change.description)
            if problem is None and len(change.description) > DESCRIPTION_MAX:
                problem = f"must be at most {DESCRIPTION_MAX} characters"
            if problem:
                problems.append(FieldProblem("description", problem))
        bad = [k for k in change.kinds or [] if not _KIND.fullmatch(k)]
        if bad:
            problems.append(
                FieldProblem("eventKinds", f"not event kinds: {', '.join(sorted(bad)[:5])}")
            )
        return problems

    async def create(self, account_id: UUID, change: EndpointChange) -> WithSecret | Refused:
        if change.url is None:
            return Refused([FieldProblem("url", "is required")])
        problems = await self._problems(change)
        if problems:
            return Refused(problems)
        now = utcnow()
        endpoint = WebhookEndpoint(
            id=new_id(),
            account_id=account_id,
            url=change.url,
            description=change.description or None,
            filter=EventFilter(frozenset(change.kinds or ()), frozenset(change.statuses or ())),
            enabled=True,
            disabled_reason=None,
            disabled_at=None,
            failing_since=None,
            previous_secret_until=None,
            created_at=now,
            updated_at=now,
        )
        secret = new_secret()
        await self._store.create(endpoint, secret)
        return WithSecret(endpoint, secret)

    async def update(
        self, account_id: UUID, endpoint_id: UUID, change: EndpointChange
    ) -> WebhookEndpoint | Refused | Unknown:
        problems = await self._problems(change)
        if problems:
            return Refused(problems)
        found = await self._store.get(account_id, endpoint_id)
        if found is None:
            return Unknown()
        wanted = found.filter
        endpoint = replace(
            found,
            url=found.url if change.url is None else change.url,
            description=(
                found.description if change.description is None else change.description or None
            ),
            filter=EventFilter(
                wanted.kinds if change.kinds is None else frozenset(change.kinds),
                wanted.statuses if change.statuses is None else frozenset(change.statuses),
            ),
            updated_at=utcnow(),
        )
        return await self._stored(endpoint, EndpointEventKind.UPDATED)

    async def set_enabled(
        self, account_id: UUID, endpoint_id: UUID, enabled: bool
    ) -> WebhookEndpoint | Unknown:
        """Enable (its failures forgotten) or disable (by the account) an endpoint. Deliveries
        due while it is disabled wait; events while it is disabled are not sent to it."""
        found = await self._store.get(account_id, endpoint_id)
        if found is None:
            return Unknown()
        now = utcnow()
        endpoint = replace(
            found,
            enabled=enabled,
            disabled_reason=None if enabled else DisabledReason.MANUAL,
            disabled_at=None if enabled else now,
            failing_since=None,
            updated_at=now,
        )
        kind = EndpointEventKind.ENABLED if enabled else EndpointEventKind.DISABLED
        return await self._stored(endpoint, kind)

    async def rotate_secret(self, account_id: UUID, endpoint_id: UUID) -> WithSecret | Unknown:
        """A new secret; the one it replaces signs too, beside it, for ``ROTATION_OVERLAP``."""
        found = await self._store.get(account_id, endpoint_id)
        if found is None:
            return Unknown()
        now = utcnow()
        secret = new_secret()
        endpoint = replace(found, previous_secret_until=now + ROTATION_OVERLAP, updated_at=now)
        stored = await self._store.update(endpoint, EndpointEventKind.SECRET_ROTATED, secret=secret)
        return Unknown() if stored is None else WithSecret(stored, secret)

    async def _stored(
        self, endpoint: WebhookEndpoint, event: EndpointEventKind
    ) -> WebhookEndpoint | Unknown:
        stored = await self._store.update(endpoint, event)
        return Unknown() if stored is None else stored

    async def delete(self, account_id: UUID, endpoint_id: UUID) -> WebhookEndpoint | Unknown:
        """Delete an endpoint and its deliveries (sent or not)."""
        found = await self._store.get(account_id, endpoint_id)
        if found is None or not await self._store.delete(account_id, endpoint_id):
            return Unknown()
        return found

    async def get(self, account_id: UUID, endpoint_id: UUID) -> WebhookEndpoint | None:
        return await self._store.get(account_id, endpoint_id)

    async def page(
        self, account_id: UUID, *, first: int, after: tuple[datetime, UUID] | None
    ) -> Page[WebhookEndpoint]:
        """Newest first."""
        return await self._store.page(account_id, first=first, after=after)

    async def deliveries(
        self, account_id: UUID, endpoint_id: UUID, *, first: int, after: int | None
    ) -> Page[WebhookDelivery]:
        """Newest first."""
        return await self._store.deliveries_page(account_id, endpoint_id, first=first, after=after)

    async def events(
        self, account_id: UUID, endpoint_id: UUID, *, first: int, after: int | None
    ) -> Page[EndpointEvent]:
        """The endpoint's event log, newest first."""
        return await self._store.events_page(account_id, endpoint_id, first=first, after=after)

    async def redeliver(self, account_id: UUID, delivery_id: int) -> WebhookDelivery | Unknown:
        """Send one delivery again (whatever became of it), with a fresh set of tries."""
        found = await self._store.redeliver(account_id, delivery_id, utcnow())
        return Unknown() if found is None else found

    async def redeliver_failed(
        self, account_id: UUID, endpoint_id: UUID, since: datetime
    ) -> int | Unknown:
        """Send again every delivery of the endpoint that failed for good and was made at or
        after ``since``; how many."""
        if await self._store.get(account_id, endpoint_id) is None:
            return Unknown()
        return await self._store.redeliver_failed(account_id, endpoint_id, since, utcnow())
