"""Run outcomes seen by the scheduler: pause after K failures, webhook alerts."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from redis.asyncio import Redis

from campaign_common.deadletters import DeadLetters
from campaign_common.runlog import RunLog, RunState
from campaigns.v1 import events_pb2, schedule_pb2
from campaigns.v1 import scheduler_service_pb2 as api
from campaigns.v1 import scheduler_service_pb2_grpc as api_grpc
from scheduler_svc.config import SchedulerSettings
from scheduler_svc.server import SchedulerServer
from tests.support import WebhookReceiver, eventually


@pytest.fixture
async def alerted(
    state_url: str,
) -> AsyncIterator[tuple[api_grpc.SchedulerServiceStub, WebhookReceiver]]:
    with WebhookReceiver(fail_first=1) as receiver:
        settings = SchedulerSettings(
            state_redis_url=state_url,
            port=0,
            log_block_ms=200,
            alert_webhook_url=receiver.hook_url,
            alert_after_failures=2,
        )
        server = SchedulerServer(settings)
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                yield api_grpc.SchedulerServiceStub(channel), receiver
        finally:
            await server.stop()


async def _fail(runs: RunLog, run_id: str, error: str) -> None:
    event = events_pb2.RunFailed(run_id=run_id, attempt=1, error=error)
    await runs.append_event(event, state=RunState.FAILED, changes={"error": error})


async def test_outcomes_pause_after_k_failures_and_alert_the_campaign(
    alerted: tuple[api_grpc.SchedulerServiceStub, WebhookReceiver], state_redis: Redis
) -> None:
    stub, receiver = alerted
    request = api.AddScheduledCampaignRequest(
        name="flaky",
        campaign_id="flaky",
        schedule=schedule_pb2.ScheduleSpec(interval_seconds=3600),
        scrape=schedule_pb2.ScrapeSpec(urls=["http://127.0.0.1:1/"]),
        limits=schedule_pb2.RunLimits(pause_after_failures=3),
    )
    created = await stub.AddScheduledCampaign(request)
    trigger = api.TriggerCampaignRequest(schedule_id=created.schedule_id)
    run_ids = [(await stub.TriggerCampaign(trigger)).run_id for _ in range(4)]
    runs = RunLog(state_redis)
    await runs.append_event(
        events_pb2.RunSucceeded(run_id=run_ids[0], attempt=1), state=RunState.SUCCEEDED
    )
    for run_id in run_ids[1:]:
        await _fail(runs, run_id, "GET http://127.0.0.1:1/: connection refused")

    async def paused() -> str:
        got = await stub.GetSchedule(api.GetScheduleRequest(schedule_id=created.schedule_id))
        return got.paused_note if got.state == schedule_pb2.SCHEDULE_STATE_PAUSED else ""

    note = await eventually(paused, timeout_s=10, what="the schedule paused itself")
    assert "after 3 consecutive failed runs" in note and "connection refused" in note

    async def alert() -> list[dict[str, object]]:
        return [a for a in receiver.received if a["event"] == "campaign.failing"]

    (failing,) = await eventually(alert, timeout_s=10, what="a campaign.failing alert")
    assert failing["campaignId"] == "flaky" and failing["consecutiveFailures"] == 2


async def test_outcomes_dead_letter_alert_reaches_the_webhook(
    alerted: tuple[api_grpc.SchedulerServiceStub, WebhookReceiver], state_redis: Redis
) -> None:
    _, receiver = alerted
    parked = events_pb2.RunRequested(run_id="s9:1", schedule_id="s9", campaign_id="c9", attempt=5)
    await DeadLetters(state_redis).add(parked, "HTTP 500", deliveries=5)

    async def alert() -> list[dict[str, object]]:
        return [a for a in receiver.received if a["event"] == "run.dead_lettered"]

    (dead,) = await eventually(alert, timeout_s=10, what="a run.dead_lettered alert")
    assert dead["runId"] == "s9:1" and dead["attempt"] == 5 and dead["error"] == "HTTP 500"
