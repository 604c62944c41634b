"""The benchmark suite: ``python -m bench.suite [--rounds N] [--quick] [--only ...] [--json P]``.

Run it through ``bash bench/run.sh`` (``make bench``), which installs wrk, PostgreSQL and Redis
first. It starts a throwaway PostgreSQL and Redis and a standalone sandbox, then for every
round: the accept benchmarks (wrk), the floors, end to end and fan-out, each gateway
benchmark on a fresh deployment (new database, emptied Redis, new API and worker processes)
that is warmed up before it is measured. It prints one table of medians over the rounds and
writes it, with every round's details, to JSON. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx

from bench import report
from bench.accept import Recipients, WrkResult, run_wrk
from bench.cpu import CpuMeter, per_message
from bench.deploy import BenchError, Infra, PlainApp, Stack, gateway_settings
from bench.e2e import run_e2e
from bench.fairness import run_fairness
from bench.fanout import run_fanout
from bench.floors import pg_floor, redis_floor, starlette_floor
from bench.search import run_search
from harness.processes import Process
from harness.servers import LOOPBACK, HarnessError

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
BENCHMARKS = (
    "single",
    "batched",
    "e2e",
    "webhooks",
    "fanout",
    "fairness",
    "search",
    "floors",
)
#: How long the slow endpoint of the webhooks row keeps each delivery waiting.
WEBHOOK_SLOW_SECONDS = 3.0
CREATE_ENDPOINT = """
mutation Create($input: CreateWebhookEndpointInput!) {
  createWebhookEndpoint(input: $input) {
    __typename
    ... on WebhookEndpointCreated { endpoint { id } }
  }
}
"""
MOVE_ENDPOINT = """
mutation Move($id: ID!, $input: UpdateWebhookEndpointInput!) {
  updateWebhookEndpoint(id: $id, input: $input) { __typename }
}
"""
KEEP_RUNS = 5
T = TypeVar("T")


@dataclass
class Plan:
    rounds: int
    accept_seconds: float
    warmup_seconds: float
    connections: int
    threads: int
    batch_connections: int
    batch_size: int
    e2e_rate: float
    e2e_seconds: float
    e2e_warmup_seconds: float
    e2e_connections: int
    e2e_batch: int
    e2e_delay: float | None
    fanout_subscribers: int
    fanout_messages: int
    fanout_interval: float
    fairness_backlog: int
    search_messages: int
    search_queries: int
    floor_db_seconds: float
    api_processes: int
    workers: int
    compression: str | None
    profile: bool


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run.sh", description="Benchmark suite of the messaging gateway (loopback only)."
    )
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 3; --quick: 1)")
    parser.add_argument(
        "--quick", action="store_true", help="1 round, short durations: a smoke test"
    )
    parser.add_argument(
        "--only",
        default=",".join(BENCHMARKS),
        help=f"comma-separated subset of {','.join(BENCHMARKS)} (default: all)",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=RESULTS / "latest.json",
        help="where to write the JSON report (default bench/results/latest.json)",
    )
    parser.add_argument("--seconds", type=float, default=None, help="accept run length (10)")
    parser.add_argument(
        "--api-processes", type=int, default=2, help="API processes (2: one per core)"
    )
    parser.add_argument("--workers", type=int, default=1, help="worker processes (1)")
    parser.add_argument("--e2e-rate", type=float, default=500.0, help="end-to-end msg/s (500)")
    parser.add_argument(
        "--e2e-batch",
        type=int,
        default=1,
        help="end-to-end sender: 1 = one sendMessage per message (default); k = sendMessages "
        "of k inputs every k/rate seconds",
    )
    parser.add_argument("--subscribers", type=int, default=1000, help="fan-out subscribers")
    parser.add_argument(
        "--ws-compression",
        choices=("deflate", "none"),
        default="deflate",
        help="permessage-deflate on the client websockets (default deflate, like browsers)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="record py-spy profiles of the gateway processes during each measurement "
        "(needs py-spy in the venv: .venv/bin/pip install py-spy)",
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    only = {name.strip() for name in args.only.split(",") if name.strip()}
    unknown = only - set(BENCHMARKS)
    if unknown or not only:
        parser.error(f"--only: unknown {sorted(unknown)}; choose from {', '.join(BENCHMARKS)}")
    args.only_set = only
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be >= 1")
    if args.api_processes < 1 or args.workers < 1:
        parser.error("--api-processes and --workers must be >= 1")
    return args


def make_plan(args: argparse.Namespace) -> Plan:
    quick = args.quick
    return Plan(
        rounds=args.rounds or (1 if quick else 3),
        accept_seconds=args.seconds or (3 if quick else 10),
        warmup_seconds=1 if quick else 3,
        connections=64,
        threads=max(2, args.api_processes),
        batch_connections=16,
        batch_size=100,
        e2e_rate=args.e2e_rate,
        e2e_seconds=3 if quick else 10,
        e2e_warmup_seconds=1 if quick else 2,
        e2e_connections=16,
        e2e_batch=args.e2e_batch,
        e2e_delay=None if quick else 0.5,
        fanout_subscribers=args.subscribers,
        fanout_messages=6 if quick else 20,
        fanout_interval=0.5,
        fairness_backlog=10_000 if quick else 50_000,
        search_messages=100_000 if quick else 1_000_000,
        search_queries=70 if quick else 700,
        floor_db_seconds=2 if quick else 5,
        api_processes=args.api_processes,
        workers=args.workers,
        compression=None if args.ws_compression == "none" else "deflate",
        profile=args.profile,
    )


def raise_open_files_limit(wanted: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard == resource.RLIM_INFINITY else min(hard, max(soft, 65536))
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        raise BenchError(
            f"open-file limit is {soft}; the fan-out needs about {wanted} "
            "(raise the hard limit: ulimit -Hn)"
        )
    return soft


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(coro)
    except ImportError:
        return asyncio.run(coro)


class Profiler:
    """py-spy record of some processes for one measurement (optional, --profile)."""

    def __init__(self, enabled: bool, outdir: Path) -> None:
        self.exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        self.enabled = enabled and Path(self.exe).exists()
        self.outdir = outdir
        self.written: list[Path] = []
        if enabled and not self.enabled:
            print("  --profile: py-spy not found (.venv/bin/pip install py-spy); skipping")

    def around(self, name: str, procs: list[Process], seconds: float, work: Callable[[], T]) -> T:
        if not self.enabled:
            return work()
        self.outdir.mkdir(parents=True, exist_ok=True)
        spies = []
        for proc in procs:
            out = self.outdir / f"{name}-{proc.name}.txt"
            spies.append(
                (
                    out,
                    subprocess.Popen(
                        [
                            self.exe,
                            "record",
                            "--pid",
                            str(proc.pid),
                            "--duration",
                            str(max(1, round(seconds))),
                            "--rate",
                            "200",
                            "--nonblocking",
                            # `serve --workers N` runs its API processes as children.
                            "--subprocesses",
                            "--format",
                            "raw",
                            "-o",
                            str(out),
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    ),
                )
            )
        try:
            return work()
        finally:
            for out, spy in spies:
                try:
                    spy.wait(timeout=seconds + 30)
                except subprocess.TimeoutExpired:
                    spy.kill()
                    spy.wait()
                if out.exists():
                    top = out.with_suffix(".top.txt")
                    top.write_text(report.profile_top(out))
                    self.written.append(top)


class Suite:
    def __init__(self, plan: Plan, only: set[str], workdir: Path) -> None:
        self.plan = plan
        self.only = only
        self.workdir = workdir
        self.values: dict[str, list[float]] = {}
        self.rounds: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.infra: Infra | None = None
        self.profiler = Profiler(plan.profile, workdir / "profiles")

    def record(self, key: str, value: float | None) -> None:
        if value is not None:
            self.values.setdefault(key, []).append(float(value))

    def record_fields(self, prefix: str, result: Mapping[str, Any], *fields: str) -> None:
        """Record ``result[field]`` as ``prefix.field`` for each field."""
        for name in fields:
            self.record(f"{prefix}.{name}", result[name])

    def stack(
        self,
        name: str,
        *,
        workers: int,
        api_processes: int | None = None,
        shared_port: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> Stack:
        assert self.infra is not None
        return Stack(
            self.infra,
            name,
            api_processes=api_processes or self.plan.api_processes,
            workers=workers,
            shared_port=shared_port,
            env=env,
        )

    # --- benchmarks ---------------------------------------------------------------------

    def single(self, r: int) -> dict[str, Any]:
        plan = self.plan
        # No worker: the accept path alone (validate, one transaction, XADD, PUBLISH).
        with self.stack(f"single-r{r}", workers=0) as stack:
            wrk = self._wrk(stack, plan.connections)
            areas = Recipients()
            full, meter = self._accept(f"single-r{r}", stack, wrk, areas, {})
            rate = max(1.0, full.accepted_per_s / 2)
            paced = {"key": stack.key, "area": areas.next_area(), "rate": round(rate, 1)}
            fixed = wrk(plan.accept_seconds, paced, False)
            stack.check()
        self.record("single.msgs_per_s", full.accepted_per_s)
        self.record("single.p50_ms", full.latency_ms("p50"))
        self.record("single.p99_ms", full.latency_ms("p99"))
        self.record("single.fixed.offered_rate", rate)
        self.record("single.fixed.achieved_rate", fixed.accepted_per_s)
        self.record("single.fixed.p99_ms", fixed.latency_ms("p99"))
        self._warn_errors("single", full.summary(), fixed.summary())
        return {
            "full": full.summary(),
            "fixed": {**fixed.summary(), "offered_rate": rate},
            "cpu": meter.used,
            "cpu_ms_per_message": per_message(meter.used, full.raw["accepted"]),
        }

    def batched(self, r: int) -> dict[str, Any]:
        plan = self.plan
        with self.stack(f"batched-r{r}", workers=0) as stack:
            wrk = self._wrk(stack, plan.batch_connections)
            batch = {"batch": plan.batch_size}
            result, meter = self._accept(f"batched-r{r}", stack, wrk, Recipients(), batch)
        self.record("batched.msgs_per_s", result.accepted_per_s)
        self.record("batched.p99_ms", result.latency_ms("p99"))
        summary = {
            **result.summary(),
            "calls_per_s": round(result.requests_per_s, 1),
            "cpu": meter.used,
            "cpu_ms_per_message": per_message(meter.used, result.raw["accepted"]),
        }
        self._warn_errors("batched", summary)
        return summary

    def e2e(self, r: int) -> dict[str, Any]:
        plan = self.plan
        assert self.infra is not None
        infra = self.infra
        # One address for all API processes, as behind a load balancer: the sender's requests
        # and the sandbox's status callbacks are spread over the processes by the kernel.
        with self.stack(f"e2e-r{r}", workers=plan.workers, shared_port=True) as stack:

            def measure(
                seconds: float, warmup: float, area: str, batch: int = plan.e2e_batch
            ) -> dict[str, Any]:
                return self._measure_e2e(stack, seconds, warmup, area, batch)

            delay = infra.configure_sandbox(callback_delay=0.0)["callback_delay"]
            result = self.profiler.around(
                f"e2e-r{r}",
                [*stack.apis, *stack.workers, *([infra.sandbox] if infra.sandbox else [])],
                plan.e2e_seconds + plan.e2e_warmup_seconds + 3,
                lambda: measure(plan.e2e_seconds, plan.e2e_warmup_seconds, "415"),
            )
            result["sandbox_callback_delay_s"] = delay
            stack.check()
            if plan.e2e_delay is not None and r == 0:
                # Informational: the same run with the sandbox's callbacks delayed.
                infra.configure_sandbox(callback_delay=plan.e2e_delay)
                try:
                    delayed = measure(plan.e2e_seconds, 0, "212")
                finally:
                    infra.configure_sandbox(callback_delay=0.0)
                delayed["sandbox_callback_delay_s"] = plan.e2e_delay
                result["with_callback_delay"] = delayed
                self.record("e2e_delay.p99_ms", delayed["p99_ms"])
                stack.check()
            if plan.e2e_delay is not None and r == 0 and plan.e2e_batch == 1:
                # Informational: the same rate from a sender that batches 10 per sendMessages
                # call (every 20 ms at 500/s), as a back end sending in bulk would.
                batched = measure(plan.e2e_seconds, 0, "213", batch=10)
                result["with_batched_sender"] = batched
                self.record_fields("e2e_batched", batched, "p99_ms", "achieved_send_rate")
                stack.check()
        self.record_fields("e2e", result, "p50_ms", "p99_ms", "achieved_send_rate", "missing")
        if result["achieved_send_rate"] < 0.9 * plan.e2e_rate:
            self.notes.append(
                f"e2e round {r}: the sender reached only {result['achieved_send_rate']:.0f} of "
                f"{plan.e2e_rate:.0f} msg/s (accept latency p50 {result['accept_p50_ms']} ms over "
                f"{plan.e2e_connections} connections): the latency is that of a lower rate"
            )
        if result["send_errors"]:
            self.notes.append(
                f"e2e round {r}: {result['send_errors']} send errors, first: "
                f"{result['first_send_error']}"
            )
        return result

    def _measure_e2e(
        self, stack: Stack, seconds: float, warmup: float, area: str, batch: int
    ) -> dict[str, Any]:
        """One end-to-end run on ``stack`` at the plan's rate, its CPU metered."""
        plan = self.plan
        meter = self._meter(stack)
        measured = run_async(
            run_e2e(
                stack.api_url,
                stack.key,
                rate=plan.e2e_rate,
                seconds=seconds,
                warmup_seconds=warmup,
                connections=plan.e2e_connections,
                batch=batch,
                drain_timeout=30,
                area=area,
                compression=plan.compression,
                meter=meter,
                settle=lambda: asyncio.to_thread(stack.analyze),
            )
        )
        measured["cpu"] = meter.used
        measured["cpu_ms_per_message"] = per_message(meter.used, measured["sent"])
        return measured

    def webhooks(self, r: int) -> dict[str, Any]:
        """End to end again, with two event-webhook endpoints on a local receiver, each taking
        every event of the account; then once more with the second one answering only after
        WEBHOOK_SLOW_SECONDS. Both runs write the same deliveries, so the difference between
        their p99s is the slow endpoint's. Reports the deliveries one endpoint got per second
        during the first run, and how far the slow endpoint moves the end-to-end p99."""
        plan = self.plan
        assert self.infra is not None
        self.infra.configure_sandbox(callback_delay=0.0)
        receiver_args = ("--slow-seconds", str(WEBHOOK_SLOW_SECONDS))
        with (
            PlainApp(self.workdir, "bench.webhook_receiver", receiver_args) as receiver,
            self.stack(
                f"webhooks-r{r}",
                workers=plan.workers,
                shared_port=True,
                env={"WEBHOOK_ALLOW_PRIVATE_URLS": "true"},
            ) as stack,
        ):
            _create_endpoint(stack, receiver.url + "/fast")
            second = _create_endpoint(stack, receiver.url + "/other")
            before = _received(receiver)
            started = time.monotonic()
            fast = self._measure_e2e(
                stack, plan.e2e_seconds, plan.e2e_warmup_seconds, "214", plan.e2e_batch
            )
            elapsed = time.monotonic() - started
            during = _received(receiver)["fast"] - before["fast"]
            # The second run starts where the first did: with the fast endpoint's deliveries
            # caught up, so it measures the slow endpoint and not the first run's backlog.
            drained = _drain(receiver, "fast")
            _graphql(stack, MOVE_ENDPOINT, {"id": second, "input": {"url": receiver.url + "/slow"}})
            slow = self._measure_e2e(stack, plan.e2e_seconds, 0, "215", plan.e2e_batch)
            stack.check()
        result = {
            "deliveries_per_s": round(during / elapsed, 1),
            "deliveries": during,
            "seconds": round(elapsed, 1),
            "e2e": fast,
            "e2e_with_slow_endpoint": slow,
            "slow_endpoint_seconds": WEBHOOK_SLOW_SECONDS,
            "p99_moved_ms": round(slow["p99_ms"] - fast["p99_ms"], 2),
            "drain_seconds": drained,
        }
        self.record("webhooks.deliveries_per_s", result["deliveries_per_s"])
        self.record("webhooks.e2e_p99_ms", fast["p99_ms"])
        self.record("webhooks.e2e_p99_slow_ms", slow["p99_ms"])
        self.record("webhooks.p99_moved_ms", result["p99_moved_ms"])
        return result

    def fanout(self, r: int) -> dict[str, Any]:
        plan = self.plan
        # ONE API process holds every subscription.
        with self.stack(f"fanout-r{r}", workers=plan.workers, api_processes=1) as stack:
            meter = self._meter(stack)
            seconds = plan.fanout_messages * plan.fanout_interval + 5
            result = self.profiler.around(
                f"fanout-r{r}",
                stack.apis,
                seconds,
                lambda: run_async(
                    run_fanout(
                        stack.api_url,
                        stack.key,
                        subscribers=plan.fanout_subscribers,
                        messages=plan.fanout_messages,
                        interval=plan.fanout_interval,
                        connect_concurrency=50,
                        settle_timeout=60,
                        area="415",
                        compression=plan.compression,
                        meter=meter,
                    )
                ),
            )
            result["cpu"] = meter.used
            result["cpu_ms_per_delivery"] = per_message(meter.used, result["deliveries"])
            stack.check()
        self.record_fields("fanout", result, "p99_ms", "p50_ms", "missing")
        for key in ("connect_failures", "send_errors", "closed_early", "duplicates"):
            if result[key]:
                self.notes.append(
                    f"fan-out round {r}: {key} = {result[key]} "
                    f"({result.get('first_' + key.rstrip('s'), '')})"
                )
        return result

    def fairness(self, r: int) -> dict[str, Any]:
        plan = self.plan
        assert self.infra is not None and self.infra.pg is not None
        with self.stack(f"fairness-r{r}", workers=plan.workers) as stack:
            other = stack.create_key("bench-b")
            dsn = self.infra.pg.url(stack.dbname, driver="postgresql")
            meter = self._meter(stack)
            result = meter.run(
                lambda: run_async(
                    run_fairness(
                        stack.api_url,
                        stack.key,
                        other,
                        dsn,
                        backlog=plan.fairness_backlog,
                    )
                )
            )
            result["cpu"] = meter.used
            stack.check()
        self.record_fields(
            "fairness", result, "b_send_to_sent_ms", "a_drain_msgs_per_s", "a_waiting_when_b_sent"
        )
        return result

    def search(self, r: int) -> dict[str, Any]:
        plan = self.plan
        assert self.infra is not None and self.infra.pg is not None
        result = run_async(
            run_search(self.infra.pg, messages=plan.search_messages, searches=plan.search_queries)
        )
        self.record_fields("search", result, "p50_ms", "p99_ms")
        self.record("search.conversations.p99_ms", result["conversations_p99_ms"])
        return result

    def floors(self, r: int, fixed_rate: float | None) -> dict[str, Any]:
        plan = self.plan
        assert self.infra is not None and self.infra.pg is not None
        out: dict[str, Any] = {}
        starlette = starlette_floor(
            self.workdir,
            seconds=plan.accept_seconds,
            warmup_seconds=plan.warmup_seconds,
            connections=plan.connections,
            threads=2,
            fixed_rate=fixed_rate,
        )
        out["starlette"] = starlette
        self.record("floor.starlette.rps", starlette["full"]["accepted_per_s"])
        self.record("floor.starlette.p50_ms", starlette["full"]["p50_ms"])
        self.record("floor.starlette.p99_ms", starlette["full"]["p99_ms"])
        if "fixed" in starlette:
            self.record("floor.starlette.fixed_p50_ms", starlette["fixed"]["p50_ms"])
            self.record("floor.starlette.fixed_p99_ms", starlette["fixed"]["p99_ms"])
        out["postgres"] = run_async(pg_floor(self.infra.pg, seconds=plan.floor_db_seconds))
        self.record_fields("floor.pg", out["postgres"], "rows_per_s", "batch_p99_ms")
        out["redis"] = run_async(redis_floor(self.infra.redis_url, seconds=plan.floor_db_seconds))
        self.record("floor.redis.xadd_ops_per_s", out["redis"]["ops_per_s"])
        return out

    # --- plumbing -----------------------------------------------------------------------

    def _accept(
        self,
        name: str,
        stack: Stack,
        wrk: Callable[[float, dict[str, object], bool], WrkResult],
        areas: Recipients,
        args: Mapping[str, object],
    ) -> tuple[WrkResult, CpuMeter]:
        """Warm the accept path up, then measure it (profiled, its CPU metered); each wrk run
        sends ``args`` to a fresh area code."""
        plan = self.plan
        wrk(plan.warmup_seconds, {"key": stack.key, "area": areas.next_area(), **args}, True)
        meter = self._meter(stack)
        result = self.profiler.around(
            name,
            stack.apis,
            plan.accept_seconds,
            lambda: meter.run(
                lambda: wrk(
                    plan.accept_seconds,
                    {"key": stack.key, "area": areas.next_area(), **args},
                    False,
                )
            ),
        )
        stack.check()
        return result, meter

    def _meter(self, stack: Stack) -> CpuMeter:
        infra = self.infra
        assert infra is not None
        groups: dict[str, list[int]] = {
            "api": [p.pid for p in stack.apis],
            "worker": [p.pid for p in stack.workers],
        }
        if infra.sandbox is not None:
            groups["sandbox"] = [infra.sandbox.pid]
        groups["postgres"] = infra.server_pids("postgres")
        groups["redis"] = infra.server_pids("redis")
        return CpuMeter(groups)

    def _wrk(
        self, stack: Stack, connections: int
    ) -> Callable[[float, dict[str, object], bool], WrkResult]:
        """wrk against the stack's API process(es): ``wrk(seconds, script_args, warmup)``."""
        addrs = None
        if len(stack.api_ports) > 1:
            addrs = [f"{LOOPBACK}:{port}" for port in stack.api_ports]
        url = stack.api_url + "/graphql"

        def wrk(seconds: float, args: dict[str, object], warmup: bool = False) -> WrkResult:
            return run_wrk(
                url,
                threads=self.plan.threads,
                connections=connections,
                seconds=seconds,
                args=args,
                log_path=stack.logdir / "wrk.log",
                addresses=addrs,
                require_accepted=not warmup,
            )

        return wrk

    def _warn_errors(self, name: str, *summaries: dict[str, Any]) -> None:
        for summary in summaries:
            if summary["errors"] or summary["non_2xx"]:
                self.notes.append(
                    f"{name}: {summary['errors']} failed requests "
                    f"({summary['non_2xx']} non-2xx, {summary['timeouts']} timeouts); "
                    f"first: {summary['first_bad'][:200]}"
                )

    def run(self) -> None:
        plan = self.plan
        self.infra = Infra.start(self.workdir, plan.api_processes)
        try:
            for r in range(plan.rounds):
                print(f"round {r + 1}/{plan.rounds}", flush=True)
                details: dict[str, Any] = {}
                self.rounds.append(details)
                for name in BENCHMARKS:
                    if name not in self.only:
                        continue
                    started = time.monotonic()
                    if name == "floors":
                        rates = self.values.get("single.fixed.offered_rate")
                        rate = rates[-1] if rates else self.plan.e2e_rate
                        details[name] = self.floors(r, rate)
                    else:
                        details[name] = getattr(self, name)(r)
                    print(
                        f"  {name:<8} {time.monotonic() - started:5.1f}s  "
                        f"{_brief(name, details[name])}{_cpu_brief(details[name])}",
                        flush=True,
                    )
        finally:
            self.infra.stop()


