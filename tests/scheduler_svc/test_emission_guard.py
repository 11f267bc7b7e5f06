"""Emission is conditioned on the schedule as stored, not on a replica's copy of it.

A replica frozen (SIGSTOP) while its schedule is paused through another replica wakes up with
a stale copy and overdue fire jobs; the emission guard refuses every one of them.
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest
from redis.asyncio import Redis

from campaign_common.envelope import Envelope, decode_body, wrap
from campaign_common.localstack.embedded import free_port
from campaign_common.runs.emission import (
    GUARD_TOMBSTONE_TTL_MS,
    Emission,
    EmissionGuard,
    EmissionGuards,
)
from campaign_common.runs.log import RunLog
from campaign_common.timeutil import ms_to_timestamp, now_ms
from campaigns.v1 import events_pb2, run_pb2, schedule_pb2
from campaigns.v1 import scheduler_service_pb2 as api
from campaigns.v1 import scheduler_service_pb2_grpc as api_grpc
from scheduler_svc.codec import schedule_event
from scheduler_svc.config import SchedulerSettings
from scheduler_svc.model import Schedule, ScheduleState, Scrape, Timing, TimingKind
from scheduler_svc.server import SchedulerServer
from scheduler_svc.store import SCHEDULE_LOG
from tests.support import (
    PARTITIONS,
    ServiceProcess,
    campaigns_in,
    eventually,
    leased_by,
    metric_sample,
    runs_stream,
    start_scheduler_process,
    xlen_all,
    xrange_all,
)


def _request(run_id: str, schedule_id: str = "s1") -> events_pb2.RunRequested:
    return events_pb2.RunRequested(
        run_id=run_id,
        schedule_id=schedule_id,
        campaign_id="c1",
        scheduled_for=ms_to_timestamp(now_ms()),
        attempt=1,
        trigger=run_pb2.RUN_TRIGGER_SCHEDULED,
    )


async def test_emission_guard_refuses_a_fire_unless_the_stored_version_is_active(
    state_redis: Redis,
) -> None:
    runs, guards = RunLog(state_redis, PARTITIONS), EmissionGuards(state_redis, PARTITIONS)

    async def emit(run_id: str, version: int) -> Emission:
        return await runs.request_run(_request(run_id), dedupe=True, schedule_version=version)

    # No guard stored (a schedule never created, or deleted long ago): refused.
    assert await emit("s1:1", 1) is Emission.STALE
    await guards.raise_all([EmissionGuard("s1", "c1", version=1, active=True)])
    assert await emit("s1:2", 1) is Emission.EMITTED
    await guards.raise_all([EmissionGuard("s1", "c1", version=2, active=False)])  # paused
    assert await emit("s1:3", 1) is Emission.STALE
    assert await emit("s1:4", 2) is Emission.STALE
    missed = await runs.record_missed(_request("s1:5"), "missed (test)", schedule_version=1)
    assert missed is Emission.STALE
    # Raise only: a late writer of an older version (a lagging log follower) changes nothing.
    await guards.raise_all([EmissionGuard("s1", "c1", version=1, active=True)])
    assert await emit("s1:6", 1) is Emission.STALE
    await guards.raise_all([EmissionGuard("s1", "c1", version=3, active=True)])  # resumed
    assert await emit("s1:7", 3) is Emission.EMITTED
    # An emitted run id reports a duplicate (a re-send) even after the schedule moved on.
    await guards.raise_all([EmissionGuard("s1", "c1", version=4, active=False)])
    assert await emit("s1:7", 3) is Emission.DUPLICATE
    # Manual runs (no version) are not guarded: a paused schedule can still be triggered.
    assert await runs.request_run(_request("s1:manual-1"), dedupe=False) is Emission.EMITTED
    assert await xlen_all(state_redis, runs_stream) == 3
    got = await runs.list_runs(schedule_id="s1", page_size=10)
    assert sorted(run.run_id for run in got[0]) == ["s1:2", "s1:7", "s1:manual-1"]


async def test_emission_guard_of_a_deleted_schedule_expires(state_redis: Redis) -> None:
    runs, guards = RunLog(state_redis, PARTITIONS), EmissionGuards(state_redis, PARTITIONS)
    # A batch (one pipeline) in any order: the highest version wins.
    await guards.raise_all(
        [
            EmissionGuard("s1", "c1", version=2, active=False, deleted_at_ms=now_ms()),
            EmissionGuard("s1", "c1", version=1, active=True),
            EmissionGuard("s2", "c1", version=1, active=True),
        ]
    )
    [key] = await state_redis.keys("*guard:s1")
    expected_ms = now_ms() + GUARD_TOMBSTONE_TTL_MS
    assert abs(await state_redis.pexpiretime(key) - expected_ms) < 5000
    assert await state_redis.pexpiretime(*await state_redis.keys("*guard:s2")) == -1
    # Replaying a delete older than the tombstone TTL leaves no guard: still refused.
    await guards.raise_all([EmissionGuard("s2", "c1", version=2, active=False, deleted_at_ms=1)])
    assert not await state_redis.keys("*guard:s2")
    request = _request("s2:1", schedule_id="s2")
    assert await runs.request_run(request, dedupe=True, schedule_version=1) is Emission.STALE


def _logged_without_guard(name: str) -> tuple[str, dict[str, bytes | str]]:
    """A created event as a writer leaves it that appended and crashed before its guard."""
    at_ms = now_ms()
    schedule = Schedule(
        schedule_id=f"{at_ms:012x}{name}",
        campaign_id=f"campaign-{name}",
        name=name,
        timing=Timing(TimingKind.INTERVAL, interval_s=1),
        scrape=Scrape(urls=("http://127.0.0.1:1/",), selectors=()),
        version=1,
        state=ScheduleState.ACTIVE,
        created_at_ms=at_ms,
        updated_at_ms=at_ms,
    )
    return schedule.schedule_id, wrap(schedule_event("created", schedule)).to_fields()


async def test_log_entries_without_a_guard_get_one_from_the_replay_and_the_follower(
    state_url: str, state_redis: Redis
) -> None:
    replayed, fields = _logged_without_guard("replayed")
    await state_redis.xadd(SCHEDULE_LOG, fields)  # type: ignore[arg-type]
    server = SchedulerServer(SchedulerSettings(state_redis_url=state_url, port=0, log_block_ms=200))
    await server.start()
    try:
        tailed, fields = _logged_without_guard("tailed")
        await state_redis.xadd(SCHEDULE_LOG, fields)  # type: ignore[arg-type]

        async def both_fired() -> bool:
            runs = RunLog(state_redis, PARTITIONS)
            for schedule_id in (replayed, tailed):
                listed, _ = await runs.list_runs(schedule_id=schedule_id, page_size=1)
                if not listed:
                    return False
            return True

        await eventually(both_fired, timeout_s=10, what="fires of both schedules")
    finally:
        await server.stop()


@pytest.fixture
async def replicas(state_url: str) -> AsyncIterator[list[tuple[ServiceProcess, str, int]]]:
    """Two scheduler processes on one state Redis: (process, gRPC target, metrics port)."""
    started: list[tuple[ServiceProcess, str, int]] = []
    try:
        for n in range(2):
            port = free_port()
            process, target = await start_scheduler_process(
                state_url, SCHEDULER_METRICS_PORT=str(port), SCHEDULER_REPLICA_NAME=f"replica-{n}"
            )
            started.append((process, target, port))
        yield started
    finally:
        for process, _, _ in started:
            if process.proc is not None and process.proc.poll() is None:
                os.kill(process.pid, signal.SIGCONT)  # never leave a stopped process behind
            process.close()


async def _fires(redis: Redis, schedule_id: str) -> list[int]:
    """Nominal times of the schedule's scheduled runs on the runs stream."""
    fires = []
    for _, fields in await xrange_all(redis, runs_stream):
        body = decode_body(Envelope.from_fields(fields))
        assert isinstance(body, events_pb2.RunRequested)
        if body.schedule_id == schedule_id and body.trigger == run_pb2.RUN_TRIGGER_SCHEDULED:
            fires.append(body.scheduled_for.ToMilliseconds())
    return fires


