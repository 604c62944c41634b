"""graphql-http's conformance audit (GraphQL over HTTP), run with node against a real
``messaging-gateway serve`` in the embedded mode on loopback.

The audit (npm package ``graphql-http``, pinned in ``tests/http_audit/package-lock.json``;
``make test`` runs ``npm ci`` there when it is missing) sends its requests with the development
key. Every MUST and every SHOULD has to pass; the MAYs are reported in the message only.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from harness.processes import embedded_serve

AUDIT_DIR = Path(__file__).resolve().parents[1] / "http_audit"
#: Guards against a hung audit, not a performance assertion.
AUDIT_TIMEOUT = 120.0


@pytest.fixture
async def embedded(tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    """A real embedded ``serve`` on a free loopback port: its URL and development key."""
    async with embedded_serve(tmp_path) as (_, url, key):
        yield f"{url}/graphql", key


async def run_audit(url: str, key: str) -> list[dict[str, Any]]:
    node = shutil.which("node")
    assert node, "node is needed for the GraphQL over HTTP audit (make test installs it)"
    assert (AUDIT_DIR / "node_modules" / "graphql-http").is_dir(), (
        f"graphql-http is not installed: run `npm ci` in {AUDIT_DIR} (make test does)"
    )
    env = {**os.environ, "GATEWAY_API_KEY": key}
    audit = await asyncio.create_subprocess_exec(
        node,
        "audit.mjs",
        url,
        cwd=AUDIT_DIR,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(audit.communicate(), AUDIT_TIMEOUT)
    except TimeoutError:
        audit.kill()
        await audit.wait()
        raise
    assert audit.returncode == 0, f"the audit failed to run ({audit.returncode}):\n{err.decode()}"
    results: list[dict[str, Any]] = json.loads(out)
    return results


def describe(results: list[dict[str, Any]]) -> str:
    lines = []
    for result in results:
        line = f"{result['status']:6} {result['id']} {result['name']}"
        if result["status"] != "ok":
            line += f"\n         {result['reason']}: {json.dumps(result['answer'])}"
        lines.append(line)
    return "\n".join(lines)


async def test_every_must_and_should_of_the_graphql_over_http_audit_passes(
    embedded: tuple[str, str],
) -> None:
    url, key = embedded
    results = await run_audit(url, key)
    assert len(results) >= 50, describe(results)  # the whole audit ran
    failed = [
        result
        for result in results
        if result["name"].startswith(("MUST", "SHOULD")) and result["status"] != "ok"
    ]
    not_ok = [result for result in results if result["status"] != "ok"]
    assert not failed, (
        f"{len(failed)} MUST/SHOULD audits failed; every audit that did not pass:\n"
        + describe(not_ok)
    )
