"""The retry delay queue: next attempts of failed runs, waiting until they are due.

Keys (`campaign_common.runs.keys`; per partition, so each script is one slot): ``delayed``,
a sorted set of run id -> epoch ms when its next attempt is due, and ``delayed:requests``,
the RunRequested body of each next attempt with its trace context. A retry waits in its
campaign's partition and moves to that partition's runs stream.

A run has at most one attempt waiting (the member is the run id).

`RetryQueue.schedule` is one script, so a crash leaves either nothing done (the failed
attempt's entry is still pending and runs again) or all of it; it is safe to re-send
(`campaign_common.runs.opscript`), and refuses a writer that lost its entry or lock, or an attempt
that has its outcome, exactly as the run log does:
    writer and attempt checks -> RunRetryScheduled on the run events stream -> projection
    RETRY_SCHEDULED (attempt n, next_attempt_at_ms) -> next request stored, ZADD at its due
    time -> XACK of the failed attempt's runs entry

`RetryQueue.move_due` is one script that any process may run at any time: for each member
due by the server's clock, XADD the next attempt's RunRequested envelope to the runs stream,
then ZREM and HDEL. It is atomic, so replicas running it at once move each retry once; a
crash before it leaves the retry waiting, after it leaves it on the runs stream.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from campaign_common.envelope import SCHEMA, wrap
from campaign_common.runs.keys import RUN_RETENTION_MS, Partition, Partitions
from campaign_common.runs.opscript import OP_TTL_MS
from campaign_common.runs.record import Rank, RunState, flatten
from campaign_common.runs.writer import Writer, refusal, worker_script
from campaign_common.timeutil import ms_to_timestamp, now_ms
from campaigns.v1 import events_pb2

# KEYS[1] run events stream, KEYS[2] run hash, KEYS[3] campaign fence, KEYS[4] runs stream,
# KEYS[5] delayed set, KEYS[6] delayed requests, KEYS[7] operation key
# ARGV[1 .. 4] the writer (`Writer.args`: fence, group, consumer, runs entry to ack),
# ARGV[5] failed attempt, ARGV[6] run hash ttl ms, ARGV[7] run id, ARGV[8] due ms, ARGV[9]
# next request body, ARGV[10] traceparent, ARGV[11] tracestate, ARGV[12] number of envelope
# pairs n, ARGV[13 .. 12+2n] the RunRetryScheduled envelope, the rest: run hash pairs.
# Returns {1} when queued, {0, why} when the writer or the attempt is refused (nothing
# written, nothing acked; see campaign_common.runs.writer).
_SCHEDULE = """
local why = writer_refusal(
    KEYS[3], KEYS[4], tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4], ARGV[6])
  or attempt_refusal(KEYS[2], tonumber(ARGV[5]), 2)
