"""The roster of scheduler replicas: each one says it is alive, and counts the others.

Key (hash tag ``{sched}``): ``{sched}:replicas``, a hash replica name -> last heartbeat (unix
ms). Every replica writes its own field on each gauge refresh and counts the fields seen within
``seen_within_ms``; fields silent for ``forget_after_ms`` (gone processes) are removed by
whichever replica counts next, so the hash holds live replicas only.
"""

from __future__ import annotations

from typing import cast

from redis.asyncio import Redis

from campaign_common.timeutil import now_ms

REPLICAS = "{sched}:replicas"


class ReplicaRoster:
    def __init__(
        self,
        redis: Redis,
        name: str,
        *,
        seen_within_ms: int = 30_000,
        forget_after_ms: int = 600_000,
    ) -> None:
        self._redis = redis
        self.name = name
        self._seen_within_ms = seen_within_ms
        self._forget_after_ms = forget_after_ms

    async def beat(self) -> int:
        """Record this replica as alive now; how many replicas were seen recently (itself too)."""
        at = now_ms()
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(REPLICAS, self.name, at)
            pipe.hgetall(REPLICAS)
            _, raw = await pipe.execute()
        beats = {name: int(value) for name, value in cast(dict[bytes, bytes], raw).items()}
        gone = [name for name, seen in beats.items() if seen < at - self._forget_after_ms]
        if gone:
            await self._redis.hdel(REPLICAS, *gone)
        return sum(seen >= at - self._seen_within_ms for seen in beats.values())
