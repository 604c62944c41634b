"""Where the circuit breakers can be seen: in the processes whose deliveries they guard.

In Redis mode the breakers live in ``messaging-gateway worker`` processes, which serve their
metrics on the health port; the API processes deliver nothing and must not report a breaker
state (theirs would say "closed" throughout an outage). In the embedded mode the API process
delivers, and its own ``/metrics`` shows the breakers. Everything runs as real processes on
loopback; states are polled with a deadline, never timed.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import httpx
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from harness.http import loopback_client
from harness.pipeline import Pipeline
from harness.processes import Process, scrubbed_env, serve_process
from harness.servers import free_port
from providers.breaker import State
from tests.integration.traffic import sms

CIRCUIT = "gateway_provider_circuit_state"
#: A guard against hanging, not a performance assertion.
WITHIN = 60.0
#: Three transient failures open the circuit, and it stays open for the whole test: a short
#: cooldown would let a scrape see it half-open instead.
BREAKER = {"BREAKER_THRESHOLD": "3", "BREAKER_COOLDOWN_SECONDS": "600"}
KEY_PATTERN = re.compile(r"mgw_[A-Za-z0-9_-]{20,}")
SEND = """
mutation Send($input: SendMessageInput!) {
  sendMessage(input: $input) { __typename }
}
"""


def circuit_states(exposition: str) -> dict[str, float]:
    """``{provider: state}`` of ``provider_circuit_state`` in a Prometheus text body."""
    return {
        sample.labels["provider"]: sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == CIRCUIT
    }


async def scrape(http: httpx.AsyncClient, url: str) -> httpx.Response:
    response = await http.get(url, timeout=5)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    return response


async def wait_open(http: httpx.AsyncClient, url: str, proc: Process) -> str:
    """Scrape ``url`` until it shows twilio's circuit open; the last body."""
    deadline = time.monotonic() + WITHIN
    while True:
        assert proc.alive, proc.tail()
        body = (await scrape(http, url)).text
        if circuit_states(body).get("twilio") == State.OPEN:
            return body
        assert time.monotonic() < deadline, f"twilio never open: {circuit_states(body)}\n" + (
            proc.tail()
        )
        await asyncio.sleep(0.2)


async def test_a_worker_shows_its_open_circuit_and_the_api_processes_claim_none(
    pipeline: Pipeline,
) -> None:
    pipe = pipeline
    # One worker, whose health port is the one scraped, does all the delivering.
    for worker in list(pipe.workers):
        await pipe.retire(worker).stop()
    port = free_port()
    worker = pipe.start_worker(
        WORKER_HEALTH_HOST="127.0.0.1", WORKER_HEALTH_PORT=str(port), **BREAKER
    )
    await pipe.wait_workers_ready([worker])
    base = f"http://127.0.0.1:{port}"

    before = await scrape(pipe.http, base + "/metrics")
    assert circuit_states(before.text) == {"twilio": State.CLOSED, "sendgrid": State.CLOSED}

    await pipe.sandbox_configure(outage=True)
    try:
        account = await pipe.new_account()
        await pipe.send_many(0, account, [sms(i, "outage") for i in range(6)])
        body = await wait_open(pipe.http, base + "/metrics", worker)
        assert circuit_states(body)["sendgrid"] == State.CLOSED, "no e-mail was sent"
        attempts = [
            s
            for family in text_string_to_metric_families(body)
            for s in family.samples
            if s.name == "gateway_delivery_attempts_total" and s.labels["provider"] == "twilio"
        ]
        assert sum(s.value for s in attempts) >= 3, attempts

        for index in range(len(pipe.apis)):
            api_metrics = (await scrape(pipe.http, pipe.api_url(index) + "/metrics")).text
            assert "gateway_http_requests_total" in api_metrics, "not the metrics body"
            assert "provider_circuit_state" not in api_metrics, (
                f"API process {index + 1} reports a breaker it never uses:\n"
                f"{circuit_states(api_metrics)}"
            )
    finally:
        await pipe.sandbox_configure(outage=False)

    # The rest of the small HTTP server: HEAD like GET without a body, 405 and 404.
    head = await pipe.http.head(base + "/metrics")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-type"] == CONTENT_TYPE_LATEST
    assert int(head.headers["content-length"]) > 0
    posted = await pipe.http.post(base + "/metrics", content=b"x")
    assert posted.status_code == 405 and posted.headers["allow"] == "GET, HEAD"
    assert (await pipe.http.get(base + "/metricsx")).status_code == 404
    assert (await pipe.http.get(base + "/")).status_code == 404
    health = await pipe.http.get(base + "/health")
    assert health.status_code == 200 and health.json() == {"status": "ok"}


def embedded_env(data_dir: Path, port: int) -> dict[str, str]:
    """No inherited gateway settings: the embedded default, with the sandbox in outage."""
    return scrubbed_env(
        DATA_DIR=str(data_dir),
        PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        LOG_JSON="true",
        LOG_LEVEL="WARNING",
        SWEEP_INTERVAL="0.2",
        RETRY_BASE_DELAY="0.05",
        RETRY_MAX_DELAY="0.2",
        SANDBOX_OUTAGE="true",
        **BREAKER,
    )


async def test_the_embedded_api_shows_the_circuit_of_its_own_worker(tmp_path: Path) -> None:
    port = free_port()
    async with (
        serve_process(
            embedded_env(tmp_path, port),
            tmp_path / "embedded.log",
            name="embedded",
            ready="/health",
            within=WITHIN,
            port=port,
        ) as (server, base),
        loopback_client(timeout=30) as http,
    ):
        keys = KEY_PATTERN.findall(server.log_text())
        assert keys, server.tail()

        before = await scrape(http, base + "/metrics")
        assert circuit_states(before.text) == {
            "twilio": State.CLOSED,
            "sendgrid": State.CLOSED,
        }
        for i in range(4):
            response = await http.post(
                base + "/graphql",
                json={"query": SEND, "variables": {"input": sms(i, "embedded outage")}},
                headers={"Authorization": f"Bearer {keys[0]}"},
            )
            assert response.json() == {"data": {"sendMessage": {"__typename": "MessageAccepted"}}}
        await wait_open(http, base + "/metrics", server)
