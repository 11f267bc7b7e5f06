"""Partition leases against a real Redis: a fair split, newcomers and silent replicas."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from campaign_common.runs.keys import PARTITION_COUNT_KEY
from scheduler_svc.config import SchedulerSettings
from scheduler_svc.errors import StartupError
from scheduler_svc.leases import PartitionLeases
from scheduler_svc.server import SchedulerServer
from tests.support import eventually


async def _nothing_gained(gained: set[int]) -> None:
    raise AssertionError(f"on_gained is run() only: {gained}")


def _leases(
    redis: Redis, name: str, partitions: int = 8, lease_ms: int = 10_000
) -> PartitionLeases:
    return PartitionLeases(redis, name, partitions, lease_ms, _nothing_gained)


async def test_leases_split_fairly_and_a_newcomer_takes_its_share(state_redis: Redis) -> None:
    a, b, c = (_leases(state_redis, name) for name in "abc")
    assert await a.tick() == set(range(8))  # alone: every partition
    gained_b = await b.tick()
    assert len(gained_b) == 4 and b.owned == gained_b  # floor(8 / 2), taken from a
    assert await a.tick() == set() and a.owned == set(range(8)) - gained_b
    await c.tick()
    for replica in (a, b, c):
        await replica.tick()
    owned = [a.owned, b.owned, c.owned]
    assert sorted(len(o) for o in owned) == [2, 3, 3]  # floor 2, ceil 3 of 8 over 3
    assert set().union(*owned) == set(range(8)) and sum(len(o) for o in owned) == 8
    holders = await a.holders()
    assert {p: name for name, o in zip("abc", owned, strict=True) for p in o} == holders


async def test_leases_given_back_are_taken_at_the_next_tick(state_redis: Redis) -> None:
    a, b = _leases(state_redis, "a"), _leases(state_redis, "b")
    await a.tick()
    await b.tick()
    before = set(b.owned)
    await a.release()
    assert await b.tick() == set(range(8)) - before  # a's four, at once
    assert await b.holders() == dict.fromkeys(range(8), "b")


async def test_leases_of_a_silent_replica_expire_and_move(state_redis: Redis) -> None:
    silent = _leases(state_redis, "silent", partitions=4, lease_ms=300)
    alive = _leases(state_redis, "alive", partitions=4, lease_ms=300)
    await silent.tick()
    await alive.tick()
    assert len(alive.owned) == 2  # silent holds the other two, and stops renewing them

    async def all_moved() -> bool:
        await alive.tick()
        return alive.owned == {0, 1, 2, 3}

    await eventually(all_moved, timeout_s=5, what="the silent replica's partitions moving")


async def test_scheduler_refuses_another_partition_count(
    state_url: str, state_redis: Redis
) -> None:
    await state_redis.set(PARTITION_COUNT_KEY, 4)
    server = SchedulerServer(SchedulerSettings(state_redis_url=state_url, port=0, partitions=2))
    with pytest.raises(StartupError, match="SCHEDULER_PARTITIONS=2, but this deployment's runs"):
        await server.start()
    assert await state_redis.get(PARTITION_COUNT_KEY) == b"4"
