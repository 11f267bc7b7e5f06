"""Redis access of the run-outcome follower: its consumer group on the run events stream and
the failure streaks.

Keys:
    a partition's run events stream (named in `campaign_common.runs.keys`); this module only
                         reads it through the consumer group ``schedulers``; one store (and
                         one follower) per partition
    {sched}:streaks      hash ``s:<schedule id>`` / ``c:<campaign id>`` -> consecutive failures
    {sched}:counted:<partition>:<run events entry id>
                         a failure already counted in the streaks (TTL `COUNTED_TTL_MS`)

The streaks of deleted schedules and of campaigns with no schedule left are swept by the
housekeeping loop (`StreakSweep`) rather than at the delete: a run of a deleted schedule may
still fail after the delete, and its failure would bring the field back.

A failure is counted once per run events entry, whoever handles it how often: redis-py
re-sends a script whose reply a dropped connection lost, and a replica may take over an
entry another replica handled but died before acking. So the increment is one script that
first records the entry id (``SET NX`` beside the streaks, same ``{sched}`` hash tag) and
increments only when that was new; a repeat answers the streaks as they are.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, cast

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from campaign_common.envelope import Envelope, EnvelopeError
from campaign_common.runs.keys import OUTCOME_GROUP, Partition
from scheduler_svc.registry import StreamId

_STREAKS = "{sched}:streaks"
# Longer than any redelivery of a run event: a re-send takes seconds, a take-over happens
# after outcome_claim_idle_ms (30 s by default); an entry left pending for a day counts again.
COUNTED_TTL_MS = 24 * 3600 * 1000

# KEYS[1] streaks hash, KEYS[2] the counted marker of the run events entry
# ARGV[1] schedule field, ARGV[2] campaign field, ARGV[3] marker TTL ms
# Returns {schedule streak, campaign streak}; increments only on the entry's first call.
_COUNT_FAILURE = """
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[3]) then
  return {redis.call('HINCRBY', KEYS[1], ARGV[1], 1), redis.call('HINCRBY', KEYS[1], ARGV[2], 1)}
