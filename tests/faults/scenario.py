"""What every fault scenario shares: the stack it breaks, the load it keeps up meanwhile, the
watch on health endpoints, and the report of how long recovery took.

The stack is the production shape of ``harness.pipeline`` (two API processes, two workers,
the sandbox), on a PostgreSQL and a Redis of its own: scenarios stop and kill those,
and no other test may lose its database to them. Scenarios run one after the other on the same
stack; each starts with fresh workers (settings of its own), both servers up, a clean sandbox
and a new account, so that what one scenario broke cannot be blamed on the next, and its
invariants cover its own messages only.

Times are ``time.monotonic()`` unless they are compared with the database's or the sandbox's
timestamps (wall clock, ``time.time()``); recovery times are reported, never asserted: a busy
two-core machine makes any bound either flaky or meaningless. Deadlines exist only to tell
"recovered, slowly" from "never recovered".
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import statistics
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import httpx

from gateway.domain.statuses import TERMINAL
from gateway.settings import Settings
from harness.pipeline import (
    FAST_SETTINGS,
    SANDBOX_CALLBACK_ATTEMPTS,
    SEND_MANY,
    SEND_ONE,
    Account,
    Pipeline,
    Sent,
    uuid_of,
)
from harness.processes import HIGH_SENDER_RATES
from harness.servers import PostgresServer, RedisServer
from providers.sandbox_app.config import SandboxConfig
from tests.faults.invariants import check
from tests.integration.traffic import mixed

ROOT: Final = Path(__file__).resolve().parents[2]
#: Where every scenario appends its result as one JSON line (``FAULTS_RESULTS`` overrides).
RESULTS_PATH: Final = Path(os.environ.get("FAULTS_RESULTS") or ROOT / "var/faults/results.jsonl")
#: One id per pytest session, so that a summary can pick one run out of the results file.
RUN_ID: Final = os.environ.get("FAULTS_RUN_ID") or time.strftime("%Y%m%dT%H%M%S") + (
    f"-{os.getpid()}"
)
TERMINAL_NAMES: Final = frozenset(s.value for s in TERMINAL)
#: The callbacks a vendor makes before giving up, as the sandbox does by default (the shared
#: pipeline retries for longer, so that a slow moment of its APIs loses nothing).
VENDOR_CALLBACK_ATTEMPTS: Final = next(
    f.default for f in dataclasses.fields(SandboxConfig) if f.name == "callback_attempts"
)
#: Settings the shared pipeline makes fast that decide how delivery recovers: "default-ish"
#: workers get the product's defaults for these. Sender rates are not among them: the
#: scenarios load a few senders with many messages, which a long code's default pace would
#: spread over minutes.
_RECOVERY_SETTINGS: Final = sorted(
    set(FAST_SETTINGS) - {"LOG_JSON", "LOG_LEVEL", "API_KEY_CACHE_SECONDS"} - set(HIGH_SENDER_RATES)
)


def product_defaults() -> dict[str, str]:
    """The product's own defaults for every setting that shapes delivery and recovery."""
    defaults: dict[str, str] = {}
    for name in _RECOVERY_SETTINGS:
        found = Settings.model_fields.get(name.lower())
        if found is not None and found.default is not None:
            defaults[name] = str(found.default)
    return defaults


#: Reconciliation looks up a message the provider took but never reported on once it has waited
#: RECONCILE_AFTER_SECONDS (10 minutes by default); the scenarios make that seconds.
FAST_RECONCILIATION: Final = {"RECONCILE_AFTER_SECONDS": "3"}


# --- the stack ----------------------------------------------------------------------------------


@dataclass
class FaultStack:
    postgres: PostgresServer
    redis: RedisServer
    pipe: Pipeline

    async def stop_postgres(self) -> None:
        """Fast shutdown (``pg_ctl stop -m fast``): sessions are cut, the data is kept."""
        await asyncio.to_thread(self.postgres.stop_process, "fast")

    async def start_postgres(self) -> None:
        await asyncio.to_thread(self.postgres.restart)

    async def kill_redis(self) -> None:
        await asyncio.to_thread(self.redis.kill)

    async def start_redis(self) -> None:
        """An empty Redis on the same port: no stream, no group, no keys."""
        await asyncio.to_thread(self.redis.restart)


