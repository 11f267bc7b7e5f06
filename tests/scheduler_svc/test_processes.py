"""Scheduler processes for real: killed and restarted, and two of them side by side, splitting
the run partitions."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable

import grpc
import httpx
import pytest
from redis.asyncio import Redis

from campaign_common.envelope import Envelope, decode_body
from campaign_common.localstack.embedded import free_port
from campaign_common.runs.log import RunLog
from campaign_common.runs.record import RunState
from campaign_common.timeutil import now_ms
from campaigns.v1 import events_pb2, schedule_pb2
from campaigns.v1 import scheduler_service_pb2 as api
from campaigns.v1 import scheduler_service_pb2_grpc as api_grpc
from tests.support import (
    PARTITIONS,
    ServiceProcess,
    campaigns_in,
    eventually,
    leased_by,
    metric_sample,
    runs_stream,
    start_scheduler_process,
    xrange_all,
)

pytestmark = pytest.mark.slow


@pytest.fixture
async def spawn(state_url: str) -> AsyncIterator[Callable[..., object]]:
    started: list[ServiceProcess] = []

    async def spawn_one(**env: str) -> tuple[ServiceProcess, str]:
        process, target = await start_scheduler_process(state_url, **env)
        started.append(process)
        return process, target

    yield spawn_one
    for process in started:
        process.close()


async def _emitted_run_ids(redis: Redis) -> list[str]:
    ids = []
    for _, fields in await xrange_all(redis, runs_stream):
        body = decode_body(Envelope.from_fields(fields))
        assert isinstance(body, events_pb2.RunRequested)
        ids.append(body.run_id)
    return ids


def _add(interval_s: int, name: str) -> api.AddScheduledCampaignRequest:
    return api.AddScheduledCampaignRequest(
        name=name,
        schedule=schedule_pb2.ScheduleSpec(interval_seconds=interval_s),
        scrape=schedule_pb2.ScrapeSpec(urls=["http://127.0.0.1:1/"]),
    )


def _assert_gapless(run_ids: list[str], schedule_id: str, interval_ms: int) -> list[int]:
    fires = sorted(int(r.split(":")[1]) for r in run_ids if r.startswith(schedule_id + ":"))
    assert fires, f"no fires of {schedule_id}"
    assert fires == list(range(fires[0], fires[-1] + 1, interval_ms)), "a fire is missing"
    return fires


async def test_scheduler_killed_and_restarted_keeps_schedules_and_fires_each_once(
    spawn: Callable[..., object], state_redis: Redis
) -> None:
    first, target = await spawn()  # type: ignore[misc]
    async with grpc.aio.insecure_channel(target) as channel:
        stub = api_grpc.SchedulerServiceStub(channel)
        created = await stub.AddScheduledCampaign(_add(1, "survivor"), timeout=5)
        paused = await stub.AddScheduledCampaign(_add(1, "paused"), timeout=5)
        await stub.PauseSchedule(api.PauseScheduleRequest(schedule_id=paused.schedule_id))

    async def fired(n: int) -> bool:
        ids = await _emitted_run_ids(state_redis)
        return sum(r.startswith(created.schedule_id) for r in ids) >= n

    await eventually(lambda: fired(2), timeout_s=15, what="two fires before the crash")
    first.kill()
    before = len(await _emitted_run_ids(state_redis))
    _, target = await spawn()  # type: ignore[misc]
    async with grpc.aio.insecure_channel(target) as channel:
        stub = api_grpc.SchedulerServiceStub(channel)
        got = await stub.GetSchedule(api.GetScheduleRequest(schedule_id=created.schedule_id))
        assert got.version == 1 and got.name == "survivor"
        still = await stub.GetSchedule(api.GetScheduleRequest(schedule_id=paused.schedule_id))
        assert still.state == schedule_pb2.SCHEDULE_STATE_PAUSED
    await eventually(lambda: fired(before + 3), timeout_s=20, what="fires after the restart")
    ids = await _emitted_run_ids(state_redis)
    assert not [r for r, n in Counter(ids).items() if n > 1], "a fire was emitted twice"
    assert not any(r.startswith(paused.schedule_id) for r in ids), "a paused schedule fired"
    # Fires missed while no scheduler ran were inside the catch-up window: none is missing.
    _assert_gapless(ids, created.schedule_id, 1000)


async def test_two_schedulers_emit_every_fire_exactly_once(
    spawn: Callable[..., object], state_redis: Redis
) -> None:
    (_, target_a), (_, target_b) = await spawn(), await spawn()  # type: ignore[misc]
    async with (
        grpc.aio.insecure_channel(target_a) as channel_a,
        grpc.aio.insecure_channel(target_b) as channel_b,
    ):
        stub_a = api_grpc.SchedulerServiceStub(channel_a)
        stub_b = api_grpc.SchedulerServiceStub(channel_b)
        schedules = [
            await stub_a.AddScheduledCampaign(_add(1, "via a"), timeout=5),
            await stub_b.AddScheduledCampaign(_add(1, "via b"), timeout=5),
        ]
        await _converged(stub_a, stub_b, 2)
        await eventually(
            lambda: _fires_at_least(state_redis, schedules, 4),
            timeout_s=20,
            what="four fires of each schedule",
        )

        # Commands through either replica while both fire: pause via b, delete via a, add via b.
        paused, deleted = schedules
        pause = api.PauseScheduleRequest(schedule_id=paused.schedule_id, note="via b")
        await stub_b.PauseSchedule(pause, timeout=5)
        paused_at_ms = now_ms()
        await stub_a.DeleteSchedule(
            api.DeleteScheduleRequest(schedule_id=deleted.schedule_id), timeout=5
        )
        deleted_at_ms = now_ms()
        added = await stub_b.AddScheduledCampaign(_add(1, "added via b"), timeout=5)
        await eventually(lambda: _visible(stub_a, added), timeout_s=5, what="b's new schedule on a")
        final = await _converged(stub_a, stub_b, 2)
        await eventually(
            lambda: _fires_at_least(state_redis, [added], 3), timeout_s=20, what="the new one"
        )
    ids = await _emitted_run_ids(state_redis)
    duplicates = [r for r, n in Counter(ids).items() if n > 1]
    assert not duplicates, f"emitted more than once: {duplicates}"
    for schedule in (*schedules, added):
        _assert_gapless(ids, schedule.schedule_id, 1000)
    # A fire already due when the command landed may still go out; none after the next.
    assert max(_fires(ids, paused.schedule_id)) <= paused_at_ms + 1000
    assert max(_fires(ids, deleted.schedule_id)) <= deleted_at_ms + 1000
    assert {s.schedule_id: (s.state, s.paused_note) for s in final} == {
        added.schedule_id: (schedule_pb2.SCHEDULE_STATE_ACTIVE, ""),
        paused.schedule_id: (schedule_pb2.SCHEDULE_STATE_PAUSED, "via b"),
    }


async def _fires_by_result(metrics_port: int) -> dict[str, float]:
    async with httpx.AsyncClient(timeout=2.0) as http:
        text = (await http.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
    return {
        result: metric_sample(text, f'campaigns_scheduler_fires_total{{result="{result}"}}')
        for result in ("emitted", "deduplicated")
    }


async def test_replicas_split_the_partitions_and_a_killed_ones_move_within_a_lease(
    spawn: Callable[..., object], state_redis: Redis
) -> None:
    """Two replicas fire half the partitions each (no fire attempted twice); a SIGKILLed
    replica's partitions move to the other within about one lease, every fire once."""
    lease_s = 2.0
    ports = [free_port(), free_port()]
    a, _ = await spawn(  # type: ignore[misc]
        SCHEDULER_REPLICA_NAME="a",
        SCHEDULER_PARTITION_LEASE_S=str(lease_s),
        SCHEDULER_METRICS_PORT=str(ports[0]),
        SCHEDULER_GAUGE_REFRESH_S="0.2",
    )
    _, target_b = await spawn(  # type: ignore[misc]
        SCHEDULER_REPLICA_NAME="b",
        SCHEDULER_PARTITION_LEASE_S=str(lease_s),
        SCHEDULER_METRICS_PORT=str(ports[1]),
        SCHEDULER_GAUGE_REFRESH_S="0.2",
    )
    everything = {p.index for p in PARTITIONS}

    async def split() -> bool:
        held = [await leased_by(state_redis, name) for name in ("a", "b")]
        return len(held[0]) == len(held[1]) == 2 and held[0] | held[1] == everything

    await eventually(split, timeout_s=10, what="the partitions split two and two")
    async with grpc.aio.insecure_channel(target_b) as channel:
        stub = api_grpc.SchedulerServiceStub(channel)
        schedules = []
        for partition in PARTITIONS:  # one schedule per partition
            request = _add(1, f"in partition {partition.index}")
            request.campaign_id = campaigns_in(partition.index, 1, "split")[0]
            schedules.append(await stub.AddScheduledCampaign(request, timeout=5))
        await eventually(
            lambda: _fires_at_least(state_redis, schedules, 3),
            timeout_s=20,
            what="three fires of each schedule",
        )
        for port in ports:  # each replica emitted its own; neither tried the other's
            fires = await _fires_by_result(port)
            assert fires["emitted"] >= 3 and fires["deduplicated"] == 0, fires
        a.kill()
        killed_ms = now_ms()
        await eventually(
            lambda: _leased_all(state_redis, "b", everything),
            timeout_s=3 * lease_s,
            what="b holding every partition",
        )
        await eventually(
            lambda: _fires_since(state_redis, schedules, killed_ms + 2000, 2),
            timeout_s=20,
            what="two fires of each schedule after the take-over",
        )
    ids = await _emitted_run_ids(state_redis)
    duplicates = [r for r, n in Counter(ids).items() if n > 1]
    assert not duplicates, f"emitted more than once: {duplicates}"
    for schedule in schedules:  # fires while nobody held a's partitions were caught up
        _assert_gapless(ids, schedule.schedule_id, 1000)


