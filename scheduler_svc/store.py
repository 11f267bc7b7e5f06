"""All Redis access of the scheduler: the schedule event log, its optimistic append, and the
emission guards the log's entries raise.

Keys (hash tag ``{sched}``; run keys, the emission guards among them, belong to
`campaign_common.runs.log`):
    {sched}:log        stream of schedule event envelopes (the event log, never trimmed)
    {sched}:versions   hash schedule_id -> current version (the optimistic-concurrency check)
    {sched}:trimmed    the highest log position compaction may have trimmed away
    {sched}:op:<id>    reply of one append (`campaign_common.runs.opscript`), so a re-send is safe

Emission guards: the emission script runs in the ``{runs}`` slot and cannot read
``{sched}:versions``, so each schedule's version and state are mirrored into its guard
(`campaign_common.runs.emission.EmissionGuard`) by every replica's log follower (`raise_guards`,
many per script call) before it applies an entry. A command answers only after its replica
applied its entry, so never before its guard is raised; the command path itself needs no
round trip for it.
"""

from __future__ import annotations

import logging
from typing import Any, cast

from google.protobuf.message import Message
from redis.asyncio import Redis

from campaign_common.envelope import Envelope, EnvelopeError, wrap
from campaign_common.runs.emission import EmissionGuard, EmissionGuards
from campaign_common.runs.keys import Partitions
from campaign_common.runs.opscript import idempotent, new_op_id, op_key
from scheduler_svc.errors import VersionConflict
from scheduler_svc.model import Schedule, ScheduleState
from scheduler_svc.registry import StreamId, parse_stream_id

SCHEDULE_LOG = "{sched}:log"
# The highest log position that may have been trimmed away (`scheduler_svc.snapshot`).
TRIMMED = "{sched}:trimmed"
VERSIONS = "{sched}:versions"

# KEYS[1] versions hash, KEYS[2] schedule log stream, KEYS[3] operation key (opscript)
# ARGV[1] schedule id, ARGV[2] expected current version (0: must not exist yet),
# ARGV[3 ..] envelope field/value pairs.
# Returns {1, entry id} when appended, {0, current version} on a version mismatch. The check
# and the append are one script, so two writers can never both append version v+1; the
# operation key makes a re-send after a lost reply answer {1, entry id} again instead of a
# conflict with its own append.
_APPEND = idempotent("""
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if current ~= tonumber(ARGV[2]) then return {0, tostring(current)} end
local envelope = {}
for i = 3, #ARGV do envelope[#envelope + 1] = ARGV[i] end
local id = redis.call('XADD', KEYS[2], '*', unpack(envelope))
redis.call('HSET', KEYS[1], ARGV[1], current + 1)
return {1, id}
""")

# KEYS[1] versions hash, KEYS[2] schedule log stream, KEYS[3] operation key (opscript)
# ARGV, per change: schedule id, expected current version, number n of envelope field/value
# pairs, the n pairs.
# `_APPEND` for many changes in one call (a burst's completions): each is checked and appended
# on its own, in order. Returns one {1, entry id} or {0, current version} per change.
_APPEND_MANY = idempotent("""
local replies = {}
local pos = 1
while pos <= #ARGV do
  local id, expected, n = ARGV[pos], tonumber(ARGV[pos + 1]), tonumber(ARGV[pos + 2])
  local current = tonumber(redis.call('HGET', KEYS[1], id) or '0')
  if current ~= expected then
    replies[#replies + 1] = {0, tostring(current)}
  else
    local envelope = {}
    for i = pos + 3, pos + 2 + 2 * n do envelope[#envelope + 1] = ARGV[i] end
    replies[#replies + 1] = {1, redis.call('XADD', KEYS[2], '*', unpack(envelope))}
    redis.call('HSET', KEYS[1], id, current + 1)
  end
  pos = pos + 3 + 2 * n
end
return replies
""")

log = logging.getLogger(__name__)
Entry = tuple[StreamId, Envelope | None]
# A change for `append_many`: schedule id, expected current version, event.
Change = tuple[str, int, Message]