async def prepare(stack: FaultStack, workers: Sequence[Mapping[str, str]] = ({}, {})) -> Account:
    """Everything up and clean for one scenario; returns the scenario's own account."""
    pipe = stack.pipe
    if not stack.postgres.running:
        await stack.start_postgres()
    if not stack.redis.running:
        await stack.start_redis()
    if not all(api.alive for api in pipe.apis):
        await pipe.restart_apis()
    await pipe.restart_workers(workers)
    await pipe.sandbox_reset()
    assert pipe.sandbox is not None
    pipe.sandbox.config.callback_attempts = SANDBOX_CALLBACK_ATTEMPTS
    return await pipe.new_account()


def diagnostics(pipe: Pipeline, lines: int = 8) -> str:
    """The sandbox summary and the log tails of the processes running now."""
    current = [*pipe.apis, *pipe.workers]
    return "\n" + "\n".join([pipe.sandbox_summary(), *(p.tail(lines) for p in current)])


def rss_mb(pid: int) -> float | None:
    """Resident memory of a process in MB (None once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        return None
    return None


# --- load -----------------------------------------------------------------------------------------


@dataclass
class Answer:
    """One /graphql call of a load client and what came back."""

    started: float
    finished: float
    api: int
    status: int | None  # None: no HTTP answer at all
    content_type: str
    code: str | None  # errors[0].extensions.code
    request_id: str | None
    detail: str
    accepted: int

    @property
    def latency(self) -> float:
        return self.finished - self.started


def _first_error(body: Any) -> dict[str, Any] | None:
    if isinstance(body, dict) and isinstance(body.get("errors"), list) and body["errors"]:
        first = body["errors"][0]
        return first if isinstance(first, dict) else None
    return None


class Load:
    """Clients sending steadily through the given APIs until stopped: a batch of ``batch``
    every ``batch_every`` calls, single sends otherwise, ``pause`` seconds apart per client.

    Only messages answered ``MessageAccepted`` count as accepted; everything else is kept as
    an :class:`Answer`, so that a scenario can say what clients saw during the fault.
    """

    def __init__(
        self,
        pipe: Pipeline,
        account: Account,
        tag: str,
        *,
        apis: Sequence[int] = (0, 1),
        pause: float = 0.05,
        batch_every: int = 5,
        batch: int = 10,
        timeout: float = 10.0,
        make: Callable[[int, str], dict[str, Any]] = mixed,
    ) -> None:
        self.pipe = pipe
        self.account = account
        self.tag = tag
        self.apis = list(apis)
        self.pause = pause
        self.batch_every = batch_every
        self.batch = batch
        self.timeout = timeout
        self.make = make
        self.accepted: list[Sent] = []
        self.answers: list[Answer] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Load:
        self._tasks = [
            asyncio.create_task(self._client(api, n), name=f"load {self.tag} api{api}")
            for n, api in enumerate(self.apis)
        ]
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _client(self, api: int, client: int) -> None:
        n = client * 1_000_000
        call = 0
        while not self._stop.is_set():
            call += 1
            if self.batch_every and call % self.batch_every == 0:
                inputs = [self.make(n + i, self.tag) for i in range(self.batch)]
                await self.send(api, SEND_MANY, {"inputs": inputs})
                n += self.batch
            else:
                await self.send(api, SEND_ONE, {"input": self.make(n, self.tag)})
                n += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.pause)

    async def send(self, api: int, query: str, variables: dict[str, Any]) -> Answer:
        started = time.monotonic()
        try:
            response = await self.pipe.http.post(
                self.pipe.api_url(api) + "/graphql",
                json={"query": query, "variables": variables},
                headers={"Authorization": f"Bearer {self.account.key}"},
                timeout=self.timeout,
            )
        except httpx.HTTPError as exc:
            answer = Answer(
                started, time.monotonic(), api, None, "", None, None, repr(exc)[:200], 0
            )
            self.answers.append(answer)
            return answer
        finished = time.monotonic()
        try:
            body = response.json()
        except ValueError:
            body = None
        first = _first_error(body)
        extensions = (first or {}).get("extensions") or {}
        accepted: list[Sent] = []
        data = body.get("data") if isinstance(body, dict) else None
        inputs = variables["inputs"] if "inputs" in variables else [variables["input"]]
        for result in list((data or {}).values())[:1]:
            items = result if isinstance(result, list) else [result]
            for item, sent in zip(items, inputs, strict=False):
                if isinstance(item, dict) and item.get("__typename") == "MessageAccepted":
                    accepted.append(Sent(uuid_of(item["message"]["id"]), api, sent["channel"]))
        self.accepted.extend(accepted)
        answer = Answer(
            started,
            finished,
            api,
            response.status_code,
            response.headers.get("content-type", ""),
            extensions.get("code") if isinstance(extensions, dict) else None,
            response.headers.get("x-request-id")
            or (extensions.get("requestId") if isinstance(extensions, dict) else None),
            "" if accepted else response.text[:200],
            len(accepted),
        )
        self.answers.append(answer)
        return answer

    @property
    def ids(self) -> list[uuid.UUID]:
        return [s.id for s in self.accepted]

    def refused(self) -> list[Answer]:
        return [a for a in self.answers if not a.accepted]

    def first_accept_after(self, moment: float) -> float | None:
        """When the first call started after ``moment`` was answered with an acceptance."""
        done = [a.finished for a in self.answers if a.accepted and a.started >= moment]
        return min(done) if done else None

    def latencies(self, start: float = 0.0, end: float = float("inf")) -> list[float]:
        return [a.latency for a in self.answers if start <= a.started <= end]


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


# --- watching -------------------------------------------------------------------------------------


class HealthWatch:
    """Polls health endpoints until stopped and remembers every answer that was not a 200."""

    def __init__(
        self, http: httpx.AsyncClient, targets: Mapping[str, str], *, every: float = 0.5
    ) -> None:
        self.http = http
        self.targets = dict(targets)
        self.every = every
        self.checks = 0
        self.failures: list[tuple[float, str, str]] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> HealthWatch:
        self._task = asyncio.create_task(self._run(), name="health watch")
        return self

    async def __aexit__(self, *_: object) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        while not self._stop.is_set():
            await asyncio.gather(*(self._check(n, u) for n, u in self.targets.items()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.every)

    async def _check(self, name: str, url: str) -> None:
        self.checks += 1
        try:
            response = await self.http.get(url, timeout=5.0)
        except httpx.HTTPError as exc:
            self.failures.append((time.monotonic(), name, repr(exc)[:120]))
            return
        if response.status_code != 200:
            self.failures.append(
                (time.monotonic(), name, f"{response.status_code} {response.text[:80]}")
            )

    def failed(self, name: str) -> list[tuple[float, str, str]]:
        return [f for f in self.failures if f[1] == name]


async def statuses_or_none(pipe: Pipeline, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str] | None:
    try:
        return await pipe.statuses(ids)
    except Exception:  # the database is what is down: not known yet
        return None


async def settle(pipe: Pipeline, ids: Sequence[uuid.UUID], within: float) -> float | None:
    """When every message was terminal (monotonic), or None if some were not within
    ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        current = await statuses_or_none(pipe, ids)
        if current is not None and all(current.get(i) in TERMINAL_NAMES for i in ids):
            return time.monotonic()
        if time.monotonic() > deadline:
            return None
        await asyncio.sleep(0.25)