def _graphql(stack: Stack, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    """One operation of the stack's account; its first field's result, which must not be
    an error."""
    response = httpx.post(
        stack.api_url + "/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {stack.key}"},
        timeout=10,
    )
    data = response.json().get("data") or {}
    result: dict[str, Any] = next(iter(data.values()), None) or {}
    if not result.get("__typename", "").startswith("WebhookEndpoint"):
        raise BenchError(f"webhook endpoint operation failed: {response.text[:500]}")
    return result


def _create_endpoint(stack: Stack, url: str) -> str:
    """An endpoint of the stack's account that takes every event; its id."""
    created = _graphql(stack, CREATE_ENDPOINT, {"input": {"url": url}})
    endpoint_id: str = created["endpoint"]["id"]
    return endpoint_id


def _received(receiver: PlainApp) -> dict[str, int]:
    counts: dict[str, int] = httpx.get(receiver.url + "/counts", timeout=10).json()
    return counts


def _drain(receiver: PlainApp, path: str, *, within: float = 180.0) -> float:
    """Wait until the receiver's count for ``path`` stops growing (two seconds alike);
    returns how long that took."""
    started = time.monotonic()
    last = _received(receiver)[path]
    while time.monotonic() - started < within:
        time.sleep(2.0)
        now = _received(receiver)[path]
        if now == last:
            break
        last = now
    return round(time.monotonic() - started, 1)