async def _leased_all(redis: Redis, replica: str, everything: set[int]) -> bool:
    return await leased_by(redis, replica) == everything


async def _fires_since(
    redis: Redis, schedules: list[schedule_pb2.Schedule], since_ms: int, count: int
) -> bool:
    ids = await _emitted_run_ids(redis)
    return all(
        len([f for f in _fires(ids, s.schedule_id) if f > since_ms]) >= count for s in schedules
    )


async def _converged(
    stub_a: api_grpc.SchedulerServiceStub, stub_b: api_grpc.SchedulerServiceStub, count: int
) -> list[schedule_pb2.Schedule]:
    """The schedules once both replicas list the same ``count`` (id, version, state, note)."""

    def state(reply: api.ListSchedulesResponse) -> list[tuple[str, int, int, str]]:
        return sorted((s.schedule_id, s.version, s.state, s.paused_note) for s in reply.schedules)

    async def same() -> list[schedule_pb2.Schedule] | None:
        a = await stub_a.ListSchedules(api.ListSchedulesRequest())
        b = await stub_b.ListSchedules(api.ListSchedulesRequest())
        ok = len(a.schedules) == count and state(a) == state(b)
        return sorted(a.schedules, key=lambda s: s.schedule_id) if ok else None

    return await eventually(same, timeout_s=5, what=f"both replicas listing {count} schedules")


