"""The dead-letter stream: runs that exhausted their attempts, until an operator acts.

Keys (``{runs}`` hash tag, shared with `campaign_common.runlog`, so each script is one slot):
    {runs}:dead   stream of RunDeadLettered envelopes; the entry id is the dead letter's id

The scraper parks a run here (`add`); operators list, retry (the original request goes back
to the runs stream as attempt + 1, same run id) or purge. Retry and purge remove the entry in
the same script that acts on it, so two operators retrying at once re-enqueue the run once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from campaign_common.envelope import Envelope, EnvelopeError, decode_body, wrap
from campaign_common.page_tokens import decode_page_token, encode_page_token
from campaign_common.runlog import (
    RUN_EVENTS_STREAM,
    RUNS_STREAM,
    SCRAPER_GROUP,
    Rank,
    RunState,
    flatten,
    run_key,
)
from campaign_common.timeutil import ms_to_timestamp, now_ms
from campaigns.v1 import events_pb2

DEAD_LETTER_STREAM = "{runs}:dead"

# KEYS[1] dead-letter stream, KEYS[2] run events stream, KEYS[3] run hash, KEYS[4] runs stream
# ARGV[1] attempt, ARGV[2] run hash ttl ms, ARGV[3] consumer group, ARGV[4] runs entry to ack
# ('': none), ARGV[5] n envelope pairs, ARGV[6 .. 5+2n] the RunDeadLettered envelope
# (appended to both streams), the rest: run hash field/value pairs.
# The projection is updated unless it already shows a later attempt; the runs entry of the
# last attempt is acked in the same step. Returns the dead id.
_ADD = """
local n = tonumber(ARGV[5])
local envelope = {}
for i = 6, 5 + 2 * n do envelope[#envelope + 1] = ARGV[i] end
local id = redis.call('XADD', KEYS[1], '*', unpack(envelope))
redis.call('XADD', KEYS[2], '*', unpack(envelope))
local current = tonumber(redis.call('HGET', KEYS[3], 'attempt') or '0')
if tonumber(ARGV[1]) >= current then
  local hash = {}
  for i = 6 + 2 * n, #ARGV do hash[#hash + 1] = ARGV[i] end
  redis.call('HSET', KEYS[3], unpack(hash))
  redis.call('PEXPIRE', KEYS[3], ARGV[2])
end
if ARGV[4] ~= '' then redis.call('XACK', KEYS[4], ARGV[3], ARGV[4]) end
return id
"""

# KEYS[1] dead-letter stream, KEYS[2] runs stream, KEYS[3] run hash
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


class DeadLetterNotFound(LookupError):
    """No dead letter with that id (never existed, retried or purged)."""


@dataclass(frozen=True)
class DeadLetterRecord:
    id: str
    request: events_pb2.RunRequested
    error: str
    deliveries: int
    dead_at_ms: int


def _valid_id(entry_id: str) -> bool:
    ms, _, seq = entry_id.partition("-")
    return ms.isdigit() and seq.isdigit()


class DeadLetters:
    def __init__(self, redis: Redis, *, run_ttl_ms: int = 14 * 24 * 3600 * 1000) -> None:
        self._redis = redis
        self._run_ttl_ms = run_ttl_ms
        self._add = redis.register_script(_ADD)
        self._retry = redis.register_script(_RETRY)

    async def add(
        self, request: events_pb2.RunRequested, error: str, deliveries: int, *, ack_entry: str = ""
    ) -> str:
        """Park a run; its projection becomes DEAD_LETTERED with ``error``. Returns the id.

        ``ack_entry``: the runs-stream entry of the last attempt, acked in the same script.
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
        keys = [DEAD_LETTER_STREAM, RUN_EVENTS_STREAM, run_key(request.run_id), RUNS_STREAM]
        args: list[Any] = [request.attempt, self._run_ttl_ms, SCRAPER_GROUP, ack_entry]
        args.append(len(envelope.to_fields()))
        args += [*envelope.flat_fields(), *flatten(hash_fields)]
        entry_id: bytes = await self._add(keys=keys, args=args)
        return entry_id.decode()

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
        envelope = wrap(request)
        hash_fields = {
            "state": RunState.REQUESTED.value,
            "attempt": request.attempt,
            "rank": int(Rank.REQUESTED),
            "error": "",
            "next_attempt_at_ms": 0,
        }
        keys = [DEAD_LETTER_STREAM, RUNS_STREAM, run_key(request.run_id)]
        args: list[Any] = [dead_id, self._run_ttl_ms, len(envelope.to_fields())]
        args += [*envelope.flat_fields(), *flatten(hash_fields)]
        if await self._retry(keys=keys, args=args) is None:
            raise DeadLetterNotFound(f"dead letter {dead_id!r} was retried or purged meanwhile")
        return request

    async def purge(self, dead_id: str) -> None:
        removed = await self._redis.xdel(DEAD_LETTER_STREAM, dead_id) if _valid_id(dead_id) else 0
        if not removed:
            raise DeadLetterNotFound(f"dead letter {dead_id!r} not found")

    async def count(self) -> int:
        return int(await self._redis.xlen(DEAD_LETTER_STREAM))


def _record(entry_id: bytes, fields: dict[bytes, bytes]) -> DeadLetterRecord | None:
    try:
        body = decode_body(Envelope.from_fields(fields))
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
    )
