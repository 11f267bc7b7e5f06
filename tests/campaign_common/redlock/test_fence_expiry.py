"""Fence counters on the lock masters expire one retention after their last grant."""

from __future__ import annotations

from redis.asyncio import Redis

from campaign_common.redlock.client import Redlock
from campaign_common.redlock.scripts import fence_key


async def test_fence_expiry_counter_ttl_refreshed_by_every_grant(lock_urls: list[str]) -> None:
    masters = [Redis.from_url(url) for url in lock_urls]
    redlock = Redlock([Redis.from_url(url) for url in lock_urls], fence_ttl_ms=60_000)
    forever = Redlock([Redis.from_url(url) for url in lock_urls])
    try:
        first = await redlock.acquire("campaign:a", ttl_ms=5_000)
        await redlock.release(first)
        for master in masters:  # as if the resource had been idle for most of the retention
            assert 0 < await master.pttl(fence_key("campaign:a")) <= 60_000
            await master.pexpire(fence_key("campaign:a"), 1_000)
        second = await redlock.acquire("campaign:a", ttl_ms=5_000)
        await redlock.release(second)
        assert second.fence > first.fence
        for master in masters:
            assert await master.pttl(fence_key("campaign:a")) > 1_000  # the grant refreshed it
        kept = await forever.acquire("campaign:b", ttl_ms=5_000)  # fence_ttl_ms=0: no expiry
        await forever.release(kept)
        for master in masters:
            assert await master.pttl(fence_key("campaign:b")) == -1
    finally:
        for client in (redlock, forever):
            await client.aclose()
        for master in masters:
            await master.aclose()


async def test_fence_expiry_idle_resource_restarts_above_the_floor(lock_urls: list[str]) -> None:
    """Once a counter expired, a caller's floor (the state's fence, if it still exists)
    keeps the next fence above every fence that wrote."""
    masters = [Redis.from_url(url) for url in lock_urls]
    redlock = Redlock([Redis.from_url(url) for url in lock_urls], fence_ttl_ms=60_000)
    try:
        for _ in range(3):
            await redlock.release(await redlock.acquire("campaign:c", ttl_ms=5_000))
        for master in masters:
            await master.delete(fence_key("campaign:c"))  # expired
        lease = await redlock.acquire("campaign:c", ttl_ms=5_000, fence_floor=3)
        await redlock.release(lease)
        assert lease.fence == 4
    finally:
        await redlock.aclose()
        for master in masters:
            await master.aclose()
