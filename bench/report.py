"""The suite's output: one table of medians over rounds (targets, pass/fail, floor ratios),
the same as JSON with the date, the machine, the git commit and the settings used."""

from __future__ import annotations

import collections
import math
import os
import platform
import shutil
import statistics
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (no interpolation): the value p% of the samples do not exceed."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass(frozen=True)
class Figure:
    key: str
    label: str
    unit: str
    higher_is_better: bool
    target: float | None = None
    floor: str | None = None  # key of the floor figure this one is divided by
    floor_label: str = ""
    info: bool = False  # shown, never judged


FIGURES: tuple[Figure, ...] = (
    Figure(
        "single.msgs_per_s",
        "Accept, single: sendMessage",
        "msg/s",
        True,
        target=1000,
        floor="floor.starlette.rps",
        floor_label="Starlette req/s",
    ),
    Figure(
        "single.p50_ms",
        "Accept, single: p50 latency (64 conns)",
        "ms",
        False,
        floor="floor.starlette.p50_ms",
        floor_label="Starlette p50",
    ),
    Figure(
        "single.p99_ms",
        "Accept, single: p99 latency (64 conns)",
        "ms",
        False,
        floor="floor.starlette.p99_ms",
        floor_label="Starlette p99",
    ),
    Figure(
        "single.fixed.offered_rate",
        "Accept, single: fixed rate offered (1/2 max)",
        "msg/s",
        True,
        info=True,
    ),
    Figure(
        "single.fixed.achieved_rate",
        "Accept, single: fixed rate achieved",
        "msg/s",
        True,
        info=True,
    ),
    Figure(
        "single.fixed.p99_ms",
        "Accept, single: p99 at 1/2 max rate",
        "ms",
        False,
        target=50,
        floor="floor.starlette.fixed_p99_ms",
        floor_label="Starlette p99, same rate",
    ),
    Figure(
        "batched.msgs_per_s",
        "Accept, batched: sendMessages x100",
        "msg/s",
        True,
        target=10000,
        floor="floor.pg.rows_per_s",
        floor_label="PG rows/s",
    ),
    Figure(
        "batched.p99_ms",
        "Accept, batched: p99 per call",
        "ms",
        False,
        floor="floor.pg.batch_p99_ms",
        floor_label="PG 100-row batch p99",
    ),
    Figure(
        "e2e.p50_ms",
        "End to end @500/s: send->DELIVERED p50",
        "ms",
        False,
        floor="floor.starlette.fixed_p50_ms",
        floor_label="plain HTTP p50",
    ),
    Figure(
        "e2e.p99_ms",
        "End to end @500/s: send->DELIVERED p99",
        "ms",
        False,
        target=250,
        floor="floor.starlette.fixed_p99_ms",
        floor_label="plain HTTP p99",
    ),
    Figure(
        "e2e.achieved_send_rate",
        "End to end: rate sent",
        "msg/s",
        True,
        floor="floor.redis.xadd_ops_per_s",
        floor_label="XADD ops/s",
        info=True,
    ),
    Figure("e2e.missing", "End to end: messages never DELIVERED", "msgs", False, target=0),
    Figure("e2e_delay.p99_ms", "End to end p99, sandbox callback delay on", "ms", False, info=True),
    Figure(
        "e2e_batched.achieved_send_rate",
        "End to end, sender batching x10: rate sent",
        "msg/s",
        True,
        info=True,
    ),
    Figure("e2e_batched.p99_ms", "End to end, sender batching x10: p99", "ms", False, info=True),
    Figure(
        "webhooks.deliveries_per_s",
        "Event webhooks: deliveries/s to one of two endpoints during e2e",
        "deliveries/s",
        True,
        info=True,
    ),
    Figure(
        "webhooks.e2e_p99_ms",
        "End to end p99 with two event-webhook endpoints",
        "ms",
        False,
        info=True,
    ),
    Figure(
        "webhooks.e2e_p99_slow_ms",
        "End to end p99 with one of the two endpoints slow",
        "ms",
        False,
        info=True,
    ),
    Figure(
        "webhooks.p99_moved_ms", "End to end p99 moved by the slow endpoint", "ms", False, info=True
    ),
    Figure(
        "fanout.p99_ms",
        "Fan-out 1000 subs: publish->client p99",
        "ms",
        False,
        target=100,
        floor="floor.starlette.fixed_p99_ms",
        floor_label="plain HTTP p99",
    ),
    Figure("fanout.p50_ms", "Fan-out 1000 subs: publish->client p50", "ms", False, info=True),
    Figure("fanout.missing", "Fan-out: missing deliveries", "deliveries", False, target=0),
    Figure(
        "fairness.b_send_to_sent_ms",
        "Fairness: B's one message behind A's backlog, send->SENT",
        "ms",
        False,
        target=2000,
    ),
    Figure(
        "fairness.a_waiting_when_b_sent",
        "Fairness: A's messages still queued when B's was SENT",
        "msgs",
        True,
        info=True,
    ),
    Figure(
        "fairness.a_drain_msgs_per_s", "Fairness: A's backlog drain rate", "msg/s", True, info=True
    ),
    Figure("search.p99_ms", "Search of 1M messages: messages(filter: {search}) p99", "ms", False),
    Figure("search.p50_ms", "Search of 1M messages: p50", "ms", False, info=True),
    Figure(
        "search.conversations.p99_ms",
        "Search of 1M messages: conversations(search:) p99",
        "ms",
        False,
        info=True,
    ),
    Figure("floor.starlette.rps", "Floor: plain Starlette JSON endpoint", "req/s", True),
    Figure("floor.starlette.p99_ms", "Floor: Starlette p99 (64 conns)", "ms", False),
    Figure("floor.starlette.fixed_p99_ms", "Floor: Starlette p99 at the fixed rate", "ms", False),
    Figure("floor.pg.rows_per_s", "Floor: PostgreSQL 100-row batch inserts", "rows/s", True),
    Figure("floor.redis.xadd_ops_per_s", "Floor: Redis pipelined XADD (x100)", "ops/s", True),
)
BY_KEY = {f.key: f for f in FIGURES}


