"""Cluster-wide limit on concurrently running campaign runs: a lease-based semaphore.

The state Redis holds one sorted set of slot holders scored by their lease expiry (server
time, ``TIME`` inside the script, so workers' clocks do not matter). This module owns that key
and its scripts:

    {scraper}:slots   sorted set: member = holder id (worker, run, entry), score = expiry ms

Timeline of one slot, and why it is correct:

    acquire: one script drops expired holders, then adds us if we hold a slot already or the
             set has fewer than ``limit`` members; otherwise the run polls again with backoff
             and jitter, at most ``wait_s`` (then `NoSlot`: the run is retried later, not lost)
    hold:    a keeper renews the lease every ttl/3 with the same script (a renewal after an
             expiry takes a slot again if one is free; if none is, the run goes on over the
             limit and a warning says so: a run is never killed for a slot)
    release: the keeper is told to stop and awaited first (a renewal it has in flight
             finishes, so it cannot land after the ZREM and re-take the slot), then ZREM on
             the way out (also after errors and cancellation); a worker that dies never
             releases, and its slots expire ``ttl_ms`` after their last renewal

Checking and adding happen in one script, so two workers never take the last slot both.
Waiting runs are not queued: when a slot frees, whichever poll comes first gets it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator

from redis.asyncio import Redis
from redis.exceptions import RedisError

from campaign_common.tasks import raise_if_cancelling
from scraper_svc.errors import ScraperError

log = logging.getLogger(__name__)

SLOTS_KEY = "{scraper}:slots"
POLL_MIN_S = 0.02
POLL_MAX_S = 0.5

# KEYS[1] slots sorted set
# ARGV[1] holder id, ARGV[2] limit, ARGV[3] lease ttl ms
# Drops expired holders; (re)takes a slot for the holder if it has one or one is free.
# Returns 1 when the holder has a slot until now + ttl, 0 when every slot is taken.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
"""


class NoSlot(ScraperError):
    """Every cluster slot stayed taken for as long as the run may wait."""


class ClusterSemaphore:
    """At most ``limit`` holders across every worker (0: no limit, and no Redis traffic)."""

    def __init__(self, redis: Redis, *, limit: int, ttl_ms: int, wait_s: float) -> None:
        self._redis = redis
        self.limit = limit
        self._ttl_ms = ttl_ms
        self._wait_s = wait_s
        self._take = redis.register_script(_TAKE)

    async def take(self, holder: str) -> bool:
        """One attempt: True if ``holder`` has a slot now (lease renewed)."""
        return bool(await self._take(keys=[SLOTS_KEY], args=[holder, self.limit, self._ttl_ms]))

    async def release(self, holder: str) -> None:
        await self._redis.zrem(SLOTS_KEY, holder)

    async def holders(self) -> int:
        """Slots taken right now, expired ones included until the next script run."""
        return int(await self._redis.zcard(SLOTS_KEY))

    @contextlib.asynccontextmanager
    async def slot(self, holder: str) -> AsyncIterator[None]:
        """Hold a slot for the body (waits at most ``wait_s``, else `NoSlot`)."""
        if self.limit <= 0:
            yield
            return
        await self._wait_for_slot(holder)
        stop = asyncio.Event()
        keeper = asyncio.create_task(self._keep(holder, stop), name=f"slot-{holder}")
        try:
            yield
        finally:
            stop.set()
            # Not cancelled: a renewal already on the wire would land after the ZREM.
            # Bounded by one renewal, which runs under the client's socket timeout.
            await asyncio.shield(keeper)
            with contextlib.suppress(RedisError, OSError):  # the lease expires anyway
                await self.release(holder)

    async def _wait_for_slot(self, holder: str) -> None:
        deadline = time.monotonic() + self._wait_s
        delay = POLL_MIN_S
        while not await self.take(holder):
            left = deadline - time.monotonic()
            if left <= 0:
                raise NoSlot(f"all {self.limit} slots stayed taken for {self._wait_s:g} s")
            await asyncio.sleep(min(left, delay * random.uniform(0.5, 1.5)))
            delay = min(delay * 2, POLL_MAX_S)

    async def _keep(self, holder: str, stop: asyncio.Event) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._ttl_ms / 3000)
            if stop.is_set():
                return
            try:
                if not await self.take(holder):
                    log.warning("cluster slot of %s expired and every slot is taken", holder)
            except (RedisError, OSError) as exc:
                raise_if_cancelling()
                log.warning("renewing the cluster slot of %s failed: %s", holder, exc)
