"""The one invariant checker every fault scenario ends with.

For every message a client saw accepted:

- it is not lost: its row exists;
- it ended in exactly one terminal state, the one expected (DELIVERED; FAILED only when its
  trail records the dead-lettering), and its trail ends where its row does;
- its statuses never moved back (SENDING -> QUEUED only through a requeue event) and never
  left a terminal state;
- the provider accepted it at most once, unless an attempt's answer may have been lost: then
  a second acceptance needs an ambiguous attempt in the audit trail. In a scenario where every
  provider answer reached a live worker (nothing killed, no provider timeout), the worker knew
  the provider's id, and a second send is a duplicate whatever the trail says.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from gateway.domain.statuses import TERMINAL, MessageStatus
from harness.pipeline import Pipeline
from tests.integration.traffic import ambiguous_marker, trail_problems


@dataclass
class Verdict:
    total: int
    statuses: Counter[str]
    problems: dict[uuid.UUID, list[str]]
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self, examples: int = 3) -> list[str]:
        """The problems grouped by kind, with a few message ids each."""
        by_kind: dict[str, list[uuid.UUID]] = {}
        for message_id, found in self.problems.items():
            for problem in found:
                by_kind.setdefault(problem, []).append(message_id)
        lines = []
        for kind, ids in sorted(by_kind.items(), key=lambda item: -len(item[1])):
            sample = ", ".join(map(str, ids[:examples]))
            lines.append(f"{len(ids)} of {self.total} messages: {kind} (e.g. {sample})")
        return lines


async def check(
    pipe: Pipeline,
    ids: Iterable[uuid.UUID],
    *,
    answers_may_be_lost: bool,
    allow_failed: bool = True,
) -> Verdict:
    wanted = list(dict.fromkeys(ids))
    statuses = await pipe.statuses(wanted)
    trails = await pipe.trails(wanted)
    calls = await pipe.accepted_calls(wanted)
    problems: dict[uuid.UUID, list[str]] = {}
    for message_id in wanted:
        found: list[str] = []
        status = statuses.get(message_id)
        trail = trails[message_id]
        if status is None:
            problems[message_id] = ["lost: accepted, but not in the database"]
            continue
        dead_lettered = any(e["kind"] == "dead_lettered" for e in trail)
        if MessageStatus(status) not in TERMINAL:
            found.append(f"not terminal: {status}")
        elif status == "FAILED":
            if not allow_failed:
                found.append("FAILED")
            elif not dead_lettered:
                found.append("FAILED without a dead_lettered event")
        elif status != "DELIVERED":
            found.append(f"ended {status}")
        if trail and trail[-1]["status"] != status:
            found.append(f"row says {status}, trail ends at {trail[-1]['status']}")
        found.extend(
            problem
            for problem in trail_problems(trail)
            # A message sent with sendAt starts SCHEDULED, not QUEUED.
            if problem != "first event accepted/SCHEDULED"
        )
        accepted = calls[message_id]
        if accepted > 1:
            if not answers_may_be_lost:
                found.append(
                    "sent to the provider more than once although every answer reached a "
                    "live worker"
                )
            elif not ambiguous_marker(trail):
                found.append("sent to the provider more than once, no ambiguous attempt")
        if status == "DELIVERED" and accepted == 0:
            found.append("DELIVERED, but the provider never accepted it")
        if found:
            problems[message_id] = found
    kinds = Counter(e["kind"] for trail in trails.values() for e in trail)
    counts = {
        "accepted": len(wanted),
        "provider_duplicates": sum(1 for c in calls.values() if c > 1),
        "ambiguous": sum(1 for t in trails.values() if ambiguous_marker(t)),
        "abandoned": kinds["attempt_abandoned"],
        "retries": kinds["retry_scheduled"],
        "deferred": kinds["deferred"],
    }
    return Verdict(len(wanted), Counter(statuses.values()), problems, counts)