def _judge(figure: Figure, value: float | None) -> str:
    if figure.target is None or figure.info:
        return ""
    if value is None or math.isnan(value):
        return "n/a"
    ok = value >= figure.target if figure.higher_is_better else value <= figure.target
    return "PASS" if ok else "FAIL"


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _fmt_ratio(ratio: float) -> str:
    if ratio >= 100:
        return f"{ratio:,.0f}x"
    if ratio >= 1:
        return f"{ratio:.1f}x"
    return f"{ratio:.2g}x"


def summarize(per_round: dict[str, list[float]]) -> list[dict[str, Any]]:
    """Medians over rounds, targets, verdicts and floor ratios, one row per figure measured."""
    medians = {k: statistics.median(v) for k, v in per_round.items() if v}
    rows: list[dict[str, Any]] = []
    for figure in FIGURES:
        if figure.key not in medians:
            continue
        value = medians[figure.key]
        floor_value = medians.get(figure.floor) if figure.floor else None
        ratio = value / floor_value if floor_value else None
        target = None
        if figure.target is not None and not figure.info:
            target = f"{'>=' if figure.higher_is_better else '<='} {_fmt(figure.target)}"
        rows.append(
            {
                "key": figure.key,
                "label": figure.label,
                "value": value,
                "unit": figure.unit,
                "target": target,
                "verdict": _judge(figure, value),
                "floor": figure.floor,
                "floor_label": figure.floor_label,
                "floor_value": floor_value,
                "ratio": ratio,
                "rounds": per_round[figure.key],
            }
        )
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    header = ("figure", "median", "unit", "target", "result", "vs floor", "rounds")
    lines = []
    for row in rows:
        ratio = ""
        if row["ratio"] is not None:
            ratio = f"{_fmt_ratio(row['ratio'])} {row['floor_label']}"
        lines.append(
            (
                row["label"],
                _fmt(row["value"]),
                row["unit"],
                row["target"] or "",
                row["verdict"],
                ratio,
                " ".join(_fmt(v) for v in row["rounds"]),
            )
        )
    widths = [max(len(str(c)) for c in col) for col in zip(header, *lines, strict=True)]
    out = []
    for i, line in enumerate([header, *lines]):
        cells = [
            str(c).rjust(w) if 0 < j < 2 else str(c).ljust(w)
            for j, (c, w) in enumerate(zip(line, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _run(args: list[str]) -> str:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (done.stdout or done.stderr).strip()


def machine_facts() -> dict[str, Any]:
    cpuinfo = _read("/proc/cpuinfo")
    model = next(
        (ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")),
        platform.processor(),
    )
    meminfo = _read("/proc/meminfo")
    mem_kb = next(
        (int(ln.split()[1]) for ln in meminfo.splitlines() if ln.startswith("MemTotal:")), 0
    )
    wrk = shutil.which("wrk")
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "os": _os_name(),
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "wrk": _run([wrk, "-v"]).splitlines()[0] if wrk else None,
        "redis": _run(["redis-server", "--version"]),
    }


def _os_name() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return platform.platform()


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    names = (
        "uvicorn",
        "starlette",
        "strawberry-graphql",
        "graphql-core",
        "sqlalchemy",
        "asyncpg",
        "redis",
        "websockets",
        "uvloop",
        "httptools",
        "orjson",
    )
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "absent"
    return found


def git_facts() -> dict[str, Any]:
    commit = _run(["git", "-C", str(ROOT), "rev-parse", "HEAD"])
    status = _run(["git", "-C", str(ROOT), "status", "--porcelain"])
    return {
        "commit": commit,
        "changed_files": len([ln for ln in status.splitlines() if ln.strip()]),
    }


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def profile_top(collapsed: Path, count: int = 30) -> str:
    """Top frames (self and inclusive) of a py-spy ``--format raw`` (collapsed stacks) file."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        samples = int(n)
        total += samples
        frames = stack.split(";")
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    if not total:
        return "no samples\n"
    out = [f"{total} samples", "", "self:"]
    out += [f"{100 * c / total:5.1f}%  {f}" for f, c in own.most_common(count)]
    out += ["", "inclusive:"]
    out += [f"{100 * c / total:5.1f}%  {f}" for f, c in inclusive.most_common(count * 2)]
    return "\n".join(out) + "\n"
