"""The OpenAPI document a client generator uses: stable operationIds, the headers, limits."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def _spec(client: httpx.AsyncClient) -> dict[str, Any]:
    spec: dict[str, Any] = (await client.get("/openapi.json")).json()
    return spec


async def test_operation_ids_are_stable_camel_case_names(
    offline_gateway: httpx.AsyncClient,
) -> None:
    paths = (await _spec(offline_gateway))["paths"]
    ids = {
        (path, method): op["operationId"]
        for path, ops in paths.items()
        for method, op in ops.items()
    }
    assert ids[("/campaign/addScheduledCampaign", "post")] == "addScheduledCampaign"
    assert ids[("/v1/schedules/{scheduleId}", "put")] == "updateSchedule"
    assert ids[("/v1/schedules/{scheduleId}:pause", "post")] == "pauseSchedule"
    assert ids[("/v1/runs", "get")] == "listRuns"
    assert len(set(ids.values())) == len(ids)


async def test_headers_and_limits_are_documented(offline_gateway: httpx.AsyncClient) -> None:
    spec = await _spec(offline_gateway)
    add = spec["paths"]["/campaign/addScheduledCampaign"]["post"]
    assert {"Location", "ETag"} <= set(add["responses"]["201"]["headers"])
    assert {p["name"] for p in add["parameters"]} == {"Idempotency-Key"}
    trigger = spec["paths"]["/v1/schedules/{scheduleId}:trigger"]["post"]
    assert "Location" in trigger["responses"]["202"]["headers"]
    put = spec["paths"]["/v1/schedules/{scheduleId}"]["put"]
    assert "If-Match" in {p["name"] for p in put["parameters"]}
    assert "ETag" in put["responses"]["200"]["headers"]
    schemas = spec["components"]["schemas"]
    assert schemas["AddScheduledCampaignBody"]["properties"]["name"]["maxLength"] == 200
    urls = schemas["ScrapeSpecIn"]["properties"]["urls"]
    assert (urls["minItems"], urls["maxItems"], urls["items"]["maxLength"]) == (1, 100, 2048)
    spec_in = schemas["ScheduleSpecIn"]["properties"]
    assert {"startTime", "endTime"} <= set(spec_in)
