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
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message
from redis.asyncio import Redis

from campaign_common.envelope import Envelope, EnvelopeError, wrap
from campaign_common.runs.emission import EmissionGuard, EmissionGuards
from campaign_common.runs.keys import Partitions
from campaign_common.runs.opscript import OP_TTL_MS, idempotent, new_op_id, op_key
from scheduler_svc.errors import VersionConflict
from scheduler_svc.model import Schedule, ScheduleState
from scheduler_svc.registry import StreamId, parse_stream_id

SCHEDULE_LOG = "{sched}:log"
# The highest log position that may have been trimmed away (`scheduler_svc.snapshot`).
TRIMMED = "{sched}:trimmed"
VERSIONS = "{sched}:versions"

# KEYS[1] versions hash, KEYS[2] schedule log stream, KEYS[3 .. #KEYS-1] the changes' own
# operation keys (`Change.op_id`), KEYS[#KEYS] the call's operation key (opscript).
# ARGV, per change: schedule id, expected current version, index into KEYS of its own operation
# key (0: none), number n of envelope field/value pairs, the n pairs.
# Many changes in one call (group commit: the API's concurrent commands, a burst's
# completions), each checked and appended on its own, in order: a change appends only if its
# schedule's current version equals the expected one, so two writers can never both append
# version v+1. Per change the reply is {1, entry id, 0} when appended, {0, current version, 0}
# on a version mismatch, and {ok, value, 1} when the change's own operation key was already
# set: the reply of the first change under that id (an idempotent create answers the first
# create's entry; the same id twice in one call appends once). Only an appended change sets
# its key (JSON {1, entry id}, as `idempotent` stores a reply): a refused one may be retried.
# The call's own operation key makes a re-send after a lost reply answer the same replies.
_APPEND_MANY = idempotent(f"""
local replies = {{}}
local pos = 1
while pos <= #ARGV do
  local id, expected = ARGV[pos], tonumber(ARGV[pos + 1])
  local own, n = tonumber(ARGV[pos + 2]), tonumber(ARGV[pos + 3])
  local first = own > 0 and redis.call('GET', KEYS[own])
  if first then
    local reply = cjson.decode(first)
    replies[#replies + 1] = {{reply[1], reply[2], 1}}
  else
    local current = tonumber(redis.call('HGET', KEYS[1], id) or '0')
    if current ~= expected then
      replies[#replies + 1] = {{0, tostring(current), 0}}
    else
      local envelope = {{}}
      for i = pos + 4, pos + 3 + 2 * n do envelope[#envelope + 1] = ARGV[i] end
      local entry = redis.call('XADD', KEYS[2], '*', unpack(envelope))
      redis.call('HSET', KEYS[1], id, current + 1)
      if own > 0 then
        redis.call('SET', KEYS[own], cjson.encode({{1, entry}}), 'PX', {OP_TTL_MS})
      end
      replies[#replies + 1] = {{1, entry, 0}}
    end
  end
  pos = pos + 4 + 2 * n
end
return replies
""")

log = logging.getLogger(__name__)
Entry = tuple[StreamId, Envelope | None]


@dataclass(frozen=True, slots=True)
class Change:
    """An event to append if its schedule is at ``expected_version`` (0: must not exist).

    ``op_id``: the caller's operation id (an idempotent create's, from its request id): a
    change under an id already used answers the first one's entry instead of appending.
    """

    schedule_id: str
    expected_version: int
    event: Message
    op_id: str = ""


@dataclass(frozen=True, slots=True)
class Appended:
    """What became of a `Change`: its log entry, or None when refused because the schedule
    was at ``version``; ``repeat``: the entry is the first change's under the same ``op_id``."""

    entry: StreamId | None
    version: int = 0
    repeat: bool = False


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
        self._append_many = redis.register_script(_APPEND_MANY)
        self._guards = EmissionGuards(redis, partitions)

    async def append(
        self, schedule_id: str, expected_version: int, event: Message, op_id: str = ""
    ) -> StreamId:
        """Append ``event`` if the schedule is at ``expected_version``; its log entry id
        (VersionConflict if not). One change of `append_many`."""
        (appended,) = await self.append_many([Change(schedule_id, expected_version, event, op_id)])
        if appended.entry is None:
            raise VersionConflict(
                f"schedule {schedule_id} is at version {appended.version}, not "
                f"{expected_version}: read it again and retry"
            )
        return appended.entry

    async def append_many(self, changes: list[Change]) -> list[Appended]:
        """Append many changes in one script call, each checked on its own (see `Change`).

        The caller answers only once its replica applied the entry (which raises the guard
        first: `raise_guards`). Safe to re-send: a fresh operation id per call.
        """
        keys: list[str] = [VERSIONS, SCHEDULE_LOG]
        args: list[str | int | bytes] = []
        for change in changes:
            own = 0
            if change.op_id:
                keys.append(op_key("sched", change.op_id))
                own = len(keys)
            flat = wrap(change.event).flat_fields()
            args += [change.schedule_id, change.expected_version, own, len(flat) // 2, *flat]
        keys.append(op_key("sched", new_op_id()))
        replies = await self._append_many(keys=keys, args=args)
        return [_appended(reply) for reply in replies]

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


def _appended(reply: list[Any]) -> Appended:
    ok, value, repeat = reply
    if ok:
        return Appended(parse_stream_id(value), repeat=bool(repeat))
    return Appended(None, int(value), bool(repeat))


def _entry(entry_id: bytes, fields: dict[bytes, bytes]) -> Entry:
    """A log entry; a malformed one is kept as (id, None) so readers step over it."""
    try:
        return parse_stream_id(entry_id), Envelope.from_fields(fields)
    except EnvelopeError as exc:
        log.warning("skipping malformed schedule log entry %r: %s", entry_id, exc)
        return parse_stream_id(entry_id), None
