"""Run outcomes seen by the scheduler: pause after K failures, webhook alerts, each failure
counted once."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from redis.asyncio import Redis

from campaign_common.envelope import wrap
from campaign_common.redis_conn import make_client
from campaign_common.runs.deadletters import DeadLetters
from campaign_common.runs.keys import OUTCOME_GROUP
from campaign_common.runs.log import RunLog
from campaign_common.runs.record import RunState
from campaign_common.runs.writer import Writer
from campaigns.v1 import events_pb2, schedule_pb2
from campaigns.v1 import scheduler_service_pb2 as api
from campaigns.v1 import scheduler_service_pb2_grpc as api_grpc
from scheduler_svc.config import SchedulerSettings
from scheduler_svc.outcome_store import OutcomeStore
from scheduler_svc.server import SchedulerServer
from tests.faults import TcpProxy
from tests.support import PARTITIONS, WebhookReceiver, eventually, part


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


async def _fail(runs: RunLog, run_id: str, error: str, campaign_id: str) -> None:
    event = events_pb2.RunFailed(run_id=run_id, attempt=1, error=error)
    await runs.append_event(
        event, state=RunState.FAILED, changes={"error": error}, writer=Writer(campaign_id)
    )


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
    runs = RunLog(state_redis, PARTITIONS)
    await runs.append_event(
        events_pb2.RunSucceeded(run_id=run_ids[0], attempt=1),
        state=RunState.SUCCEEDED,
        writer=Writer("flaky"),
    )
    for run_id in run_ids[1:]:
        await _fail(runs, run_id, "GET http://127.0.0.1:1/: connection refused", "flaky")

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
    await DeadLetters(state_redis, PARTITIONS).add(
        parked, "HTTP 500", deliveries=5, writer=Writer("c9")
    )

    async def alert() -> list[dict[str, object]]:
        return [a for a in receiver.received if a["event"] == "run.dead_lettered"]

    (dead,) = await eventually(alert, timeout_s=10, what="a run.dead_lettered alert")
    assert dead["runId"] == "s9:1" and dead["attempt"] == 5 and dead["error"] == "HTTP 500"


async def _outcomes_handled(redis: Redis) -> bool:
    """True once the outcome group has read and acked every run event of every partition."""
    for partition in PARTITIONS:
        groups = await redis.xinfo_groups(partition.events_stream)
        names = {g["name"]: g for g in groups}
        group = names.get(OUTCOME_GROUP) or names.get(OUTCOME_GROUP.encode())
        if group is None or group["lag"] != 0 or group["pending"] != 0:
            return False
    return True


async def test_a_failure_counts_once_when_its_streak_update_is_resent(
    state_url: str, state_redis: Redis
) -> None:
    proxy = TcpProxy.to_url(state_url)  # the scheduler's every Redis command goes through it
    server = SchedulerServer(SchedulerSettings(state_redis_url=proxy.url, port=0, log_block_ms=200))
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = api_grpc.SchedulerServiceStub(channel)
            created = await stub.AddScheduledCampaign(
                api.AddScheduledCampaignRequest(
                    name="resent",
                    campaign_id="streak-camp",
                    schedule=schedule_pb2.ScheduleSpec(interval_seconds=3600),
                    scrape=schedule_pb2.ScrapeSpec(urls=["http://127.0.0.1:1/"]),
                    limits=schedule_pb2.RunLimits(pause_after_failures=3),
                )
            )
            get = api.GetScheduleRequest(schedule_id=created.schedule_id)
            trigger = api.TriggerCampaignRequest(schedule_id=created.schedule_id)
            run_ids = [(await stub.TriggerCampaign(trigger)).run_id for _ in range(3)]
            runs = RunLog(state_redis, PARTITIONS)
            await _fail(runs, run_ids[0], "first", "streak-camp")
            await eventually(lambda: _outcomes_handled(state_redis), what="first failure")
            # The streak update's reply is lost with its connection: redis-py sends it again.
            # Only the streak update names the campaign's streak field.
            proxy.drop_replies(b"c:streak-camp")
            await _fail(runs, run_ids[1], "second", "streak-camp")
            await eventually(lambda: _outcomes_handled(state_redis), what="second failure")
            assert proxy.dropped == 1
            after_two = await stub.GetSchedule(get)
            assert after_two.state == schedule_pb2.SCHEDULE_STATE_ACTIVE, after_two.paused_note
            await _fail(runs, run_ids[2], "third", "streak-camp")

            async def paused() -> str:
                got = await stub.GetSchedule(get)
                return got.paused_note if got.state == schedule_pb2.SCHEDULE_STATE_PAUSED else ""

            note = await eventually(paused, timeout_s=10, what="paused after the third failure")
            assert "after 3 consecutive failed runs" in note and "third" in note
    finally:
        await server.stop()
        proxy.close()


async def test_a_run_event_handled_by_two_replicas_counts_once(state_redis: Redis) -> None:
    dead = OutcomeStore(state_redis, "replica-that-died", part("c1"))
    live = OutcomeStore(state_redis, "replica-that-took-over", part("c1"))
    await dead.ensure_group()

    async def append_failure(run_id: str) -> None:
        event = events_pb2.RunFailed(run_id=run_id, attempt=1, error="HTTP 500")
        await state_redis.xadd(part("c1").events_stream, wrap(event).to_fields())

    await append_failure("s1:1")
    [(entry_id, _)] = await dead.read(10, 100)
    assert await dead.failed(entry_id, "s1", "c1") == (1, 1)  # died before its ack
    [(claimed, _)] = await live.claim_stale(0, 10)
    assert claimed == entry_id
    assert await live.failed(claimed, "s1", "c1") == (1, 1)
    await live.ack(claimed)
    await append_failure("s1:2")
    [(second, _)] = await live.read(10, 100)
    assert await live.failed(second, "s1", "c1") == (2, 2)


async def test_a_resent_streak_update_counts_once(state_url: str) -> None:
    proxy = TcpProxy.to_url(state_url)
    client = make_client(proxy.url, timeout_s=5.0)
    try:
        store = OutcomeStore(client, "replica", part("c1"))
        assert await store.failed("1-1", "warm", "warm") == (1, 1)  # the script is loaded now
        proxy.drop_replies(b"EVALSHA")
        assert await store.failed("1-2", "s1", "c1") == (1, 1)
        assert proxy.dropped == 1
    finally:
        await client.aclose()
        proxy.close()


async def test_outcomes_read_together_keep_stream_order_in_the_streaks(
    alerted: tuple[api_grpc.SchedulerServiceStub, WebhookReceiver], state_redis: Redis
) -> None:
    stub, _ = alerted
    created = await stub.AddScheduledCampaign(
        api.AddScheduledCampaignRequest(
            name="ordered",
            campaign_id="ordered-camp",
            schedule=schedule_pb2.ScheduleSpec(interval_seconds=3600),
            scrape=schedule_pb2.ScrapeSpec(urls=["http://127.0.0.1:1/"]),
            limits=schedule_pb2.RunLimits(pause_after_failures=3),
        )
    )
    trigger = api.TriggerCampaignRequest(schedule_id=created.schedule_id)
    run_ids = [(await stub.TriggerCampaign(trigger)).run_id for _ in range(5)]
    failed = events_pb2.RunFailed
    events = [
        failed(run_id=run_ids[0], attempt=1, error="a"),
        failed(run_id=run_ids[1], attempt=1, error="b"),
        events_pb2.RunStarted(run_id=run_ids[2], attempt=1),
        events_pb2.RunSucceeded(run_id=run_ids[2], attempt=1),
        failed(run_id=run_ids[3], attempt=1, error="c"),
        failed(run_id=run_ids[4], attempt=1, error="d"),
    ]
    async with state_redis.pipeline(transaction=True) as pipe:  # one read sees them all
        for event in events:
            stream = part("ordered-camp").events_stream
            pipe.xadd(stream, wrap(event).to_fields())  # type: ignore[arg-type]
        await pipe.execute()
    await eventually(lambda: _outcomes_handled(state_redis), what="every outcome handled")
    streak = await state_redis.hget("{sched}:streaks", f"s:{created.schedule_id}")
    assert streak == b"2"  # the success between ended the first two failures' streak
    got = await stub.GetSchedule(api.GetScheduleRequest(schedule_id=created.schedule_id))
    assert got.state == schedule_pb2.SCHEDULE_STATE_ACTIVE
