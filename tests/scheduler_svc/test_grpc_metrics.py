"""The scheduler's gRPC server metrics and the series that exist from start-up, over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import httpx
import pytest

from campaign_common.localstack.embedded import free_port
from campaigns.v1 import schedule_pb2
from campaigns.v1 import scheduler_service_pb2 as api
from campaigns.v1 import scheduler_service_pb2_grpc as api_grpc
from scheduler_svc.config import SchedulerSettings
from scheduler_svc.server import SchedulerServer
from tests.support import metric_sample


@pytest.fixture
async def server(state_url: str) -> AsyncIterator[SchedulerServer]:
    settings = SchedulerSettings(
        state_redis_url=state_url, port=0, log_block_ms=200, metrics_port=free_port()
    )
    running = SchedulerServer(settings)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


async def _scrape(server: SchedulerServer) -> str:
    async with httpx.AsyncClient(timeout=5) as http:
        return (await http.get(f"http://127.0.0.1:{server.settings.metrics_port}/metrics")).text


async def test_every_labelled_series_exists_from_start_up(server: SchedulerServer) -> None:
    text = await _scrape(server)
    for series in (
        'campaigns_scheduler_fires_total{result="emitted"}',
        'campaigns_scheduler_fires_total{result="missed"}',
        'campaigns_scheduler_fires_total{result="stale"}',
        'campaigns_run_outcomes_total{outcome="succeeded"}',
        'campaigns_run_outcomes_total{outcome="dead_lettered"}',
        'campaigns_scheduler_schedules{state="PAUSED"}',
        'campaigns_scheduler_grpc_requests_total{code="OK",method="TriggerCampaign"}',
        'campaigns_scheduler_grpc_errors_total{method="ListRuns"}',
        'campaigns_scheduler_grpc_request_duration_seconds_count{method="GetRun"}',
    ):
        assert series in text, f"{series} missing at start-up"
    assert 'campaigns_build_info{python="' in text and 'service="scheduler"' in text


async def test_grpc_calls_are_counted_by_method_and_code(server: SchedulerServer) -> None:
    ok = 'campaigns_scheduler_grpc_requests_total{code="OK",method="AddScheduledCampaign"}'
    missing = 'campaigns_scheduler_grpc_requests_total{code="NOT_FOUND",method="GetSchedule"}'
    errors = 'campaigns_scheduler_grpc_errors_total{method="GetSchedule"}'
    before = await _scrape(server)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = api_grpc.SchedulerServiceStub(channel)  # type: ignore[no-untyped-call]
        await stub.AddScheduledCampaign(
            api.AddScheduledCampaignRequest(
                name="counted",
                schedule=schedule_pb2.ScheduleSpec(interval_seconds=3600),
                scrape=schedule_pb2.ScrapeSpec(urls=["http://127.0.0.1:1/"]),
            ),
            timeout=5,
        )
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.GetSchedule(api.GetScheduleRequest(schedule_id="nope"), timeout=5)
        assert raised.value.code() is grpc.StatusCode.NOT_FOUND
    after = await _scrape(server)
    assert metric_sample(after, ok) == metric_sample(before, ok) + 1
    assert metric_sample(after, missing) == metric_sample(before, missing) + 1
    # NOT_FOUND is the caller's problem, not a server error (counters are per process: compare
    # with what earlier tests in this process left).
    assert metric_sample(after, errors) == metric_sample(before, errors)
    duration = 'campaigns_scheduler_grpc_request_duration_seconds_count{method="GetSchedule"}'
    assert metric_sample(after, duration) >= metric_sample(before, duration) + 1
