"""The run log: every Redis key and script about runs that crosses a process boundary.

The scheduler appends run requests here and reads the run projection; the scraper consumes
the runs stream, appends lifecycle events and writes results. This module is the one owner
of those key names and scripts. Every key carries the ``{runs}`` hash tag, so each script
touches a single Redis Cluster slot.

Keys
    {runs}:requests              stream of RunRequested envelopes (consumer group ``scrapers``)
    {runs}:events                stream of run lifecycle envelopes (RunStarted, RunSucceeded...)
    {runs}:dedupe:<run_id>       emission dedupe marker, TTL > any catch-up window
    {runs}:run:<run_id>          hash: the run projection (TTL `run_ttl_ms`)
    {runs}:idx:all|schedule:<id>|campaign:<id>
                                 sorted sets (score 0) of ``<scheduled_for_ms:013d>|<run_id>``,
                                 so a reverse lexicographic range is "newest first"; members
                                 older than the run TTL are pruned at each emission, and the
                                 key expires one run TTL after its newest run
    {runs}:results:<campaign_id> list of ScrapeResult protobufs, newest first, capped
    {runs}:emitted:<schedule_id> scheduled runs emitted so far (kept only for capped schedules)
    {runs}:guard:<schedule_id>   hash version, active: the schedule as the scheduler's command
                                 path stored it; scheduled emissions are checked against it
                                 (`EmissionGuard`). Kept while the schedule exists; a deleted
                                 schedule's expires `GUARD_TOMBSTONE_TTL_MS` after the delete
    {runs}:fence:<campaign_id>   highest lock fencing token that wrote for the campaign
    {runs}:written:<run_id>:<attempt>
                                 marker: that attempt's results are stored (TTL = run TTL), so
                                 an attempt re-run after a crash never stores them twice
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any, cast

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from campaign_common.envelope import Envelope, wrap
from campaign_common.opscript import idempotent, new_op_id, op_key
from campaign_common.page_tokens import decode_page_token, encode_page_token
from campaign_common.timeutil import ms_to_timestamp, now_ms
from campaigns.v1 import events_pb2, run_pb2

RUNS_STREAM = "{runs}:requests"
RUN_EVENTS_STREAM = "{runs}:events"
SCRAPER_GROUP = "scrapers"
_INDEX_ALL = "{runs}:idx:all"


def run_key(run_id: str) -> str:
    return f"{{runs}}:run:{run_id}"


def _dedupe_key(run_id: str) -> str:
    return f"{{runs}}:dedupe:{run_id}"


def _schedule_index(schedule_id: str) -> str:
    return f"{{runs}}:idx:schedule:{schedule_id}"


def _campaign_index(campaign_id: str) -> str:
    return f"{{runs}}:idx:campaign:{campaign_id}"


def _emitted_key(schedule_id: str) -> str:
    return f"{{runs}}:emitted:{schedule_id}"


def _guard_key(schedule_id: str) -> str:
    return f"{{runs}}:guard:{schedule_id}"


def campaign_fence_key(campaign_id: str) -> str:
    return f"{{runs}}:fence:{campaign_id}"


def _written_key(run_id: str, attempt: int) -> str:
    return f"{{runs}}:written:{run_id}:{attempt}"


def _results_key(campaign_id: str) -> str:
    return f"{{runs}}:results:{campaign_id}"


class RunState(StrEnum):
    REQUESTED = "REQUESTED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    RETRY_SCHEDULED = "RETRY_SCHEDULED"
    DEAD_LETTERED = "DEAD_LETTERED"


class Rank(IntEnum):
    """Within one attempt a projection never moves back to a lower rank."""

    REQUESTED = 0
    RUNNING = 1
    FINISHED = 2


# RETRY_SCHEDULED ranks with REQUESTED: the retried attempt's RunStarted must apply over it.
_RANKS = {
    RunState.REQUESTED: Rank.REQUESTED,
    RunState.RETRY_SCHEDULED: Rank.REQUESTED,
    RunState.RUNNING: Rank.RUNNING,
}

# KEYS[1] dedupe key, KEYS[2] stream to append to, KEYS[3] run hash,
# KEYS[4] index all, KEYS[5] index schedule, KEYS[6] index campaign,
# KEYS[7] counter of the schedule's scheduled runs, KEYS[8] the schedule's emission guard
# ARGV[1] dedupe ttl ms, ARGV[2] index member, ARGV[3] run hash ttl ms, ARGV[4] index cutoff
# member (members below it are pruned), ARGV[5] cap on the counter (0: no cap, and the counter
# is not touched), ARGV[6] schedule version the fire was computed from (0: not guarded, a
# manual run), ARGV[7] number of envelope field/value pairs n, ARGV[8 .. 7+2n] envelope
# pairs, the rest: run hash field/value pairs.
# Returns the stream id; false when the run id was created already (by another replica, or
# by this very call when the client re-sends it after a lost reply: safe to re-send); -1 when
# the guard is not at ARGV[6] and active (a stale copy of the schedule fired); 0 when the cap
# is reached. The dedupe check comes first, so a re-send still answers "already created" even
# when the schedule changed in between.
_EMIT_RUN = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
if ARGV[6] ~= '0' then
  local guard = redis.call('HMGET', KEYS[8], 'version', 'active')
  if guard[1] ~= ARGV[6] or guard[2] ~= '1' then return -1 end
end
local cap = tonumber(ARGV[5])
if cap > 0 and tonumber(redis.call('GET', KEYS[7]) or '0') >= cap then return 0 end
redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
if cap > 0 then redis.call('INCR', KEYS[7]) end
local n = tonumber(ARGV[7])
local envelope = {}
for i = 8, 7 + 2 * n do envelope[#envelope + 1] = ARGV[i] end
local id = redis.call('XADD', KEYS[2], '*', unpack(envelope))
local hash = {}
for i = 8 + 2 * n, #ARGV do hash[#hash + 1] = ARGV[i] end
redis.call('HSET', KEYS[3], unpack(hash))
redis.call('PEXPIRE', KEYS[3], ARGV[3])
for k = 4, 6 do
  redis.call('ZADD', KEYS[k], 0, ARGV[2])
  redis.call('ZREMRANGEBYLEX', KEYS[k], '-', '(' .. ARGV[4])
  redis.call('PEXPIRE', KEYS[k], ARGV[3])  -- an index outlives its newest run by no more
end
return id
"""

