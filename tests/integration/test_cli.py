"""The real ``messaging-gateway`` console script, run as subprocesses.

Every run gets a scrubbed environment (no inherited gateway settings), ``DATA_DIR`` in a
temporary directory and, for the PostgreSQL runs, ``DATABASE_URL`` pointing at a fresh database
on the session's throwaway server. ``serve`` listens on 127.0.0.1 only and is stopped by its
PID with SIGTERM; the tests check it then exits 0 (graceful shutdown).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic.script import ScriptDirectory
from prometheus_client.parser import text_string_to_metric_families

from gateway.entry.migrations import alembic_config
from gateway.settings import Settings
from harness.processes import CLI, STOP_TIMEOUT, Served, sandbox_serving, scrubbed_env, serving
from harness.servers import PostgresServer
from tests.conftest import SEND

KEY_PATTERN = re.compile(r"mgw_[A-Za-z0-9_-]{20,}")
PREFIX_LENGTH = 12  # gateway.services.auth.PREFIX_LENGTH: what is stored and listed
DELIVERY_TIMEOUT = 30.0

MESSAGE = "query One($id: ID!) { message(id: $id) { id status to body } }"
CONVERSATIONS = """
query Conversations($participant: String) {
  conversations(participant: $participant) { edges { node { id participants } } }
}
"""


def cli_env(data_dir: Path, database_url: str | None = None, **extra: str) -> dict[str, str]:
    """No setting is inherited from the developer's shell."""
    env = scrubbed_env(DATA_DIR=str(data_dir), LOG_JSON="true", SWEEP_INTERVAL="0.1", **extra)
    for fast in ("sandbox_callback_delay", "sandbox_delivery_delay"):
        if fast in Settings.model_fields:
            env[fast.upper()] = "0.05"
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    return env


