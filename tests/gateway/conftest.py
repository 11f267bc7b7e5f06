"""Gateway fixtures: the real gateway (uvicorn on a free port) and an httpx client to it.

``offline_gateway`` points at a port nothing listens on (the scheduler is down);
``gateway`` points at the in-process scheduler of the shared ``scheduler_target`` fixture;
``stub_scheduler`` is a real grpc.aio server whose answers a test chooses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import pytest_asyncio
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from campaign_common.localstack.embedded import free_port
from gateway.config import GatewaySettings
from gateway.server import GatewayServer
from tests.gateway.stub import StubScheduler, running_stub

API_KEY = "test-key-0123456789abcdef"


@asynccontextmanager
async def running_gateway(**settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway on a free loopback port and a client for it; stopped on exit."""
    defaults: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "access_log": False}
    server = GatewayServer(GatewaySettings(**{"api_keys": [], **defaults, **settings}))
    await server.start()
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{server.port}", timeout=10.0
        ) as client:
            yield client
    finally:
        await server.stop()


@pytest.fixture(scope="module")
def unreachable_target() -> str:
    """A loopback address with nothing listening: a scheduler that is down."""
    return f"127.0.0.1:{free_port()}"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def offline_gateway(unreachable_target: str) -> AsyncIterator[httpx.AsyncClient]:
    """One gateway per module (tests using it run in the module's event loop)."""
    async with running_gateway(scheduler_target=unreachable_target) as client:
        yield client


@pytest.fixture
async def gateway(scheduler_target: str) -> AsyncIterator[httpx.AsyncClient]:
    async with running_gateway(scheduler_target=scheduler_target) as client:
        yield client


@pytest.fixture
async def stub_scheduler() -> AsyncIterator[StubScheduler]:
    async with running_stub() as stub:
        yield stub


@pytest.fixture
async def stub_gateway(stub_scheduler: StubScheduler) -> AsyncIterator[httpx.AsyncClient]:
    async with running_gateway(scheduler_target=stub_scheduler.target, grpc_timeout_s=1.0) as c:
        yield c


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Spans finished during the test (the session's tracer provider, recorded in memory)."""
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider), "tests/conftest.py installs the SDK provider"
    exporter = InMemorySpanExporter()
    processor = SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    try:
        yield exporter
    finally:
        processor.shutdown()  # stops recording; the provider keeps a no-op processor
