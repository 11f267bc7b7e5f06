"""Fixtures shared by every test: real Valkey/Redis servers on free loopback ports.

One state server and three lock masters per test session; every test starts from an empty
keyspace (FLUSHALL before the test), so tests never see each other's data.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import redis
from redis.asyncio import Redis

from campaign_common.localstack.embedded import EmbeddedRedis, EmbeddedStack
from campaign_common.observability.telemetry import setup_tracing
from campaign_common.redis_conn import make_client
from tests.faults import TcpProxy
from tests.tls_proxy import Pki, TlsTerminator


@pytest.fixture(scope="session", autouse=True)
def tracing() -> None:
    """A real tracer provider (no exporter), as every service process installs one."""
    setup_tracing("tests")


@pytest.fixture(scope="session")
def redis_stack() -> Iterator[EmbeddedStack]:
    stack = EmbeddedStack(lock_masters=3).start()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def state_url(redis_stack: EmbeddedStack) -> Iterator[str]:
    """URL of an empty state Redis (the session server, flushed before each test)."""
    for server in (redis_stack.state, *redis_stack.locks):
        if not server.running:  # a test killed it; bring it back for the next one
            server.start()
        client = redis.Redis.from_url(server.url, socket_timeout=5, socket_connect_timeout=5)
        client.flushall()
        client.close()
    yield redis_stack.state.url


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A throw-away CA with a server certificate for 127.0.0.1 and a client certificate."""
    return Pki.create(tmp_path_factory.mktemp("pki"))


StartTls = Callable[..., TlsTerminator]


@pytest.fixture
def tls_in_front() -> Iterator[StartTls]:
    """Starts `TlsTerminator`s (TLS in front of a test server's port); all closed after."""
    started: list[TlsTerminator] = []

    def start(upstream_port: int, context: ssl.SSLContext | None) -> TlsTerminator:
        started.append(TlsTerminator(upstream_port, context).start())
        return started[-1]

    try:
        yield start
    finally:
        for terminator in started:
            terminator.close()


@pytest.fixture
def lock_urls(redis_stack: EmbeddedStack, state_url: str) -> list[str]:
    """URLs of the three (flushed) lock masters."""
    return redis_stack.lock_urls


@pytest.fixture
def durable_state(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A state Redis of the test's own, with an append-only file: it survives `restart()`."""
    server = EmbeddedRedis("durable-state", data_dir=tmp_path / "state").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def proxy(state_url: str) -> Iterator[TcpProxy]:
    """A fault-injecting TCP proxy in front of the state Redis (`tests.faults.TcpProxy`)."""
    proxy = TcpProxy.to_url(state_url)
    try:
        yield proxy
    finally:
        proxy.heal()
        proxy.close()


@pytest.fixture
async def state_redis(state_url: str) -> AsyncIterator[Redis]:
    client = make_client(state_url, timeout_s=5.0)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def scheduler_server(state_url: str) -> AsyncIterator[object]:
    """An in-process scheduler (real grpc.aio server on a free port) on the flushed state Redis."""
    from scheduler_svc.config import SchedulerSettings
    from scheduler_svc.server import SchedulerServer

    server = SchedulerServer(
        SchedulerSettings(state_redis_url=state_url, host="127.0.0.1", port=0, log_block_ms=200)
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def scheduler_target(scheduler_server: object) -> str:
    """``host:port`` of the running in-process scheduler."""
    return f"127.0.0.1:{scheduler_server.port}"  # type: ignore[attr-defined]