# A deleted schedule's guard (a tombstone: inactive) is kept this long after the delete, far
# longer than any replica lags behind the schedule log. After that a missing guard refuses
# just the same: a guarded fire needs a guard that exists.
GUARD_TOMBSTONE_TTL_MS = 30 * 24 * 3600 * 1000

# KEYS[1] the schedule's emission guard
# ARGV[1] schedule version, ARGV[2] '1' when the schedule fires at that version ('0': paused,
# completed or deleted), ARGV[3] when the guard expires (unix ms; 0: never)
# Raise only: a version not higher than the stored one changes nothing, so a late write (a
# lagging log follower) never lowers the guard and a re-send is harmless. An expiry in the
# past deletes the guard (a replayed old delete), which refuses all the same.
# Returns 1 when raised, 0 when the guard was at that version or above already.
_RAISE_GUARD = """
local current = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if tonumber(ARGV[1]) <= current then return 0 end
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'active', ARGV[2])
if ARGV[3] == '0' then
  redis.call('PERSIST', KEYS[1])
else
  redis.call('PEXPIREAT', KEYS[1], ARGV[3])
end
return 1
"""


# Manual run ids are unique by construction: their dedupe marker only has to outlive the
# client's re-sends of one call (seconds), by a wide margin.
_RESEND_DEDUPE_TTL_MS = 3600 * 1000


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


def _emission(reply: Any) -> Emission:
    """The meaning of an `_EMIT_RUN` reply."""
    if reply is None:
        return Emission.DUPLICATE
    if isinstance(reply, bytes):
        return Emission.EMITTED
    return Emission.STALE if int(reply) < 0 else Emission.CAPPED


