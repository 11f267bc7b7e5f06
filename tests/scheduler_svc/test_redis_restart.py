"""The scheduler rides out a restart of the state Redis (with its append-only file)."""

from __future__ import annotations

import grpc
import pytest

from campaign_common.localstack.embedded import EmbeddedRedis
from campaign_common.redis_conn import make_client
from campaigns.v1 import schedule_pb2
from campaigns.v1 import scheduler_service_pb2 as api
from campaigns.v1 import scheduler_service_pb2_grpc as api_grpc
from tests.support import eventually, runs_stream, start_scheduler_process, xlen_all

pytestmark = pytest.mark.slow


async def test_scheduler_keeps_firing_after_the_state_redis_restarts(
    durable_state: EmbeddedRedis,
) -> None:
    process, target = await start_scheduler_process(durable_state.url)
    redis = make_client(durable_state.url, timeout_s=2.0)
    try:
        async with grpc.aio.insecure_channel(target) as channel:
            stub = api_grpc.SchedulerServiceStub(channel)
            created = await stub.AddScheduledCampaign(
                api.AddScheduledCampaignRequest(
                    name="durable",
                    schedule=schedule_pb2.ScheduleSpec(interval_seconds=1),
                    scrape=schedule_pb2.ScrapeSpec(urls=["http://127.0.0.1:1/"]),
                ),
                timeout=5,
            )

            async def runs_at_least(n: int) -> bool:
                try:
                    return int(await xlen_all(redis, runs_stream)) >= n
                except Exception:
                    return False

            await eventually(lambda: runs_at_least(1), timeout_s=10, what="a fire")
            durable_state.restart()  # SIGKILL, then the same port and data directory
            before = int(await xlen_all(redis, runs_stream))
            await eventually(lambda: runs_at_least(before + 2), timeout_s=20, what="fires again")
            got = await stub.GetSchedule(api.GetScheduleRequest(schedule_id=created.schedule_id))
            assert got.version == 1
            trigger = api.TriggerCampaignRequest(schedule_id=created.schedule_id)
            assert (await stub.TriggerCampaign(trigger, timeout=5)).run_id
        assert process.proc is not None and process.proc.poll() is None, "scheduler crashed"
    finally:
        await redis.aclose()
        process.close()
