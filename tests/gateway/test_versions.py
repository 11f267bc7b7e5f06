"""Schedule versions over real HTTP and the real scheduler: ETag on reads and changes, If-Match
on PUT, :pause, :resume and DELETE (a mismatch is 409 ABORTED), and the pause note kept."""

from __future__ import annotations

from typing import Any

import grpc
import httpx
import pytest

from campaigns.v1 import scheduler_service_pb2 as api
from campaigns.v1 import scheduler_service_pb2_grpc as api_grpc
from tests.gateway.test_http_validation import VALID

UPDATE: dict[str, Any] = {
    "name": "Renamed",
    "schedule": {"cron": "@daily", "timezone": "America/New_York"},
    "scrape": {"urls": ["http://other.test/"], "selectors": {"h": "h2"}},
    "limits": {"maxPages": 3},
}


async def _create(client: httpx.AsyncClient) -> tuple[str, str]:
    response = await client.post("/campaign/addScheduledCampaign", json=VALID)
    assert response.status_code == 201 and response.headers["etag"] == '"1"'
    return response.json()["scheduleId"], response.headers["etag"]


async def test_put_replaces_the_schedule_and_bumps_the_etag(gateway: httpx.AsyncClient) -> None:
    sid, tag = await _create(gateway)
    response = await gateway.put(f"/v1/schedules/{sid}", json=UPDATE, headers={"If-Match": tag})
    assert response.status_code == 200, response.text
    body = response.json()
    assert response.headers["etag"] == '"2"' and body["version"] == 2
    assert body["name"] == "Renamed" and body["schedule"]["cron"] == "@daily"
    assert body["campaignId"] == VALID["campaignId"] and body["limits"]["maxPages"] == 3
    assert body["nextFireTimes"][0].endswith("T05:00:00.000Z")  # midnight EST
    got = await gateway.get(f"/v1/schedules/{sid}")
    assert got.headers["etag"] == '"2"' and got.json()["name"] == "Renamed"


async def test_put_without_if_match_applies_to_the_current_version(
    gateway: httpx.AsyncClient,
) -> None:
    sid, _ = await _create(gateway)
    response = await gateway.put(f"/v1/schedules/{sid}", json=UPDATE)
    assert response.status_code == 200 and response.json()["version"] == 2


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [("PUT", "", UPDATE), ("POST", ":pause", {"note": "x"}), ("DELETE", "", None)],
)
async def test_stale_if_match_is_409_aborted_and_changes_nothing(
    gateway: httpx.AsyncClient, method: str, suffix: str, body: Any
) -> None:
    sid, tag = await _create(gateway)
    await gateway.post(f"/v1/schedules/{sid}:pause", json={"note": "first"})  # now version 2
    response = await gateway.request(
        method, f"/v1/schedules/{sid}{suffix}", json=body, headers={"If-Match": tag}
    )
    assert response.status_code == 409, response.text
    assert response.json()["code"] == "ABORTED" and "version 2" in response.json()["message"]
    after = (await gateway.get(f"/v1/schedules/{sid}")).json()
    assert after["version"] == 2 and after["pausedNote"] == "first"


async def test_stale_if_match_on_resume_is_409(gateway: httpx.AsyncClient) -> None:
    sid, tag = await _create(gateway)
    await gateway.post(f"/v1/schedules/{sid}:pause")
    response = await gateway.post(f"/v1/schedules/{sid}:resume", headers={"If-Match": tag})
    assert response.status_code == 409
    fresh = (await gateway.get(f"/v1/schedules/{sid}")).headers["etag"]
    response = await gateway.post(f"/v1/schedules/{sid}:resume", headers={"If-Match": fresh})
    assert response.status_code == 200 and response.json()["state"] == "ACTIVE"


@pytest.mark.parametrize("header", ['W/"1"', "1", '"abc"', '"1", "2"', '"0"'])
async def test_malformed_if_match_is_400_naming_it(gateway: httpx.AsyncClient, header: str) -> None:
    sid, _ = await _create(gateway)
    response = await gateway.delete(f"/v1/schedules/{sid}", headers={"If-Match": header})
    assert response.status_code == 400
    assert [v["field"] for v in response.json()["fieldViolations"]] == ["If-Match"]