@dataclass(frozen=True)
class EmissionGuard:
    """A schedule as the scheduler stored it, which scheduled fires are checked against.

    ``active`` only for an ACTIVE schedule. ``deleted_at_ms`` (0: not deleted) starts the
    tombstone's expiry. Written (raised) by the scheduler's command path right after each
    schedule log append, and by every replica's log follower before it applies an entry.
    """

    schedule_id: str
    version: int
    active: bool
    deleted_at_ms: int = 0

    def args(self) -> list[int]:
        expire_at_ms = self.deleted_at_ms + GUARD_TOMBSTONE_TTL_MS if self.deleted_at_ms else 0
        return [self.version, int(self.active), expire_at_ms]


class EmissionGuards:
    """Raises emission guards (`_RAISE_GUARD`); a batch goes out as one pipeline."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._raise = redis.register_script(_RAISE_GUARD)

    async def raise_all(self, guards: list[EmissionGuard]) -> None:
        """Raise each guard (raise only, so their order does not matter)."""
        if len(guards) == 1:  # the command path: one round trip
            await self._raise(keys=[_guard_key(guards[0].schedule_id)], args=guards[0].args())
            return
        if not guards:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for guard in guards:
                await self._raise(
                    keys=[_guard_key(guard.schedule_id)], args=guard.args(), client=pipe
                )
            await pipe.execute()


# Worker writes (`Writer`; used by the scripts below, `campaign_common.retryqueue` and
# `campaign_common.deadletters`). A worker may write for a run only while it owns the run's
# entry in the scraper group (a worker whose entry was taken over, or acked by another, is
# refused: it lost the run) and, under a campaign lock, while its fencing token is not lower
# than the highest one that wrote for the campaign (a newer lock holder wrote: it lost the
# lock). A token higher than the highest raises it. Returns false, or why the writer is refused.
WRITER_CHECK = """
local function writer_refusal(fence_key, stream, token, group, consumer, entry)
  if consumer ~= '' then
    local row = redis.call('XPENDING', stream, group, entry, entry, 1)[1]
    if not row or row[2] ~= consumer then return 'entry' end
  end
  if token > 0 then
    local seen = tonumber(redis.call('GET', fence_key) or '0')
    if token < seen then return 'fence' end
    if token > seen then redis.call('SET', fence_key, token) end
  end
  return false
end
"""

# One outcome per attempt (every script that writes a run's state applies it): a run in a
# final state never changes; a write for an earlier attempt than the run's is refused; once
# an attempt has its outcome (rank FINISHED: final, or failed with the next attempt queued)
# nothing else is accepted for it. Returns false, or why the write is refused ('final',
# 'attempt'), or 'behind' for a write of a lower rank within the open attempt (a deferral
# note after the attempt started somewhere): such an event may be recorded, never applied.
ATTEMPT_CHECK = """
local FINAL_STATES = {SUCCEEDED = true, FAILED = true, SKIPPED = true, DEAD_LETTERED = true}
local function attempt_refusal(run_key, attempt, rank)
  local cur = redis.call('HMGET', run_key, 'attempt', 'rank', 'state')
  if cur[3] and FINAL_STATES[cur[3]] then return 'final' end
  local cur_attempt, cur_rank = tonumber(cur[1]) or 0, tonumber(cur[2]) or -1
  if attempt < cur_attempt then return 'attempt' end
  if attempt == cur_attempt and cur_rank >= 2 then return 'attempt' end
  if attempt == cur_attempt and rank < cur_rank then return 'behind' end
  return false
end
"""

# KEYS[1] run events stream, KEYS[2] run hash, KEYS[3] campaign fence, KEYS[4] runs stream,
# KEYS[5] operation key (campaign_common.opscript)
# ARGV[1 .. 4] the writer (fence, group, consumer, entry: `Writer.args`), ARGV[5] attempt,
# ARGV[6] rank, ARGV[7] run hash ttl ms, ARGV[8] number of envelope pairs n,
# ARGV[9 .. 8+2n] envelope pairs, the rest: run hash field/value pairs.
# Appends the event and applies it to the projection (an event 'behind' the attempt is only
# appended); returns {1, entry id}, or {0, why} when refused (nothing written): 'entry',
# 'fence', 'final' or 'attempt'.
_APPEND_RUN_EVENT = idempotent(
    WRITER_CHECK
    + ATTEMPT_CHECK
    + """