end
local streaks = redis.call('HMGET', KEYS[1], ARGV[1], ARGV[2])
return {tonumber(streaks[1] or 0), tonumber(streaks[2] or 0)}
"""


def _counted_key(partition: Partition, entry_id: str) -> str:
    return f"{{sched}}:counted:{partition.index}:{entry_id}"


Event = tuple[str, Envelope | None]


def _events(reply: Any) -> list[Event]:
    events: list[Event] = []
    for entry_id, fields in reply:
        try:
            envelope: Envelope | None = Envelope.from_fields(fields) if fields else None
        except EnvelopeError:
            envelope = None
        events.append((entry_id.decode(), envelope))
    return events


class OutcomeStore:
    def __init__(self, redis: Redis, consumer: str, partition: Partition) -> None:
        self._redis = redis
        self._consumer = consumer
        self.partition = partition
        self._stream = partition.events_stream
        self._count_failure = redis.register_script(_COUNT_FAILURE)

    async def ensure_group(self) -> None:
        """The group starts at the stream's end: outcomes from before it existed are history."""
        try:
            await self._redis.xgroup_create(self._stream, OUTCOME_GROUP, id="$", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read(self, count: int, block_ms: int) -> list[Event]:
        reply: Any = await self._redis.xreadgroup(
            OUTCOME_GROUP, self._consumer, {self._stream: ">"}, count=count, block=block_ms
        )
        return [event for _, entries in reply or [] for event in _events(entries)]

    async def claim_stale(self, idle_ms: int, count: int) -> list[Event]:
        """Entries a dead replica read but never acked, now owned by this one."""
        reply: Any = await self._redis.xautoclaim(
            self._stream, OUTCOME_GROUP, self._consumer, idle_ms, "0-0", count=count
        )
        return _events(reply[1])

    async def ack(self, entry_id: str) -> None:
        await self._redis.xack(self._stream, OUTCOME_GROUP, entry_id)

    async def runs_of(self, run_ids: list[str]) -> list[tuple[str, str] | None]:
        """(schedule id, campaign id) of each run (None: no such run any more), one round
        trip for all."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for run_id in run_ids:
                pipe.hmget(self.partition.run_key(run_id), "schedule_id", "campaign_id")
            replies: list[Any] = await pipe.execute()
        return [
            (schedule.decode(), campaign.decode()) if schedule is not None else None
            for schedule, campaign in replies
        ]

    async def succeeded_all(self, runs: list[tuple[str, str]], entry_ids: list[str]) -> None:
        """End the failure streaks of the schedules and campaigns of ``runs``, then ack
        ``entry_ids`` (the entries that reported them and any others handled with them):
        one round trip, the acks after the streaks."""
        fields = list(dict.fromkeys(f for s, c in runs for f in (f"s:{s}", f"c:{c}")))
        async with self._redis.pipeline(transaction=False) as pipe:
            if fields:
                pipe.hdel(_STREAKS, *fields)
            if entry_ids:
                pipe.xack(self._stream, OUTCOME_GROUP, *entry_ids)
            await pipe.execute()

    async def failed(self, entry_id: str, schedule_id: str, campaign_id: str) -> tuple[int, int]:
        """The failure of run events entry ``entry_id`` counted (once, however often this is
        called for it); (schedule streak, campaign streak)."""
        keys = [_STREAKS, _counted_key(self.partition, entry_id)]
        args: list[str | int] = [f"s:{schedule_id}", f"c:{campaign_id}", COUNTED_TTL_MS]
        schedule_streak, campaign_streak = await self._count_failure(keys=keys, args=args)
        return int(schedule_streak), int(campaign_streak)

    async def reset_schedule(self, schedule_id: str) -> None:
        await self._redis.hdel(_STREAKS, f"s:{schedule_id}")


class Holder(Protocol):
    """What the sweep asks of the registry (`scheduler_svc.registry.Registry`)."""

    @property
    def applied(self) -> StreamId: ...

    def get(self, schedule_id: str) -> object | None: ...

    def has_campaign(self, campaign_id: str) -> bool: ...


class StreakSweep:
    """Drops the streak fields of schedules and campaigns the registry no longer holds.

    Timeline that keeps a live schedule's field: a field is written only by a failed run, so
    after its schedule's create entry is in the log. The sweep reads the fields first, then the
    log's newest entry id, and judges the fields only if the registry has applied the log up
    to that id (else it waits for the next round: this replica is behind, e.g. it was frozen).
    Every field read then belongs to a schedule the registry has applied: one it does not hold
    was deleted.
    """

    def __init__(
        self,
        redis: Redis,
        registry: Holder,
        newest: Callable[[], Awaitable[StreamId | None]],
        *,
        page: int = 1000,
    ) -> None:
        self._redis = redis
        self._registry = registry
        self._newest = newest
        self._page = page

    async def once(self) -> int:
        """One pass over the streaks; how many fields went (0 while this replica is behind)."""
        fields: list[bytes] = []
        cursor: Any = 0
        while True:
            cursor, page = await self._redis.hscan(_STREAKS, cursor, count=self._page)
            fields += cast(dict[bytes, bytes], page)
            if not cursor:
                break
        newest = await self._newest()
        if newest is not None and self._registry.applied < newest:
            return 0
        gone = [field for field in fields if not self._held(field.decode())]
        removed = 0
        for start in range(0, len(gone), self._page):
            removed += int(await self._redis.hdel(_STREAKS, *gone[start : start + self._page]))
        return removed

    def _held(self, field: str) -> bool:
        kind, _, name = field.partition(":")
        if kind == "s":
            return self._registry.get(name) is not None
        return kind != "c" or self._registry.has_campaign(name)
