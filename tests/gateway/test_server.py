"""GatewayServer and `python -m gateway`: free ports, API keys, graceful and bounded shutdown."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from campaign_common.localstack.embedded import free_port
from gateway.config import GatewaySettings
from gateway.server import GatewayServer, StartupError, bind_socket
from tests.gateway.conftest import API_KEY, running_gateway
from tests.gateway.stub import StubScheduler
from tests.support import ServiceProcess, eventually


async def test_server_port_zero_serves_on_the_reported_port(unreachable_target: str) -> None:
    server = GatewayServer(
        GatewaySettings(port=0, scheduler_target=unreachable_target, access_log=False)
    )
    await server.start()
    url = f"http://127.0.0.1:{server.port}/healthz"
    try:
        async with httpx.AsyncClient(timeout=5.0) as client:
            assert (await client.get(url)).status_code == 200
    finally:
        await server.stop()
    async with httpx.AsyncClient(timeout=5.0) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(url)


def test_server_bind_busy_port_says_what_to_change() -> None:
    with bind_socket("127.0.0.1", 0) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(StartupError, match="GATEWAY_PORT"):
            bind_socket("127.0.0.1", port)


async def test_server_stop_lets_in_flight_request_finish(stub_scheduler: StubScheduler) -> None:
    settings = GatewaySettings(
        port=0, scheduler_target=stub_scheduler.target, access_log=False, grpc_timeout_s=10
    )
    server = GatewayServer(settings)
    await server.start()
    async with httpx.AsyncClient(timeout=10.0) as client:
        pending = asyncio.create_task(client.get(f"http://127.0.0.1:{server.port}/v1/schedules"))
        await asyncio.wait_for(stub_scheduler.entered.wait(), 5)
        stopping = asyncio.create_task(server.stop())
        stub_scheduler.release.set()
        response = await asyncio.wait_for(pending, 10)
        await asyncio.wait_for(stopping, 10)
    assert response.status_code == 200 and response.json()["schedules"] == []


async def test_server_stop_is_bounded_when_a_request_hangs(stub_scheduler: StubScheduler) -> None:
    settings = GatewaySettings(
        port=0,
        scheduler_target=stub_scheduler.target,
        access_log=False,
        grpc_timeout_s=60,
        shutdown_grace_s=0.5,
    )
    server = GatewayServer(settings)
    await server.start()
    async with httpx.AsyncClient(timeout=10.0) as client:
        pending = asyncio.create_task(client.get(f"http://127.0.0.1:{server.port}/v1/schedules"))
        await asyncio.wait_for(stub_scheduler.entered.wait(), 5)
        await asyncio.wait_for(server.stop(), 5)  # grace 0.5 s (uvicorn rounds up to 1 s)
        response = await asyncio.wait_for(pending, 5)
    assert response.status_code == 500, "uvicorn answers a cancelled request with 500"


async def test_api_key_required_when_configured(unreachable_target: str) -> None:
    async with running_gateway(scheduler_target=unreachable_target, api_keys=[API_KEY]) as client:
        missing = await client.get("/v1/schedules")
        wrong = await client.get("/v1/schedules", headers={"authorization": "Bearer nope"})
        basic = await client.get("/v1/schedules", headers={"authorization": f"Basic {API_KEY}"})
        good = await client.get("/v1/schedules", headers={"authorization": f"Bearer {API_KEY}"})
        health = await client.get("/healthz")
        docs = await client.get("/openapi.json")
    for denied in (missing, wrong, basic):
        assert denied.status_code == 401
        assert denied.json()["code"] == "UNAUTHENTICATED"
        assert denied.headers["www-authenticate"] == "Bearer"
    assert good.status_code == 503  # past authentication; the scheduler is down
    assert health.status_code == 200 and docs.status_code == 200
    assert "HTTPBearer" in docs.json()["components"]["securitySchemes"]


async def test_main_process_serves_and_exits_zero_on_sigterm(unreachable_target: str) -> None:
    port = free_port()
    process = ServiceProcess(
        "gateway",
        {"GATEWAY_PORT": str(port), "GATEWAY_SCHEDULER_TARGET": unreachable_target},
    ).start()
    try:
        async with httpx.AsyncClient(timeout=2.0) as client:

            async def alive() -> bool:
                assert process.proc is not None and process.proc.poll() is None, process.logs()
                try:
                    return (await client.get(f"http://127.0.0.1:{port}/healthz")).is_success
                except httpx.HTTPError:
                    return False

            await eventually(alive, timeout_s=30, what="gateway process serving")
        assert process.terminate(timeout_s=15) == 0, process.logs()
        assert '"gateway stopped"' in process.logs()
    finally:
        process.close()
