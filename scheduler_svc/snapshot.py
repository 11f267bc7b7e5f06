"""Snapshots of the schedule log: the state every entry up to a position leaves, and the trim
of the log behind it.

Keys (hash tag ``{sched}``, beside the log of `scheduler_svc.store`):
    {sched}:snapshot      hash schedule id -> campaigns.v1.Schedule bytes (deleted: absent)
    {sched}:snapshot:at   the log position the snapshot covers (stream id "ms-seq")
    {sched}:trimmed       the highest log position that may have been trimmed away (named in
                          `scheduler_svc.store`: the log follower reads it with its tail)

Timeline that keeps a reader correct:
1. The compactor (any replica, any number at once) reads the log after the snapshot's position,
   raises the emission guards of those entries (so nothing in a snapshot ever needs its guard
   raised again), then folds them into the snapshot with `_FOLD`: one script per batch that
   applies only entries after the stored position and moves the position, so concurrent
   compactors and re-sends fold each entry once, in log order.
2. The log is trimmed only behind the snapshot's position and only entries older than
   ``keep_ms``; `_TRIM` records the trim point in the same script.
3. A reader loads the snapshot (position first, then the hash in pages: a page may already
   show a later version, which is harmless, since the registry applies only higher versions)
   and then the log after that position. If the trim point has passed the position it read,
   entries it needed may be gone: it loads again (`Stale`). A follower whose position falls
   behind the trim point does the same.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis

from campaigns.v1 import schedule_pb2
from scheduler_svc.codec import schedule_from_proto
from scheduler_svc.log_entries import Decoded
from scheduler_svc.model import Schedule
from scheduler_svc.registry import StreamId, parse_stream_id
from scheduler_svc.store import SCHEDULE_LOG, TRIMMED, VERSIONS

log = logging.getLogger(__name__)

SNAPSHOT = "{sched}:snapshot"
SNAPSHOT_AT = "{sched}:snapshot:at"

# Lua: is stream id a (text "ms-seq") after stream id b?
_AFTER = """
local function after(a, b)
  local am, as = string.match(a, '(%d+)-(%d+)')
  local bm, bs = string.match(b, '(%d+)-(%d+)')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am > bm or (am == bm and as > bs)
end
"""

# KEYS[1] snapshot hash, KEYS[2] snapshot position, KEYS[3] versions hash
# ARGV[1] the last entry id of the batch (entries of other types move the position too),
# ARGV[2 ..] triples (entry id, schedule id, schedule bytes or '' for a delete), log order.
# Folds each entry after the stored position, then moves the position to ARGV[1] if that is
# later. A delete also forgets the schedule's version (ids are never reused: a late update of
# it conflicts on version 0). Returns the position after the call.
_FOLD = (
    _AFTER
    + """
local at = redis.call('GET', KEYS[2]) or '0-0'
for i = 2, #ARGV, 3 do
  if after(ARGV[i], at) then
    if ARGV[i + 2] == '' then
      redis.call('HDEL', KEYS[1], ARGV[i + 1])
      redis.call('HDEL', KEYS[3], ARGV[i + 1])
    else
      redis.call('HSET', KEYS[1], ARGV[i + 1], ARGV[i + 2])
    end
  end
end
if after(ARGV[1], at) then
  at = ARGV[1]
  redis.call('SET', KEYS[2], at)
end
return at
"""
)

# KEYS[1] the log, KEYS[2] snapshot position, KEYS[3] trim point
# ARGV[1] trim entries before this id (exclusive), only if it is not after the snapshot.
# Returns the number of entries trimmed.
_TRIM = (
    _AFTER
    + """
local at = redis.call('GET', KEYS[2]) or '0-0'
local limit = ARGV[1]
if after(limit, at) then return 0 end
local trimmed = redis.call('XTRIM', KEYS[1], 'MINID', limit)
local point = redis.call('GET', KEYS[3]) or '0-0'
if after(limit, point) then redis.call('SET', KEYS[3], limit) end
return trimmed
"""
)


class Stale(Exception):
    """The log was trimmed past the position a reader started from: load again."""


def check_trim_point(trimmed: StreamId, position: StreamId) -> None:
    """Raise `Stale` if a read from ``position`` may have missed trimmed entries."""
    if trimmed > position:
        raise Stale(f"the schedule log was trimmed past {_text(position)}")


@dataclass(frozen=True)
class Snapshot:
    position: StreamId
    schedules: list[Schedule]


def _text(position: StreamId) -> str:
    return f"{position[0]}-{position[1]}"


class SnapshotStore:
    def __init__(self, redis: Redis, *, page: int = 2000) -> None:
        self._redis = redis
        self._page = page
        self._fold = redis.register_script(_FOLD)
        self._trim = redis.register_script(_TRIM)

    async def position(self) -> StreamId:
        raw = await self._redis.get(SNAPSHOT_AT)
        return parse_stream_id(raw) if raw else (0, 0)

    async def trim_point(self) -> StreamId:
        raw = await self._redis.get(TRIMMED)
        return parse_stream_id(raw) if raw else (0, 0)

    async def load(self) -> Snapshot:
        """The snapshot (each schedule as of its position or later)."""
        position = await self.position()
        schedules = [schedule async for schedule in self._pages()]
        return Snapshot(position, schedules)

    async def _pages(self) -> AsyncIterator[Schedule]:
        cursor: Any = 0
        while True:
            cursor, page = await self._redis.hscan(SNAPSHOT, cursor, count=self._page)
            for raw in cast(dict[bytes, bytes], page).values():
                yield schedule_from_proto(schedule_pb2.Schedule.FromString(raw))
            if not cursor:
                return

    async def check_not_trimmed(self, position: StreamId) -> None:
        """Raise `Stale` if entries after ``position`` may have been trimmed."""
        check_trim_point(await self.trim_point(), position)

    async def fold(self, decoded: list[Decoded]) -> StreamId:
        """Fold decoded log entries (in log order) into the snapshot; its position afterwards."""
        if not decoded:
            return await self.position()
        args: list[str | bytes] = [_text(decoded[-1].entry_id)]
        for each in decoded:
            if each.message is None:
                continue  # not a schedule event: nothing to keep
            kept = b"" if each.deleted else each.message.SerializeToString()
            args += [_text(each.entry_id), each.message.schedule_id, kept]
        raw = await self._fold(keys=[SNAPSHOT, SNAPSHOT_AT, VERSIONS], args=args)
        return parse_stream_id(raw)

    async def trim_before(self, limit: StreamId) -> int:
        """Trim log entries before ``limit`` (never past the snapshot); how many went."""
        keys = [SCHEDULE_LOG, SNAPSHOT_AT, TRIMMED]
        return int(await self._trim(keys=keys, args=[_text(limit)]))
