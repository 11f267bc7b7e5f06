"""Token auth of the scheduler's gRPC API over real gRPC: the gateway and the CLI send the
token; a missing or wrong one is UNAUTHENTICATED; health and reflection stay open."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import ValidationError

from campaign_common.api_keys import token_matches
from campaigns.v1 import scheduler_service_pb2 as api
from campaigns.v1 import scheduler_service_pb2_grpc as api_grpc
from scheduler_svc.config import SchedulerSettings
from scheduler_svc.server import SchedulerServer
from tests.gateway.conftest import running_gateway
from tests.support import ROOT

KEY = "scheduler-key-0123456789"


@pytest.fixture
async def guarded(state_url: str) -> AsyncIterator[str]:
    server = SchedulerServer(
        SchedulerSettings(
            state_redis_url=state_url, host="127.0.0.1", port=0, log_block_ms=200, api_keys=[KEY]
        )
    )
    await server.start()
    try:
        yield f"127.0.0.1:{server.port}"
    finally:
        await server.stop()


@pytest.mark.parametrize(
    "metadata", [(), (("authorization", "Bearer wrong"),), (("authorization", KEY),)]
)
async def test_calls_without_the_token_are_unauthenticated(
    guarded: str, metadata: tuple[tuple[str, str], ...]
) -> None:
    async with grpc.aio.insecure_channel(guarded) as channel:
        stub = api_grpc.SchedulerServiceStub(channel)  # type: ignore[no-untyped-call]
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.ListSchedules(api.ListSchedulesRequest(), metadata=metadata, timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_token_opens_the_api_and_health_stays_open(guarded: str) -> None:
    async with grpc.aio.insecure_channel(guarded) as channel:
        stub = api_grpc.SchedulerServiceStub(channel)  # type: ignore[no-untyped-call]
        page = await stub.ListSchedules(
            api.ListSchedulesRequest(), metadata=(("authorization", f"Bearer {KEY}"),), timeout=5
        )
        assert list(page.schedules) == []
        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_gateway_sends_its_token(guarded: str) -> None:
    async with running_gateway(scheduler_target=guarded, scheduler_token=KEY) as client:
        assert (await client.get("/v1/schedules")).status_code == 200
        assert (await client.get("/readyz")).status_code == 200
    async with running_gateway(scheduler_target=guarded) as client:
        response = await client.get("/v1/schedules")
        assert response.status_code == 401 and response.json()["code"] == "UNAUTHENTICATED"


async def test_cli_sends_campaigns_token(guarded: str) -> None:
    async def cli(token: str) -> int:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "campaign_common.cli", "schedules", "list", "--target", guarded,
            cwd=ROOT, env={**os.environ, "CAMPAIGNS_TOKEN": token},
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        return await asyncio.wait_for(process.wait(), timeout=30)

    assert await cli(KEY) == 0
    assert await cli("wrong") == 7


def test_token_comparison() -> None:
    keys = [b"a" * 24, b"b" * 24]
    assert token_matches("b" * 24, keys) and not token_matches("c" * 24, keys)
    assert not token_matches("", keys) and not token_matches("", [b""])


def test_malformed_key_setting_is_reported_without_the_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gateway.config import GatewaySettings

    monkeypatch.setenv("SCHEDULER_API_KEYS", '["topsecret-1", ')
    monkeypatch.setenv("GATEWAY_API_KEYS", '["topsecret-2", ')
    for settings in (SchedulerSettings, GatewaySettings):
        with pytest.raises(ValidationError) as info:
            settings()
        assert "topsecret" not in str(info.value) and "api_keys" in str(info.value)
