"""Snapshots bound the schedule log: start-up and lagging followers load the snapshot plus the
log after it, and reach the same state as a full replay would have."""

from __future__ import annotations

import asyncio

import grpc
from redis.asyncio import Redis

from campaign_common.runs.log import RunLog
from campaigns.v1 import schedule_pb2
from campaigns.v1 import scheduler_service_pb2 as api
from campaigns.v1 import scheduler_service_pb2_grpc as api_grpc
from scheduler_svc.codec import schedule_event
from scheduler_svc.compaction import Compactor
from scheduler_svc.config import SchedulerSettings
from scheduler_svc.follower import LogFollower
from scheduler_svc.model import Schedule, ScheduleState
from scheduler_svc.registry import Registry
from scheduler_svc.server import SchedulerServer
from scheduler_svc.snapshot import SnapshotStore
from scheduler_svc.store import SCHEDULE_LOG, ScheduleStore
from tests.scheduler_svc.records import schedule_record
from tests.support import PARTITIONS, part


async def _append(store: ScheduleStore, kind: str, schedule: Schedule) -> None:
    await store.append(schedule.schedule_id, schedule.version - 1, schedule_event(kind, schedule))


def _compactor(redis: Redis, keep_ms: int = 0) -> Compactor:
    store, runs = ScheduleStore(redis, PARTITIONS), RunLog(redis, PARTITIONS)
    return Compactor(store, SnapshotStore(redis), runs, batch=2, keep_ms=keep_ms, interval_s=60)


def _states(registry: Registry) -> dict[str, tuple[int, ScheduleState]]:
    return {s.schedule_id: (s.version, s.state) for s in registry.all()}


def _emitted(schedule_id: str) -> str:
    """The emitted-runs counter of a `schedule_record` (campaign ``c-<id>``)."""
    return part(f"c-{schedule_id}").emitted_key(schedule_id)


async def test_snapshot_follower_behind_the_trim_point_reloads(state_redis: Redis) -> None:
    store = ScheduleStore(state_redis, PARTITIONS)
    registry = Registry()
    deleted: list[str] = []
    registry.on_change(lambda s, gone: deleted.append(s.schedule_id) if gone else None)
    follower = LogFollower(store, registry, SnapshotStore(state_redis), block_ms=50, batch=2)
    for sid in ("a", "b", "c"):
        await _append(store, "created", schedule_record(sid))
    await follower.replay()
    # While this follower looks away: changes, then compaction trims them from the log.
    await _append(store, "paused", schedule_record("a", 2, ScheduleState.PAUSED))
    await _append(store, "deleted", schedule_record("b", 2))
    await _append(store, "created", schedule_record("d"))
    await state_redis.set(_emitted("b"), 3)  # b was capped: its counter goes with it
    await state_redis.set(_emitted("c"), 1)
    folded, trimmed = await _compactor(state_redis).once()
    assert folded == 6 and trimmed >= 5  # the newest entry may stay
    assert [await state_redis.exists(_emitted(sid)) for sid in "bc"] == [0, 1]
    await follower._follow_once()

    assert _states(registry) == {
        "a": (2, ScheduleState.PAUSED),
        "c": (1, ScheduleState.ACTIVE),
        "d": (1, ScheduleState.ACTIVE),
    }
    assert deleted == ["b"]


async def test_snapshot_concurrent_compactors_fold_each_entry_once(state_redis: Redis) -> None:
    store = ScheduleStore(state_redis, PARTITIONS)
    for n in range(12):
        await _append(store, "created", schedule_record(f"s{n:02d}"))
    for n in range(0, 12, 3):
        await _append(store, "deleted", schedule_record(f"s{n:02d}", 2))
    await state_redis.xadd(SCHEDULE_LOG, {"type": "unknown.Type", "body": b"", "occurred_at": 1})
    await asyncio.gather(*(_compactor(state_redis, keep_ms=10**9).once() for _ in range(3)))

    loaded = await SnapshotStore(state_redis).load()
    newest = await store.latest_id()
    assert loaded.position == newest  # the unknown entry moved the position too
    assert sorted(s.schedule_id for s in loaded.schedules) == [
        f"s{n:02d}" for n in range(12) if n % 3
    ]
    assert await state_redis.xlen(SCHEDULE_LOG) == 17  # kept: younger than keep_ms


async def test_snapshot_restart_serves_the_snapshot_and_the_log_after_it(
    state_url: str, state_redis: Redis
) -> None:
    settings = SchedulerSettings(
        state_redis_url=state_url, host="127.0.0.1", port=0, log_block_ms=200, log_keep_s=0
    )
    first = SchedulerServer(settings)
    await first.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{first.port}") as channel:
            stub = api_grpc.SchedulerServiceStub(channel)
            ids = [
                (await stub.AddScheduledCampaign(_add(n), timeout=5)).schedule_id for n in range(4)
            ]
            await stub.PauseSchedule(
                api.PauseScheduleRequest(schedule_id=ids[0], note="n"), timeout=5
            )
            await stub.DeleteSchedule(api.DeleteScheduleRequest(schedule_id=ids[1]), timeout=5)
            await _compactor(state_redis).once()
            assert await state_redis.xlen(SCHEDULE_LOG) <= 1  # the log is bounded
            ids.append((await stub.AddScheduledCampaign(_add(4), timeout=5)).schedule_id)
    finally:
        await first.stop()

    second = SchedulerServer(settings)
    await second.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{second.port}") as channel:
            stub = api_grpc.SchedulerServiceStub(channel)
            listed = await stub.ListSchedules(api.ListSchedulesRequest(page_size=50), timeout=5)
    finally:
        await second.stop()
    states = {s.schedule_id: (s.state, s.paused_note) for s in listed.schedules}
    assert states == {
        ids[0]: (schedule_pb2.SCHEDULE_STATE_PAUSED, "n"),
        ids[2]: (schedule_pb2.SCHEDULE_STATE_ACTIVE, ""),
        ids[3]: (schedule_pb2.SCHEDULE_STATE_ACTIVE, ""),
        ids[4]: (schedule_pb2.SCHEDULE_STATE_ACTIVE, ""),
    }


def _add(n: int) -> api.AddScheduledCampaignRequest:
    return api.AddScheduledCampaignRequest(
        name=f"snap {n}",
        schedule=schedule_pb2.ScheduleSpec(cron="0 3 * * *"),
        scrape=schedule_pb2.ScrapeSpec(urls=[f"http://example.com/{n}"]),
    )