if why then return {0, why} end
local n = tonumber(ARGV[12])
local envelope = {}
for i = 13, 12 + 2 * n do envelope[#envelope + 1] = ARGV[i] end
redis.call('XADD', KEYS[1], '*', unpack(envelope))
local hash = {'attempt', ARGV[5]}
for i = 13 + 2 * n, #ARGV do hash[#hash + 1] = ARGV[i] end
redis.call('HSET', KEYS[2], unpack(hash))
redis.call('PEXPIRE', KEYS[2], ARGV[6])
local run = ARGV[7]
redis.call('HSET', KEYS[6], run, ARGV[9], run .. ':tp', ARGV[10], run .. ':ts', ARGV[11])
redis.call('ZADD', KEYS[5], ARGV[8], run)
if ARGV[4] ~= '' then redis.call('XACK', KEYS[4], ARGV[2], ARGV[4]) end
return {1}
"""

# KEYS[1] delayed set, KEYS[2] delayed requests, KEYS[3] runs stream
# ARGV[1] most members moved per call, ARGV[2] envelope type, ARGV[3] envelope schema
# The XADD fields are the envelope's (campaign_common.envelope); occurred_at is the move.
# Returns the number of retries moved to the runs stream.
_MOVE_DUE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local moved = 0
for _, run in ipairs(due) do
  local body = redis.call('HGET', KEYS[2], run)
  if body then
    local tp = redis.call('HGET', KEYS[2], run .. ':tp') or ''
    local ts = redis.call('HGET', KEYS[2], run .. ':ts') or ''
    redis.call('XADD', KEYS[3], '*', 'type', ARGV[2], 'schema', ARGV[3],
      'occurred_at', tostring(now), 'body', body, 'traceparent', tp, 'tracestate', ts)
    moved = moved + 1
  end
  redis.call('ZREM', KEYS[1], run)
  redis.call('HDEL', KEYS[2], run, run .. ':tp', run .. ':ts')
end
return moved
"""


def next_attempt(request: events_pb2.RunRequested) -> events_pb2.RunRequested:
    """The request of the attempt after ``request``: same run, attempt + 1."""
    following = events_pb2.RunRequested()
    following.CopyFrom(request)
    following.attempt = request.attempt + 1
    following.requested_at.CopyFrom(ms_to_timestamp(now_ms()))
    return following


class RetryQueue:
    def __init__(
        self,
        redis: Redis,
        partitions: Partitions,
        *,
        run_ttl_ms: int = RUN_RETENTION_MS,
        op_ttl_ms: int = OP_TTL_MS,
    ) -> None:
        self._redis = redis
        self._partitions = partitions
        self._run_ttl_ms = run_ttl_ms
        self._schedule = redis.register_script(worker_script(_SCHEDULE, op_ttl_ms=op_ttl_ms))
        self._move_due = redis.register_script(_MOVE_DUE)

    async def schedule(
        self,
        failed: events_pb2.RunRequested,
        reason: str,
        due_ms: int,
        *,
        writer: Writer,
    ) -> None:
        """Queue the attempt after ``failed`` for ``due_ms`` and ack the writer's runs entry,
        atomically; a `WriteRefused` (nothing written) when the writer or attempt is refused."""
        at_ms = now_ms()
        event = events_pb2.RunRetryScheduled(
            run_id=failed.run_id,
            attempt=failed.attempt,
            reason=reason,
            next_attempt_at=ms_to_timestamp(due_ms),
        )
        envelope = wrap(event, at_ms)
        following = wrap(next_attempt(failed), at_ms)
        hash_fields = {
            "state": RunState.RETRY_SCHEDULED.value,
            "rank": int(Rank.FINISHED),
            "error": reason,
            "finished_at_ms": at_ms,
            "next_attempt_at_ms": due_ms,
        }
        partition = self._partitions.of(failed.campaign_id)
        keys = [
            partition.events_stream,
            partition.run_key(failed.run_id),
            *writer.keys(partition),
            partition.delayed,
            partition.delayed_requests,
            partition.new_op_key(),
        ]
        args: list[Any] = [
            *writer.args(),
            failed.attempt,
            self._run_ttl_ms,
            failed.run_id,
            due_ms,
            following.body,
            following.traceparent,
            following.tracestate,
            len(envelope.to_fields()),
            *envelope.flat_fields(),
            *flatten(hash_fields),
        ]
        reply = await self._schedule(keys=keys, args=args)
        refused = refusal(reply, f"retry of run {failed.run_id} attempt {failed.attempt}")
        if refused is not None:
            raise refused

    async def move_due(self, partition: Partition, limit: int = 100) -> int:
        """Move a partition's retries due by now to its runs stream; how many were moved."""
        keys = [partition.delayed, partition.delayed_requests, partition.runs_stream]
        args: list[Any] = [limit, events_pb2.RunRequested.DESCRIPTOR.name, SCHEMA]
        return int(await self._move_due(keys=keys, args=args))

    async def waiting(self) -> int:
        """Retries waiting in the queue, over every partition."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for partition in self._partitions:
                pipe.zcard(partition.delayed)
            return sum(int(n) for n in await pipe.execute())
