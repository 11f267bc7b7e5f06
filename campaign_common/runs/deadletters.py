"""The dead-letter stream: runs that exhausted their attempts, until an operator acts.

Keys (`campaign_common.runs.keys`; one partition's hash tag per script, so each script is one
slot): each partition's dead-letter stream of RunDeadLettered envelopes. A dead letter's id is
``<partition>-<entry id>``; lists merge the partitions newest first (ties by partition).

The scraper parks a run here (`add`); operators list, retry (the original request goes back
to the runs stream as attempt + 1, same run id) or purge. Retry and purge remove the entry in
the same script that acts on it, so two operators retrying at once re-enqueue the run once.
Every script here is safe to re-send (`campaign_common.runs.opscript`), and `add` obeys the run
log's writer and attempt checks: a run is dead-lettered once per attempt, by its entry's owner.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, cast

from redis.asyncio import Redis

from campaign_common.envelope import Envelope, EnvelopeError, decode_body, wrap
from campaign_common.errors import CampaignCommonError
from campaign_common.page_tokens import decode_page_token, encode_page_token
from campaign_common.runs.keys import RUN_RETENTION_MS, Partition, Partitions
from campaign_common.runs.opscript import OP_TTL_MS, idempotent
from campaign_common.runs.record import Rank, RunState, flatten
from campaign_common.runs.writer import Writer, refusal, worker_script
from campaign_common.timeutil import ms_to_timestamp, now_ms
from campaigns.v1 import events_pb2

# KEYS[1] dead-letter stream, KEYS[2] run events stream, KEYS[3] run hash, KEYS[4] campaign
# fence, KEYS[5] runs stream, KEYS[6] operation key
# ARGV[1 .. 4] the writer (`Writer.args`: fence, group, consumer, runs entry of the
# last attempt, acked here), ARGV[5] attempt, ARGV[6] run hash ttl ms, ARGV[7] n envelope
# pairs, ARGV[8 .. 7+2n] the RunDeadLettered envelope (appended to both streams), the rest:
# run hash field/value pairs.
# Returns {1, dead id}, or {0, why} when the writer or the attempt is refused (nothing written;
# see campaign_common.runs.writer: a run is dead-lettered once per attempt).
_ADD = """
local why = writer_refusal(
    KEYS[4], KEYS[5], tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4], ARGV[6])
  or attempt_refusal(KEYS[3], tonumber(ARGV[5]), 2)
