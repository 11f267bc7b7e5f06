"""The scheduler's background loops are supervised: a crash or a poison run event never leaves
a replica serving with its followers gone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest
from redis.asyncio import Redis

from campaign_common.envelope import wrap
from campaign_common.localstack.embedded import free_port
from campaign_common.runs.keys import OUTCOME_GROUP
from campaign_common.supervisor import Backoff, Loop
from campaign_common.tasks import pause
from campaigns.v1 import events_pb2, schedule_pb2
from campaigns.v1 import scheduler_service_pb2 as api
from campaigns.v1 import scheduler_service_pb2_grpc as api_grpc
from scheduler_svc.config import SchedulerSettings
from scheduler_svc.follower import LogFollower
from scheduler_svc.metrics import StreamGauges
from scheduler_svc.outcomes import OutcomeFollower
from scheduler_svc.server import SchedulerServer
from tests.support import (
    PARTITIONS,
    eventually,
    grpc_serving,
    metric_sample,
    part,
    start_scheduler_process,
)

LOOPS = (
    "schedule-log-follower",
    *(f"run-outcome-follower-{p.index}" for p in PARTITIONS),
    "stream-gauges",
    "partition-leases",
)
POISON = part("c")  # the partition of the poison run's campaign
OUTCOME_ERRORS = "campaigns_scheduler_outcome_errors_total"


def _settings(state_url: str) -> SchedulerSettings:
    return SchedulerSettings(
        state_redis_url=state_url, port=0, log_block_ms=200, metrics_port=free_port()
    )


async def _metrics(settings: SchedulerSettings) -> str:
    async with httpx.AsyncClient(timeout=5) as http:
        return (await http.get(f"http://127.0.0.1:{settings.metrics_port}/metrics")).text


async def _group_read_past(redis: Redis, entry_id: bytes) -> bool:
    """True once the outcome group has delivered ``entry_id`` to a replica."""
    for group in await redis.xinfo_groups(POISON.events_stream):
        if group["name"] in (OUTCOME_GROUP, OUTCOME_GROUP.encode()):
            last = group["last-delivered-id"]
            last = last.decode() if isinstance(last, bytes) else last
            as_ints = [tuple(int(p) for p in i.split("-")) for i in (last, entry_id.decode())]
            return as_ints[0] >= as_ints[1]
    return False


async def _poison(redis: Redis) -> bytes:
    """A RunFailed for a run whose stored state the run log cannot read (``get_run`` raises
    ValueError), the way a bug or a hand-edited key would leave it."""
    await redis.hset(
        POISON.run_key("poison:1"),
        mapping={"run_id": "poison:1", "schedule_id": "s", "campaign_id": "c", "state": "BOGUS"},
    )
    event = events_pb2.RunFailed(run_id="poison:1", attempt=1, error="boom")
    return bytes(await redis.xadd(POISON.events_stream, wrap(event).to_fields()))


@pytest.mark.slow
async def test_a_poison_run_event_leaves_this_replica_following_another_replicas_changes(
    state_url: str, state_redis: Redis
) -> None:
    settings = _settings(state_url)
    this = SchedulerServer(settings)
    await this.start()
    other = None
    try:
        before = metric_sample(await _metrics(settings), OUTCOME_ERRORS)
        poison = await _poison(state_redis)
        # this replica is the only one in the group yet, so it is the one that reads it
        await eventually(lambda: _group_read_past(state_redis, poison), what="poison read")
        other, other_target = await start_scheduler_process(state_url)
        async with grpc.aio.insecure_channel(other_target) as channel:
            created = await api_grpc.SchedulerServiceStub(channel).AddScheduledCampaign(
                api.AddScheduledCampaignRequest(
                    name="made elsewhere",
                    schedule=schedule_pb2.ScheduleSpec(interval_seconds=3600),
                    scrape=schedule_pb2.ScrapeSpec(urls=["http://127.0.0.1:1/"]),
                ),
                timeout=5,
            )
        async with grpc.aio.insecure_channel(f"127.0.0.1:{this.port}") as channel:
            stub = api_grpc.SchedulerServiceStub(channel)

            async def listed_here() -> bool:
                reply = await stub.ListSchedules(api.ListSchedulesRequest(page_size=100))
                return created.schedule_id in {s.schedule_id for s in reply.schedules}

            await eventually(listed_here, timeout_s=10, what="the schedule on this replica")
        assert await grpc_serving(f"127.0.0.1:{this.port}")
        text = await _metrics(settings)
        assert metric_sample(text, OUTCOME_ERRORS) - before == 1
        for loop in LOOPS:
            assert metric_sample(text, f'campaigns_scheduler_loop_up{{loop="{loop}"}}') == 1
        pending = await state_redis.xpending(POISON.events_stream, OUTCOME_GROUP)
        assert pending["pending"] == 0, "the poison entry is acked, not retried forever"
    finally:
        if other is not None:
            other.close()
        await this.stop()


class InjectedFaultScheduler(SchedulerServer):
    """A scheduler with one more background loop, which crashes while ``faulty`` is set."""

    loop_backoff = Backoff(initial_s=0.2, max_s=0.2)

    def __init__(self, settings: SchedulerSettings) -> None:
        super().__init__(settings)
        self.faulty = False

    def _loops(
        self,
        log_follower: LogFollower,
        outcomes: list[OutcomeFollower],
        gauges: StreamGauges,
    ) -> list[Loop]:
        async def injected() -> None:
            while not self._stopping.is_set():
                if self.faulty:
                    raise ValueError("injected fault")
                await pause(self._stopping, 0.02)

        return [*super()._loops(log_follower, outcomes, gauges), Loop("injected", injected)]


@pytest.fixture
async def faulty_scheduler(state_url: str) -> AsyncIterator[InjectedFaultScheduler]:
    server = InjectedFaultScheduler(_settings(state_url))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def test_health_is_not_serving_while_a_loop_is_down_and_serving_after_its_restart(
    faulty_scheduler: InjectedFaultScheduler,
) -> None:
    server = faulty_scheduler
    target = f"127.0.0.1:{server.port}"
    assert await grpc_serving(target)
    text = await _metrics(server.settings)
    for loop in (*LOOPS, "injected"):  # every label value exists from the start
        assert f'campaigns_scheduler_loop_up{{loop="{loop}"}} 1.0' in text
        assert f'campaigns_scheduler_loop_restarts_total{{loop="{loop}"}} ' in text
    restarts = 'campaigns_scheduler_loop_restarts_total{loop="injected"}'
    before = metric_sample(text, restarts)

    server.faulty = True

    async def not_serving() -> bool:
        return not await grpc_serving(target)

    await eventually(not_serving, timeout_s=10, what="NOT_SERVING while the loop is down")
    server.faulty = False
    await eventually(lambda: grpc_serving(target), timeout_s=10, what="SERVING after restart")
    text = await _metrics(server.settings)
    assert metric_sample(text, restarts) - before >= 1
    assert metric_sample(text, 'campaigns_scheduler_loop_up{loop="injected"}') == 1


async def test_stopping_is_not_slowed_by_a_loop_waiting_to_restart(state_url: str) -> None:
    class SlowRestarts(InjectedFaultScheduler):
        loop_backoff = Backoff(initial_s=600, max_s=600)

    server = SlowRestarts(_settings(state_url))
    await server.start()
    target = f"127.0.0.1:{server.port}"
    server.faulty = True

    async def not_serving() -> bool:
        return not await grpc_serving(target)

    try:
        await eventually(not_serving, timeout_s=10, what="the loop down, waiting 300 s or more")
    finally:
        await asyncio.wait_for(server.stop(), 5)