async def _visible(stub: api_grpc.SchedulerServiceStub, schedule: schedule_pb2.Schedule) -> bool:
    try:
        got = await stub.GetSchedule(
            api.GetScheduleRequest(schedule_id=schedule.schedule_id), timeout=5
        )
    except grpc.aio.AioRpcError as exc:
        if exc.code() is grpc.StatusCode.NOT_FOUND:
            return False
        raise
    return bool(got.version == schedule.version)


async def _fires_at_least(redis: Redis, schedules: list[schedule_pb2.Schedule], count: int) -> bool:
    ids = await _emitted_run_ids(redis)
    return all(len(_fires(ids, s.schedule_id)) >= count for s in schedules)


def _fires(run_ids: list[str], schedule_id: str) -> list[int]:
    return [int(r.split(":")[1]) for r in run_ids if r.startswith(schedule_id + ":")]


async def test_scheduler_restart_records_fires_older_than_the_window_as_skipped(
    spawn: Callable[..., object], state_redis: Redis
) -> None:
    first, target = await spawn(  # type: ignore[misc]
        SCHEDULER_CATCH_UP_WINDOW_S="2", SCHEDULER_PARTITION_LEASE_S="0.5"
    )
    async with grpc.aio.insecure_channel(target) as channel:
        stub = api_grpc.SchedulerServiceStub(channel)
        created = await stub.AddScheduledCampaign(_add(1, "down for a while"), timeout=5)

    async def emitted() -> bool:
        return bool(await _emitted_run_ids(state_redis))

    await eventually(emitted, timeout_s=10, what="a first fire")
    first.kill()
    down_since = now_ms()

    async def outage_long_enough() -> bool:  # fires pile up while no scheduler runs
        return now_ms() > down_since + 5000

    await eventually(outage_long_enough, timeout_s=10, what="a 5 s outage")
    restart_ms = now_ms()
    await spawn(
        SCHEDULER_CATCH_UP_WINDOW_S="2",
        SCHEDULER_REPLICA_NAME="restarted",
        SCHEDULER_PARTITION_LEASE_S="0.5",
    )
    # The killed replica's partition leases run out (it cannot give them back), then the new
    # one takes them and computes the window: the window ends no later than that.
    everything = {p.index for p in PARTITIONS}
    await eventually(
        lambda: _leased_all(state_redis, "restarted", everything),
        timeout_s=15,
        what="the restarted replica holding every partition",
    )
    ready_ms = now_ms()
    runs = RunLog(state_redis, PARTITIONS)

    async def settled() -> list[str] | None:
        listed, _ = await runs.list_runs(schedule_id=created.schedule_id, page_size=500)
        newest = max((int(r.run_id.split(":")[1]) for r in listed), default=0)
        return [r.run_id for r in listed] if newest > restart_ms + 1000 else None

    await eventually(settled, timeout_s=15, what="fires after the restart")
    listed, _ = await runs.list_runs(schedule_id=created.schedule_id, page_size=500)
    skipped = [r for r in listed if r.state is RunState.SKIPPED]
    assert skipped, "fires older than the window were not recorded"
    assert all(r.error == "missed (scheduler down)" for r in skipped)
    assert all(r.scheduled_for_ms < ready_ms - 2000 for r in skipped)
    ids = await _emitted_run_ids(state_redis)
    assert not set(ids) & {r.run_id for r in skipped}, "a fire was both skipped and emitted"
    assert not [r for r, n in Counter(ids).items() if n > 1]
    _assert_gapless([r.run_id for r in listed], created.schedule_id, 1000)