def run_cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    assert Path(CLI).exists(), f"console script not installed at {CLI}"
    return subprocess.run(
        [CLI, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _describe(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"


def sms(to: str = "+14155550199", body: str = "hello") -> dict[str, object]:
    return {"channel": "SMS", "from": "+14155550100", "to": to, "body": body}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def gql(
    http: httpx.Client, base_url: str, key: str, query: str, variables: dict[str, Any] | None = None
) -> dict[str, Any]:
    response = http.post(
        f"{base_url}/graphql",
        json={"query": query, "variables": variables or {}},
        headers=bearer(key),
    )
    body = response.json()
    assert response.status_code == 200, body
    assert "errors" not in body, body["errors"]
    data: dict[str, Any] = body["data"]
    return data


def wait_delivered(http: httpx.Client, base_url: str, key: str, message_id: str) -> str:
    deadline = time.monotonic() + DELIVERY_TIMEOUT
    status = "?"
    while time.monotonic() < deadline:
        found = gql(http, base_url, key, MESSAGE, {"id": message_id})["message"]
        assert found is not None, f"message {message_id} disappeared"
        status = found["status"]
        if status == "DELIVERED":
            return status
        assert status in ("QUEUED", "SENDING", "SENT"), found
        time.sleep(0.05)
    return status


def send_and_deliver(http: httpx.Client, base_url: str, key: str, **fields: str) -> str:
    result = gql(http, base_url, key, SEND, {"input": sms(**fields)})["sendMessage"]
    assert result["__typename"] == "MessageAccepted", result
    message_id: str = result["message"]["id"]
    assert wait_delivered(http, base_url, key, message_id) == "DELIVERED"
    return message_id


# ---------------------------------------------------------------------------------- serve


def stop_gracefully(server: Served) -> int:
    """SIGTERM by PID; the exit code (fails the test if serve had to be killed)."""
    proc = server.process
    assert proc.terminate(STOP_TIMEOUT), (
        f"serve ignored SIGTERM for {STOP_TIMEOUT}s\n{proc.output()}"
    )
    assert proc.returncode is not None
    return proc.returncode


def dev_key_of(server: Served) -> str:
    keys = KEY_PATTERN.findall(server.process.log_text())
    assert len(keys) == 1, f"expected the development key printed once\n{server.process.output()}"
    return keys[0]


# ------------------------------------------------------------------------------- fixtures


@dataclass
class PgDatabase:
    server: PostgresServer
    name: str

    @property
    def url(self) -> str:
        return self.server.url(self.name)

    def query(self, sql: str) -> list[list[str]]:
        out = self.server.psql(sql, dbname=self.name)
        return [line.split("|") for line in out.splitlines() if line]

    def dump(self) -> str:
        """pg_dump of the whole database (schema and every row), as text."""
        proc = subprocess.run(
            [
                str(self.server.bindir / "pg_dump"),
                "-h",
                self.server.host,
                "-p",
                str(self.server.port),
                "-U",
                self.server.user,
                "-d",
                self.name,
            ],
            env={"PATH": os.environ.get("PATH", ""), "PGPASSWORD": self.server.password},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout


@pytest.fixture
def pg(postgres: PostgresServer) -> PgDatabase:
    name = "cli_" + uuid.uuid4().hex[:12]
    postgres.create_database(name)
    return PgDatabase(postgres, name)


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as client:
        yield client


def alembic_head() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


# ------------------------------------------------------------------ PostgreSQL: key admin


def test_migrate_exits_zero_and_reaches_head(pg: PgDatabase, tmp_path: Path) -> None:
    env = cli_env(tmp_path / "data", pg.url)
    first = run_cli("migrate", env=env, cwd=tmp_path)
    assert first.returncode == 0, _describe(first)
    assert pg.query("SELECT version_num FROM alembic_version") == [[alembic_head()]]
    assert pg.query("SELECT count(*) FROM api_keys") == [["0"]]
    again = run_cli("migrate", env=env, cwd=tmp_path)
    assert again.returncode == 0, _describe(again)
    assert pg.query("SELECT version_num FROM alembic_version") == [[alembic_head()]]


def test_create_api_key_prints_it_once_and_stores_only_its_hash(
    pg: PgDatabase, tmp_path: Path
) -> None:
    env = cli_env(tmp_path / "data", pg.url)
    assert run_cli("migrate", env=env, cwd=tmp_path).returncode == 0
    created = run_cli("create-api-key", "--account", "acme", env=env, cwd=tmp_path)
    assert created.returncode == 0, _describe(created)
    keys = KEY_PATTERN.findall(created.stdout + created.stderr)
    assert len(keys) == 1, _describe(created)
    key = keys[0]
    assert "acme" in created.stdout

    rows = pg.query(
        "SELECT a.name, k.prefix, k.key_hash, k.revoked_at IS NULL "
        "FROM api_keys k JOIN accounts a ON a.id = k.account_id"
    )
    assert rows == [["acme", key[:PREFIX_LENGTH], hashlib.sha256(key.encode()).hexdigest(), "t"]]

    dump = pg.dump()
    assert "api_keys" in dump  # the dump is real
    assert key not in dump, "the plain API key is stored in the database"
    assert key[PREFIX_LENGTH:] not in dump, "the secret part of the key is stored"


def test_cli_key_works_against_serve_then_list_and_revoke(
    pg: PgDatabase, tmp_path: Path, http: httpx.Client
) -> None:
    env = cli_env(tmp_path / "data", pg.url, API_KEY_CACHE_SECONDS="0")
    assert run_cli("migrate", env=env, cwd=tmp_path).returncode == 0
    created = run_cli("create-api-key", "--account", "acme", env=env, cwd=tmp_path)
    assert created.returncode == 0, _describe(created)
    key = KEY_PATTERN.findall(created.stdout)[0]
    prefix = key[:PREFIX_LENGTH]

    with serving(env, tmp_path, "serve-pg") as server:
        # Not embedded (DATABASE_URL is set): no development key is made or printed.
        assert "mgw_" not in server.process.all_text(), server.process.output()
        data = gql(http, server.url, key, CONVERSATIONS, {"participant": None})
        assert data == {"conversations": {"edges": []}}
        send_and_deliver(http, server.url, key)

        listed = run_cli("list-api-keys", env=env, cwd=tmp_path)
        assert listed.returncode == 0, _describe(listed)
        line = next(ln for ln in listed.stdout.splitlines() if ln.startswith(prefix))
        assert line.split()[:2] == [prefix, "acme"]
        assert line.split()[-1] == "-"  # not revoked
        assert key not in listed.stdout + listed.stderr
        assert key[PREFIX_LENGTH:] not in listed.stdout + listed.stderr

        revoked = run_cli("revoke-api-key", prefix, env=env, cwd=tmp_path)
        assert revoked.returncode == 0, _describe(revoked)
        response = http.post(
            f"{server.url}/graphql",
            json={"query": "{ conversations { edges { cursor } } }"},
            headers=bearer(key),
        )
        assert response.status_code == 401, response.text
        assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"

    listed = run_cli("list-api-keys", env=env, cwd=tmp_path)
    line = next(ln for ln in listed.stdout.splitlines() if ln.startswith(prefix))
    assert line.split()[-1] != "-", f"revocation not listed: {line!r}"

    unknown = run_cli("revoke-api-key", "mgw_NOPE0000", env=env, cwd=tmp_path)
    assert unknown.returncode != 0, _describe(unknown)
    assert "mgw_NOPE0000" in unknown.stderr
    twice = run_cli("revoke-api-key", prefix, env=env, cwd=tmp_path)
    assert twice.returncode != 0, _describe(twice)


# ------------------------------------------------------------ embedded (SQLite) key admin


def test_embedded_key_admin_without_database_url(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = cli_env(data_dir)
    migrated = run_cli("migrate", env=env, cwd=tmp_path)
    assert migrated.returncode == 0, _describe(migrated)
    assert (data_dir / "gateway.sqlite3").is_file()

    created = run_cli("create-api-key", "--account", "acme", env=env, cwd=tmp_path)
    assert created.returncode == 0, _describe(created)
    key = KEY_PATTERN.findall(created.stdout)[0]
    prefix = key[:PREFIX_LENGTH]

    stored = b"".join(p.read_bytes() for p in data_dir.iterdir() if p.is_file())
    assert prefix.encode() in stored  # the files really hold the key table
    assert key[PREFIX_LENGTH:].encode() not in stored, "the plain API key is stored"

    listed = run_cli("list-api-keys", env=env, cwd=tmp_path)
    assert listed.returncode == 0, _describe(listed)
    assert [prefix, "acme"] in [ln.split()[:2] for ln in listed.stdout.splitlines()]
    assert key[PREFIX_LENGTH:] not in listed.stdout + listed.stderr

    assert run_cli("revoke-api-key", prefix, env=env, cwd=tmp_path).returncode == 0
    unknown = run_cli("revoke-api-key", "mgw_unknown1", env=env, cwd=tmp_path)
    assert unknown.returncode != 0, _describe(unknown)


def test_add_address_sets_the_senders_rate_and_refuses_a_bad_one(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = cli_env(data_dir)
    bad = run_cli(
        "add-address", "--account", "acme", "--rate", "0", "+18005550100", env=env, cwd=tmp_path
    )
    assert bad.returncode == 1 and "--rate" in bad.stderr, _describe(bad)
    done = run_cli(
        "add-address", "--account", "acme", "--rate", "25", "(800) 555-0100", env=env, cwd=tmp_path
    )
    assert done.returncode == 0, _describe(done)
    assert "+18005550100 is paced at 25 segments per second" in done.stdout
    mailbox = run_cli(
        "add-address", "--account", "acme", "--rate", "4", "News@Example.com", env=env, cwd=tmp_path
    )
    assert "@example.com is paced at 4 segments per second" in mailbox.stdout, _describe(mailbox)
    with contextlib.closing(sqlite3.connect(data_dir / "gateway.sqlite3")) as db:
        rows = db.execute("SELECT sender, segments_per_second FROM sender_rates ORDER BY sender")
        assert rows.fetchall() == [("+18005550100", 25.0), ("@example.com", 4.0)]


def test_worker_without_redis_url_exits_2_with_a_clear_message(tmp_path: Path) -> None:
    result = run_cli("worker", env=cli_env(tmp_path / "data"), cwd=tmp_path)
    assert result.returncode == 2, _describe(result)
    assert "REDIS_URL" in result.stderr, _describe(result)


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_production_refuses_to_start_without_usable_providers(command: str, tmp_path: Path) -> None:
    """With Redis (production) and no provider credentials, nothing can be delivered: refuse
    to start with a message naming the settings, instead of failing every message later."""
    env = cli_env(
        tmp_path / "data",
        "postgresql+asyncpg://nobody:nothing@127.0.0.1:9/none",
        REDIS_URL="redis://127.0.0.1:9/0",
    )
    args = ["serve", "--port", "9"] if command == "serve" else ["worker"]
    result = run_cli(*args, env=env, cwd=tmp_path)
    assert result.returncode == 2, _describe(result)
    assert "TWILIO_ACCOUNT_SID" in result.stderr or "SENDGRID_API_KEY" in result.stderr, _describe(
        result
    )


def test_unknown_provider_name_is_refused(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "data", SMS_PROVIDERS="twilio,carrier-pigeon")
    result = run_cli("serve", "--port", "9", env=env, cwd=tmp_path)
    assert result.returncode == 2, _describe(result)
    assert "SMS_PROVIDERS" in result.stderr, _describe(result)


# --------------------------------------------------------------------- embedded serve


@dataclass
class Embedded:
    server: Served
    key: str
    data_dir: Path


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Embedded]:
    """One embedded ``serve`` (no DATABASE_URL, no REDIS_URL) shared by the module."""
    base = tmp_path_factory.mktemp("embedded-serve")
    with serving(cli_env(base / "data"), base, "serve") as server:
        yield Embedded(server, dev_key_of(server), base / "data")


def test_embedded_serve_prints_the_development_key_once(embedded: Embedded) -> None:
    key_file = embedded.data_dir / "dev-api-key"
    assert key_file.read_text().strip() == embedded.key
    assert key_file.stat().st_mode & 0o777 == 0o600
    # Requests made with the key never echo it into the logs.
    with httpx.Client(timeout=30) as http:
        gql(http, embedded.server.url, embedded.key, CONVERSATIONS)
    output = embedded.server.process.all_text()
    assert output.count(embedded.key) == 1, embedded.server.process.output()


def test_graphiql_page_is_prefilled_with_the_key(embedded: Embedded, http: httpx.Client) -> None:
    response = http.get(f"{embedded.server.url}/graphql", headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "graphiql" in response.text.lower()
    assert f"Bearer {embedded.key}" in response.text


def test_send_message_reaches_delivered(embedded: Embedded, http: httpx.Client) -> None:
    send_and_deliver(http, embedded.server.url, embedded.key, body="embedded hello")


def test_ready_reports_database_and_broker_ok(embedded: Embedded, http: httpx.Client) -> None:
    response = http.get(f"{embedded.server.url}/ready")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["checks"]["database"] == "ok", body
    assert body["checks"]["broker"] == "ok", body


def _scrape(http: httpx.Client, base_url: str) -> dict[tuple[str, frozenset[Any]], float]:
    response = http.get(f"{base_url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: dict[tuple[str, frozenset[Any]], float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def test_metrics_count_requests_and_messages_by_status(
    embedded: Embedded, http: httpx.Client
) -> None:
    base_url = embedded.server.url
    posts = (
        "gateway_http_requests_total",
        frozenset({("method", "POST"), ("route", "/graphql"), ("status", "200")}),
    )
    delivered = ("gateway_messages_by_status", frozenset({("status", "DELIVERED")}))

    before = _scrape(http, base_url)
    send_and_deliver(http, base_url, embedded.key, body="counted")
    after = _scrape(http, base_url)

    assert after[posts] > before.get(posts, 0.0)
    assert after[delivered] >= before.get(delivered, 0.0) + 1, {
        k: v for k, v in after.items() if k[0] == "gateway_messages_by_status"
    }
    metrics_scrapes = (
        "gateway_http_requests_total",
        frozenset({("method", "GET"), ("route", "/metrics"), ("status", "200")}),
    )
    assert after[metrics_scrapes] >= 1


def test_log_lines_are_json_and_carry_the_request_id(
    embedded: Embedded, http: httpx.Client
) -> None:
    request_id = "cli-test-" + uuid.uuid4().hex
    response = http.post(
        f"{embedded.server.url}/graphql",
        json={"query": "{ conversations { edges { cursor } } }"},
        headers={**bearer(embedded.key), "X-Request-ID": request_id},
    )
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == request_id
    generated = http.get(f"{embedded.server.url}/health").headers["X-Request-ID"]

    deadline = time.monotonic() + 10
    while True:
        records = embedded.server.process.log_records()
        ids = {r.get("request_id") for r in records}
        if {request_id, generated} <= ids or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    mine = [r for r in records if r.get("request_id") == request_id]
    assert mine, embedded.server.process.output()
    assert any("POST /graphql" in str(r.get("event")) for r in mine), mine
    assert generated in ids, embedded.server.process.output()
    access = [r for r in records if r.get("logger") == "uvicorn.access"]
    assert access and all(r.get("request_id") for r in access), access

    # Everything on stdout/stderr is a JSON line, except the development key banner.
    banner = ("Development API key", embedded.key, "GraphiQL at /graphql")
    for line in embedded.server.process.all_text().splitlines():
        if line.strip() and not line.startswith("{"):
            assert line.strip().startswith(banner), f"not a JSON log line: {line!r}"


def test_missing_or_invalid_key_is_401_unauthenticated(
    embedded: Embedded, http: httpx.Client
) -> None:
    url = f"{embedded.server.url}/graphql"
    query = {"query": "{ conversations { edges { cursor } } }"}
    for headers in (
        {},
        {"Authorization": "Bearer mgw_not-a-real-key"},
        {"Authorization": f"Basic {embedded.key}"},
        {"Authorization": "Bearer"},
    ):
        response = http.post(url, json=query, headers=headers)
        assert response.status_code == 401, (headers, response.text)
        body = response.json()
        assert body.get("data") is None, body
        assert [e["extensions"]["code"] for e in body["errors"]] == ["UNAUTHENTICATED"], body
    anonymous_get = http.get(url, params=query, headers={"Accept": "application/json"})
    assert anonymous_get.status_code == 401, anonymous_get.text


def test_query_over_get_works(embedded: Embedded, http: httpx.Client) -> None:
    response = http.get(
        f"{embedded.server.url}/graphql",
        params={"query": "{ conversations { edges { node { id } } } }"},
        headers={**bearer(embedded.key), "Accept": "application/json"},
    )
    assert response.status_code == 200, response.text
    assert "errors" not in response.json()
    assert isinstance(response.json()["data"]["conversations"]["edges"], list)


def test_mutation_over_get_is_refused_and_not_executed(
    embedded: Embedded, http: httpx.Client
) -> None:
    recipient = "+1415555" + str(uuid.uuid4().int)[:4]
    mutation = (
        'mutation { sendMessage(input: {channel: SMS, from: "+14155550100", '
        f'to: "{recipient}", body: "via GET"}}) {{ __typename }} }}'
    )
    response = http.get(
        f"{embedded.server.url}/graphql",
        params={"query": mutation},
        headers={**bearer(embedded.key), "Accept": "application/json"},
    )
    assert 400 <= response.status_code < 500, response.text
    assert "MessageAccepted" not in response.text

    data = gql(http, embedded.server.url, embedded.key, CONVERSATIONS, {"participant": recipient})
    assert data["conversations"]["edges"] == [], "the GET mutation was executed"
    # The same mutation over POST does create the conversation (the check above can fail).
    posted = gql(http, embedded.server.url, embedded.key, mutation)
    assert posted["sendMessage"]["__typename"] == "MessageAccepted"
    data = gql(http, embedded.server.url, embedded.key, CONVERSATIONS, {"participant": recipient})
    assert len(data["conversations"]["edges"]) == 1


def test_serve_shuts_down_gracefully_on_sigterm(tmp_path: Path, http: httpx.Client) -> None:
    with serving(cli_env(tmp_path / "data"), tmp_path, "serve") as server:
        key = dev_key_of(server)
        send_and_deliver(http, server.url, key, body="before shutdown")
        code = stop_gracefully(server)
    output = server.process.all_text()
    assert "Application shutdown complete" in output, server.process.output()
    assert code == 0, (
        f"serve exited with {code} after SIGTERM"
        + (f" (killed by signal {-code} after its shutdown)" if code < 0 else "")
        + f"\n{server.process.output()}"
    )


def test_restart_reuses_the_key_and_keeps_the_data(tmp_path: Path, http: httpx.Client) -> None:
    env = cli_env(tmp_path / "data")
    with serving(env, tmp_path, "first") as first:
        key = dev_key_of(first)
        message_id = send_and_deliver(http, first.url, key, body="survives a restart")
        stop_gracefully(first)  # exit code: see test_serve_shuts_down_gracefully_on_sigterm

    with serving(env, tmp_path, "second") as second:
        output = second.process.all_text()
        assert key not in output, "the development key was printed again"
        assert "Development API key" not in output
        assert KEY_PATTERN.findall(output) == [], "a new development key was made"
        found = gql(http, second.url, key, MESSAGE, {"id": message_id})["message"]
        assert found == {
            "id": message_id,
            "status": "DELIVERED",
            "to": "+14155550199",
            "body": "survives a restart",
        }
        page = http.get(f"{second.url}/graphql", headers={"Accept": "text/html"})
        assert f"Bearer {key}" in page.text
        stop_gracefully(second)

    listed = run_cli("list-api-keys", env=env, cwd=tmp_path)
    assert listed.returncode == 0, _describe(listed)
    development = [ln for ln in listed.stdout.splitlines() if ln.split()[1:2] == ["development"]]
    assert len(development) == 1, listed.stdout


def test_sandbox_runs_alone_and_answers_like_twilio(tmp_path: Path, http: httpx.Client) -> None:
    """`messaging-gateway sandbox` serves the Twilio API on its own (wire format, auth)."""
    with sandbox_serving(cli_env(tmp_path / "data"), tmp_path) as (_, base):
        sid, token = Settings().twilio_account_sid, Settings().twilio_auth_token
        url = f"{base}/2010-04-01/Accounts/{sid}/Messages.json"
        form = {"To": "+14155550123", "From": "+14155550100", "Body": "hi"}
        response = http.post(url, data=form, auth=(sid, token))
        assert response.status_code == 201, response.text
        assert response.json()["sid"].startswith("SM")
        assert http.post(url, data=form, auth=(sid, "wrong")).status_code == 401