def _cpu_brief(d: dict[str, Any]) -> str:
    per = d.get("cpu_ms_per_message") or d.get("cpu_ms_per_delivery") or {}
    cpu = d.get("cpu") or {}
    if not per:
        return ""
    unit = "delivery" if "cpu_ms_per_delivery" in d else "msg"
    parts = " ".join(f"{k} {v:.2f}" for k, v in sorted(per.items(), key=lambda kv: -kv[1]))
    return (
        f"\n           CPU ms/{unit}: {parts}; machine busy "
        f"{100 * cpu.get('machine_busy_share', 0):.0f}%"
    )


def _brief(name: str, d: dict[str, Any]) -> str:
    if name == "single":
        f, x = d["full"], d["fixed"]
        return (
            f"{f['accepted_per_s']:.0f} msg/s p50 {f['p50_ms']:.1f} ms p99 {f['p99_ms']:.1f}"
            f" ms; at {x['offered_rate']:.0f}/s p99 {x['p99_ms']:.1f} ms"
        )
    if name == "batched":
        return f"{d['accepted_per_s']:.0f} msg/s, p99 {d['p99_ms']:.1f} ms per call"
    if name == "e2e":
        return (
            f"sent {d['achieved_send_rate']:.0f}/s p50 {d['p50_ms']:.1f} ms p99 "
            f"{d['p99_ms']:.1f} ms missing {d['missing']}"
        )
    if name == "webhooks":
        return (
            f"{d['deliveries_per_s']:.0f} deliveries/s during e2e (p99 {d['e2e']['p99_ms']:.1f}"
            f" ms); a slow endpoint moves the p99 by {d['p99_moved_ms']:.1f} ms (after"
            f" {d['drain_seconds']:.0f} s for the first run's deliveries to catch up)"
        )
    if name == "fanout":
        return (
            f"{d['connected']} subs, {d['events']} events, p99 {d['p99_ms']} ms, "
            f"missing {d['missing']}"
        )
    if name == "fairness":
        return (
            f"B send->SENT {d['b_send_to_sent_ms']:.0f} ms with {d['a_waiting_when_b_sent']} of "
            f"A's {d['backlog']} waiting; A drained at {d['a_drain_msgs_per_s']:.0f} msg/s"
        )
    if name == "search":
        return (
            f"{d['messages']} messages seeded in {d['seed_s']:.0f} s; messages p50"
            f" {d['p50_ms']:.1f} ms p99 {d['p99_ms']:.1f} ms; conversations p99"
            f" {d['conversations_p99_ms']:.1f} ms"
        )
    if name == "floors":
        s = d["starlette"]["full"]
        return (
            f"starlette {s['accepted_per_s']:.0f} req/s, PG {d['postgres']['rows_per_s']:.0f}"
            f" rows/s, XADD {d['redis']['ops_per_s']:.0f} ops/s"
        )
    return ""