if why then return {0, why} end
local n = tonumber(ARGV[7])
local envelope = {}
for i = 8, 7 + 2 * n do envelope[#envelope + 1] = ARGV[i] end
local id = redis.call('XADD', KEYS[1], '*', unpack(envelope))
redis.call('XADD', KEYS[2], '*', unpack(envelope))
local hash = {}
for i = 8 + 2 * n, #ARGV do hash[#hash + 1] = ARGV[i] end
redis.call('HSET', KEYS[3], unpack(hash))
redis.call('PEXPIRE', KEYS[3], ARGV[6])
if ARGV[4] ~= '' then redis.call('XACK', KEYS[5], ARGV[2], ARGV[4]) end
return {1, id}
"""

# KEYS[1] dead-letter stream, KEYS[2] runs stream, KEYS[3] run hash, KEYS[4] operation key
# ARGV[1] dead-letter id, ARGV[2] run hash ttl ms, ARGV[3] n envelope pairs,
# ARGV[4 .. 3+2n] the new RunRequested envelope, the rest: run hash field/value pairs.
# Returns the runs stream id, or false when the dead letter does not exist (any more).
_RETRY = """
if #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1]) == 0 then return false end
redis.call('XDEL', KEYS[1], ARGV[1])
local n = tonumber(ARGV[3])
local envelope = {}
for i = 4, 3 + 2 * n do envelope[#envelope + 1] = ARGV[i] end
local id = redis.call('XADD', KEYS[2], '*', unpack(envelope))
local hash = {}
for i = 4 + 2 * n, #ARGV do hash[#hash + 1] = ARGV[i] end
redis.call('HDEL', KEYS[3], 'started_at_ms', 'finished_at_ms')
redis.call('HSET', KEYS[3], unpack(hash))
redis.call('PEXPIRE', KEYS[3], ARGV[2])
return id
"""

# KEYS[1] dead-letter stream, KEYS[2] operation key
# ARGV[1] dead-letter id
# Returns 1 when deleted, 0 when it did not exist (a re-send answers what the first run did).
_PURGE = "return redis.call('XDEL', KEYS[1], ARGV[1])"


class DeadLetterNotFound(CampaignCommonError, LookupError):
    """No dead letter with that id (never existed, retried or purged)."""


@dataclass(frozen=True)
class DeadLetterRecord:
    id: str
    request: events_pb2.RunRequested
    error: str
    deliveries: int
    dead_at_ms: int
    # Trace context of the attempt that was parked: a retry links to it, not to the operator.
    traceparent: str = ""
    tracestate: str = ""


# A dead letter's place in the merged order: (entry ms, entry seq, partition).
_Position = tuple[int, int, int]


def _position(dead_id: str) -> _Position | None:
    """The parts of ``<partition>-<ms>-<seq>``, or None when ``dead_id`` is not one."""
    parts = dead_id.split("-")
    if len(parts) != 3 or not all(part.isdigit() and len(part) < 20 for part in parts):
        return None
    return int(parts[1]), int(parts[2]), int(parts[0])


def _dead_id(partition: Partition, entry_id: bytes | str) -> str:
    entry = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return f"{partition.index}-{entry}"


class DeadLetters:
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
        self._add = redis.register_script(worker_script(_ADD, op_ttl_ms=op_ttl_ms))
        self._retry = redis.register_script(idempotent(_RETRY, op_ttl_ms))
        self._purge = redis.register_script(idempotent(_PURGE, op_ttl_ms))

    async def add(
        self,
        request: events_pb2.RunRequested,
        error: str,
        deliveries: int,
        *,
        writer: Writer,
    ) -> str:
        """Park a run; its projection becomes DEAD_LETTERED with ``error``. Returns the id.

        The writer's runs entry (of the last attempt) is acked in the same script; a
        `WriteRefused` (nothing written) when the writer or the attempt is refused.
        """
        at_ms = now_ms()
        body = events_pb2.RunDeadLettered(request=request, error=error, deliveries=deliveries)
        body.dead_lettered_at.CopyFrom(ms_to_timestamp(at_ms))
        envelope = wrap(body, at_ms)
        hash_fields = {
            "state": RunState.DEAD_LETTERED.value,
            "attempt": request.attempt,
            "rank": int(Rank.FINISHED),
            "error": error,
            "finished_at_ms": at_ms,
            "next_attempt_at_ms": 0,
        }
        partition = self._partitions.of(request.campaign_id)
        keys = [
            partition.dead_stream,
            partition.events_stream,
            partition.run_key(request.run_id),
            *writer.keys(partition),
            partition.new_op_key(),
        ]
        args: list[Any] = [*writer.args(), request.attempt, self._run_ttl_ms]
        args.append(len(envelope.to_fields()))
        args += [*envelope.flat_fields(), *flatten(hash_fields)]
        reply: Any = await self._add(keys=keys, args=args)
        refused = refusal(reply, f"dead letter of run {request.run_id}")
        if refused is not None:
            raise refused
        return _dead_id(partition, cast(bytes, reply[1]))

    async def page(
        self, page_size: int, page_token: str = ""
    ) -> tuple[list[DeadLetterRecord], str]:
        """Newest first over every partition, paged; the token is opaque."""
        after = (
            _position(decode_page_token(page_token, lambda t: _position(t) is not None))
            if page_token
            else None
        )
        async with self._redis.pipeline(transaction=False) as pipe:
            for partition in self._partitions:
                pipe.xrevrange(
                    partition.dead_stream,
                    max=_below(after, partition),
                    min="-",
                    count=page_size + 1,
                )
            pages: Any = await pipe.execute()
        merged = sorted(
            (
                (_position(_dead_id(partition, entry_id)), partition, entry_id, fields)
                for partition, raw in zip(self._partitions, pages, strict=True)
                for entry_id, fields in raw
            ),
            key=lambda row: row[0] or (0, 0, 0),
            reverse=True,
        )[: page_size + 1]
        shown = merged[:page_size]
        records = [_record(p, i, f) for _, p, i, f in shown]
        more = len(merged) > page_size
        token = encode_page_token(_dead_id(shown[-1][1], shown[-1][2])) if more else ""
        return [record for record in records if record is not None], token

    def _locate(self, dead_id: str) -> tuple[Partition, str] | None:
        """The partition and entry id of a dead letter id (None: not one of ours)."""
        position = _position(dead_id)
        if position is None or position[2] >= len(self._partitions):
            return None
        return self._partitions[position[2]], f"{position[0]}-{position[1]}"

    async def get(self, dead_id: str) -> DeadLetterRecord:
        located = self._locate(dead_id)
        raw: Any = (
            await self._redis.xrange(located[0].dead_stream, located[1], located[1])
            if located
            else []
        )
        record = _record(located[0], *raw[0]) if located and raw else None
        if record is None:
            raise DeadLetterNotFound(f"dead letter {dead_id!r} not found")
        return record

    async def retry(self, dead_id: str) -> events_pb2.RunRequested:
        """Re-enqueue the run as attempt + 1; returns the new request."""
        record = await self.get(dead_id)
        request = events_pb2.RunRequested()
        request.CopyFrom(record.request)
        request.attempt = record.request.attempt + 1
        request.requested_at.CopyFrom(ms_to_timestamp(now_ms()))
        # The next attempt continues from the parked one (the scraper links attempts), not from
        # the operator's call that retried it.
        envelope = replace(
            wrap(request), traceparent=record.traceparent, tracestate=record.tracestate
        )
        hash_fields = {
            "state": RunState.REQUESTED.value,
            "attempt": request.attempt,
            "rank": int(Rank.REQUESTED),
            "error": "",
            "next_attempt_at_ms": 0,
        }
        partition = self._partitions.of(request.campaign_id)
        keys = [
            partition.dead_stream,
            partition.runs_stream,
            partition.run_key(request.run_id),
            partition.new_op_key(),
        ]
        entry_id = dead_id.split("-", 1)[1]  # get() found it, so it is well formed
        args: list[Any] = [entry_id, self._run_ttl_ms, len(envelope.to_fields())]
        args += [*envelope.flat_fields(), *flatten(hash_fields)]
        if await self._retry(keys=keys, args=args) is None:
            raise DeadLetterNotFound(f"dead letter {dead_id!r} was retried or purged meanwhile")
        return request

    async def purge(self, dead_id: str) -> None:
        removed = 0
        located = self._locate(dead_id)
        if located is not None:
            partition, entry_id = located
            keys = [partition.dead_stream, partition.new_op_key()]
            removed = await self._purge(keys=keys, args=[entry_id])
        if not removed:
            raise DeadLetterNotFound(f"dead letter {dead_id!r} not found")

    async def count(self) -> int:
        """Dead letters over every partition."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for partition in self._partitions:
                pipe.xlen(partition.dead_stream)
            return sum(int(n) for n in await pipe.execute())


def _below(after: _Position | None, partition: Partition) -> str:
    """XREVRANGE's max for the entries of ``partition`` that come after ``after`` in the
    merged order (newest first; at the same entry id a lower partition comes later)."""
    if after is None:
        return "+"
    entry = f"{after[0]}-{after[1]}"
    return entry if partition.index < after[2] else "(" + entry


def _record(
    partition: Partition, entry_id: bytes, fields: dict[bytes, bytes]
) -> DeadLetterRecord | None:
    try:
        envelope = Envelope.from_fields(fields)
        body = decode_body(envelope)
    except EnvelopeError:
        return None
    if not isinstance(body, events_pb2.RunDeadLettered):
        return None
    return DeadLetterRecord(
        id=_dead_id(partition, entry_id),
        request=body.request,
        error=body.error,
        deliveries=body.deliveries,
        dead_at_ms=body.dead_lettered_at.ToMilliseconds(),
        traceparent=envelope.traceparent,
        tracestate=envelope.tracestate,
    )
