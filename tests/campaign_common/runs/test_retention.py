"""Stream retention against a real Redis: trims old entries, never what a group still needs."""

from __future__ import annotations

from redis.asyncio import Redis

from campaign_common.runs.retention import Retention, StreamRetention
from tests.support import eventually

STREAM = "{t}:stream"
GROUP = "g"
DAY_MS = 24 * 3600 * 1000


async def _fill(redis: Redis, count: int) -> list[str]:
    """``count`` entries with ids 1000-0, 1001-0 ... (ancient: older than any retention)."""
    ids = []
    for n in range(count):
        ids.append((await redis.xadd(STREAM, {"n": n}, id=f"{1000 + n}-0")).decode())
    return ids


async def _ids(redis: Redis) -> list[str]:
    return [entry_id.decode() for entry_id, _ in await redis.xrange(STREAM)]


async def test_retention_trims_old_entries_but_keeps_every_pending_one(state_redis: Redis) -> None:
    ids = await _fill(state_redis, 1000)
    await state_redis.xgroup_create(STREAM, GROUP, id="0")
    await state_redis.xreadgroup(GROUP, "w1", {STREAM: ">"}, count=900)  # 900 delivered
    await state_redis.xack(STREAM, GROUP, *ids[:600])  # ids[600] is the oldest pending one
    retention = Retention(state_redis, consumer_idle_ms=DAY_MS)
    rule = StreamRetention(STREAM, retention_ms=DAY_MS, groups=(GROUP,))

    trimmed = await retention.trim(rule, now_ms=1000 * DAY_MS)

    left = await _ids(state_redis)
    assert trimmed >= 500 and len(left) == 1000 - trimmed  # whole nodes only (XTRIM ~)
    assert set(ids[600:]) <= set(left)  # pending (600..899) and unread (900..999) all kept


async def test_retention_keeps_entries_a_group_has_not_read(state_redis: Redis) -> None:
    ids = await _fill(state_redis, 500)
    await state_redis.xgroup_create(STREAM, GROUP, id="0")  # never read anything
    retention = Retention(state_redis, consumer_idle_ms=DAY_MS)
    rule = StreamRetention(STREAM, retention_ms=DAY_MS, groups=(GROUP,))
    assert await retention.trim(rule, now_ms=1000 * DAY_MS) == 0
    assert await _ids(state_redis) == ids


async def test_retention_keeps_entries_younger_than_the_retention(state_redis: Redis) -> None:
    ids = await _fill(state_redis, 500)
    retention = Retention(state_redis, consumer_idle_ms=DAY_MS)
    rule = StreamRetention(STREAM, retention_ms=DAY_MS, groups=())
    assert await retention.trim(rule, now_ms=1000 + DAY_MS) == 0  # all within a day
    assert await _ids(state_redis) == ids
    assert await retention.trim(rule, now_ms=2000 + DAY_MS) > 0  # now all older than a day


async def test_retention_forgets_idle_consumers_with_nothing_pending(state_redis: Redis) -> None:
    ids = await _fill(state_redis, 2)
    await state_redis.xgroup_create(STREAM, GROUP, id="0")
    await state_redis.xreadgroup(GROUP, "gone", {STREAM: ">"}, count=1)
    await state_redis.xack(STREAM, GROUP, ids[0])  # "gone" has nothing pending
    await state_redis.xreadgroup(GROUP, "busy", {STREAM: ">"}, count=1)  # "busy" holds ids[1]
    retention = Retention(state_redis, consumer_idle_ms=20)
    rule = StreamRetention(STREAM, retention_ms=DAY_MS, groups=(GROUP, "missing-group"))

    await eventually(lambda: retention.forget_idle_consumers(rule), what="a consumer forgotten")

    names = [c["name"] for c in await state_redis.xinfo_consumers(STREAM, GROUP)]
    assert names in ([b"busy"], ["busy"])  # pending entries are never dropped with a consumer
    assert (await state_redis.xpending(STREAM, GROUP))["pending"] == 1
