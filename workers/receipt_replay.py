"""Apply again the payloads kept in webhook_receipts (``messaging-gateway replay-receipts``).

A payload we could not apply (the database failed mid-way, a bug) or an inbound message to an
address nobody owned then is kept raw, with its endpoint once its signature was verified.
Replaying one parses it with that endpoint's adapter and applies it through
``apply_received``, the routes' own path: a report applies at most once and forward only, an
inbound message once per provider id, so replaying twice changes nothing the second time.

Each payload ends as one of:

- ``applied``: something in it was applied now;
- ``duplicate``: all of it had been applied already (or was stale);
- ``unmatched``: a report names a message we do not know (yet), or an inbound message is to
  an address nobody owns (yet): replaying it later, once they exist, applies it;
- ``failing``: it cannot be parsed, was kept without its endpoint, or applying it raised.

An applied or duplicate payload is marked replayed (with the time) and left in place as the
evidence of what arrived; the others stay unmarked, to be replayed again. A dry run parses
each payload and writes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from gateway.domain.reports import InboundMessage, KeptPayload
from gateway.services.clock import utcnow
from gateway.services.ports import KeptPayloads
from gateway.services.webhooks import WebhookService
from providers.webhooks import PayloadError, ReceivedWebhook, WebhookAdapter
from providers.webhooks.apply import apply_received, raw_body

APPLIED: Final = "applied"
DUPLICATE: Final = "duplicate"
UNMATCHED: Final = "unmatched"
FAILING: Final = "failing"
#: A dry run's word for a payload that parses.
PARSED: Final = "parsed"
#: The outcomes that mark a payload replayed.
DONE: Final = frozenset({APPLIED, DUPLICATE})


@dataclass(frozen=True, slots=True)
class Replayed:
    payload: KeptPayload
    outcome: str
    #: What it held (a dry run), or why it still fails.
    detail: str | None = None


def outcome_of(labels: list[str]) -> str:
    """A replayed payload's outcome from what ``apply_received`` counted for it."""
    if UNMATCHED in labels or "inbound_unowned" in labels:
        return UNMATCHED
    if APPLIED in labels or "inbound_stored" in labels:
        return APPLIED
    return DUPLICATE


class ReceiptReplay:
    def __init__(
        self,
        payloads: KeptPayloads,
        webhooks: WebhookService,
        adapters: Mapping[str, WebhookAdapter],
    ) -> None:
        self._payloads = payloads
        self._webhooks = webhooks
        self._adapters = adapters

    async def kept(self, *, since: datetime | None, receipt_id: int | None) -> list[KeptPayload]:
        return await self._payloads.kept(since=since, receipt_id=receipt_id)

    async def replay(self, payload: KeptPayload, *, dry_run: bool = False) -> Replayed:
        """Replay one kept payload (parse it only, in a dry run); marks it when done."""
        adapter = self._adapters.get(payload.route) if payload.route is not None else None
        if adapter is None:
            why = (
                "kept without its endpoint (before its signature was verified): "
                "it cannot be replayed"
                if payload.route is None
                else f"no endpoint {payload.route!r}"
            )
            return Replayed(payload, FAILING, why)
        try:
            body = raw_body(payload.payload)
            received = ReceivedWebhook(
                adapter.route, payload.content_type, payload.query or "", body
            )
            if dry_run:
                return Replayed(payload, PARSED, _contents(await adapter.parse(received)))
            labels = await apply_received(self._webhooks, adapter, received, keep_unowned=False)
            outcome = outcome_of(labels)
            if outcome in DONE:
                await self._payloads.mark_replayed(payload.id, utcnow())
        except PayloadError as exc:
            return Replayed(payload, FAILING, f"unparseable: {exc}")
        except Exception as exc:
            return Replayed(payload, FAILING, f"{type(exc).__name__}: {exc}"[:300])
        return Replayed(payload, outcome)


def _contents(parsed: object) -> str:
    if isinstance(parsed, InboundMessage):
        return "an inbound message"
    count = len(parsed) if isinstance(parsed, list) else 0
    return f"{count} status report{'' if count == 1 else 's'}"
