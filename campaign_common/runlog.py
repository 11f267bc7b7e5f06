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
                                 so a reverse lexicographic range is "newest first"
    {runs}:results:<campaign_id> list of ScrapeResult protobufs, newest first, capped
    {runs}:emitted:<schedule_id> scheduled runs emitted so far (kept only for capped schedules)
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
# KEYS[7] counter of the schedule's scheduled runs
# ARGV[1] dedupe ttl ms (0: no dedupe, the run id is unique by construction),
# ARGV[2] index member, ARGV[3] run hash ttl ms, ARGV[4] index cutoff member (members below
# it are pruned), ARGV[5] cap on the counter (0: no cap, and the counter is not touched),
# ARGV[6] number of envelope field/value pairs n, ARGV[7 .. 6+2n] envelope pairs, the rest:
# run hash field/value pairs.
# Returns the stream id; false when the dedupe key already existed; 0 when the cap is reached.
_EMIT_RUN = """
if ARGV[1] ~= '0' then
  if redis.call('EXISTS', KEYS[1]) == 1 then return false end
end
local cap = tonumber(ARGV[5])
if cap > 0 and tonumber(redis.call('GET', KEYS[7]) or '0') >= cap then return 0 end
if ARGV[1] ~= '0' then redis.call('SET', KEYS[1], '1', 'PX', ARGV[1]) end
if cap > 0 then redis.call('INCR', KEYS[7]) end
local n = tonumber(ARGV[6])
local envelope = {}
for i = 7, 6 + 2 * n do envelope[#envelope + 1] = ARGV[i] end
local id = redis.call('XADD', KEYS[2], '*', unpack(envelope))
local hash = {}
for i = 7 + 2 * n, #ARGV do hash[#hash + 1] = ARGV[i] end
redis.call('HSET', KEYS[3], unpack(hash))
redis.call('PEXPIRE', KEYS[3], ARGV[3])
for k = 4, 6 do
  redis.call('ZADD', KEYS[k], 0, ARGV[2])
  redis.call('ZREMRANGEBYLEX', KEYS[k], '-', '(' .. ARGV[4])
end
return id
"""

# Fencing (both scripts below, and `campaign_common.retryqueue`): ARGV fence > 0 is the
# writer's lock fencing token for the campaign. A write whose token is lower than the highest
# one already seen for the campaign is refused (the writer lost its lock to a newer holder);
# otherwise the highest is raised.
FENCE_CHECK = """
local function fenced(key, token)
  if token == 0 then return false end
  local seen = tonumber(redis.call('GET', key) or '0')
  if token < seen then return true end
  if token > seen then redis.call('SET', key, token) end
  return false
end
"""

# KEYS[1] run events stream, KEYS[2] run hash, KEYS[3] campaign fence
# ARGV[1] attempt, ARGV[2] rank, ARGV[3] run hash ttl ms, ARGV[4] fence (0: unfenced),
# ARGV[5] number of envelope pairs n, ARGV[6 .. 5+2n] envelope pairs, the rest: run hash
# field/value pairs.
# Appends the event and updates the projection unless (attempt, rank) would go back; returns
# the entry id, or false when fenced (nothing written).
_APPEND_RUN_EVENT = (
    FENCE_CHECK
    + """
if fenced(KEYS[3], tonumber(ARGV[4])) then return false end
local n = tonumber(ARGV[5])
local envelope = {}
for i = 6, 5 + 2 * n do envelope[#envelope + 1] = ARGV[i] end
local id = redis.call('XADD', KEYS[1], '*', unpack(envelope))
local cur = redis.call('HMGET', KEYS[2], 'attempt', 'rank')
local attempt, rank = tonumber(ARGV[1]), tonumber(ARGV[2])
local cur_attempt, cur_rank = tonumber(cur[1]) or 0, tonumber(cur[2]) or -1
if attempt > cur_attempt or (attempt == cur_attempt and rank >= cur_rank) then
  local hash = {'attempt', ARGV[1], 'rank', ARGV[2]}
  for i = 6 + 2 * n, #ARGV do hash[#hash + 1] = ARGV[i] end
  redis.call('HSET', KEYS[2], unpack(hash))
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
return id
"""
)

