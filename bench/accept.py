"""Accept benchmarks driven by wrk (bench/wrk/send.lua): sendMessage and sendMessages.

wrk is the load generator on purpose: it costs a fraction of a core, so on a 2-core machine
the gateway gets nearly all the rest. The Lua script makes every recipient unique and checks
every response body (an HTTP 200 carrying a GraphQL error is not an accepted message).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.deploy import BenchError

WRK_SCRIPT = Path(__file__).resolve().parent / "wrk" / "send.lua"
#: Area codes for the generated recipients; each wrk run of a stack takes the next one, so all
#: recipients within one database are distinct (8 million per area code).
AREA_CODES = ("415", "212", "312", "617", "206", "303", "512", "646", "718", "305", "404", "702")
WRK_TIMEOUT = "10s"  # requests slower than this count as timeouts (and leave the histogram)


def wrk_path() -> str:
    found = shutil.which("wrk")
    if not found:
        raise BenchError("wrk not found: run bench/run.sh (it installs it) or apt-get install wrk")
    return found


@dataclass
class WrkResult:
    raw: dict[str, Any]

    @property
    def seconds(self) -> float:
        return float(self.raw["duration_us"]) / 1e6

    @property
    def requests(self) -> int:
        return int(self.raw["requests"])

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds

    @property
    def accepted_per_s(self) -> float:
        return float(self.raw["accepted"]) / self.seconds

    def latency_ms(self, percentile: str) -> float:
        return float(self.raw[f"latency_{percentile}_us"]) / 1000.0

    @property
    def errors(self) -> int:
        r = self.raw
        return int(
            r["errors_connect"]
            + r["errors_read"]
            + r["errors_write"]
            + r["errors_timeout"]
            + r["responses_bad"]
        )

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "requests_per_s": round(self.requests_per_s, 1),
            "accepted": self.raw["accepted"],
            "accepted_per_s": round(self.accepted_per_s, 1),
            "p50_ms": round(self.latency_ms("p50"), 2),
            "p90_ms": round(self.latency_ms("p90"), 2),
            "p99_ms": round(self.latency_ms("p99"), 2),
            "p999_ms": round(self.latency_ms("p999"), 2),
            "max_ms": round(self.latency_ms("max"), 2),
            "errors": self.errors,
            "non_2xx": self.raw["non_2xx"],
            "timeouts": self.raw["errors_timeout"],
            "first_bad": self.raw["first_bad"],
        }


def run_wrk(
    url: str,
    *,
    threads: int,
    connections: int,
    seconds: float,
    args: Mapping[str, object],
    log_path: Path,
    addresses: list[str] | None = None,
    require_accepted: bool = True,
) -> WrkResult:
    """Run wrk once (bounded: its own -d plus a hard timeout) and parse the script's JSON."""
    duration = max(1, round(seconds))
    script_args = [f"{k}={v}" for k, v in {**args, "threads": threads}.items()]
    cmd = [
        wrk_path(),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration}s",
        "--latency",
        "--timeout",
        WRK_TIMEOUT,
        "-s",
        str(WRK_SCRIPT),
        url,
        "--",
        *script_args,
    ]
    env = dict(os.environ)
    if addresses:
        env["BENCH_ADDRS"] = ",".join(addresses)
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=duration + 60, env=env, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"wrk did not finish within {duration + 60}s: {cmd}") from exc
    redacted = [a if not a.startswith("key=") else "key=<redacted>" for a in cmd]
    with log_path.open("a") as log:
        log.write(f"=== {' '.join(redacted)}\n{done.stdout}{done.stderr}\n")
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise BenchError(
            f"wrk failed (exit {done.returncode}); output:\n{done.stdout[-3000:]}"
            f"{done.stderr[-3000:]}"
        )
    result = WrkResult(json.loads(line.removeprefix("WRK_JSON ")))
    if require_accepted and result.raw["accepted"] == 0:
        raise BenchError(
            f"wrk got no accepted item from {url}: {result.raw['first_bad'] or result.raw}"
        )
    return result


class Recipients:
    """Hands each wrk run against one database its own area code: recipients never repeat."""

    def __init__(self) -> None:
        self._next = 0

    def next_area(self) -> str:
        area = AREA_CODES[self._next % len(AREA_CODES)]
        self._next += 1
        return area