async def test_if_match_star_and_current_etag_delete(gateway: httpx.AsyncClient) -> None:
    sid, tag = await _create(gateway)
    response = await gateway.delete(f"/v1/schedules/{sid}", headers={"If-Match": tag})
    assert response.status_code == 204
    sid, _ = await _create(gateway)
    response = await gateway.delete(f"/v1/schedules/{sid}", headers={"If-Match": "*"})
    assert response.status_code == 204


async def test_re_pausing_without_a_note_keeps_the_note(gateway: httpx.AsyncClient) -> None:
    sid, _ = await _create(gateway)
    first = await gateway.post(f"/v1/schedules/{sid}:pause", json={"note": "holiday"})
    again = await gateway.post(f"/v1/schedules/{sid}:pause")
    empty = await gateway.post(f"/v1/schedules/{sid}:pause", json={"note": ""})
    assert first.json()["pausedNote"] == again.json()["pausedNote"] == "holiday"
    assert empty.json()["pausedNote"] == "holiday"
    assert again.json()["version"] == empty.json()["version"] == first.json()["version"]
    changed = await gateway.post(f"/v1/schedules/{sid}:pause", json={"note": "audit"})
    assert changed.json()["pausedNote"] == "audit"


async def test_put_invalid_body_is_400_naming_fields(gateway: httpx.AsyncClient) -> None:
    sid, _ = await _create(gateway)
    bad = {**UPDATE, "schedule": {"cron": "0 0 31 2 *"}, "campaignId": "other"}
    response = await gateway.put(f"/v1/schedules/{sid}", json=bad)
    assert response.status_code == 400
    assert "campaignId" in [v["field"] for v in response.json()["fieldViolations"]]
    del bad["campaignId"]
    response = await gateway.put(f"/v1/schedules/{sid}", json=bad)
    assert response.status_code == 400
    assert [v["field"] for v in response.json()["fieldViolations"]] == ["schedule.cron"]


async def test_put_unknown_schedule_is_404(gateway: httpx.AsyncClient) -> None:
    response = await gateway.put("/v1/schedules/nope", json=UPDATE)
    assert response.status_code == 404


async def test_grpc_update_with_a_stale_version_is_aborted(scheduler_target: str) -> None:
    async with grpc.aio.insecure_channel(scheduler_target) as channel:
        stub = api_grpc.SchedulerServiceStub(channel)  # type: ignore[no-untyped-call]
        created = await stub.AddScheduledCampaign(
            api.AddScheduledCampaignRequest(
                name="n",
                schedule={"interval_seconds": 60},
                scrape={"urls": ["http://x.test/"]},
            )
        )
        request = api.UpdateScheduleRequest(
            schedule_id=created.schedule_id,
            expected_version=1,
            name="m",
            schedule={"interval_seconds": 120},
            scrape={"urls": ["http://x.test/"]},
        )
        updated = await stub.UpdateSchedule(request)
        assert updated.version == 2 and updated.spec.interval_seconds == 120
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.UpdateSchedule(request)  # still says version 1
        assert info.value.code() == grpc.StatusCode.ABORTED


async def test_list_runs_with_two_filters_filters_before_paging(
    gateway: httpx.AsyncClient,
) -> None:
    sid, _ = await _create(gateway)
    for _ in range(3):
        assert (await gateway.post(f"/v1/schedules/{sid}:trigger")).status_code == 202
    other = await gateway.get(
        "/v1/runs", params={"scheduleId": sid, "campaignId": "else", "pageSize": 1}
    )
    assert other.json() == {"runs": [], "nextPageToken": ""}
    params = {"scheduleId": sid, "campaignId": VALID["campaignId"], "pageSize": 2}
    first = (await gateway.get("/v1/runs", params=params)).json()
    assert len(first["runs"]) == 2 and first["nextPageToken"]
    rest = (
        await gateway.get("/v1/runs", params={**params, "pageToken": first["nextPageToken"]})
    ).json()
    assert len(rest["runs"]) == 1 and rest["nextPageToken"] == ""