def prune_runs(keep: int) -> None:
    """Keep the logs of the last few runs only (bench/results/run-*; gitignored)."""
    runs = sorted(p for p in RESULTS.glob("run-*") if p.is_dir())
    for old in runs[: max(0, len(runs) - keep)]:
        shutil.rmtree(old, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = make_plan(args)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = RESULTS / datetime.now().strftime("run-%Y%m%d-%H%M%S")
    prune_runs(keep=KEEP_RUNS - 1)
    workdir.mkdir(parents=True, exist_ok=True)
    started_at = report.now_iso()
    machine = report.machine_facts()
    try:
        nofile = raise_open_files_limit(plan.fanout_subscribers * 2 + 512)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    chosen = ", ".join(b for b in BENCHMARKS if b in args.only_set)
    print(f"bench: {plan.rounds} round(s) of {chosen}; logs in {workdir}", flush=True)
    suite = Suite(plan, args.only_set, workdir)
    failed: BaseException | None = None
    try:
        suite.run()
    except HarnessError as exc:  # BenchError, or a server or process that failed
        failed = exc
    except KeyboardInterrupt as exc:
        failed = exc
    rows = report.summarize(suite.values)
    gateway_env = gateway_settings(
        database_url="postgresql+asyncpg://gateway:***@127.0.0.1:PORT/bench_N_NAME",
        redis_url="redis://127.0.0.1:PORT/0",
        public_base_url="http://127.0.0.1:API_PORT",
        sandbox_url="http://127.0.0.1:SANDBOX_PORT",
        public_key="<generated per run>",
    )
    inherited = {
        k: v
        for k, v in os.environ.items()
        if k.upper() in _setting_names() and k not in gateway_env
    }
    document = {
        "date": started_at,
        "finished": report.now_iso(),
        "machine": machine | {"load_average_end": [round(x, 2) for x in os.getloadavg()]},
        "git": report.git_facts(),
        "packages": report.package_versions(),
        "plan": plan.__dict__,
        "open_files_limit": nofile,
        "settings": {
            "gateway_env": gateway_env,
            "inherited_gateway_env": inherited,
            "notes": [
                "RATE_LIMITS is empty: per-key rate limits are off for the benchmark.",
                "Accept benchmarks run with no worker process (messages stay QUEUED).",
                "Fixed-rate runs pace wrk with a per-thread schedule in Lua delay(): a paced "
                "closed-loop approximation of a constant-rate generator (wrk2 is not packaged "
                "in Debian).",
            ],
        },
        "figures": rows,
        "rounds": suite.rounds,
        "notes": suite.notes,
        "profiles": [str(p) for p in suite.profiler.written],
        "logs": str(workdir),
        "error": None if failed is None else f"{type(failed).__name__}: {failed}",
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(document, indent=2, default=str) + "\n")
    (workdir / "report.json").write_text(json.dumps(document, indent=2, default=str) + "\n")
    print()
    if rows:
        print(report.table(rows))
        print()
    print(
        f"machine: {machine['nproc']} x {machine['cpu_model']}, {machine['memory_gib']} GiB; "
        f"load average at start {machine['load_average']}"
    )
    print(
        "settings: RATE_LIMITS='' (limits off), LOG_LEVEL=WARNING, SANDBOX_CALLBACK_DELAY=0; "
        f"{plan.api_processes} API process(es), {plan.workers} worker(s)"
    )
    for note in suite.notes:
        print(f"note: {note}")
    for path in suite.profiler.written:
        print(f"profile: {path}")
    print(f"json: {args.json}")
    if failed is not None:
        print(f"\nbench: FAILED: {failed}", file=sys.stderr)
        return 130 if isinstance(failed, KeyboardInterrupt) else 1
    if args.strict and any(row["verdict"] == "FAIL" for row in rows):
        return 1
    return 0


def _setting_names() -> set[str]:
    from gateway.settings import Settings

    return {name.upper() for name in Settings.model_fields}


if __name__ == "__main__":
    raise SystemExit(main())
