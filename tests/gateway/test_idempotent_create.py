"""Idempotent create over real HTTP and gRPC with the real scheduler: requestId (AIP-155) and
the Idempotency-Key header answer the first call's schedule on a retry, never a second one."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import httpx
import pytest

from campaigns.v1 import scheduler_service_pb2 as api
from campaigns.v1 import scheduler_service_pb2_grpc as api_grpc
from tests.gateway.test_http_validation import VALID

ADD = "/campaign/addScheduledCampaign"


async def _count(client: httpx.AsyncClient) -> int:
    return len((await client.get("/v1/schedules")).json()["schedules"])


@pytest.mark.parametrize("how", ["header", "body"])
async def test_retried_create_answers_the_first_schedule(
    gateway: httpx.AsyncClient, how: str
) -> None:
    key = "6f1c2e4a-9b0d-4c43-8a57-1f2e3d4c5b6a"
    body: dict[str, Any] = {**VALID, "requestId": key} if how == "body" else VALID
    headers = {"Idempotency-Key": key} if how == "header" else {}
    first = await gateway.post(ADD, json=body, headers=headers)
    again = await gateway.post(ADD, json=body, headers=headers)
    assert first.status_code == again.status_code == 201, again.text
    assert again.json()["scheduleId"] == first.json()["scheduleId"]
    assert again.headers["location"] == first.headers["location"]
    assert again.json()["version"] == 1 and await _count(gateway) == 1


async def test_concurrent_creates_with_one_key_make_one_schedule(
    gateway: httpx.AsyncClient,
) -> None:
    headers = {"Idempotency-Key": "burst-1"}
    answers = await asyncio.gather(
        *(gateway.post(ADD, json=VALID, headers=headers) for _ in range(5))
    )
    assert {a.status_code for a in answers} == {201}
    assert len({a.json()["scheduleId"] for a in answers}) == 1
    assert await _count(gateway) == 1


async def test_same_key_for_a_different_create_is_409_already_exists(
    gateway: httpx.AsyncClient,
) -> None:
    headers = {"Idempotency-Key": "k-2"}
    assert (await gateway.post(ADD, json=VALID, headers=headers)).status_code == 201
    other = {**VALID, "name": "Another"}
    response = await gateway.post(ADD, json=other, headers=headers)
    assert response.status_code == 409 and response.json()["code"] == "ALREADY_EXISTS"
    assert await _count(gateway) == 1


async def test_different_keys_make_different_schedules(gateway: httpx.AsyncClient) -> None:
    for key in ("a", "b"):
        response = await gateway.post(ADD, json=VALID, headers={"Idempotency-Key": key})
        assert response.status_code == 201
    assert await _count(gateway) == 2


async def test_header_and_body_keys_must_agree(gateway: httpx.AsyncClient) -> None:
    response = await gateway.post(
        ADD, json={**VALID, "requestId": "x"}, headers={"Idempotency-Key": "y"}
    )
    assert response.status_code == 400
    assert [v["field"] for v in response.json()["fieldViolations"]] == ["Idempotency-Key"]


@pytest.mark.parametrize("key", ["", "k" * 129])
async def test_empty_or_oversized_key_is_400(gateway: httpx.AsyncClient, key: str) -> None:
    response = await gateway.post(ADD, json=VALID, headers={"Idempotency-Key": key})
    assert response.status_code == 400
    assert [v["field"] for v in response.json()["fieldViolations"]] == ["Idempotency-Key"]


async def test_grpc_retry_with_request_id_returns_the_schedule_not_aborted(
    scheduler_target: str,
) -> None:
    request = api.AddScheduledCampaignRequest(
        name="n",
        request_id="req-1",
        schedule={"interval_seconds": 60},
        scrape={"urls": ["http://x.test/"]},
    )
    async with grpc.aio.insecure_channel(scheduler_target) as channel:
        stub = api_grpc.SchedulerServiceStub(channel)  # type: ignore[no-untyped-call]
        first = await stub.AddScheduledCampaign(request)
        again = await stub.AddScheduledCampaign(request)
        assert again.schedule_id == first.schedule_id and again.version == 1
        assert again.campaign_id == first.campaign_id  # the generated campaign id too
        listed = await stub.ListSchedules(api.ListSchedulesRequest())
        assert [s.schedule_id for s in listed.schedules] == [first.schedule_id]
