"""The REST contract end to end: real HTTP -> gateway -> real gRPC scheduler -> real Redis."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from campaign_common.runs.log import RunLog
from campaign_common.runs.record import RunState
from campaign_common.runs.writer import Writer
from campaign_common.timeutil import ms_to_timestamp
from campaigns.v1 import events_pb2
from tests.gateway.conftest import API_KEY, running_gateway
from tests.support import PARTITIONS


def campaign(**schedule: Any) -> dict[str, Any]:
    return {
        "campaignId": "spring-leads",
        "name": "Spring leads",
        "schedule": schedule or {"intervalSeconds": 3600},
        "scrape": {"urls": ["http://127.0.0.1:1/offer"], "selectors": {"title": "h1"}},
    }


async def create(client: httpx.AsyncClient, **schedule: Any) -> dict[str, Any]:
    response = await client.post("/campaign/addScheduledCampaign", json=campaign(**schedule))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def fields(response: httpx.Response) -> list[str]:
    return [v["field"] for v in response.json()["fieldViolations"]]


async def test_api_create_returns_201_with_the_schedule(gateway: httpx.AsyncClient) -> None:
    response = await gateway.post(
        "/campaign/addScheduledCampaign",
        json=campaign(cron="0 9 * * 1-5", timezone="Europe/Berlin"),
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["location"] == f"/v1/schedules/{body['scheduleId']}"
    assert body["version"] == 1 and body["state"] == "ACTIVE"
    assert body["campaignId"] == "spring-leads" and body["name"] == "Spring leads"
    assert body["schedule"] == {
        "cron": "0 9 * * 1-5",
        "cronDialect": "posix5",
        "intervalSeconds": None,
        "runAt": None,
        "timezone": "Europe/Berlin",
        "startTime": None,
        "endTime": None,
        "jitterSeconds": 0,
    }
    assert body["scrape"] == {"urls": ["http://127.0.0.1:1/offer"], "selectors": {"title": "h1"}}
    assert len(body["nextFireTimes"]) == 5
    assert all(t.endswith("Z") and "T" in t for t in body["nextFireTimes"])
    assert body["createdAt"].endswith("Z") and body["pausedNote"] is None


async def test_api_create_validate_only_previews_with_200_and_creates_nothing(
    gateway: httpx.AsyncClient,
) -> None:
    body = {**campaign(cron="30 8 * * 1-5", timezone="Europe/Berlin"), "validateOnly": True}
    response = await gateway.post("/campaign/addScheduledCampaign", json=body)
    assert response.status_code == 200, response.text
    assert "location" not in response.headers and "etag" not in response.headers
    preview = response.json()
    assert preview["scheduleId"] == "" and preview["version"] == 0
    assert len(preview["nextFireTimes"]) == 5
    assert (await gateway.get("/v1/schedules")).json()["schedules"] == []
    bad = {**campaign(cron="0 25 * * *"), "validateOnly": True}
    response = await gateway.post("/campaign/addScheduledCampaign", json=bad)
    assert response.status_code == 400 and fields(response) == ["schedule.cron"]


async def test_api_create_without_campaign_id_generates_one(gateway: httpx.AsyncClient) -> None:
    body = campaign(intervalSeconds=60)
    del body["campaignId"]
    response = await gateway.post("/campaign/addScheduledCampaign", json=body)
    assert response.status_code == 201 and response.json()["campaignId"]


async def test_api_get_returns_what_create_returned(gateway: httpx.AsyncClient) -> None:
    created = await create(gateway, runAt="2099-12-01T09:00:00Z")
    response = await gateway.get(f"/v1/schedules/{created['scheduleId']}")
    assert response.status_code == 200
    got = response.json()
    assert got["scheduleId"] == created["scheduleId"] and got["version"] == 1
    assert got["schedule"]["runAt"] == "2099-12-01T09:00:00.000Z"
    assert got["nextFireTimes"] == ["2099-12-01T09:00:00.000Z"]


async def test_api_list_with_page_size_one_walks_every_schedule(
    gateway: httpx.AsyncClient,
) -> None:
    ids = [(await create(gateway))["scheduleId"] for _ in range(3)]
    seen: list[str] = []
    token = ""
    for _ in range(10):
        params: dict[str, str | int] = {"pageSize": 1}
        if token:
            params["pageToken"] = token
        page = await gateway.get("/v1/schedules", params=params)
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["schedules"]) <= 1
        seen += [s["scheduleId"] for s in body["schedules"]]
        token = body["nextPageToken"]
        if not token:
            break
    assert seen == ids


async def test_api_pause_with_note_then_resume(gateway: httpx.AsyncClient) -> None:
    created = await create(gateway)
    schedule_url = f"/v1/schedules/{created['scheduleId']}"
    paused = await gateway.post(f"{schedule_url}:pause", json={"note": "holiday"})
    assert paused.status_code == 200, paused.text
    assert paused.json()["state"] == "PAUSED" and paused.json()["pausedNote"] == "holiday"
    assert paused.json()["version"] == 2 and paused.json()["nextFireTimes"] == []
    resumed = await gateway.post(f"{schedule_url}:resume")
    assert resumed.status_code == 200
    assert resumed.json()["state"] == "ACTIVE" and resumed.json()["version"] == 3
    assert len(resumed.json()["nextFireTimes"]) == 5


async def test_api_pause_without_body(gateway: httpx.AsyncClient) -> None:
    created = await create(gateway)
    paused = await gateway.post(f"/v1/schedules/{created['scheduleId']}:pause")
    assert paused.status_code == 200 and paused.json()["state"] == "PAUSED"


async def test_api_trigger_then_run_is_requested(gateway: httpx.AsyncClient) -> None:
    created = await create(gateway)
    triggered = await gateway.post(f"/v1/schedules/{created['scheduleId']}:trigger")
    assert triggered.status_code == 202, triggered.text
    run_id = triggered.json()["runId"]
    assert run_id.startswith(created["scheduleId"] + ":")
    assert triggered.headers["location"] == f"/v1/runs/{run_id}"
    run = await gateway.get(f"/v1/runs/{run_id}")
    assert run.status_code == 200, run.text
    body = run.json()
    assert body["runId"] == run_id and body["state"] == "REQUESTED"
    assert body["trigger"] == "MANUAL" and body["attempt"] == 1
    assert body["campaignId"] == "spring-leads" and body["scheduledFor"].endswith("Z")
    assert body["startedAt"] is None and body["error"] is None
    runs = await gateway.get("/v1/runs", params={"scheduleId": created["scheduleId"]})
    assert [r["runId"] for r in runs.json()["runs"]] == [run_id]
    by_campaign = await gateway.get("/v1/runs", params={"campaignId": "spring-leads"})
    assert run_id in [r["runId"] for r in by_campaign.json()["runs"]]


async def test_api_delete_is_204_then_get_is_404(gateway: httpx.AsyncClient) -> None:
    created = await create(gateway)
    deleted = await gateway.delete(f"/v1/schedules/{created['scheduleId']}")
    assert deleted.status_code == 204 and deleted.content == b""
    response = await gateway.get(f"/v1/schedules/{created['scheduleId']}")
    assert response.status_code == 404
    assert response.json()["code"] == "NOT_FOUND" and response.json()["message"]


async def test_api_invalid_cron_is_400_naming_schedule_cron(gateway: httpx.AsyncClient) -> None:
    response = await gateway.post(
        "/campaign/addScheduledCampaign", json=campaign(cron="61 * * * *")
    )
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "INVALID_ARGUMENT" and fields(response) == ["schedule.cron"]
    assert body["fieldViolations"][0]["description"]


async def test_api_no_cron_nor_interval_is_400_naming_schedule(
    gateway: httpx.AsyncClient,
) -> None:
    response = await gateway.post("/campaign/addScheduledCampaign", json=campaign(timezone="UTC"))
    assert response.status_code == 400 and fields(response) == ["schedule"]


@pytest.mark.parametrize(
    ("schedule", "scrape", "field"),
    [
        ({"intervalSeconds": 0}, None, "schedule.intervalSeconds"),
        ({"intervalSeconds": 60, "timezone": "Mars/Olympus"}, None, "schedule.timezone"),
        ({"runAt": "2001-01-01T00:00:00Z"}, None, "schedule.runAt"),
        ({"intervalSeconds": 60}, {"urls": ["http://a.test/", "ftp://b.test/"]}, "scrape.urls[1]"),
        ({"intervalSeconds": 60}, {"urls": []}, "scrape.urls"),
    ],
)
async def test_api_scheduler_violations_use_rest_field_paths(
    gateway: httpx.AsyncClient,
    schedule: dict[str, Any],
    scrape: dict[str, Any] | None,
    field: str,
) -> None:
    body = campaign(**schedule)
    if scrape is not None:
        body["scrape"] = scrape
    response = await gateway.post("/campaign/addScheduledCampaign", json=body)
    assert response.status_code == 400, response.text
    assert field in fields(response)


async def test_api_bad_campaign_id_is_400_naming_campaign_id(gateway: httpx.AsyncClient) -> None:
    body = {**campaign(), "campaignId": "Not Valid!"}
    response = await gateway.post("/campaign/addScheduledCampaign", json=body)
    assert response.status_code == 400 and fields(response) == ["campaignId"]


async def test_api_bad_page_token_is_400_naming_page_token(gateway: httpx.AsyncClient) -> None:
    for url in ("/v1/schedules", "/v1/runs"):
        response = await gateway.get(url, params={"pageToken": "garbage!"})
        assert response.status_code == 400, response.text
        assert fields(response) == ["pageToken"]


@pytest.mark.parametrize(
    "request_line",
    [
        ("GET", "/v1/runs/nope:1767258000000"),
        ("GET", "/v1/schedules/nope"),
        ("POST", "/v1/schedules/nope:pause"),
        ("POST", "/v1/schedules/nope:resume"),
        ("POST", "/v1/schedules/nope:trigger"),
        ("DELETE", "/v1/schedules/nope"),
    ],
)
async def test_api_unknown_ids_are_404(
    gateway: httpx.AsyncClient, request_line: tuple[str, str]
) -> None:
    response = await gateway.request(*request_line)
    assert response.status_code == 404, response.text
    assert response.json()["code"] == "NOT_FOUND"


async def test_api_results_of_a_campaign_without_runs_is_empty(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/v1/campaigns/spring-leads/results", params={"pageSize": 5})
    assert (response.status_code, response.json()) == (200, {"results": [], "nextPageToken": ""})


async def test_api_readyz_is_200_with_the_scheduler_serving(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/readyz")
    assert (response.status_code, response.json()) == (200, {"status": "ready"})


async def test_api_key_required_when_configured(scheduler_target: str) -> None:
    async with running_gateway(scheduler_target=scheduler_target, api_keys=[API_KEY]) as client:
        denied = await client.get("/v1/schedules")
        allowed = await client.get("/v1/schedules", headers={"authorization": f"Bearer {API_KEY}"})
    assert denied.status_code == 401 and denied.json()["code"] == "UNAUTHENTICATED"
    assert allowed.status_code == 200 and allowed.json() == {"schedules": [], "nextPageToken": ""}


async def test_api_create_with_limits_returns_them(gateway: httpx.AsyncClient) -> None:
    body = {
        **campaign(),
        "limits": {"overlap": "BUFFER_ONE", "maxRunsPerWindow": 2, "windowSeconds": 60},
    }
    response = await gateway.post("/campaign/addScheduledCampaign", json=body)
    assert response.status_code == 201, response.text
    limits = response.json()["limits"]
    assert limits["overlap"] == "BUFFER_ONE"
    assert (limits["maxRunsPerWindow"], limits["windowSeconds"], limits["maxTotalRuns"]) == (
        2,
        60,
        0,
    )


async def test_api_limit_violations_use_rest_field_paths(gateway: httpx.AsyncClient) -> None:
    body = {**campaign(), "limits": {"maxRunsPerWindow": 2, "perHostConcurrency": -1}}
    response = await gateway.post("/campaign/addScheduledCampaign", json=body)
    assert response.status_code == 400, response.text
    assert set(fields(response)) == {"limits.windowSeconds", "limits.perHostConcurrency"}


DEFAULT_RETRY = {
    "maxAttempts": 3,
    "initialDelaySeconds": 5.0,
    "maxDelaySeconds": 300.0,
    "multiplier": 2.0,
    "jitter": 0.2,
}


async def test_api_create_with_retry_policy_returns_it_and_get_shows_it(
    gateway: httpx.AsyncClient,
) -> None:
    policy = {
        "maxAttempts": 5,
        "initialDelaySeconds": 2,
        "maxDelaySeconds": 60.5,
        "multiplier": 3,
        "jitter": 0,
    }
    body = {**campaign(), "retryPolicy": policy}
    response = await gateway.post("/campaign/addScheduledCampaign", json=body)
    assert response.status_code == 201, response.text
    expected = {**policy, "initialDelaySeconds": 2.0, "multiplier": 3.0, "jitter": 0.0}
    assert response.json()["retryPolicy"] == expected
    got = await gateway.get(f"/v1/schedules/{response.json()['scheduleId']}")
    assert got.status_code == 200 and got.json()["retryPolicy"] == expected


async def test_api_retry_policy_absent_or_partial_shows_the_effective_values(
    gateway: httpx.AsyncClient,
) -> None:
    created = await create(gateway)
    assert created["retryPolicy"] == DEFAULT_RETRY
    body = {**campaign(), "retryPolicy": {"maxAttempts": 1}}
    response = await gateway.post("/campaign/addScheduledCampaign", json=body)
    assert response.status_code == 201, response.text
    assert response.json()["retryPolicy"] == {**DEFAULT_RETRY, "maxAttempts": 1}


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ({"maxAttempts": 101}, {"retryPolicy.maxAttempts"}),
        ({"multiplier": 0.5, "jitter": 1.5}, {"retryPolicy.multiplier", "retryPolicy.jitter"}),
        ({"initialDelaySeconds": 60, "maxDelaySeconds": 30}, {"retryPolicy.maxDelaySeconds"}),
    ],
)
async def test_api_retry_policy_violations_use_rest_field_paths(
    gateway: httpx.AsyncClient, policy: dict[str, Any], expected: set[str]
) -> None:
    body = {**campaign(), "retryPolicy": policy}
    response = await gateway.post("/campaign/addScheduledCampaign", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "INVALID_ARGUMENT" and set(fields(response)) == expected


@pytest.mark.parametrize(
    ("policy", "field"),
    [
        ({"maxAttempts": "3"}, "retryPolicy.maxAttempts"),
        ({"maxAttempts": 2.5}, "retryPolicy.maxAttempts"),
        ({"jitter": "0.1"}, "retryPolicy.jitter"),
        ({"multiplier": True}, "retryPolicy.multiplier"),
        ({"maxRetries": 3}, "retryPolicy.maxRetries"),
    ],
)
async def test_api_retry_policy_wrong_json_types_are_400_at_the_edge(
    gateway: httpx.AsyncClient, policy: dict[str, Any], field: str
) -> None:
    body = {**campaign(), "retryPolicy": policy}
    response = await gateway.post("/campaign/addScheduledCampaign", json=body)
    assert response.status_code == 400, response.text
    assert fields(response) == [field]


async def test_api_run_without_retry_has_null_next_attempt_at(gateway: httpx.AsyncClient) -> None:
    created = await create(gateway)
    triggered = await gateway.post(f"/v1/schedules/{created['scheduleId']}:trigger")
    run = await gateway.get(f"/v1/runs/{triggered.json()['runId']}")
    assert run.status_code == 200 and run.json()["nextAttemptAt"] is None


async def test_api_retry_scheduled_run_shows_next_attempt_at(
    gateway: httpx.AsyncClient, state_redis: Redis
) -> None:
    created = await create(gateway)
    triggered = await gateway.post(f"/v1/schedules/{created['scheduleId']}:trigger")
    run_id = triggered.json()["runId"]
    due_ms = 1_767_603_600_000  # 2026-01-05T09:00:00Z
    waiting = events_pb2.RunRetryScheduled(
        run_id=run_id, attempt=1, reason="HTTP 503", next_attempt_at=ms_to_timestamp(due_ms)
    )
    changes: dict[str, str | int] = {"next_attempt_at_ms": due_ms, "error": "HTTP 503"}
    await RunLog(state_redis, PARTITIONS).append_event(
        waiting,
        state=RunState.RETRY_SCHEDULED,
        changes=changes,
        writer=Writer(created["campaignId"]),
    )
    run = await gateway.get(f"/v1/runs/{run_id}")
    assert run.status_code == 200, run.text
    body = run.json()
    assert (body["state"], body["attempt"]) == ("RETRY_SCHEDULED", 1)
    assert body["nextAttemptAt"] == "2026-01-05T09:00:00.000Z" and body["error"] == "HTTP 503"
    listed = await gateway.get("/v1/runs", params={"scheduleId": created["scheduleId"]})
    assert listed.json()["runs"][0]["nextAttemptAt"] == "2026-01-05T09:00:00.000Z"


async def test_api_cron_dialect_jitter_and_catch_up_window_round_trip(
    gateway: httpx.AsyncClient,
) -> None:
    body = campaign(cron="30 0 9 * * 1-5", cronDialect="seconds6", jitterSeconds=90)
    body["limits"] = {"catchUpWindowSeconds": 600}
    response = await gateway.post("/campaign/addScheduledCampaign", json=body)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["schedule"]["cronDialect"] == "seconds6"
    assert created["schedule"]["jitterSeconds"] == 90
    assert created["limits"]["catchUpWindowSeconds"] == 600
    posix = campaign(cron="30 0 9 * * 1-5")  # six fields without the dialect
    response = await gateway.post("/campaign/addScheduledCampaign", json=posix)
    assert response.status_code == 400 and fields(response) == ["schedule.cron"]
    assert "seconds6" in response.json()["fieldViolations"][0]["description"]
    quartz = campaign(cron="0 9 * * *", cronDialect="quartz")
    response = await gateway.post("/campaign/addScheduledCampaign", json=quartz)
    assert response.status_code == 400 and fields(response) == ["schedule.cronDialect"]
    bad = campaign(cron="0 9 * * *", jitterSeconds=-1)
    bad["limits"] = {"catchUpWindowSeconds": 10**9}
    response = await gateway.post("/campaign/addScheduledCampaign", json=bad)
    assert response.status_code == 400
    assert set(fields(response)) == {"schedule.jitterSeconds", "limits.catchUpWindowSeconds"}
