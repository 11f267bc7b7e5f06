"""The replica roster: live replicas count each other, gone ones are forgotten."""

from __future__ import annotations

from redis.asyncio import Redis

from campaign_common.timeutil import now_ms
from scheduler_svc.replicas import REPLICAS, ReplicaRoster


async def test_replicas_count_each_other_and_forget_the_gone(state_redis: Redis) -> None:
    a, b = ReplicaRoster(state_redis, "a"), ReplicaRoster(state_redis, "b")
    assert await a.beat() == 1
    assert await b.beat() == 2
    await state_redis.hset(REPLICAS, "quiet", now_ms() - 60_000)  # not seen lately: not counted
    await state_redis.hset(REPLICAS, "gone", now_ms() - 3_600_000)  # silent long: forgotten
    assert await a.beat() == 2
    assert sorted(await state_redis.hkeys(REPLICAS)) == [b"a", b"b", b"quiet"]
