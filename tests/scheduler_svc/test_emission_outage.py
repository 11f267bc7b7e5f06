"""A state Redis unreachable for longer than the catch-up window: no fire vanishes.

The scheduler runs in-process against a fault proxy in front of the state Redis. While the
proxy is partitioned no emission can succeed; the fires that leave the catch-up window meanwhile
are recorded as SKIPPED runs saying why once the Redis is back, and firing resumes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc
import pytest
from redis.asyncio import Redis

from campaign_common.envelope import Envelope, decode_body
from campaign_common.runs.log import RunLog
from campaign_common.runs.record import RunState
from campaign_common.timeutil import now_ms
from campaigns.v1 import events_pb2, schedule_pb2
from campaigns.v1 import scheduler_service_pb2 as api
from campaigns.v1 import scheduler_service_pb2_grpc as api_grpc
from scheduler_svc.config import SchedulerSettings
from scheduler_svc.server import SchedulerServer
from tests.faults import TcpProxy
from tests.support import PARTITIONS, eventually, runs_stream, xlen_all, xrange_all

WINDOW_MS = 2000


def _scheduler(proxy: TcpProxy) -> SchedulerServer:
    """An in-process scheduler whose state Redis is behind ``proxy``, with a short window."""
    return SchedulerServer(
        SchedulerSettings(
            state_redis_url=proxy.url,
            port=0,
            log_block_ms=200,
            redis_timeout_s=0.5,
            catch_up_window_s=WINDOW_MS / 1000,
        )
    )


@pytest.fixture
async def proxied_scheduler(proxy: TcpProxy) -> AsyncIterator[tuple[SchedulerServer, TcpProxy]]:
    server = _scheduler(proxy)
    await server.start()
    try:
        yield server, proxy
    finally:
        proxy.heal()
        await server.stop()


async def _emitted(redis: Redis) -> set[str]:
    ids = set()
    for _, fields in await xrange_all(redis, runs_stream):
        body = decode_body(Envelope.from_fields(fields))
        assert isinstance(body, events_pb2.RunRequested)
        ids.add(body.run_id)
    return ids


async def test_fires_during_an_outage_longer_than_the_window_are_recorded_as_skipped(
    proxied_scheduler: tuple[SchedulerServer, TcpProxy], state_redis: Redis
) -> None:
    server, proxy = proxied_scheduler
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = api_grpc.SchedulerServiceStub(channel)
        created = await stub.AddScheduledCampaign(
            api.AddScheduledCampaignRequest(
                name="through an outage",
                schedule=schedule_pb2.ScheduleSpec(interval_seconds=1),
                scrape=schedule_pb2.ScrapeSpec(urls=["http://127.0.0.1:1/"]),
            ),
            timeout=5,
        )
    runs = RunLog(state_redis, PARTITIONS)  # straight to the server, past the proxy

    async def listed() -> list[tuple[int, RunState, str]]:
        got, _ = await runs.list_runs(schedule_id=created.schedule_id, page_size=500)
        return sorted((r.scheduled_for_ms, r.state, r.error) for r in got)

    await eventually(listed, timeout_s=10, what="a first fire")
    proxy.partition()
    cut_ms = now_ms()

    async def outage_past_window() -> bool:
        return now_ms() > cut_ms + WINDOW_MS + 4000

    await eventually(outage_past_window, timeout_s=15, what="an outage past the window")
    proxy.heal()
    healed_ms = now_ms()

    async def firing_again() -> list[tuple[int, RunState, str]] | None:
        current = await listed()
        fresh = [r for r in current if r[1] is RunState.REQUESTED and r[0] > healed_ms + 1000]
        return current if fresh else None

    await eventually(firing_again, timeout_s=20, what="fires after the outage")
    current = await listed()
    fires = [ms for ms, _, _ in current]
    assert fires == list(range(fires[0], fires[-1] + 1, 1000)), "a fire vanished"
    skipped = [(ms, error) for ms, state, error in current if state is RunState.SKIPPED]
    assert [ms for ms, _ in skipped if cut_ms + 1000 < ms < healed_ms - WINDOW_MS], skipped
    assert all(error.startswith("missed (emission failed: ") for _, error in skipped), skipped
    emitted = await _emitted(state_redis)
    skipped_ids = {f"{created.schedule_id}:{ms}" for ms, _ in skipped}
    assert not emitted & skipped_ids, "a fire was both emitted and recorded as missed"


async def test_stopping_ends_a_missed_fire_still_waiting_for_the_state_redis(
    proxy: TcpProxy, state_redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    server = _scheduler(proxy)
    await server.start()
    stopped = False
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = api_grpc.SchedulerServiceStub(channel)
            await stub.AddScheduledCampaign(
                api.AddScheduledCampaignRequest(
                    name="stopped in an outage",
                    schedule=schedule_pb2.ScheduleSpec(interval_seconds=1),
                    scrape=schedule_pb2.ScrapeSpec(urls=["http://127.0.0.1:1/"]),
                ),
                timeout=5,
            )

        async def fired() -> bool:
            return bool(await xlen_all(state_redis, runs_stream))

        await eventually(fired, timeout_s=10, what="a first fire")
        proxy.partition()

        async def recording() -> bool:  # a fire past its window retries its SKIPPED record
            return any("recording missed fire" in r.getMessage() for r in caplog.records)

        await eventually(recording, timeout_s=20, what="a missed fire waiting to be recorded")
        started = time.monotonic()
        stopped = True
        await server.stop()
        assert time.monotonic() - started < 15, "shutdown waited for the outage"
    finally:
        if not stopped:
            await server.stop()

    async def no_fire_left() -> bool:
        running = [t for t in asyncio.all_tasks() if "run_coroutine_job" in repr(t.get_coro())]
        return not running

    await eventually(no_fire_left, timeout_s=5, what="the fire's retries to end")