local why = writer_refusal(KEYS[3], KEYS[4], tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4])
  or attempt_refusal(KEYS[2], tonumber(ARGV[5]), tonumber(ARGV[6]))
if why and why ~= 'behind' then return {0, why} end
local n = tonumber(ARGV[8])
local envelope = {}
for i = 9, 8 + 2 * n do envelope[#envelope + 1] = ARGV[i] end
local id = redis.call('XADD', KEYS[1], '*', unpack(envelope))
if why then return {1, id} end
local hash = {'attempt', ARGV[5], 'rank', ARGV[6]}
for i = 9 + 2 * n, #ARGV do hash[#hash + 1] = ARGV[i] end
redis.call('HSET', KEYS[2], unpack(hash))
redis.call('PEXPIRE', KEYS[2], ARGV[7])
return {1, id}
"""
)

# KEYS[1] campaign results list, KEYS[2] the attempt's written marker, KEYS[3] run hash,
# KEYS[4] campaign fence, KEYS[5] runs stream
# ARGV[1 .. 4] the writer, ARGV[5] attempt, ARGV[6] cap, ARGV[7] marker ttl ms,
# ARGV[8 ..] serialized results, oldest first
# Returns {1} when stored, {2} when this attempt's results were stored already (a re-run or a
# re-send: nothing written), {0, why} when refused (nothing written).
_ADD_RESULTS = (
    WRITER_CHECK
    + ATTEMPT_CHECK
    + """
local why = writer_refusal(KEYS[4], KEYS[5], tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4])
  or attempt_refusal(KEYS[3], tonumber(ARGV[5]), 1)
if why then return {0, why} end
if not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[7]) then return {2} end
for i = 8, #ARGV do redis.call('LPUSH', KEYS[1], ARGV[i]) end
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[6]) - 1)
return {1}
"""
)


class WriteRefused(Exception):
    """A worker's write was refused by the state Redis; nothing was written."""


class Fenced(WriteRefused):
    """A write carried a fencing token lower than one already seen: its lock was lost."""


class EntryLost(WriteRefused):
    """The writer no longer owns the run's runs entry (taken over or acked by another)."""


class AttemptClosed(WriteRefused):
    """The run attempt already has its outcome (or the run is final): a later one is refused."""


_REFUSALS: dict[str, type[WriteRefused]] = {
    "entry": EntryLost,
    "fence": Fenced,
    "final": AttemptClosed,
    "attempt": AttemptClosed,
    "behind": AttemptClosed,
}


_REFUSAL_REASONS = {
    "entry": "its runs entry is no longer this worker's",
    "fence": "its fencing token is stale (a newer lock holder wrote)",
    "final": "the run is final already",
    "attempt": "the attempt has its outcome already (or a later attempt started)",
    "behind": "the attempt is past this step",
}


def refusal(reply: Any, what: str) -> WriteRefused | None:
    """The error for a script's ``{0, why}`` reply (None for a ``{1, ...}`` or ``{2}``)."""
    if int(reply[0]) != 0:
        return None
    why = reply[1].decode() if isinstance(reply[1], bytes) else str(reply[1])
    return _REFUSALS[why](f"{what}: refused, {_REFUSAL_REASONS[why]}; nothing written")


@dataclass(frozen=True)
class Writer:
    """What a worker's write for a run claims, checked by the writing script.

    ``fence`` is the campaign lock's fencing token (0: not under a lock); ``consumer`` must own
    ``entry_id`` in the scraper group ("": no entry check, for writers outside the group).
    """

    campaign_id: str = ""
    fence: int = 0
    consumer: str = ""
    entry_id: str = ""

    def keys(self) -> list[str]:
        """The campaign fence key and the runs stream, in the order the scripts take them."""
        return [campaign_fence_key(self.campaign_id), RUNS_STREAM]

    def args(self) -> list[str | int]:
        return [self.fence, SCRAPER_GROUP, self.consumer, self.entry_id]


UNCHECKED = Writer()