def _retryable(n: int) -> api.AddScheduledCampaignRequest:
    return api.AddScheduledCampaignRequest(
        name=f"crash {n}",
        request_id=f"crash-{n}",
        schedule=schedule_pb2.ScheduleSpec(cron=f"{n % 60} 3 * * *", timezone="Asia/Tokyo"),
        scrape=schedule_pb2.ScrapeSpec(urls=[f"http://shop.example/{n}"]),
    )


async def test_scheduler_killed_during_concurrent_creates_keeps_each_answered_one(
    spawn: Callable[..., object],
) -> None:
    """Creates leave in shared script calls: a SIGKILL among them loses no create that was
    answered, and retrying every create by its request id then makes each schedule once."""
    total, workers, before_kill = 240, 24, 60
    first, target = await spawn()  # type: ignore[misc]
    answered: dict[int, str] = {}
    enough = asyncio.Event()
    async with grpc.aio.insecure_channel(target) as channel:
        stub = api_grpc.SchedulerServiceStub(channel)

        async def worker(offset: int) -> None:
            for n in range(offset, total, workers):
                try:
                    created = await stub.AddScheduledCampaign(_retryable(n), timeout=10)
                except grpc.aio.AioRpcError:
                    return  # the scheduler is gone
                answered[n] = created.schedule_id
                if len(answered) >= before_kill:
                    enough.set()

        running = [asyncio.create_task(worker(offset)) for offset in range(workers)]
        async with asyncio.timeout(60):
            await enough.wait()
        first.kill()  # SIGKILL with creates queued, in a script call and being applied
        await asyncio.gather(*running)
    assert len(answered) >= before_kill

    _, target = await spawn()  # type: ignore[misc]
    async with grpc.aio.insecure_channel(target) as channel:
        stub = api_grpc.SchedulerServiceStub(channel)
        for n, schedule_id in answered.items():
            got = await stub.GetSchedule(api.GetScheduleRequest(schedule_id=schedule_id))
            assert got.version == 1 and got.name == f"crash {n}"
        retried = await asyncio.gather(
            *(stub.AddScheduledCampaign(_retryable(n), timeout=20) for n in range(total))
        )
        listed = await stub.ListSchedules(api.ListSchedulesRequest(page_size=500))
    assert all(retried[n].schedule_id == sid for n, sid in answered.items())
    assert sorted(s.name for s in listed.schedules) == sorted(f"crash {n}" for n in range(total))