def wall(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def first_call_after(pipe: Pipeline, moment: float, outcome: str = "accepted") -> float | None:
    """Wall time of the first provider call after ``moment`` (wall) with this outcome."""
    assert pipe.sandbox is not None
    times = [
        r["received_at"]
        for r in list(pipe.sandbox.requests)
        if r["received_at"] >= moment and r.get("outcome") == outcome
    ]
    return min(times) if times else None


@dataclass
class Outage:
    """A server taken down under load and brought back: the load, the health watch kept
    meanwhile, and when it all happened (monotonic, but for ``back_wall``)."""

    load: Load
    watch: HealthWatch
    down: float
    back: float = 0.0
    back_wall: float = 0.0
    settled: float | None = None

    def report(self, report: FaultReport, pipe: Pipeline, after: str, **notes: Any) -> None:
        """Note how long recovery took after the server came back (``after`` names that, as
        the recovery times do), and what the load saw."""
        report.took(
            f"first_accept_after_{after}", self.back, self.load.first_accept_after(self.back)
        )
        report.took(
            f"first_provider_call_after_{after}",
            self.back_wall,
            first_call_after(pipe, self.back_wall),
        )
        report.took(f"all_terminal_after_{after}", self.back, self.settled)
        report.note(
            down_s=round(self.back - self.down, 1),
            accepted=len(self.load.ids),
            refused=len(self.load.refused()),
            **notes,
            api_health_failures=len(self.watch.failures),
        )


@contextlib.asynccontextmanager
async def outage_under_load(
    stack: FaultStack, account: Account, tag: str, *, settle_within: float
) -> AsyncIterator[Outage]:
    """Keep the load and a health watch up while the body takes a server down and brings it
    back; then wait for the load's messages to settle."""
    pipe = stack.pipe
    health = {f"api{i + 1}": pipe.api_url(i) + "/health" for i in range(2)}
    async with HealthWatch(pipe.http, health) as watch:
        async with Load(pipe, account, tag) as load:
            await asyncio.sleep(2.0)
            outage = Outage(load, watch, down=time.monotonic())
            yield outage
            outage.back, outage.back_wall = time.monotonic(), time.time()
            await asyncio.sleep(3.0)
        outage.settled = await settle(pipe, load.ids, within=settle_within)


# --- reporting ------------------------------------------------------------------------------------


@dataclass
class FaultReport:
    """What one scenario measured and found. Recovery times are seconds; None means it did
    not recover before the scenario's deadline."""

    scenario: str
    recovery: dict[str, float | None] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def took(self, name: str, start: float, end: float | None) -> float | None:
        value = None if end is None else round(end - start, 2)
        self.recovery[name] = value
        return value

    def note(self, **metrics: Any) -> None:
        self.metrics.update(metrics)

    def problem(self, text_: str) -> None:
        self.problems.append(text_)

    async def judge(
        self, pipe: Pipeline, ids: Iterable[uuid.UUID], *, answers_may_be_lost: bool
    ) -> None:
        """Check the invariants on ``ids``: what they counted is noted, each breach a problem."""
        verdict = await check(pipe, ids, answers_may_be_lost=answers_may_be_lost)
        self.note(statuses=dict(verdict.statuses), **verdict.counts)
        self.problems.extend(verdict.lines())

    def check(self, pipe: Pipeline) -> None:
        """Fail with every problem found (a scenario reports all of them, not the first)."""
        print(f"\n{self.scenario}: recovery {self.recovery}; {self.metrics}")
        if self.problems:
            listed = "\n".join(f"- {p}" for p in self.problems)
            raise AssertionError(
                f"{self.scenario}: {len(self.problems)} problem(s)\n{listed}{diagnostics(pipe)}"
            )


#: This session's results, for the summary at the end of the run.
SESSION_RESULTS: list[dict[str, Any]] = []


def _git(*args: str) -> subprocess.CompletedProcess[str] | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=5, check=False
        )
    return None


