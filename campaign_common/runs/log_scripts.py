"""The run log's worker-write scripts: a lifecycle event with its results and ack, and results
alone (`campaign_common.runs.log.RunLog` calls them). Each starts with the writer and attempt
checks of `campaign_common.runs.writer`.
"""

from __future__ import annotations

from campaign_common.runs.writer import worker_script

# KEYS[1] run events stream, KEYS[2] run hash, KEYS[3] campaign fence, KEYS[4] runs stream,
# KEYS[5] campaign results list, KEYS[6] the attempt's written marker,
# KEYS[7] operation key (campaign_common.runs.opscript)
# ARGV[1 .. 4] the writer (fence, group, consumer, entry: `Writer.args`), ARGV[5] attempt,
# ARGV[6] rank, ARGV[7] run hash ttl ms, ARGV[8] ack (1: XACK the writer's entry once the
# event is applied), ARGV[9] results cap, ARGV[10] number of results m, ARGV[11 .. 10+m]
# serialized results (oldest first), ARGV[11+m] number of envelope pairs n, then the n
# envelope pairs, the rest: run hash field/value pairs. The run hash ttl is the run retention:
# of the run hash, the written marker, the results list and the campaign fence, each
# refreshed here.
# Stores the attempt's results (once per attempt, like ADD_RESULTS), appends the event and
# applies it to the projection (an event 'behind' the attempt is only appended, never acks);
# returns {1, entry id}, or {0, why} when refused (nothing written): 'entry', 'fence',
# 'final' or 'attempt'. Results, outcome and ack in one script: a crash can never leave an
# outcome without its results, nor an entry unacked after its outcome.
APPEND_RUN_EVENT = """
local why = writer_refusal(
    KEYS[3], KEYS[4], tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4], ARGV[7])
  or attempt_refusal(KEYS[2], tonumber(ARGV[5]), tonumber(ARGV[6]))
if why and why ~= 'behind' then return {0, why} end
local m = tonumber(ARGV[10])
local at = 11 + m
local n = tonumber(ARGV[at])
local envelope = {}
for i = at + 1, at + 2 * n do envelope[#envelope + 1] = ARGV[i] end
if why then return {1, redis.call('XADD', KEYS[1], '*', unpack(envelope))} end
if m > 0 and redis.call('SET', KEYS[6], '1', 'NX', 'PX', ARGV[7]) then
  for i = 11, 10 + m do redis.call('LPUSH', KEYS[5], ARGV[i]) end
  redis.call('LTRIM', KEYS[5], 0, tonumber(ARGV[9]) - 1)
  redis.call('PEXPIRE', KEYS[5], ARGV[7])
end
local id = redis.call('XADD', KEYS[1], '*', unpack(envelope))
local hash = {'attempt', ARGV[5], 'rank', ARGV[6]}
for i = at + 1 + 2 * n, #ARGV do hash[#hash + 1] = ARGV[i] end
redis.call('HSET', KEYS[2], unpack(hash))
redis.call('PEXPIRE', KEYS[2], ARGV[7])
if ARGV[8] == '1' and ARGV[3] ~= '' then redis.call('XACK', KEYS[4], ARGV[2], ARGV[4]) end
return {1, id}
"""

# KEYS[1] campaign results list, KEYS[2] the attempt's written marker, KEYS[3] run hash,
# KEYS[4] campaign fence, KEYS[5] runs stream
# ARGV[1 .. 4] the writer, ARGV[5] attempt, ARGV[6] cap, ARGV[7] the run retention ms (TTL of
# the marker, the results list and the fence), ARGV[8 ..] serialized results, oldest first
# Returns {1} when stored, {2} when this attempt's results were stored already (a re-run or a
# re-send: nothing written), {0, why} when refused (nothing written).
ADD_RESULTS = worker_script(
    """
local why = writer_refusal(
    KEYS[4], KEYS[5], tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4], ARGV[7])
  or attempt_refusal(KEYS[3], tonumber(ARGV[5]), 1)
if why then return {0, why} end
if not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[7]) then return {2} end
for i = 8, #ARGV do redis.call('LPUSH', KEYS[1], ARGV[i]) end
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[6]) - 1)
redis.call('PEXPIRE', KEYS[1], ARGV[7])
return {1}
""",
    resend_safe=True,
)