def guard_of(schedule: Schedule, deleted: bool) -> EmissionGuard:
    """The emission guard of ``schedule`` as a log entry leaves it."""
    return EmissionGuard(
        schedule.schedule_id,
        schedule.campaign_id,
        schedule.version,
        active=not deleted and schedule.state is ScheduleState.ACTIVE,
        deleted_at_ms=schedule.updated_at_ms if deleted else 0,
    )


class ScheduleStore:
    def __init__(self, redis: Redis, partitions: Partitions) -> None:
        self._redis = redis
        self._append = redis.register_script(_APPEND)
        self._append_many = redis.register_script(_APPEND_MANY)
        self._guards = EmissionGuards(redis, partitions)

    async def append(
        self, schedule_id: str, expected_version: int, event: Message, op_id: str = ""
    ) -> StreamId:
        """Append ``event`` if the schedule is at ``expected_version``; its log entry id.

        The caller answers only once its replica applied the entry (which raises the guard
        first: `raise_guards`). Safe to re-send (an operation id per call; a caller's own
        ``op_id``, e.g. from a create's request id, makes a repeated call answer the first
        call's entry).
        """
        args = [schedule_id, expected_version, *wrap(event).flat_fields()]
        keys = [VERSIONS, SCHEDULE_LOG, op_key("sched", op_id or new_op_id())]
        ok, value = await self._append(keys=keys, args=args)
        if not ok:
            raise VersionConflict(
                f"schedule {schedule_id} is at version {int(value)}, not {expected_version}: "
                "read it again and retry"
            )
        return parse_stream_id(cast(bytes, value))

    async def append_many(self, changes: list[Change]) -> list[StreamId | None]:
        """`append` for many changes in one call; per change its entry id, or None when the
        schedule was not at the expected version (a concurrent change won). Safe to re-send."""
        args: list[str | int | bytes] = []
        for schedule_id, expected_version, event in changes:
            flat = wrap(event).flat_fields()
            args += [schedule_id, expected_version, len(flat) // 2, *flat]
        keys = [VERSIONS, SCHEDULE_LOG, op_key("sched", new_op_id())]
        replies = await self._append_many(keys=keys, args=args)
        return [parse_stream_id(value) if ok else None for ok, value in replies]

    async def raise_guards(self, guards: list[EmissionGuard]) -> None:
        """Raise the emission guards of applied log entries (one round trip)."""
        await self._guards.raise_all(guards)

    async def read_after(self, after: StreamId, count: int) -> list[Entry]:
        """Up to ``count`` entries strictly after ``after``, oldest first (replay)."""
        start = f"({after[0]}-{after[1]}"
        raw: Any = await self._redis.xrange(SCHEDULE_LOG, min=start, max="+", count=count)
        return [_entry(entry_id, fields) for entry_id, fields in raw]

    async def read_entry(self, entry: StreamId) -> Envelope | None:
        """The log entry ``entry`` (None if it is not there or malformed)."""
        text = f"{entry[0]}-{entry[1]}"
        raw: Any = await self._redis.xrange(SCHEDULE_LOG, min=text, max=text, count=1)
        return _entry(raw[0][0], raw[0][1])[1] if raw else None

    async def latest_id(self) -> StreamId | None:
        newest: Any = await self._redis.xrevrange(SCHEDULE_LOG, count=1)
        return parse_stream_id(newest[0][0]) if newest else None

    async def tail(
        self, after: StreamId, block_ms: int, count: int
    ) -> tuple[list[Entry], StreamId]:
        """Entries after ``after``, waiting up to ``block_ms`` for the first one, and the log's
        trim point as it was once they were read (`scheduler_svc.snapshot`; one round trip)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xread({SCHEDULE_LOG: f"{after[0]}-{after[1]}"}, count=count, block=block_ms)
            pipe.get(TRIMMED)
            reply, trimmed = await pipe.execute()
        entries = [
            _entry(entry_id, fields) for _, items in reply or [] for entry_id, fields in items
        ]
        return entries, parse_stream_id(trimmed) if trimmed else (0, 0)


def _entry(entry_id: bytes, fields: dict[bytes, bytes]) -> Entry:
    """A log entry; a malformed one is kept as (id, None) so readers step over it."""
    try:
        return parse_stream_id(entry_id), Envelope.from_fields(fields)
    except EnvelopeError as exc:
        log.warning("skipping malformed schedule log entry %r: %s", entry_id, exc)
        return parse_stream_id(entry_id), None