@dataclass(frozen=True)
class RunRecord:
    """The run projection as stored; times in epoch ms, 0 when not reached yet."""

    run_id: str
    schedule_id: str
    campaign_id: str
    state: RunState
    attempt: int
    scheduled_for_ms: int
    trigger: str
    started_at_ms: int = 0
    finished_at_ms: int = 0
    error: str = ""
    next_attempt_at_ms: int = 0  # RETRY_SCHEDULED after a failed attempt: when the next is due


def _index_member(scheduled_for_ms: int, run_id: str) -> str:
    return f"{scheduled_for_ms:013d}|{run_id}"


def flatten(mapping: dict[str, Any]) -> list[Any]:
    """Field/value pairs flattened, the way a Lua script's ARGV takes them."""
    flat: list[Any] = []
    for key, value in mapping.items():
        flat += [key, value]
    return flat


class RunLog:
    """Async access to the run keys of the state Redis (client must use bytes responses)."""

    def __init__(
        self,
        redis: Redis,
        *,
        dedupe_ttl_ms: int = 24 * 3600 * 1000,
        run_ttl_ms: int = 14 * 24 * 3600 * 1000,
        results_cap: int = 1000,
    ) -> None:
        self._redis = redis
        self._dedupe_ttl_ms = dedupe_ttl_ms
        self._run_ttl_ms = run_ttl_ms
        self._results_cap = results_cap
        self._emit = redis.register_script(_EMIT_RUN)
        self._append = redis.register_script(_APPEND_RUN_EVENT)
        self._add_results = redis.register_script(_ADD_RESULTS)

    async def request_run(
        self,
        request: events_pb2.RunRequested,
        *,
        dedupe: bool,
        max_total: int = 0,
        schedule_version: int = 0,
    ) -> Emission:
        """Append a RunRequested and its REQUESTED projection; what happened (true if appended).

        A run id is appended at most once: a second replica emitting the same scheduled fire,
        or redis-py re-sending this call after a lost reply, gets `Emission.DUPLICATE`.
        ``dedupe`` says the run id may come from several processes (scheduled fires: the
        marker outlives any catch-up window); without it the id is unique by construction
        (manual runs) and the marker only outlives a client's re-sends. With ``max_total`` at
        most that many runs of the schedule are ever appended this way (`Emission.CAPPED`).
        With ``schedule_version`` (every scheduled fire) the run is appended only while the
        schedule's `EmissionGuard` is at that version and active, else `Emission.STALE`; 0
        (manual runs) skips the guard. The checks and the XADD are one script, so a crash
        between them is impossible and two replicas can never both pass them.
        """
        fields: dict[str, str | int] = {
            "state": RunState.REQUESTED.value,
            "attempt": request.attempt,
            "rank": int(Rank.REQUESTED),
            "trigger": run_pb2.RunTrigger.Name(request.trigger).removeprefix("RUN_TRIGGER_"),
        }
        ttl_ms = self._dedupe_ttl_ms if dedupe else _RESEND_DEDUPE_TTL_MS
        return await self._create_run(
            RUNS_STREAM,
            wrap(request),
            request,
            fields,
            dedupe_ttl_ms=ttl_ms,
            cap=max_total,
            schedule_version=schedule_version,
        )

    async def record_missed(
        self, run: events_pb2.RunRequested, reason: str, *, schedule_version: int
    ) -> Emission:
        """Record a fire that will not run as a SKIPPED run (once per run id), not as a request.

        The run id is deduplicated exactly like an emission, so a fire is either requested
        or recorded as missed, never both, whichever replica gets there first. It is guarded
        like an emission too: a replica whose copy of the schedule is stale records nothing
        (`Emission.STALE`).
        """
        at_ms = now_ms()
        skipped = events_pb2.RunSkipped(
            run_id=run.run_id,
            attempt=run.attempt,
            reason=reason,
            finished_at=ms_to_timestamp(at_ms),
        )
        fields: dict[str, str | int] = {
            "state": RunState.SKIPPED.value,
            "attempt": run.attempt,
            "rank": int(Rank.FINISHED),
            "trigger": "SCHEDULED",
            "error": reason,
            "finished_at_ms": at_ms,
        }
        return await self._create_run(
            RUN_EVENTS_STREAM,
            wrap(skipped),
            run,
            fields,
            dedupe_ttl_ms=self._dedupe_ttl_ms,
            schedule_version=schedule_version,
        )

    async def _create_run(
        self,
        stream: str,
        envelope: Envelope,
        run: events_pb2.RunRequested,
        fields: dict[str, str | int],
        *,
        dedupe_ttl_ms: int,
        cap: int = 0,
        schedule_version: int = 0,
    ) -> Emission:
        scheduled_ms = run.scheduled_for.ToMilliseconds()
        hash_fields = {
            "run_id": run.run_id,
            "schedule_id": run.schedule_id,
            "campaign_id": run.campaign_id,
            "scheduled_for_ms": scheduled_ms,
            **fields,
        }
        cutoff = _index_member(max(0, envelope.occurred_at_ms - self._run_ttl_ms), "")
        keys = [
            _dedupe_key(run.run_id),
            stream,
            run_key(run.run_id),
            _INDEX_ALL,
            _schedule_index(run.schedule_id),
            _campaign_index(run.campaign_id),
            _emitted_key(run.schedule_id),
            _guard_key(run.schedule_id),
        ]
        args = [
            dedupe_ttl_ms,
            _index_member(scheduled_ms, run.run_id),
            self._run_ttl_ms,
            cutoff,
            cap,
            schedule_version,
            len(envelope.to_fields()),
            *envelope.flat_fields(),
            *flatten(hash_fields),
        ]
        return _emission(await self._emit(keys=keys, args=args))

    async def emitted_count(self, schedule_id: str) -> int:
        """Scheduled runs emitted so far under a cap (0 for schedules without one)."""
        return int(await self._redis.get(_emitted_key(schedule_id)) or 0)

    async def last_scheduled_fire_ms(self, schedule_id: str) -> int | None:
        """Nominal time of the newest scheduled (not manual) run of a schedule, if any."""
        members = cast(
            list[bytes],
            await self._redis.zrange(
                _schedule_index(schedule_id), b"+", b"-", desc=True, bylex=True, offset=0, num=50
            ),
        )
        for member in members:
            ms, _, run_id = member.decode().partition("|")
            if ":manual-" not in run_id:
                return int(ms)
        return None

    async def append_event(
        self,
        event: events_pb2.RunStarted
        | events_pb2.RunSucceeded
        | events_pb2.RunFailed
        | events_pb2.RunSkipped
        | events_pb2.RunRetryScheduled,
        *,
        state: RunState,
        changes: dict[str, str | int] | None = None,
        writer: Writer = UNCHECKED,
    ) -> bytes:
        """Append a lifecycle event and apply it to the run projection; returns the entry id.

        Raises a `WriteRefused` (`EntryLost`, `Fenced`, `AttemptClosed`) and writes nothing
        when ``writer`` lost its entry or its lock, or the attempt is past this event (see
        ``ATTEMPT_CHECK``). Safe to re-send: a lost reply is answered from the operation key.
        """
        envelope: Envelope = wrap(event)
        fields: dict[str, str | int] = {"state": state.value, **(changes or {})}
        args = [
            *writer.args(),
            event.attempt,
            int(_RANKS.get(state, Rank.FINISHED)),
            self._run_ttl_ms,
            len(envelope.to_fields()),
            *envelope.flat_fields(),
            *flatten(fields),
        ]
        keys = [
            RUN_EVENTS_STREAM,
            run_key(event.run_id),
            *writer.keys(),
            op_key("runs", new_op_id()),
        ]
        reply: Any = await self._append(keys=keys, args=args)
        refused = refusal(reply, f"{state.value} of run {event.run_id} attempt {event.attempt}")
        if refused is not None:
            raise refused
        return cast(bytes, reply[1])

    async def backlog(self) -> tuple[int, int]:
        """(pending, lag) of the scraper group: delivered but unacked, and not yet delivered."""
        try:
            groups: Any = await self._redis.xinfo_groups(RUNS_STREAM)
        except ResponseError:  # no stream yet
            return 0, 0
        for group in groups:
            if group.get("name") in (SCRAPER_GROUP, SCRAPER_GROUP.encode()):
                return int(group.get("pending") or 0), int(group.get("lag") or 0)
        return 0, await self._redis.xlen(RUNS_STREAM)

    async def workers_seen(self, within_ms: int) -> int:
        """Consumers of the scraper group that read the runs stream within ``within_ms``
        (XINFO CONSUMERS ``idle``: since the consumer's last read or claim)."""
        try:
            consumers: Any = await self._redis.xinfo_consumers(RUNS_STREAM, SCRAPER_GROUP)
        except ResponseError:  # no stream or group yet
            return 0
        return sum(1 for consumer in consumers if int(consumer.get("idle") or 0) < within_ms)

    async def get_run(self, run_id: str) -> RunRecord | None:
        raw = cast(dict[bytes, bytes], await self._redis.hgetall(run_key(run_id)))
        return _record(raw) if raw else None

    async def list_runs(
        self, *, schedule_id: str = "", campaign_id: str = "", page_size: int, page_token: str = ""
    ) -> tuple[list[RunRecord], str]:
        """Runs newest first (by nominal time), filtered by schedule or campaign, paged."""
        if schedule_id:
            index = _schedule_index(schedule_id)
        elif campaign_id:
            index = _campaign_index(campaign_id)
        else:
            index = _INDEX_ALL
        position = decode_page_token(page_token, lambda member: "|" in member) if page_token else ""
        start = b"(" + position.encode() if page_token else b"+"
        members = cast(
            list[bytes],
            await self._redis.zrange(
                index, start, b"-", desc=True, bylex=True, offset=0, num=page_size + 1
            ),
        )
        page = members[:page_size]
        async with self._redis.pipeline(transaction=False) as pipe:
            for member in page:
                pipe.hgetall(run_key(member.split(b"|", 1)[1].decode()))
            raws = await pipe.execute()
        runs = [_record(raw) for raw in raws if raw]
        if campaign_id and schedule_id:
            runs = [run for run in runs if run.campaign_id == campaign_id]
        token = encode_page_token(page[-1].decode()) if len(members) > page_size else ""
        return runs, token

    async def add_results(
        self,
        campaign_id: str,
        results: list[run_pb2.ScrapeResult],
        *,
        writer: Writer = UNCHECKED,
        attempt: int = 0,
    ) -> None:
        """Store results newest first (capped); a `WriteRefused` when ``writer`` is refused.

        Results of one run attempt (all of ``results`` belong to one run) are stored once:
        a second call for the same run and attempt, a re-run after a crash, stores nothing.
        """
        if not results:
            return
        blobs = [result.SerializeToString() for result in results]
        run_id = results[0].run_id
        keys = [
            _results_key(campaign_id),
            _written_key(run_id, attempt),
            run_key(run_id),
            *writer.keys(),
        ]
        args: list[Any] = [*writer.args(), attempt, self._results_cap, self._run_ttl_ms, *blobs]
        refused = refusal(await self._add_results(keys=keys, args=args), f"results of {run_id}")
        if refused is not None:
            raise refused

    async def list_results(
        self, campaign_id: str, limit: int, start: int = 0
    ) -> list[run_pb2.ScrapeResult]:
        """Up to ``limit`` results from index ``start`` (0: the newest)."""
        key = _results_key(campaign_id)
        raw = cast(list[bytes], await self._redis.lrange(key, start, start + limit - 1))
        return [run_pb2.ScrapeResult.FromString(item) for item in raw]


def _record(raw: dict[bytes, bytes]) -> RunRecord:
    text = {key.decode(): value.decode() for key, value in raw.items()}
    return RunRecord(
        run_id=text.get("run_id", ""),
        schedule_id=text.get("schedule_id", ""),
        campaign_id=text.get("campaign_id", ""),
        state=RunState(text.get("state", RunState.REQUESTED.value)),
        attempt=int(text.get("attempt", "1")),
        scheduled_for_ms=int(text.get("scheduled_for_ms", "0")),
        trigger=text.get("trigger", "SCHEDULED"),
        started_at_ms=int(text.get("started_at_ms", "0")),
        finished_at_ms=int(text.get("finished_at_ms", "0")),
        error=text.get("error", ""),
        next_attempt_at_ms=int(text.get("next_attempt_at_ms", "0")),
    )
