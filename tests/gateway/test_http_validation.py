"""Request validation, routing errors, health and OpenAPI through real HTTP (scheduler down).

Nothing here reaches the scheduler: shape and type errors are answered by the gateway itself.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

# One gateway serves the whole module: its tests share the module's event loop.
pytestmark = pytest.mark.asyncio(loop_scope="module")

VALID: dict[str, Any] = {
    "campaignId": "spring-leads",
    "name": "Spring leads",
    "schedule": {"cron": "0 9 * * 1-5", "timezone": "Europe/Berlin"},
    "scrape": {"urls": ["http://example.test/"], "selectors": {"title": "h1"}},
}


def _with(**changes: Any) -> dict[str, Any]:
    body = {**VALID, "schedule": dict(VALID["schedule"]), "scrape": dict(VALID["scrape"])}
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        target = body
        for parent in parents:
            target = target[parent]
        if value is ...:
            del target[leaf]
        else:
            target[leaf] = value
    return body


def _fields(response: httpx.Response) -> list[str]:
    return [v["field"] for v in response.json()["fieldViolations"]]


async def _post(client: httpx.AsyncClient, body: object) -> httpx.Response:
    return await client.post("/campaign/addScheduledCampaign", json=body)


async def test_add_missing_name_is_400_naming_name(offline_gateway: httpx.AsyncClient) -> None:
    response = await _post(offline_gateway, _with(name=...))
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "INVALID_ARGUMENT" and "name" in body["message"]
    assert body["fieldViolations"] == [{"field": "name", "description": "is required"}]


@pytest.mark.parametrize("value", ["thirty", "30", 30.5, True, [30], 2**64])
async def test_add_wrong_interval_type_is_400_naming_interval(
    offline_gateway: httpx.AsyncClient, value: object
) -> None:
    body = _with(schedule={"intervalSeconds": value})
    response = await _post(offline_gateway, body)
    assert response.status_code == 400, response.text
    assert _fields(response) == ["schedule.intervalSeconds"]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"schedule": ...}, "schedule"),
        ({"scrape": ...}, "scrape"),
        ({"scrape__urls": ...}, "scrape.urls"),
        ({"scrape__urls": ["http://a.test/", 7]}, "scrape.urls[1]"),
        ({"scrape__selectors": {"title": 1}}, "scrape.selectors.title"),
        ({"name": 42}, "name"),
        ({"campaignId": ["x"]}, "campaignId"),
        ({"schedule__runAt": "tomorrow", "schedule__cron": None}, "schedule.runAt"),
        ({"schedule__runAt": "2026-12-01T09:00:00", "schedule__cron": None}, "schedule.runAt"),
        ({"schedule__intervalSeconds": 30}, "schedule"),
        ({"surprise": 1}, "surprise"),
        ({"campaign_id": "snake-case"}, "campaign_id"),
        ({"schedule__interval_seconds": 30}, "schedule.interval_seconds"),
        ({"limits": {"overlap": "SOMETIMES"}}, "limits.overlap"),
        ({"limits": {"maxPages": "10"}}, "limits.maxPages"),
        ({"limits": {"maxPages": 2**31}}, "limits.maxPages"),
        ({"limits": {"maxParallel": 1}}, "limits.maxParallel"),
    ],
)
async def test_add_shape_errors_are_400_naming_the_field(
    offline_gateway: httpx.AsyncClient, changes: dict[str, Any], field: str
) -> None:
    response = await _post(offline_gateway, _with(**changes))
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "INVALID_ARGUMENT"
    assert field in _fields(response)


async def test_add_two_schedule_kinds_says_exactly_one(offline_gateway: httpx.AsyncClient) -> None:
    response = await _post(offline_gateway, _with(schedule__intervalSeconds=30))
    violation = response.json()["fieldViolations"][0]
    assert violation == {
        "field": "schedule",
        "description": "set exactly one of cron, intervalSeconds or runAt",
    }


async def test_add_invalid_json_is_400_without_fields(offline_gateway: httpx.AsyncClient) -> None:
    response = await offline_gateway.post(
        "/campaign/addScheduledCampaign",
        content=b'{"name": ',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "INVALID_ARGUMENT" and body["fieldViolations"] == []
    assert "not valid JSON" in body["message"]


@pytest.mark.parametrize("payload", [[1, 2], "text", None])
async def test_add_non_object_body_is_400(
    offline_gateway: httpx.AsyncClient, payload: object
) -> None:
    response = await _post(offline_gateway, payload)
    assert response.status_code == 400
    assert response.json()["code"] == "INVALID_ARGUMENT"


async def test_add_valid_body_with_scheduler_down_is_503_unreachable(
    offline_gateway: httpx.AsyncClient,
) -> None:
    response = await _post(offline_gateway, VALID)
    assert response.status_code == 503
    body = response.json()
    assert body["code"] == "UNAVAILABLE" and "scheduler is unreachable" in body["message"]


@pytest.mark.parametrize(
    "url",
    [
        "/v1/schedules?pageSize=abc",
        "/v1/schedules?pageSize=-1",
        "/v1/schedules?pageSize=99999999999",
        "/v1/runs?pageSize=1.5",
        "/v1/campaigns/c/results?pageSize=x",
    ],
)
async def test_bad_page_size_is_400_naming_page_size(
    offline_gateway: httpx.AsyncClient, url: str
) -> None:
    response = await offline_gateway.get(url)
    assert response.status_code == 400
    assert _fields(response) == ["pageSize"]


async def test_pause_body_with_unknown_field_is_400(offline_gateway: httpx.AsyncClient) -> None:
    response = await offline_gateway.post("/v1/schedules/abc:pause", json={"reason": "x"})
    assert response.status_code == 400 and _fields(response) == ["reason"]


async def test_unknown_route_is_404_not_found(offline_gateway: httpx.AsyncClient) -> None:
    response = await offline_gateway.get("/v2/nothing")
    assert response.status_code == 404
    body = response.json()
    assert body["code"] == "NOT_FOUND" and body["fieldViolations"] == []
    assert "/v2/nothing" in body["message"]


async def test_wrong_method_is_405_with_allow(offline_gateway: httpx.AsyncClient) -> None:
    response = await offline_gateway.get("/campaign/addScheduledCampaign")
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    assert response.json()["code"] == "UNIMPLEMENTED"


async def test_healthz_is_200_while_scheduler_is_down(offline_gateway: httpx.AsyncClient) -> None:
    response = await offline_gateway.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


async def test_readyz_is_503_while_scheduler_is_down(offline_gateway: httpx.AsyncClient) -> None:
    response = await offline_gateway.get("/readyz")
    assert response.status_code == 503
    assert response.json()["code"] == "UNAVAILABLE"
    assert "scheduler is not serving" in response.json()["message"]


async def test_openapi_documents_routes_and_models(offline_gateway: httpx.AsyncClient) -> None:
    spec = (await offline_gateway.get("/openapi.json")).json()
    paths = spec["paths"]
    assert set(paths) >= {
        "/campaign/addScheduledCampaign",
        "/v1/schedules",
        "/v1/schedules/{scheduleId}",
        "/v1/schedules/{scheduleId}:pause",
        "/v1/schedules/{scheduleId}:resume",
        "/v1/schedules/{scheduleId}:trigger",
        "/v1/runs",
        "/v1/runs/{runId}",
        "/v1/campaigns/{campaignId}/results",
        "/healthz",
        "/readyz",
    }
    add = paths["/campaign/addScheduledCampaign"]["post"]
    assert "201" in add["responses"] and "422" not in add["responses"]
    assert "4XX" in add["responses"]
    schemas = spec["components"]["schemas"]
    assert {"AddScheduledCampaignBody", "ScheduleOut", "RunOut", "ErrorOut"} <= set(schemas)
    assert "intervalSeconds" in schemas["ScheduleSpecIn"]["properties"]
    assert schemas["ScheduleSpecIn"]["additionalProperties"] is False
    assert "HTTPValidationError" not in schemas


async def test_docs_page_is_served(offline_gateway: httpx.AsyncClient) -> None:
    response = await offline_gateway.get("/docs")
    assert response.status_code == 200 and "swagger" in response.text.lower()


async def test_metrics_count_requests_by_route_template(offline_gateway: httpx.AsyncClient) -> None:
    await offline_gateway.get("/healthz")
    await offline_gateway.get("/v1/runs/abc:123")  # the scheduler is down: 503
    text = (await offline_gateway.get("/metrics")).text
    assert 'route="/healthz",status="200"' in text
    assert 'route="/v1/runs/{runId}",status="503"' in text
    assert "abc:123" not in text