# KEYS[1] campaign results list, KEYS[2] campaign fence, KEYS[3] the attempt's written marker
# ARGV[1] cap, ARGV[2] fence (0: unfenced), ARGV[3] marker ttl ms, ARGV[4 ..] serialized
# results, oldest first
# Returns 1, 2 when this attempt's results were stored already (nothing written), or 0 when
# fenced (nothing written).
_ADD_RESULTS = (
    FENCE_CHECK
    + """
if fenced(KEYS[2], tonumber(ARGV[2])) then return 0 end
if not redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[3]) then return 2 end
for i = 4, #ARGV do redis.call('LPUSH', KEYS[1], ARGV[i]) end
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[1]) - 1)
return 1
"""
)


class Fenced(Exception):
    """A write carried a fencing token lower than one already seen: its lock was lost."""


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
        self, request: events_pb2.RunRequested, *, dedupe: bool, max_total: int = 0
    ) -> bool:
        """Append a RunRequested and its REQUESTED projection; False if not appended.

        With ``dedupe`` the append happens at most once per run id across every process
        within the dedupe TTL; with ``max_total`` at most that many runs of the schedule are
        ever appended this way. The checks and the XADD are one script, so a crash between
        them is impossible and two replicas can never both pass them.
        """
        fields: dict[str, str | int] = {
            "state": RunState.REQUESTED.value,
            "attempt": request.attempt,
            "rank": int(Rank.REQUESTED),
            "trigger": run_pb2.RunTrigger.Name(request.trigger).removeprefix("RUN_TRIGGER_"),
        }
        return await self._create_run(
            RUNS_STREAM, wrap(request), request, fields, dedupe=dedupe, cap=max_total
        )

    async def record_missed(self, run: events_pb2.RunRequested, reason: str) -> bool:
        """Record a fire that will not run as a SKIPPED run (once per run id), not as a request.

        The run id is deduplicated exactly like an emission, so a fire is either requested
        or recorded as missed, never both, whichever replica gets there first.
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
        return await self._create_run(RUN_EVENTS_STREAM, wrap(skipped), run, fields, dedupe=True)

    async def _create_run(
        self,
        stream: str,
        envelope: Envelope,
        run: events_pb2.RunRequested,
        fields: dict[str, str | int],
        *,
        dedupe: bool,
        cap: int = 0,
    ) -> bool:
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
        ]
        args = [
            self._dedupe_ttl_ms if dedupe else 0,
            _index_member(scheduled_ms, run.run_id),
            self._run_ttl_ms,
            cutoff,
            cap,
            len(envelope.to_fields()),
            *envelope.flat_fields(),
            *flatten(hash_fields),
        ]
        return bool(await self._emit(keys=keys, args=args))

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
        fence: tuple[str, int] | None = None,
    ) -> bytes:
        """Append a lifecycle event and apply it to the run projection; returns the entry id.

        ``fence`` is (campaign id, fencing token) of the lock the writer holds; a token lower
        than the campaign's highest raises `Fenced` and writes nothing.
        """
        envelope: Envelope = wrap(event)
        fields: dict[str, str | int] = {"state": state.value, **(changes or {})}
        campaign_id, token = fence or ("", 0)
        args = [
            event.attempt,
            int(_RANKS.get(state, Rank.FINISHED)),
            self._run_ttl_ms,
            token,
            len(envelope.to_fields()),
            *envelope.flat_fields(),
            *flatten(fields),
        ]
        keys = [RUN_EVENTS_STREAM, run_key(event.run_id), campaign_fence_key(campaign_id)]
        entry_id: bytes | None = await self._append(keys=keys, args=args)
        if entry_id is None:
            raise Fenced(f"run {event.run_id}: fencing token {token} is stale; not written")
        return entry_id

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
        fence: int = 0,
        attempt: int = 0,
    ) -> None:
        """Store results newest first (capped); a stale ``fence`` token raises `Fenced`.

        Results of one run attempt (all of ``results`` belong to one run) are stored once:
        a second call for the same run and attempt, a re-run after a crash, stores nothing.
        """
        if not results:
            return
        blobs = [result.SerializeToString() for result in results]
        keys = [
            _results_key(campaign_id),
            campaign_fence_key(campaign_id),
            _written_key(results[0].run_id, attempt),
        ]
        args: list[int | bytes] = [self._results_cap, fence, self._run_ttl_ms, *blobs]
        if not await self._add_results(keys=keys, args=args):
            raise Fenced(f"campaign {campaign_id}: fencing token {fence} is stale; not written")

    async def list_results(self, campaign_id: str, limit: int) -> list[run_pb2.ScrapeResult]:
        raw = cast(list[bytes], await self._redis.lrange(_results_key(campaign_id), 0, limit - 1))
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
