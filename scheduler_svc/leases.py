"""Partition leases: scheduler replicas split the run partitions, each firing only its own.

Keys (hash tag ``{sched}``, so one script takes every lease at once):
    {sched}:lease:<p>        string: name of the replica that fires partition p's schedules,
                             with a TTL of one lease
    {sched}:lease-holders    hash: replica name -> when its registration ends (unix ms)

Every replica runs `_TAKE` each quarter lease: it registers itself, renews the leases it
holds, takes free (expired) ones up to its fair share ``ceil(P / live replicas)``, and, while
below ``floor(P / live)``, takes one from the replica holding the most. So a dead
replica's partitions are free one lease after its last renewal and taken within a quarter
lease more; a new replica gets its share within a few ticks; a stopping replica hands its
partitions back at once (`release`).

Ownership is an efficiency, never the guard of exactly-once: a fire is emitted by the
emission script only once per run id, whichever replicas try (`campaign_common.runs.emission`).
So a replica fires the partitions its last successful tick returned, even while its renewals
fail (during a state Redis outage its fires are retried and recorded as usual), and two
replicas may both fire a partition during a hand-over: the second emission is refused as a
duplicate. A partition a replica gains is caught up (`on_gained`): fires that came due while
nobody (or a dying replica) held it are emitted within their catch-up window, once, or
recorded as missed beyond it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from campaign_common.tasks import raise_if_cancelling

log = logging.getLogger(__name__)
HOLDERS = "{sched}:lease-holders"


def lease_key(partition: int) -> str:
    return f"{{sched}}:lease:{partition}"


# KEYS[1] holders hash, KEYS[2 .. P+1] lease of partition 0 .. P-1
# ARGV[1] this replica, ARGV[2] lease ms
# Returns the partitions (0-based) this replica holds after the call.
_TAKE = """
local me, lease = ARGV[1], tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], me, now + lease)
local live = 0
local registered = redis.call('HGETALL', KEYS[1])
for i = 1, #registered, 2 do
  if tonumber(registered[i + 1]) < now then
    redis.call('HDEL', KEYS[1], registered[i])
  else
    live = live + 1
  end
end
local p = #KEYS - 1
local fair, floor = math.ceil(p / live), math.floor(p / live)
local mine, held, free = {}, {}, {}
for i = 2, #KEYS do
  local holder = redis.call('GET', KEYS[i])
  if holder == me then
    redis.call('SET', KEYS[i], me, 'PX', lease)
    mine[#mine + 1] = i - 2
  elseif holder then
    held[holder] = held[holder] or {}
    table.insert(held[holder], i)
  else
    free[#free + 1] = i
  end
end
for _, i in ipairs(free) do
  if #mine >= fair then break end
  redis.call('SET', KEYS[i], me, 'PX', lease)
  mine[#mine + 1] = i - 2
end
while #mine < floor do
  local richest, most = nil, floor
  for holder, keys in pairs(held) do
    if #keys > most then richest, most = holder, #keys end
  end
  if not richest then break end
  local i = table.remove(held[richest])
  redis.call('SET', KEYS[i], me, 'PX', lease)
  mine[#mine + 1] = i - 2
end
return mine
"""

# KEYS as _TAKE; ARGV[1] this replica. Gives back its leases and its registration.
_RELEASE = """
redis.call('HDEL', KEYS[1], ARGV[1])
for i = 2, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then redis.call('DEL', KEYS[i]) end
end
return 0
"""


class PartitionLeases:
    """This replica's partitions: taken and renewed every quarter lease (`run`)."""

    def __init__(
        self,
        redis: Redis,
        name: str,
        partitions: int,
        lease_ms: int,
        on_gained: Callable[[set[int]], Awaitable[None]],
    ) -> None:
        self._redis = redis
        self._name = name
        self._lease_ms = lease_ms
        self._keys = [HOLDERS, *(lease_key(p) for p in range(partitions))]
        self._take = redis.register_script(_TAKE)
        self._release = redis.register_script(_RELEASE)
        self._on_gained = on_gained
        self._owned: frozenset[int] = frozenset()

    @property
    def owned(self) -> frozenset[int]:
        """The partitions this replica fires (as its last successful tick returned them)."""
        return self._owned

    def owns(self, partition: int) -> bool:
        return partition in self._owned

    async def tick(self) -> set[int]:
        """Register, renew, take a fair share; returns the partitions gained by this tick."""
        reply: Any = await self._take(keys=self._keys, args=[self._name, self._lease_ms])
        before = self._owned
        self._owned = frozenset(int(p) for p in reply)
        lost = before - self._owned
        if lost:
            log.info("partitions taken over by other replicas: %s", sorted(lost))
        return set(self._owned - before)

    async def run(self, stop: asyncio.Event) -> None:
        """Tick every quarter lease until ``stop``; a partition gained is caught up first."""
        interval_s = self._lease_ms / 4000
        while not stop.is_set():
            try:
                gained = await self.tick()
            except (RedisError, OSError) as exc:
                raise_if_cancelling()
                log.warning("renewing partition leases failed (%s); retrying", exc)
                gained = set()
            if gained:
                log.info("partitions gained: %s", sorted(gained))
                await self._on_gained(gained)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)

    async def holders(self) -> dict[int, str]:
        """Partition -> the replica holding its lease now (every replica's, one round trip;
        the keys share the ``{sched}`` slot); a partition nobody holds is left out."""
        values = await self._redis.mget(self._keys[1:])
        return {
            p: value.decode() if isinstance(value, bytes) else value
            for p, value in enumerate(values)
            if value is not None
        }

    async def release(self) -> None:
        """Hand every partition back now (graceful shutdown), so others take them at once."""
        self._owned = frozenset()
        with contextlib.suppress(RedisError, OSError):
            await self._release(keys=self._keys, args=[self._name])
