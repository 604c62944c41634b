"""workers.pubsub.Subscriber, the one pub/sub reader, against a real Redis (plain and TLS):
confirmation, delivery, reconnection, and what live subscribers get when its connection drops."""

from __future__ import annotations

import asyncio
import ipaddress
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import pytest
import redis as redis_sync
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from redis.asyncio import Redis

from gateway.services.hub import LiveEventsInterrupted
from harness.servers import LOOPBACK, RedisServer, free_port
from tests.events import accepted_event
from workers.pubsub import Subscriber
from workers.redis_broker import RedisBroker


async def wait_for(condition: Callable[[], Awaitable[bool]], seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if await condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


async def settled(value: bool) -> bool:
    return value


async def test_receives_what_is_published_after_subscribe_returns_and_survives_a_kill(
    redis_server: RedisServer,
) -> None:
    redis = Redis.from_url(redis_server.url)
    kwargs = redis.connection_pool.connection_kwargs
    received: list[bytes] = []
    subscriber = Subscriber(received.extend, host=kwargs["host"], port=kwargs["port"])
    one, two = "test:" + uuid.uuid4().hex, "test:" + uuid.uuid4().hex
    try:
        await subscriber.subscribe(one)
        # Confirmed: a publish right after subscribe() returns is received.
        assert await redis.publish(one, b"a") == 1
        await subscriber.subscribe(two)
        async with redis.pipeline(transaction=False) as pipe:
            for payload in (b"b", b"c", b"d"):
                pipe.publish(two if payload == b"c" else one, payload)
            await pipe.execute()
        await wait_for(lambda: settled(len(received) == 4))
        assert received == [b"a", b"b", b"c", b"d"]

        await subscriber.unsubscribe(two)

        async def unsubscribed() -> bool:
            return await redis.publish(two, b"gone") == 0

        await wait_for(unsubscribed)

        # A lost connection: reconnect and subscribe again, by itself.
        await redis.execute_command("CLIENT", "KILL", "TYPE", "pubsub")

        async def resubscribed() -> bool:
            return await redis.publish(one, b"e") == 1

        await wait_for(resubscribed)
        await wait_for(lambda: settled(b"e" in received))
        assert b"gone" not in received
        assert subscriber.connected
    finally:
        await subscriber.close()
        await redis.aclose()


async def test_authenticates_when_the_url_has_a_password(redis_server: RedisServer) -> None:
    redis = Redis.from_url(redis_server.url)
    kwargs = redis.connection_pool.connection_kwargs
    received: list[bytes] = []
    # The test server has no password: AUTH is refused, and the subscriber keeps retrying
    # instead of reading as if it were subscribed.
    subscriber = Subscriber(
        received.extend, host=kwargs["host"], port=kwargs["port"], password="wrong"
    )
    channel = "test:" + uuid.uuid4().hex
    try:
        task = asyncio.create_task(subscriber.subscribe(channel))
        await asyncio.sleep(0.3)
        assert await redis.publish(channel, b"x") == 0
        task.cancel()
    finally:
        await subscriber.close()
        await redis.aclose()


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisServer, str]]:
    """A Redis that also listens with TLS, and a ``rediss://`` URL that verifies its
    certificate."""
    base = tmp_path_factory.mktemp("tls-redis")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, LOOPBACK)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOOPBACK))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = base / "cert.pem", base / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = RedisServer.start(base / "redis")
    try:
        port = free_port()
        with redis_sync.Redis(host=server.host, port=server.port) as admin:
            admin.config_set("tls-cert-file", str(cert_file))
            admin.config_set("tls-key-file", str(key_file))
            admin.config_set("tls-ca-cert-file", str(cert_file))
            admin.config_set("tls-auth-clients", "no")
            admin.config_set("tls-port", port)
        yield server, f"rediss://{LOOPBACK}:{port}/0?ssl_ca_certs={cert_file}"
    finally:
        server.stop()


@asynccontextmanager
async def broker_and_admin(
    broker_url: str, admin_url: str
) -> AsyncIterator[tuple[RedisBroker, Redis]]:
    """A broker on ``broker_url``, and a plain client of the same server to look and cut with."""
    broker = RedisBroker(broker_url)
    admin = Redis.from_url(admin_url)
    try:
        yield broker, admin
    finally:
        await admin.aclose()
        await broker.close()


async def cut_off_and_resume(broker: RedisBroker, admin: Redis) -> None:
    """A dropped pub/sub connection cuts the live subscriber off with LiveEventsInterrupted
    (what was published meanwhile never arrives), and a new subscription gets events again."""
    account = uuid.uuid4()
    async with broker.subscribe(account) as events:
        await broker.publish([accepted_event(account, 1)])
        async with asyncio.timeout(5):
            assert (await anext(events)).id == 1
        # Whatever is published while the connection is down never arrives: the
        # subscriber must be told instead of silently missing it.
        await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        async with asyncio.timeout(5):
            with pytest.raises(LiveEventsInterrupted, match="interrupted"):
                await anext(events)
    # Resubscribed with ``after``: live events flow again once the reader has reconnected.
    async with broker.subscribe(account) as events:
        published = 2
        await broker.publish([accepted_event(account, published)])
        async with asyncio.timeout(10):
            while True:
                try:
                    received = await asyncio.wait_for(anext(events), 0.2)
                except TimeoutError:
                    published += 1
                    await broker.publish([accepted_event(account, published)])
                    continue
                assert received.id >= 2
                break


async def test_a_lost_connection_cuts_subscribers_off_so_they_resume_from_their_cursor(
    redis_server: RedisServer,
) -> None:
    async with broker_and_admin(redis_server.url, redis_server.url) as (broker, admin):
        await cut_off_and_resume(broker, admin)


async def test_live_events_over_tls_with_a_lost_connection(
    tls_redis: tuple[RedisServer, str],
) -> None:
    server, url = tls_redis
    async with broker_and_admin(url, server.url) as (broker, admin):
        await cut_off_and_resume(broker, admin)
        # The reader's connection is the TLS one, as the URL asked.
        async with broker.subscribe(uuid.uuid4()):
            (client,) = [c for c in await admin.client_list() if c["flags"] == "P"]
    tls_port = url.split(":")[2].split("/")[0]
    assert client["laddr"] == f"{LOOPBACK}:{tls_port}"


async def test_a_tls_reader_refuses_a_certificate_it_cannot_verify(
    tls_redis: tuple[RedisServer, str],
) -> None:
    server, url = tls_redis
    # Without the CA the server's certificate is not trusted: nothing is subscribed, no event
    # is read as if it came from that server.
    async with broker_and_admin(url.split("?")[0], server.url) as (broker, admin):
        await broker._subscriber.subscribe("test:" + uuid.uuid4().hex)
        assert not broker._subscriber.connected
        assert [c for c in await admin.client_list() if c["flags"] == "P"] == []
