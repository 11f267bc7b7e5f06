"""WatchRuns over real gRPC and its REST mirror as Server-Sent Events, against the real
in-process scheduler: changes arrive as they happen, filtered, resumable from a position."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import grpc
import httpx
import pytest

from campaigns.v1 import run_pb2
from campaigns.v1 import scheduler_service_pb2 as api
from campaigns.v1 import scheduler_service_pb2_grpc as api_grpc
from tests.gateway.conftest import running_gateway
from tests.gateway.test_http_validation import VALID


def _add(name: str) -> api.AddScheduledCampaignRequest:
    return api.AddScheduledCampaignRequest(
        name=name, schedule={"interval_seconds": 3600}, scrape={"urls": ["http://x.test/"]}
    )


async def test_grpc_watch_streams_filters_and_resumes(scheduler_target: str) -> None:
    async with grpc.aio.insecure_channel(scheduler_target) as channel:
        stub = api_grpc.SchedulerServiceStub(channel)  # type: ignore[no-untyped-call]
        mine = await stub.AddScheduledCampaign(_add("mine"))
        other = await stub.AddScheduledCampaign(_add("other"))
        call = stub.WatchRuns(api.WatchRunsRequest(schedule_id=mine.schedule_id))
        await asyncio.wait_for(call.initial_metadata(), 5)
        await stub.TriggerCampaign(api.TriggerCampaignRequest(schedule_id=other.schedule_id))
        first_run = await stub.TriggerCampaign(
            api.TriggerCampaignRequest(schedule_id=mine.schedule_id)
        )
        first = await asyncio.wait_for(call.read(), 5)
        assert first.run.run_id == first_run.run_id
        assert first.run.state == run_pb2.RUN_STATE_REQUESTED and first.position
        second_run = await stub.TriggerCampaign(
            api.TriggerCampaignRequest(schedule_id=mine.schedule_id)
        )
        second = await asyncio.wait_for(call.read(), 5)
        assert second.run.run_id == second_run.run_id
        call.cancel()

        resumed = stub.WatchRuns(
            api.WatchRunsRequest(schedule_id=mine.schedule_id, position=first.position)
        )
        again = await asyncio.wait_for(resumed.read(), 5)
        assert again.run.run_id == second_run.run_id and again.position == second.position
        resumed.cancel()


@pytest.mark.parametrize("position", ["!!!", "Zm9v", "x" * 600])
async def test_grpc_watch_forged_position_is_invalid_argument(
    scheduler_target: str, position: str
) -> None:
    async with grpc.aio.insecure_channel(scheduler_target) as channel:
        stub = api_grpc.SchedulerServiceStub(channel)  # type: ignore[no-untyped-call]
        call = stub.WatchRuns(api.WatchRunsRequest(position=position))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await asyncio.wait_for(call.read(), 5)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def _next_event(lines: Any) -> dict[str, str]:
    event: dict[str, str] = {}
    async for line in lines:
        if not line:
            if event:
                return event
            continue
        key, _, value = line.partition(": ")
        event[key] = value
    raise AssertionError("the stream ended")


async def test_rest_watch_is_server_sent_events(gateway: httpx.AsyncClient) -> None:
    created = (await gateway.post("/campaign/addScheduledCampaign", json=VALID)).json()
    sid = created["scheduleId"]
    async with gateway.stream("GET", "/v1/runs:watch", params={"scheduleId": sid}) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        triggered = (await gateway.post(f"/v1/schedules/{sid}:trigger")).json()
        event = await asyncio.wait_for(_next_event(stream.aiter_lines()), 5)
    assert event["event"] == "run" and event["id"]
    run = json.loads(event["data"])
    assert run["runId"] == triggered["runId"] and run["state"] == "REQUESTED"

    # Reconnecting with Last-Event-ID continues after that change.
    second = (await gateway.post(f"/v1/schedules/{sid}:trigger")).json()
    headers = {"Last-Event-ID": event["id"]}
    params = {"scheduleId": sid}
    async with gateway.stream("GET", "/v1/runs:watch", params=params, headers=headers) as stream:
        resumed = await asyncio.wait_for(_next_event(stream.aiter_lines()), 5)
    assert json.loads(resumed["data"])["runId"] == second["runId"]


async def test_rest_watch_refused_before_streaming_is_json(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/v1/runs:watch", params={"position": "Zm9v"})
    assert response.status_code == 400
    assert [v["field"] for v in response.json()["fieldViolations"]] == ["position"]


async def test_rest_watch_with_the_scheduler_down_is_503(unreachable_target: str) -> None:
    async with running_gateway(scheduler_target=unreachable_target) as client:
        response = await client.get("/v1/runs:watch")
    assert response.status_code == 503 and response.json()["code"] == "UNAVAILABLE"
