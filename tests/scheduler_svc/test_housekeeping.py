"""The scheduler's housekeeping bounds the run streams behind their consumer groups and drops
the failure streaks of what was deleted."""

from __future__ import annotations

from dataclasses import replace

from redis.asyncio import Redis

from campaign_common.runs.keys import OUTCOME_GROUP, SCRAPER_GROUP, Partitions
from campaign_common.runs.retention import Retention
from scheduler_svc.housekeeping import Housekeeping, stream_rules
from scheduler_svc.outcome_store import StreakSweep
from scheduler_svc.registry import Registry, StreamId
from tests.scheduler_svc.records import schedule_record


async def test_housekeeping_trims_both_run_streams_of_every_partition_behind_their_groups(
    state_redis: Redis,
) -> None:
    partitions = Partitions(2)
    streams = [
        (stream, group)
        for p in partitions
        for stream, group in ((p.runs_stream, SCRAPER_GROUP), (p.events_stream, OUTCOME_GROUP))
    ]
    for stream, group in streams:
        ids = [await state_redis.xadd(stream, {"n": n}, id=f"{1000 + n}-0") for n in range(600)]
        await state_redis.xgroup_create(stream, group, id="0")
        await state_redis.xreadgroup(group, "w", {stream: ">"}, count=600)
        await state_redis.xack(stream, group, *ids[:500])  # 100 still pending
    housekeeping = Housekeeping(
        Retention(state_redis, consumer_idle_ms=3_600_000),
        stream_rules(
            partitions, runs_retention_s=60, events_retention_s=60, dead_letters_retention_s=60
        ),
        interval_s=60,
    )

    trimmed, forgotten, _ = await housekeeping.once()

    assert trimmed >= 4 * 400 and forgotten == 0
    for stream, _ in streams:
        left = [entry_id for entry_id, _ in await state_redis.xrange(stream)]
        assert b"1500-0" in left and b"1599-0" in left and len(left) < 200


async def test_housekeeping_drops_the_failure_streaks_of_deleted_schedules_and_campaigns(
    state_redis: Redis,
) -> None:
    registry = Registry()
    shared = replace(schedule_record("b2"), campaign_id="c-b")  # campaign c-b has two
    for n, schedule in enumerate((schedule_record("a"), schedule_record("b"), shared)):
        await registry.apply((n + 1, 0), schedule, deleted=False)
    await registry.apply((4, 0), schedule_record("b", 2), deleted=True)
    fields = ["s:a", "c:c-a", "s:b", "c:c-b", "s:b2", "s:gone", "c:c-gone"]
    await state_redis.hset("{sched}:streaks", mapping=dict.fromkeys(fields, 3))
    newest: list[StreamId] = [(5, 0)]  # the log has an entry this replica has not applied

    async def newest_entry() -> StreamId:
        return newest[0]

    housekeeping = Housekeeping(
        Retention(state_redis, consumer_idle_ms=3_600_000),
        [],
        interval_s=60,
        streaks=StreakSweep(state_redis, registry, newest_entry, page=2),
    )

    assert (await housekeeping.once())[2] == 0  # behind the log: it may not know a schedule
    newest[0] = (4, 0)
    assert (await housekeeping.once())[2] == 3
    left = await state_redis.hkeys("{sched}:streaks")
    assert sorted(left) == [b"c:c-a", b"c:c-b", b"s:a", b"s:b2"]

    await registry.apply((5, 0), replace(shared, version=2), deleted=True)
    assert (await housekeeping.once())[2] == 2  # the campaign's last schedule went
    assert sorted(await state_redis.hkeys("{sched}:streaks")) == [b"c:c-a", b"s:a"]
