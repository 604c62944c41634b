"""Smoke test for the throwaway PostgreSQL/Redis servers in harness/servers.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from harness.servers import PostgresServer, RedisServer, free_port, redis_ping


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    with PostgresServer.start(tmp_path_factory.mktemp("postgres")) as server:
        server.create_database("servers_check")
        server.create_database("servers_check")  # idempotent
        yield server


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer.start(tmp_path_factory.mktemp("redis")) as server:
        yield server


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 0 < port < 65536


async def test_postgres_select_one(postgres: PostgresServer) -> None:
    assert postgres.running
    conn = await asyncpg.connect(postgres.url("servers_check", driver="postgresql"))
    try:
        assert await conn.fetchval("SELECT 1") == 1
        assert await conn.fetchval("SELECT current_database()") == "servers_check"
        assert await conn.fetchval("SHOW fsync") == "off"
    finally:
        await conn.close()


async def test_postgres_rejects_wrong_password(postgres: PostgresServer) -> None:
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(
            host=postgres.host,
            port=postgres.port,
            user=postgres.user,
            password="wrong",
            database="servers_check",
        )


def test_postgres_url_shape(postgres: PostgresServer) -> None:
    assert postgres.url("db") == (
        f"postgresql+asyncpg://{postgres.user}:{postgres.password}@127.0.0.1:{postgres.port}/db"
    )


async def test_redis_ping_set_get(redis_server: RedisServer) -> None:
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        assert await client.ping() is True
        await client.set("servers:check", "value")
        assert await client.get("servers:check") == b"value"
    finally:
        await client.aclose()


async def test_redis_restart_same_port_empty(redis_server: RedisServer) -> None:
    port = redis_server.port
    before = aioredis.Redis.from_url(redis_server.url)
    try:
        await before.set("servers:volatile", "1")
    finally:
        await before.aclose()
    redis_server.restart()
    assert redis_server.port == port
    after = aioredis.Redis.from_url(redis_server.url)
    try:
        assert await after.get("servers:volatile") is None  # new, non-persistent server
    finally:
        await after.aclose()


def test_stop_is_idempotent_and_frees_resources(tmp_path: Path) -> None:
    pg = PostgresServer.start(tmp_path / "pg")
    data_dir = pg.data_dir
    pg.stop()
    pg.stop()
    assert not pg.running
    assert not data_dir.exists()

    rs = RedisServer.start(tmp_path / "redis")
    port = rs.port
    rs.stop()
    rs.stop()
    assert not rs.running
    assert not redis_ping("127.0.0.1", port)


def test_pids_are_the_servers_own(postgres: PostgresServer, redis_server: RedisServer) -> None:
    """What the bench's CPU accounting reads: the postmaster (not a privilege-dropping
    wrapper) and redis-server, by the PID files and /proc they leave."""
    pg_pid = postgres.pid
    assert pg_pid is not None
    first_line = (postgres.data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
    assert pg_pid == int(first_line)
    assert redis_server.pid is not None
    assert Path(f"/proc/{redis_server.pid}/exe").resolve().name.startswith("redis")


def test_redis_kill_then_restart_brings_an_empty_server_back(tmp_path: Path) -> None:
    server = RedisServer.start(tmp_path / "redis")
    try:
        pid, port = server.pid, server.port
        assert pid is not None and redis_ping("127.0.0.1", port)
        server.kill()
        assert not server.running and server.pid is None
        assert not Path(f"/proc/{pid}").exists()  # killed and reaped
        assert not redis_ping("127.0.0.1", port)
        server.kill()  # idempotent
        server.restart()
        assert server.port == port and redis_ping("127.0.0.1", port)
    finally:
        server.stop()