async def _stale_refusals(metrics_port: int) -> float:
    async with httpx.AsyncClient(timeout=2.0) as http:
        try:
            text = (await http.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
        except httpx.HTTPError:
            return 0.0
    return metric_sample(text, 'campaigns_scheduler_fires_total{result="stale"}')


@pytest.mark.slow
async def test_a_frozen_replica_never_fires_a_schedule_paused_meanwhile(
    replicas: list[tuple[ServiceProcess, str, int]], state_redis: Redis
) -> None:
    (_, target_a, _), (frozen, target_b, metrics_b) = replicas
    async with (
        grpc.aio.insecure_channel(target_a) as channel_a,
        grpc.aio.insecure_channel(target_b) as channel_b,
    ):
        stub_a = api_grpc.SchedulerServiceStub(channel_a)
        stub_b = api_grpc.SchedulerServiceStub(channel_b)
        # b fires the schedule: its campaign is in a partition b holds.
        owned = await eventually(
            lambda: leased_by(state_redis, "replica-1"), what="b holding partitions"
        )
        created = await stub_a.AddScheduledCampaign(
            api.AddScheduledCampaignRequest(
                campaign_id=campaigns_in(min(owned), 1, "frozen")[0],
                name="paused while b sleeps",
                schedule=schedule_pb2.ScheduleSpec(interval_seconds=1),
                scrape=schedule_pb2.ScrapeSpec(urls=["http://127.0.0.1:1/"]),
            ),
            timeout=5,
        )
        get = api.GetScheduleRequest(schedule_id=created.schedule_id)

        async def b_knows_it() -> bool:
            try:
                return bool((await stub_b.GetSchedule(get, timeout=2)).version == 1)
            except grpc.aio.AioRpcError:
                return False

        async def firing() -> bool:
            return len(await _fires(state_redis, created.schedule_id)) >= 2

        await eventually(b_knows_it, timeout_s=5, what="replica b applying the schedule")
        await eventually(firing, timeout_s=10, what="two fires while both replicas run")
        before = max(await _fires(state_redis, created.schedule_id))

        async def just_fired() -> bool:
            """A fire newer than ``before`` went out 100 ms ago: b has re-armed the next one,
            due after the pause below will have answered."""
            newest = max(await _fires(state_redis, created.schedule_id))
            return newest > before and now_ms() > newest + 100

        await eventually(just_fired, timeout_s=5, what="a fresh fire")
        os.kill(frozen.pid, signal.SIGSTOP)
        try:
            pause = api.PauseScheduleRequest(schedule_id=created.schedule_id, note="b asleep")
            await stub_a.PauseSchedule(pause, timeout=5)
            paused_at_ms = now_ms()

            async def overdue() -> bool:  # b's fire jobs for the next three seconds pile up
                return now_ms() > paused_at_ms + 3000

            await eventually(overdue, timeout_s=10, what="three fire periods with b frozen")
        finally:
            os.kill(frozen.pid, signal.SIGCONT)

        async def late_fires() -> list[int]:
            return [f for f in await _fires(state_redis, created.schedule_id) if f > paused_at_ms]

        async def b_done() -> str | None:
            """Early out on a late fire; else once b refused its stale jobs and saw the pause."""
            if await late_fires():
                return "late fire"
            if await _stale_refusals(metrics_b) < 1:
                return None
            got = await stub_b.GetSchedule(get, timeout=2)
            return "ok" if got.state == schedule_pb2.SCHEDULE_STATE_PAUSED else None

        await eventually(b_done, timeout_s=20, what="b refusing its overdue fires")
    assert not await late_fires(), "a fire after the pause answered was emitted"
    assert "stale" in frozen.logs()
