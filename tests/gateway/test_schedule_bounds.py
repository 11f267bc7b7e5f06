"""Start and end bounds of a schedule through real HTTP and the real scheduler: no fire outside
them (nextFireTimes shows it), invalid bounds name the field, and a schedule completes once no
fire is left before its end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.gateway.test_http_validation import VALID
from tests.support import eventually

ADD = "/campaign/addScheduledCampaign"


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def _body(**schedule: Any) -> dict[str, Any]:
    return {**VALID, "schedule": schedule}


async def test_fires_only_between_start_and_end(gateway: httpx.AsyncClient) -> None:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=10)
    end = start + timedelta(days=2, hours=12)
    body = _body(cron="0 12 * * *", startTime=_iso(start), endTime=_iso(end))
    response = await gateway.post(ADD, json=body)
    assert response.status_code == 201, response.text
    created = response.json()
    fires = [datetime.fromisoformat(f) for f in created["nextFireTimes"]]
    assert fires and all(start <= f <= end for f in fires)
    assert len(fires) in (2, 3)
    assert created["schedule"]["startTime"].startswith(_iso(start)[:19])
    assert created["schedule"]["endTime"].startswith(_iso(end)[:19])


@pytest.mark.parametrize(
    ("schedule", "field"),
    [
        (
            {
                "intervalSeconds": 60,
                "startTime": "2030-01-02T00:00:00Z",
                "endTime": "2030-01-01T00:00:00Z",
            },
            "schedule.endTime",
        ),
        ({"intervalSeconds": 60, "endTime": "2020-01-01T00:00:00Z"}, "schedule.endTime"),
        (
            {
                "cron": "@yearly",
                "startTime": "2030-02-01T00:00:00Z",
                "endTime": "2030-03-01T00:00:00Z",
            },
            "schedule",
        ),
        ({"runAt": "2030-01-01T00:00:00Z", "startTime": "2030-02-01T00:00:00Z"}, "schedule.runAt"),
        ({"intervalSeconds": 60, "startTime": "2030-01-01T00:00:00"}, "schedule.startTime"),
    ],
)
async def test_invalid_bounds_name_the_field(
    gateway: httpx.AsyncClient, schedule: dict[str, Any], field: str
) -> None:
    response = await gateway.post(ADD, json=_body(**schedule))
    assert response.status_code == 400, response.text
    assert [v["field"] for v in response.json()["fieldViolations"]] == [field]


async def test_schedule_completes_when_no_fire_is_left_before_its_end(
    gateway: httpx.AsyncClient,
) -> None:
    end = datetime.now(UTC) + timedelta(seconds=2.5)
    response = await gateway.post(ADD, json=_body(intervalSeconds=1, endTime=_iso(end)))
    assert response.status_code == 201, response.text
    sid = response.json()["scheduleId"]

    async def completed() -> dict[str, Any] | None:
        got = (await gateway.get(f"/v1/schedules/{sid}")).json()
        return got if got["state"] == "COMPLETED" else None

    done = await eventually(completed, timeout_s=15, what="COMPLETED after the end time")
    assert done["nextFireTimes"] == []
    runs = (await gateway.get("/v1/runs", params={"scheduleId": sid})).json()["runs"]
    assert 1 <= len(runs) <= 2
    assert all(datetime.fromisoformat(r["scheduledFor"]) <= end for r in runs)
