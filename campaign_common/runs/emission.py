"""Emitting a run exactly once: the emission script, its reply, and the emission guards.

A run id is appended at most once across scheduler replicas and client re-sends (a dedupe
marker), a capped schedule never passes its cap (a counter), and a scheduled fire is appended
only while the schedule as the scheduler's command path stored it (its `EmissionGuard`) is at
the version the fire was computed from and active. The checks and the XADD are one script
(`EMIT_ONE`; many runs per call: `EMIT_RUNS`), so a crash between them is impossible and two
replicas can never both pass them. `campaign_common.runs.log.RunLog` is its caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from redis.asyncio import Redis

from campaign_common.envelope import FIELD_COUNT, Envelope
from campaign_common.runs.keys import Partition, Partitions, index_member
from campaigns.v1 import events_pb2

# One run's emission, a Lua function over the run's 8 keys from KEYS[k + 1] and its args `a`:
# KEYS[k+1] dedupe key, KEYS[k+2] stream to append to, KEYS[k+3] run hash,
# KEYS[k+4] index all, KEYS[k+5] index schedule, KEYS[k+6] index campaign,
# KEYS[k+7] counter of the schedule's scheduled runs, KEYS[k+8] the schedule's emission guard
# a[1] dedupe ttl ms, a[2] index member, a[3] run hash ttl ms, a[4] index cutoff member
# (members below it are pruned), a[5] cap on the counter (0: no cap, and the counter is not
# touched), a[6] schedule version the fire was computed from (0: not guarded, a manual run),
# a[7] number of envelope field/value pairs n, a[8 .. 7+2n] envelope pairs, the rest: run hash
# field/value pairs.
# Returns the stream id; -2 when the run id was created already (by another replica, or by
# this very call when the client re-sends it after a lost reply: safe to re-send); -1 when
# the guard is not at a[6] and active (a stale copy of the schedule fired); 0 when the cap is
# reached. The dedupe check comes first, so a re-send still answers "already created" even
# when the schedule changed in between.
EMIT_ONE = """
local pruned = {}  -- indexes pruned and expired by this call (a burst's runs share index all)
local function emit(k, a)
  if redis.call('EXISTS', KEYS[k + 1]) == 1 then return -2 end
  if a[6] ~= '0' then
    local guard = redis.call('HMGET', KEYS[k + 8], 'version', 'active')
    if guard[1] ~= a[6] or guard[2] ~= '1' then return -1 end
  end
  local cap = tonumber(a[5])
  if cap > 0 and tonumber(redis.call('GET', KEYS[k + 7]) or '0') >= cap then return 0 end
  redis.call('SET', KEYS[k + 1], '1', 'PX', a[1])
  if cap > 0 then redis.call('INCR', KEYS[k + 7]) end
  local n = tonumber(a[7])
  local envelope = {}
  for i = 8, 7 + 2 * n do envelope[#envelope + 1] = a[i] end
  local id = redis.call('XADD', KEYS[k + 2], '*', unpack(envelope))
  local hash = {}
  for i = 8 + 2 * n, #a do hash[#hash + 1] = a[i] end
  redis.call('HSET', KEYS[k + 3], unpack(hash))
  redis.call('PEXPIRE', KEYS[k + 3], a[3])
  for j = 4, 6 do
    local index = KEYS[k + j]
    redis.call('ZADD', index, 0, a[2])
    if not pruned[index] then  -- the runs of one call share their cutoff and ttl
      pruned[index] = true
      redis.call('ZREMRANGEBYLEX', index, '-', '(' .. a[4])
      redis.call('PEXPIRE', index, a[3])  -- an index outlives its newest run by no more
    end
  end
  return id
end
"""

# Lua: the values of a netstring-packed argument ("<length>:<bytes>" one after the other,
# `pack_values`), as a table. One packed argument per run instead of ~40 keeps the client's
# command packing (per argument) out of a burst's cost.
UNPACK_VALUES = """
local function unpack_values(packed)
  local values, pos = {}, 1
  while pos <= #packed do
    local colon = string.find(packed, ':', pos, true)
    local length = tonumber(string.sub(packed, pos, colon - 1))
    values[#values + 1] = string.sub(packed, colon + 1, colon + length)
    pos = colon + length + 1
  end
  return values
end
"""

# Many runs per call (a burst of fires is a few round trips): KEYS are the runs' 8 keys one
# run after the other; ARGV[i] is run i's args, packed (`UNPACK_VALUES`). Each run is emitted
# exactly as alone (`EMIT_ONE`); returns one reply per run, in order.
EMIT_RUNS = (
    EMIT_ONE
    + UNPACK_VALUES
    + """
local replies = {}
for i = 1, #ARGV do
  replies[i] = emit((i - 1) * 8, unpack_values(ARGV[i]))
end
return replies
"""
)


def pack_values(values: list[Any]) -> bytes:
    """``values`` as one netstring-packed argument (`UNPACK_VALUES`)."""
    return b"".join([_netstring(value) for value in values])


def _netstring(value: Any) -> bytes:
    raw = value if type(value) is bytes else str(value).encode()
    return b"%d:%b" % (len(raw), raw)


# The names in every run's args, packed once.
_PACKED = {
    name: _netstring(name)
    for name in (
        "type", "schema", "occurred_at", "body", "traceparent", "tracestate",
        "run_id", "schedule_id", "campaign_id", "scheduled_for_ms",
        "state", "attempt", "rank", "trigger", "error", "finished_at_ms",
    )
}  # fmt: skip
_PACKED_FIELD_COUNT = _netstring(FIELD_COUNT)


def _name(name: str) -> bytes:
    return _PACKED.get(name) or _netstring(name)


# A deleted schedule's guard (a tombstone: inactive) is kept this long after the delete, far
# longer than any replica lags behind the schedule log. After that a missing guard refuses
# just the same: a guarded fire needs a guard that exists.
GUARD_TOMBSTONE_TTL_MS = 30 * 24 * 3600 * 1000

# KEYS[1 .. n] emission guards of schedules
# ARGV[3i-2 .. 3i] for guard i: schedule version, '1' when the schedule fires at that version
# ('0': paused, completed or deleted), when the guard expires (unix ms; 0: never)
# Raise only: a version not higher than the stored one changes nothing, so a late write (a
# lagging log follower) never lowers a guard and a re-send is harmless. An expiry in the
# past deletes the guard (a replayed old delete), which refuses all the same. Many guards per
# call, so a start-up's replay raises thousands in a few round trips.
# Returns how many guards were raised.
_RAISE_GUARDS = """
local raised = 0
for i = 1, #KEYS do
  local version = ARGV[3 * i - 2]
  local current = tonumber(redis.call('HGET', KEYS[i], 'version') or '0')
  if tonumber(version) > current then
    redis.call('HSET', KEYS[i], 'version', version, 'active', ARGV[3 * i - 1])
    if ARGV[3 * i] == '0' then
      redis.call('PERSIST', KEYS[i])
    else
      redis.call('PEXPIREAT', KEYS[i], ARGV[3 * i])
    end
    raised = raised + 1
  end
end
return raised
"""


@dataclass(frozen=True)
class EmitCall:
    """One run's part of an `EMIT_RUNS` call: which run, where its envelope goes, its checks.

    ``cap`` (0: none) and ``schedule_version`` (0: not guarded, a manual run) are the checks;
    ``fields`` are the run hash's fields besides the run's identity; ``partition`` is the
    run's campaign's, ``stream`` one of its streams.
    """

    partition: Partition
    stream: str
    envelope: Envelope
    run: events_pb2.RunRequested
    fields: dict[str, str | int]
    dedupe_ttl_ms: int
    cap: int = 0
    schedule_version: int = 0

    def keys(self) -> list[str]:
        run = self.run
        partition = self.partition
        return [
            partition.dedupe_key(run.run_id),
            self.stream,
            partition.run_key(run.run_id),
            partition.index_all,
            partition.schedule_index(run.schedule_id),
            partition.campaign_index(run.campaign_id),
            partition.emitted_key(run.schedule_id),
            partition.guard_key(run.schedule_id),
        ]

    def packed(self, run_ttl_ms: int) -> bytes:
        """The run's args (`EMIT_ONE`'s ``a``: checks, envelope, run hash), packed as
        `pack_values` packs them; the names are packed once per process (`_PACKED`)."""
        run = self.run
        envelope = self.envelope
        at = run.scheduled_for  # ToMilliseconds is Python code with checks: a burst's cost
        scheduled_ms = at.seconds * 1000 + at.nanos // 1_000_000
        cutoff = index_member(max(0, envelope.occurred_at_ms - run_ttl_ms), "")
        return b"".join([
            _netstring(self.dedupe_ttl_ms),
            _netstring(index_member(scheduled_ms, run.run_id)),
            _netstring(run_ttl_ms),
            _netstring(cutoff),
            _netstring(self.cap),
            _netstring(self.schedule_version),
            _PACKED_FIELD_COUNT,
            _PACKED["type"], _netstring(envelope.type),
            _PACKED["schema"], _netstring(envelope.schema),
            _PACKED["occurred_at"], _netstring(envelope.occurred_at_ms),
            _PACKED["body"], _netstring(envelope.body),
            _PACKED["traceparent"], _netstring(envelope.traceparent),
            _PACKED["tracestate"], _netstring(envelope.tracestate),
            _PACKED["run_id"], _netstring(run.run_id),
            _PACKED["schedule_id"], _netstring(run.schedule_id),
            _PACKED["campaign_id"], _netstring(run.campaign_id),
            _PACKED["scheduled_for_ms"], _netstring(scheduled_ms),
            *[_name(key) + _netstring(value) for key, value in self.fields.items()],
        ])  # fmt: skip


class Emission(StrEnum):
    """What `RunLog.request_run` or `RunLog.record_missed` did (the values are metric labels).

    Only EMITTED is true, so ``if await runs.request_run(...)`` reads "if it was created".
    """

    EMITTED = "emitted"  # created by this call
    DUPLICATE = "deduplicated"  # created before: by another replica, or by a lost first send
    CAPPED = "capped"  # the schedule's max total runs were reached
    STALE = "stale"  # the schedule is not active at the version the fire was computed from

    def __bool__(self) -> bool:
        return self is Emission.EMITTED

    @classmethod
    def of(cls, reply: Any) -> Emission:
        """The meaning of one `EMIT_ONE` reply."""
        if isinstance(reply, bytes):
            return cls.EMITTED
        code = int(reply)
        if code == -2:
            return cls.DUPLICATE
        return cls.STALE if code < 0 else cls.CAPPED


@dataclass(frozen=True)
class EmissionGuard:
    """A schedule as the scheduler stored it, which scheduled fires are checked against.

    ``active`` only for an ACTIVE schedule. ``deleted_at_ms`` (0: not deleted) starts the
    tombstone's expiry. Written (raised) by the scheduler's command path right after each
    schedule log append, and by every replica's log follower before it applies an entry.
    """

    schedule_id: str
    campaign_id: str
    version: int
    active: bool
    deleted_at_ms: int = 0

    def args(self) -> list[int]:
        expire_at_ms = self.deleted_at_ms + GUARD_TOMBSTONE_TTL_MS if self.deleted_at_ms else 0
        return [self.version, int(self.active), expire_at_ms]


class EmissionGuards:
    """Raises emission guards (`_RAISE_GUARDS`): up to ``batch`` per script call, one
    partition per call."""

    def __init__(self, redis: Redis, partitions: Partitions, batch: int = 500) -> None:
        self._redis = redis
        self._partitions = partitions
        self._batch = batch
        self._raise = redis.register_script(_RAISE_GUARDS)

    async def raise_all(self, guards: list[EmissionGuard]) -> int:
        """Raise each guard (raise only, so their order does not matter); how many rose."""
        raised = 0
        grouped = self._partitions.group(guard.campaign_id for guard in guards)
        for partition, positions in grouped.items():
            for start in range(0, len(positions), self._batch):
                chunk = [guards[i] for i in positions[start : start + self._batch]]
                keys = [partition.guard_key(guard.schedule_id) for guard in chunk]
                args = [value for guard in chunk for value in guard.args()]
                raised += int(await self._raise(keys=keys, args=args))
        return raised
