"""The dead-letter stream: runs that exhausted their attempts, until an operator acts.

Keys (`campaign_common.runs.keys`; the ``{runs}`` hash tag, so each script is one slot):
``DEAD_LETTER_STREAM``, RunDeadLettered envelopes; the entry id is the dead letter's id.

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
from campaign_common.runs.keys import (
    DEAD_LETTER_STREAM,
    RUN_EVENTS_STREAM,
    RUNS_STREAM,
    new_op_key,
    run_key,
)
from campaign_common.runs.opscript import idempotent
from campaign_common.runs.record import Rank, RunState, flatten
from campaign_common.runs.writer import UNCHECKED, Writer, refusal, worker_script
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
_ADD = worker_script(
    """
local why = writer_refusal(KEYS[4], KEYS[5], tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4])
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
)

# KEYS[1] dead-letter stream, KEYS[2] runs stream, KEYS[3] run hash, KEYS[4] operation key
# ARGV[1] dead-letter id, ARGV[2] run hash ttl ms, ARGV[3] n envelope pairs,
# ARGV[4 .. 3+2n] the new RunRequested envelope, the rest: run hash field/value pairs.
# Returns the runs stream id, or false when the dead letter does not exist (any more).
_RETRY = idempotent(
    """
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
)

# KEYS[1] dead-letter stream, KEYS[2] operation key
# ARGV[1] dead-letter id
# Returns 1 when deleted, 0 when it did not exist (a re-send answers what the first run did).
_PURGE = idempotent("return redis.call('XDEL', KEYS[1], ARGV[1])")


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


def _valid_id(entry_id: str) -> bool:
    ms, _, seq = entry_id.partition("-")
    return ms.isdigit() and seq.isdigit()


class DeadLetters:
    def __init__(self, redis: Redis, *, run_ttl_ms: int = 14 * 24 * 3600 * 1000) -> None:
        self._redis = redis
        self._run_ttl_ms = run_ttl_ms
        self._add = redis.register_script(_ADD)
        self._retry = redis.register_script(_RETRY)
        self._purge = redis.register_script(_PURGE)

    async def add(
        self,
        request: events_pb2.RunRequested,
        error: str,
        deliveries: int,
        *,
        writer: Writer = UNCHECKED,
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
        keys = [
            DEAD_LETTER_STREAM,
            RUN_EVENTS_STREAM,
            run_key(request.run_id),
            *writer.keys(),
            new_op_key(),
        ]
        args: list[Any] = [*writer.args(), request.attempt, self._run_ttl_ms]
        args.append(len(envelope.to_fields()))
        args += [*envelope.flat_fields(), *flatten(hash_fields)]
        reply: Any = await self._add(keys=keys, args=args)
        refused = refusal(reply, f"dead letter of run {request.run_id}")
        if refused is not None:
            raise refused
        return cast(bytes, reply[1]).decode()

    async def page(
        self, page_size: int, page_token: str = ""
    ) -> tuple[list[DeadLetterRecord], str]:
        """Newest first, paged; the token is opaque."""
        top = "+" if not page_token else "(" + decode_page_token(page_token, _valid_id)
        raw: Any = await self._redis.xrevrange(
            DEAD_LETTER_STREAM, max=top, min="-", count=page_size + 1
        )
        records = [r for r in (_record(i, f) for i, f in raw[:page_size]) if r is not None]
        more = len(raw) > page_size
        token = encode_page_token(raw[page_size - 1][0].decode()) if more else ""
        return records, token

    async def get(self, dead_id: str) -> DeadLetterRecord:
        raw: Any = (
            await self._redis.xrange(DEAD_LETTER_STREAM, dead_id, dead_id)
            if _valid_id(dead_id)
            else []
        )
        record = _record(*raw[0]) if raw else None
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
        keys = [DEAD_LETTER_STREAM, RUNS_STREAM, run_key(request.run_id), new_op_key()]
        args: list[Any] = [dead_id, self._run_ttl_ms, len(envelope.to_fields())]
        args += [*envelope.flat_fields(), *flatten(hash_fields)]
        if await self._retry(keys=keys, args=args) is None:
            raise DeadLetterNotFound(f"dead letter {dead_id!r} was retried or purged meanwhile")
        return request

    async def purge(self, dead_id: str) -> None:
        removed = 0
        if _valid_id(dead_id):
            removed = await self._purge(keys=[DEAD_LETTER_STREAM, new_op_key()], args=[dead_id])
        if not removed:
            raise DeadLetterNotFound(f"dead letter {dead_id!r} not found")

    async def count(self) -> int:
        return int(await self._redis.xlen(DEAD_LETTER_STREAM))


def _record(entry_id: bytes, fields: dict[bytes, bytes]) -> DeadLetterRecord | None:
    try:
        envelope = Envelope.from_fields(fields)
        body = decode_body(envelope)
    except EnvelopeError:
        return None
    if not isinstance(body, events_pb2.RunDeadLettered):
        return None
    return DeadLetterRecord(
        id=entry_id.decode(),
        request=body.request,
        error=body.error,
        deliveries=body.deliveries,
        dead_at_ms=body.dead_lettered_at.ToMilliseconds(),
        traceparent=envelope.traceparent,
        tracestate=envelope.tracestate,
    )
