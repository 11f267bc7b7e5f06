"""URLs with credentials: refused on create and update, and never echoed for a schedule stored
before the rule (written straight into the log the old way): reads, runs, watch, dead letters,
pause notes, logs. The stored URL itself still fetches as before."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
from redis.asyncio import Redis

from campaign_common.envelope import Envelope, decode_body, wrap
from campaign_common.observability.logs import HumanFormatter, JsonFormatter
from campaign_common.redaction import redact
from campaign_common.runs.deadletters import DeadLetters
from campaign_common.runs.log import RunLog
from campaign_common.runs.record import RunState
from campaign_common.runs.writer import Writer
from campaign_common.timeutil import ms_to_timestamp, now_ms
from campaigns.v1 import events_pb2, run_pb2, schedule_pb2
from scheduler_svc.store import SCHEDULE_LOG
from tests.support import PARTITIONS, eventually, runs_stream, xrange_all

SECRET_URL = "http://scraper:s3cr3t-pw@127.0.0.1:1/offers"
SHOWN_URL = "http://***@127.0.0.1:1/offers"
ADD = "/campaign/addScheduledCampaign"


def _body(url: str) -> dict[str, Any]:
    return {
        "name": "n",
        "schedule": {"intervalSeconds": 3600},
        "scrape": {"urls": ["http://127.0.0.1:1/", url], "selectors": {"t": "h1"}},
    }


async def test_credentials_in_urls_are_refused_on_create_and_update(
    gateway: httpx.AsyncClient,
) -> None:
    for url in (SECRET_URL, "https://user@example.test/", "http://:pw@example.test/"):
        response = await gateway.post(ADD, json=_body(url))
        assert response.status_code == 400, response.text
        [violation] = response.json()["fieldViolations"]
        assert violation["field"] == "scrape.urls[1]" and "credentials" in violation["description"]
        assert "s3cr3t" not in response.text
    created = (await gateway.post(ADD, json=_body("http://127.0.0.1:1/b"))).json()
    response = await gateway.put(f"/v1/schedules/{created['scheduleId']}", json=_body(SECRET_URL))
    assert response.status_code == 400 and "s3cr3t" not in response.text
    assert response.json()["fieldViolations"][0]["field"] == "scrape.urls[1]"


async def _old_schedule(gateway: httpx.AsyncClient, state_redis: Redis) -> str:
    """A schedule whose URL has credentials, as an older scheduler stored it in the log."""
    created = (await gateway.post(ADD, json=_body("http://127.0.0.1:1/b"))).json()
    schedule_id: str = created["scheduleId"]
    old = schedule_pb2.Schedule(
        schedule_id=schedule_id,
        campaign_id=created["campaignId"],
        name="n",
        spec=schedule_pb2.ScheduleSpec(interval_seconds=3600),
        scrape=schedule_pb2.ScrapeSpec(urls=[SECRET_URL], selectors={"t": "h1"}),
        version=2,
        state=schedule_pb2.SCHEDULE_STATE_PAUSED,
        paused_note=f"paused: last error: GET {SECRET_URL} refused",
        created_at=ms_to_timestamp(now_ms()),
        updated_at=ms_to_timestamp(now_ms()),
    )
    event = events_pb2.SchedulePaused(schedule=old, note=old.paused_note)
    await state_redis.xadd(SCHEDULE_LOG, wrap(event).to_fields())  # type: ignore[arg-type]

    async def applied() -> bool:
        got = await gateway.get(f"/v1/schedules/{schedule_id}")
        return bool(got.json()["version"] == 2)

    await eventually(applied, timeout_s=10, what="the old-style schedule applied")
    return schedule_id


async def test_schedule_stored_with_credentials_never_shows_them(
    gateway: httpx.AsyncClient, state_redis: Redis
) -> None:
    schedule_id = await _old_schedule(gateway, state_redis)
    got = await gateway.get(f"/v1/schedules/{schedule_id}")
    assert got.json()["scrape"]["urls"] == [SHOWN_URL]
    assert SHOWN_URL in got.json()["pausedNote"]
    listed = await gateway.get("/v1/schedules")
    for response in (got, listed):
        assert response.status_code == 200 and "s3cr3t" not in response.text
    # The stored URL is kept: a run of it fetches what it fetched before.
    run_id = (await gateway.post(f"/v1/schedules/{schedule_id}:trigger")).json()["runId"]
    entries: Any = await xrange_all(state_redis, runs_stream)
    [request] = [
        body
        for _, fields in entries
        if isinstance(body := decode_body(Envelope.from_fields(fields)), events_pb2.RunRequested)
        and body.run_id == run_id
    ]
    assert list(request.scrape.urls) == [SECRET_URL]


async def test_run_errors_and_dead_letters_never_show_credentials(
    gateway: httpx.AsyncClient, state_redis: Redis
) -> None:
    schedule_id = await _old_schedule(gateway, state_redis)
    campaign_id = (await gateway.get(f"/v1/schedules/{schedule_id}")).json()["campaignId"]
    runs = RunLog(state_redis, PARTITIONS)
    run_id = f"{schedule_id}:manual-1"
    request = events_pb2.RunRequested(
        run_id=run_id,
        schedule_id=schedule_id,
        campaign_id=campaign_id,
        attempt=1,
        scheduled_for=ms_to_timestamp(now_ms()),
        trigger=run_pb2.RUN_TRIGGER_MANUAL,
    )
    await runs.request_run(request, dedupe=False)
    error = f"ConnectError: GET {SECRET_URL}: connection refused"
    failed = events_pb2.RunFailed(run_id=run_id, attempt=1, error=error)
    await runs.append_event(
        failed, state=RunState.FAILED, changes={"error": error}, writer=Writer(campaign_id)
    )
    parked = events_pb2.RunRequested()
    parked.CopyFrom(request)
    parked.run_id = f"{schedule_id}:manual-2"
    await DeadLetters(state_redis, PARTITIONS).add(
        parked, error, deliveries=3, writer=Writer(parked.campaign_id)
    )
    for path in (f"/v1/runs/{run_id}", f"/v1/runs?scheduleId={schedule_id}", "/v1/deadLetters"):
        response = await gateway.get(path)
        assert response.status_code == 200, response.text
        assert "s3cr3t" not in response.text and SHOWN_URL in response.text, path


def test_log_lines_never_show_credentials() -> None:
    record = logging.LogRecord(
        "scraper", logging.WARNING, __file__, 1, "fetch of %s failed", (SECRET_URL,), None
    )
    record.url = SECRET_URL  # an ``extra`` field
    line = json.loads(JsonFormatter("scraper").format(record))
    assert line["msg"] == f"fetch of {SHOWN_URL} failed" and line["url"] == SHOWN_URL
    assert "s3cr3t" not in HumanFormatter("scraper").format(record)


def test_redact_keeps_urls_without_credentials_and_other_at_signs() -> None:
    for text in (
        "http://example.test/a@b",
        "mailto:someone@example.test",
        "https://example.test/?q=a@b",
        "user@example.test wrote",
    ):
        assert redact(text) == text
    assert redact("A https://u:p@h/ and ftp://x@y:21/z") == "A https://***@h/ and ftp://***@y:21/z"