def _commit() -> str | None:
    """The commit measured, marked ``+dirty`` when the working tree differs from it."""
    head = _git("rev-parse", "--short", "HEAD")
    if head is None or head.returncode != 0:
        return None
    dirty = _git("diff", "--quiet", "HEAD", "--")
    return head.stdout.strip() + ("+dirty" if dirty is not None and dirty.returncode else "")


def record_result(report: FaultReport, outcome: str, duration: float) -> dict[str, Any]:
    line = {
        "run": RUN_ID,
        "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "commit": _commit(),
        "scenario": report.scenario,
        "outcome": outcome,
        "duration_s": round(duration, 1),
        "recovery_s": report.recovery,
        "metrics": report.metrics,
        "problems": [p[:300] for p in report.problems[:10]],
    }
    SESSION_RESULTS.append(line)
    RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS_PATH.open("a") as out:
        out.write(json.dumps(line, default=str) + "\n")
    return line


def summary_table(results: Sequence[Mapping[str, Any]]) -> list[str]:
    """One row per recovery time of every scenario, in the order they ran."""
    rows = [("scenario", "result", "recovery", "seconds")]
    for result in results:
        recovery = result.get("recovery_s") or {"-": None}
        for n, (name, seconds) in enumerate(recovery.items()):
            shown = "did not recover" if seconds is None and name != "-" else ""
            rows.append(
                (
                    result["scenario"] if n == 0 else "",
                    result["outcome"] if n == 0 else "",
                    name,
                    f"{seconds:.1f}" if isinstance(seconds, int | float) else shown,
                )
            )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines
