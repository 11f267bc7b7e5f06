"""The Lua scripts of `scraper_svc.store` (consumer-group upkeep, the pre-run look-up, the
rate window and the BUFFER_ONE marker); the store documents the keys they touch."""

from __future__ import annotations

# KEYS[1] runs stream
# ARGV[1] consumer group, ARGV[2] consumer, ARGV[3] idle ms to set, ARGV[4 ..] entry ids
# Sets the idle time of each entry still pending for this consumer (XCLAIM JUSTID does not
# count a delivery); entries another consumer took over meanwhile are left alone.
# Returns how many entries were set.
SET_IDLE = """
local set = 0
for i = 4, #ARGV do
  local row = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)[1]
  if row and row[2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'IDLE', ARGV[3], 'JUSTID')
    set = set + 1
  end
end
return set
"""

# KEYS[1] runs stream
# ARGV[1] consumer group, ARGV[2] consumer, ARGV[3] entry id
# Acks the entry only while this consumer owns it: an entry another worker took over is
# that worker's to ack. Returns 1 when acked, 0 when it was not pending (acked already: a
# re-send, or its new owner finished it), -1 when another consumer owns it (left alone).
ACK_OWNED = """
local row = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)[1]
if not row then return 0 end
if row[2] ~= ARGV[2] then return -1 end
return redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
"""

# KEYS[1] run hash, KEYS[2] campaign fence (both in the runs slot)
# Returns {attempt, state, fence floor}, each false (None) when missing: a read-only script,
# cheaper for the client than a pipeline of the two reads.
LOOK_UP = """
local cur = redis.call('HMGET', KEYS[1], 'attempt', 'state')
return {cur[1], cur[2], redis.call('GET', KEYS[2])}
"""

# KEYS[1] the campaign's window (sorted set: run id -> start time ms)
# ARGV[1] run id, ARGV[2] max runs per window, ARGV[3] window ms
# Forgets starts that left the window (server time), then admits the run if it was admitted
# before (a redelivery) or fewer than max runs started within the window.
# Returns 1 when admitted (and counted), 0 when over the limit.
ADMIT_TO_WINDOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 1 end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('PEXPIRE', KEYS[1], window)
return 1
"""

# KEYS[1] the campaign's buffer marker
# ARGV[1] run id, ARGV[2] ttl ms
# Takes the marker for the run if nobody has it, or refreshes it if the run has it.
# Returns 1 when the run holds the marker, 0 when another run does.
CLAIM_BUFFER = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

# KEYS[1] the campaign's buffer marker
# ARGV[1] run id
# Compare-and-delete: frees the marker only if the run holds it. Returns 1 if deleted.
RELEASE_BUFFER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
