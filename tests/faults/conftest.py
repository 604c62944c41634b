"""The fault suite's stack (shared by its scenarios, on servers of its own), its reports, and
the summary of recovery times printed at the end of a run."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Generator, Iterator
from typing import Any

import pytest

from harness.pipeline import start_pipeline
from harness.processes import dedicated_postgres
from harness.servers import RedisServer
from tests.faults.scenario import (
    RESULTS_PATH,
    RUN_ID,
    SESSION_RESULTS,
    FaultReport,
    FaultStack,
    record_result,
    summary_table,
)

#: The outcome of a scenario's call phase, for its report (written at teardown).
_OUTCOME = pytest.StashKey[str]()


# Package scope: torn down after the last scenario, so that the rest of a `make test` run does
# not share two cores with four idle gateway processes and two servers.
@pytest.fixture(scope="package")
async def fault_stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FaultStack]:
    base = tmp_path_factory.mktemp("faults")
    async with dedicated_postgres(base / "postgres", "faults") as postgres:
        redis = await asyncio.to_thread(RedisServer.start, base / "redis")
        try:
            (base / "pipeline").mkdir()
            async with start_pipeline(base / "pipeline", postgres.url("faults"), redis) as pipe:
                yield FaultStack(postgres, redis, pipe)
        finally:
            await asyncio.to_thread(redis.stop)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call":
        item.stash[_OUTCOME] = report.outcome
    return report


@pytest.fixture
def fault_report(request: pytest.FixtureRequest) -> Iterator[FaultReport]:
    """The scenario's report; written to the results file whatever the outcome."""
    report = FaultReport(scenario=request.node.name.removeprefix("test_"))
    started = time.monotonic()
    yield report
    outcome = request.node.stash.get(_OUTCOME, "error")
    record_result(report, outcome, time.monotonic() - started)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not SESSION_RESULTS:
        return
    terminalreporter.write_sep("=", f"fault suite: recovery times (run {RUN_ID})")
    for line in summary_table(SESSION_RESULTS):
        terminalreporter.write_line(line)
    terminalreporter.write_line(f"(appended to {RESULTS_PATH})")
