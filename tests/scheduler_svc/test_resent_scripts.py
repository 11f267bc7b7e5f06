"""Scripts whose reply is lost are re-sent by redis-py; each still takes effect once.

A fault proxy in front of the state Redis forwards a request, lets the server run it, throws
the reply away and closes the connection; redis-py re-sends the same EVALSHA.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from redis.asyncio import Redis

from campaign_common.envelope import Envelope, decode_body
from campaign_common.redis_conn import make_client
from campaign_common.runs.emission import Emission
from campaign_common.runs.log import RunLog
from campaigns.v1 import events_pb2, schedule_pb2
from campaigns.v1 import scheduler_service_pb2 as api
from campaigns.v1 import scheduler_service_pb2_grpc as api_grpc
from scheduler_svc.config import SchedulerSettings
from scheduler_svc.server import SchedulerServer
from tests.faults import TcpProxy
from tests.support import PARTITIONS, runs_stream, scheduled_request, xrange_all


@pytest.fixture
async def stub(proxy: TcpProxy) -> AsyncIterator[api_grpc.SchedulerServiceStub]:
    """A client of an in-process scheduler whose state Redis is behind ``proxy``."""
    server = SchedulerServer(SchedulerSettings(state_redis_url=proxy.url, port=0, log_block_ms=200))
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            yield api_grpc.SchedulerServiceStub(channel)
    finally:
        await server.stop()


def _add(name: str) -> api.AddScheduledCampaignRequest:
    return api.AddScheduledCampaignRequest(
        name=name,
        schedule=schedule_pb2.ScheduleSpec(interval_seconds=3600),
        scrape=schedule_pb2.ScrapeSpec(urls=["http://127.0.0.1:1/"]),
    )


async def _requested(redis: Redis, run_id: str) -> int:
    """How many RunRequested entries of ``run_id`` the runs stream holds."""
    count = 0
    for _, fields in await xrange_all(redis, runs_stream):
        body = decode_body(Envelope.from_fields(fields))
        count += isinstance(body, events_pb2.RunRequested) and body.run_id == run_id
    return count


async def test_a_create_whose_reply_was_lost_is_answered_once_and_creates_one_schedule(
    stub: api_grpc.SchedulerServiceStub, proxy: TcpProxy
) -> None:
    await stub.AddScheduledCampaign(_add("warm-up"), timeout=5)  # the append script is loaded
    proxy.drop_replies(b"{sched}:versions")  # the next log append: run, reply lost, re-sent
    created = await stub.AddScheduledCampaign(_add("lost reply"), timeout=10)
    assert proxy.dropped == 1
    assert created.version == 1
    listed = await stub.ListSchedules(api.ListSchedulesRequest(), timeout=5)
    assert sorted(s.name for s in listed.schedules) == ["lost reply", "warm-up"]


async def test_a_trigger_whose_reply_was_lost_requests_one_run(
    stub: api_grpc.SchedulerServiceStub, proxy: TcpProxy, state_redis: Redis
) -> None:
    created = await stub.AddScheduledCampaign(_add("manual"), timeout=5)
    trigger = api.TriggerCampaignRequest(schedule_id=created.schedule_id)
    await stub.TriggerCampaign(trigger, timeout=5)  # the emission script is loaded
    proxy.drop_replies(b":manual-")  # the next manual emission: run, reply lost, re-sent
    run_id = (await stub.TriggerCampaign(trigger, timeout=10)).run_id
    assert proxy.dropped == 1
    assert await _requested(state_redis, run_id) == 1


async def test_a_scheduled_emission_whose_reply_was_lost_reports_a_duplicate_once(
    proxy: TcpProxy, state_redis: Redis
) -> None:
    client = make_client(proxy.url, timeout_s=2.0)
    try:
        runs = RunLog(client, PARTITIONS)

        assert await runs.request_run(scheduled_request("s1:1"), dedupe=True) is Emission.EMITTED
        proxy.drop_replies(b"s1:2")
        assert await runs.request_run(scheduled_request("s1:2"), dedupe=True) is Emission.DUPLICATE
        assert proxy.dropped == 1
        assert await _requested(state_redis, "s1:2") == 1
    finally:
        await client.aclose()
