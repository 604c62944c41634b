"""Oversized bodies posted to /graphql while other clients keep sending.

Sixteen clients at once post fifty-megabyte bodies, with and without an API key, with a
Content-Length and chunked. Each must be refused with 413 and a JSON error while the body is
being read (before authentication and parsing), the API processes' memory must stay bounded,
and the other clients must keep being served throughout.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from harness.pipeline import Pipeline
from tests.faults.scenario import (
    FaultReport,
    FaultStack,
    Load,
    percentile,
    prepare,
    rss_mb,
    settle,
)

pytestmark = [pytest.mark.fault]

ABUSERS = 16
BODY_MB = 50
CHUNK = b"a" * (1 << 20)
#: Growth of an API process's memory that no body limit worth the name lets through, far
#: above what a few requests in flight need, far below what reading the bodies costs.
RSS_GROWTH_LIMIT_MB = 256


@dataclass
class Abuse:
    api: int
    with_key: bool
    chunked: bool
    status: int | None = None
    content_type: str = ""
    json_error: bool = False
    sent_mb: float = 0.0
    error: str = ""

    @property
    def kind(self) -> str:
        key = "with key" if self.with_key else "no key"
        return f"{key}, {'chunked' if self.chunked else 'Content-Length'}"


async def abuse(pipe: Pipeline, key: str, attempt: Abuse) -> Abuse:
    prefix = b'{"query": "query { __typename }", "variables": {"x": "'
    suffix = b'"}}'
    fill = BODY_MB * len(CHUNK) - len(prefix) - len(suffix)

    async def body() -> AsyncIterator[bytes]:
        yield prefix
        left = fill
        while left > 0:
            piece = CHUNK[: min(left, len(CHUNK))]
            attempt.sent_mb += len(piece) / (1 << 20)
            left -= len(piece)
            yield piece
        yield suffix

    headers = {"Content-Type": "application/json"}
    if attempt.with_key:
        headers["Authorization"] = f"Bearer {key}"
    if not attempt.chunked:
        headers["Content-Length"] = str(len(prefix) + fill + len(suffix))
    try:
        response = await pipe.http.post(
            pipe.api_url(attempt.api) + "/graphql", content=body(), headers=headers, timeout=60
        )
    except httpx.HTTPError as exc:
        attempt.error = type(exc).__name__
        return attempt
    attempt.status = response.status_code
    attempt.content_type = response.headers.get("content-type", "")
    try:
        answer = response.json()
    except ValueError:
        answer = None
    attempt.json_error = isinstance(answer, dict) and bool(answer.get("errors"))
    return attempt


@pytest.mark.timeout(150)
async def test_oversized_bodies_are_refused_while_others_are_served(
    fault_stack: FaultStack, fault_report: FaultReport
) -> None:
    pipe = fault_stack.pipe
    account = await prepare(fault_stack)
    pids = [api.pid for api in pipe.apis]
    baseline = [rss_mb(pid) or 0.0 for pid in pids]
    peak = list(baseline)
    sampling = True

    async def sample() -> None:
        while sampling:
            for i, pid in enumerate(pids):
                peak[i] = max(peak[i], rss_mb(pid) or 0.0)
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample())
    try:
        async with Load(pipe, account, "abuse", batch_every=0) as load:
            await asyncio.sleep(1.0)
            began = time.monotonic()
            attempts = [
                Abuse(api=i % 2, with_key=bool(i // 2 % 2), chunked=bool(i // 4 % 2))
                for i in range(ABUSERS)
            ]
            results = await asyncio.gather(*(abuse(pipe, account.key, a) for a in attempts))
            ended = time.monotonic()
            await asyncio.sleep(1.0)
        sampling = False
        await sampler
        settled = await settle(pipe, load.ids, within=60)

        during = load.latencies(began, ended)
        others_failed = [a for a in load.answers if a.started >= began and not a.accepted]
        fault_report.took("abuse_answered", began, ended)
        fault_report.took("others_all_terminal_after_abuse", ended, settled)
        fault_report.recovery["others_slowest_call_during_abuse"] = round(max(during, default=0), 2)
        fault_report.note(
            abusive_posts=len(results),
            abuse_answers=dict(Counter(f"{a.kind}: {a.status or a.error}" for a in results)),
            abuse_mb_sent_max=round(max(a.sent_mb for a in results), 1),
            others_requests_during=len(during),
            others_p50_ms=round((percentile(during, 50) or 0) * 1000, 1),
            others_p99_ms=round((percentile(during, 99) or 0) * 1000, 1),
            others_max_ms=round(max(during, default=0) * 1000, 1),
            rss_baseline_mb=[round(b) for b in baseline],
            rss_peak_mb=[round(p) for p in peak],
        )

        wrong: Counter[str] = Counter()
        for attempt in results:
            if attempt.status == 413:
                if "json" not in attempt.content_type or not attempt.json_error:
                    wrong[f"413 without a JSON error ({attempt.kind})"] += 1
            elif attempt.status is not None:
                wrong[f"{BODY_MB} MB body ({attempt.kind}) answered {attempt.status}"] += 1
            elif attempt.sent_mb >= BODY_MB - 1:
                # Cut off without an answer is acceptable only before the body was read.
                wrong[f"{BODY_MB} MB body ({attempt.kind}) read whole, then {attempt.error}"] += 1
        for what, count in wrong.items():
            fault_report.problem(f"{count} of {len(results)}: {what}, not 413")
        for i, (before, top) in enumerate(zip(baseline, peak, strict=True)):
            if top - before > RSS_GROWTH_LIMIT_MB:
                fault_report.problem(
                    f"api{i + 1} grew from {before:.0f} MB to {top:.0f} MB under the abuse"
                )
        if others_failed:
            fault_report.problem(
                f"{len(others_failed)} request(s) of other clients failed during the abuse: "
                f"{[(a.status, a.detail[:80]) for a in others_failed[:3]]}"
            )
        await fault_report.judge(pipe, load.ids, answers_may_be_lost=False)
        fault_report.check(pipe)
    finally:
        sampling = False
        await sampler
        # Memory an API process took in is not given back: the next scenario gets fresh ones.
        await pipe.restart_apis()
