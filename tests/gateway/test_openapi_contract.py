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


async def test_the_scheduler_ranges_are_the_documented_ones(
    offline_gateway: httpx.AsyncClient,
) -> None:
    from campaign_common import retry_policy
    from campaign_common.runs.limits import LIMIT_FIELDS
    from campaigns.v1 import schedule_pb2
    from scheduler_svc import validation

    schemas = (await _spec(offline_gateway))["components"]["schemas"]
    limits = schemas["RunLimitsIn"]["properties"]
    scheduler_limits = {
        field.json_name: LIMIT_FIELDS[field.name][1]
        for field in schedule_pb2.RunLimits.DESCRIPTOR.fields
        if field.name in LIMIT_FIELDS
    }
    assert {name: limits[name]["maximum"] for name in scheduler_limits} == scheduler_limits
    assert all(limits[name]["minimum"] == 0 for name in scheduler_limits)
    spec_in = schemas["ScheduleSpecIn"]["properties"]
    assert spec_in["intervalSeconds"]["minimum"] == 1
    assert spec_in["intervalSeconds"]["maximum"] == validation.MAX_INTERVAL_S
    assert spec_in["jitterSeconds"]["maximum"] == validation.MAX_JITTER_S
    assert set(spec_in["timezone"]["enum"]) == validation.iana_zones()
    retry = schemas["RetryPolicyIn"]["properties"]
    assert retry["maxAttempts"]["maximum"] == retry_policy.MAX_ATTEMPTS_LIMIT
    assert retry["multiplier"]["maximum"] == retry_policy.MAX_MULTIPLIER
    body = schemas["AddScheduledCampaignBody"]["properties"]
    assert body["campaignId"]["pattern"] == f"^{validation.CAMPAIGN_ID.pattern}$"
    names = schemas["ScrapeSpecIn"]["properties"]["selectors"]["patternProperties"]
    assert list(names) == [f"^{validation.FIELD_NAME.pattern}$"]


async def test_timing_kind_is_a_one_of_and_times_are_date_time(
    offline_gateway: httpx.AsyncClient,
) -> None:
    schemas = (await _spec(offline_gateway))["components"]["schemas"]
    kinds = [branch["required"] for branch in schemas["ScheduleSpecIn"]["oneOf"]]
    assert kinds == [["cron"], ["intervalSeconds"], ["runAt"]]
    spec_in = schemas["ScheduleSpecIn"]["properties"]
    assert all("null" not in str(prop) for prop in spec_in.values())  # optional = absent
    assert spec_in["runAt"]["format"] == "date-time"

    def date_time(prop: dict[str, Any]) -> bool:
        return "date-time" in str(prop)

    assert date_time(schemas["ScheduleOut"]["properties"]["createdAt"])
    assert date_time(schemas["ScheduleOut"]["properties"]["nextFireTimes"]["items"])
    assert date_time(schemas["RunOut"]["properties"]["scheduledFor"])


async def test_every_operation_documents_its_errors_and_creates_link_on(
    offline_gateway: httpx.AsyncClient,
) -> None:
    spec = await _spec(offline_gateway)
    error = {"$ref": "#/components/schemas/ErrorOut"}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            for code in ("400", "500", "503", "504"):
                assert responses[code]["content"]["application/json"]["schema"] == error, (
                    path,
                    method,
                    code,
                )
            if "{" in path:
                assert "404" in responses, (path, method)
            if "If-Match" in {p["name"] for p in operation.get("parameters", [])}:
                assert "409" in responses, (path, method)
    add = spec["paths"]["/campaign/addScheduledCampaign"]["post"]
    assert "413" in add["responses"] and "401" in add["responses"]
    links = add["responses"]["201"]["links"]
    assert links["getSchedule"] == {
        "operationId": "getSchedule",
        "parameters": {"scheduleId": "$response.body#/scheduleId"},
    }
    ids = {op["operationId"] for ops in spec["paths"].values() for op in ops.values()}
    assert {link["operationId"] for link in links.values()} <= ids
    assert spec["components"]["schemas"]["ErrorOut"]["examples"]
