"""Watching runs over every partition: merged changes, resumable positions."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from campaign_common.page_tokens import InvalidPageToken, encode_page_token
from campaign_common.runs.log import RunLog
from scheduler_svc.run_watch import RunWatch
from tests.support import PARTITIONS, campaigns_in, eventually, scheduled_request


async def test_run_watch_merges_the_partitions_and_resumes_from_a_position(
    state_redis: Redis,
) -> None:
    watch = RunWatch(state_redis, PARTITIONS, block_ms=300, poll_ms=20)
    runs = RunLog(state_redis, PARTITIONS)
    after = await watch.start("")
    campaigns = [campaigns_in(p.index, 1, "watched")[0] for p in PARTITIONS]
    for n, campaign in enumerate(campaigns):
        await runs.request_run(scheduled_request(f"w:{n}", campaign_id=campaign), dedupe=False)

    seen: list[tuple[str, int, str]] = []

    async def every_one() -> bool:
        seen.extend((c.run_id, c.partition.index, c.position) for c in await watch.changes(after))
        return len(seen) >= len(campaigns)

    await eventually(every_one, timeout_s=10, what="a change from every partition")
    assert sorted((run_id, p) for run_id, p, _ in seen) == [
        (f"w:{n}", n) for n in range(len(campaigns))
    ]
    resumed = await watch.start(seen[0][2])  # after the first change: the others again
    again = await watch.changes(resumed)
    assert sorted(c.run_id for c in again) == sorted(run_id for run_id, _, _ in seen[1:])


async def test_run_watch_refuses_a_position_of_another_partition_count(
    state_redis: Redis,
) -> None:
    watch = RunWatch(state_redis, PARTITIONS)
    with pytest.raises(InvalidPageToken):
        await watch.start(encode_page_token("1-0|2-0"))  # one partition's position
