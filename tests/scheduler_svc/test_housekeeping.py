"""The scheduler's housekeeping bounds the run streams behind their consumer groups."""

from __future__ import annotations

from redis.asyncio import Redis

from campaign_common.runs.keys import OUTCOME_GROUP, SCRAPER_GROUP, Partitions
from campaign_common.runs.retention import Retention
from scheduler_svc.housekeeping import Housekeeping, stream_rules


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

    trimmed, forgotten = await housekeeping.once()

    assert trimmed >= 4 * 400 and forgotten == 0
    for stream, _ in streams:
        left = [entry_id for entry_id, _ in await state_redis.xrange(stream)]
        assert b"1500-0" in left and b"1599-0" in left and len(left) < 200
