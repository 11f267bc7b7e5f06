"""Stream retention: trim streams behind what every consumer group still needs, and forget
consumers that are gone.

The runs stream and the run events stream would otherwise grow by every run forever. A
stream is trimmed (``XTRIM MINID ~``) to entries newer than its retention, but never past an
entry a consumer group still needs: the oldest entry pending in any group (delivered, not
acked), or any entry after a group's last delivered one (not read yet). So a consumer that is
behind, or a worker that died with entries pending, never loses what it has to process.

Consumers of a group are named per process (`<host>-<pid>`), so every restart leaves a name
behind. A consumer with nothing pending and idle longer than ``consumer_idle_ms`` (a live one
reads every few hundred ms) is deleted; the check and the delete are one script, so a consumer
that just took an entry is never deleted with it.

Both scripts touch one stream key only, so they stay valid on a Redis Cluster, and they are
safe to run from every replica at once (trimming and deleting twice changes nothing).
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import ResponseError

# KEYS[1] stream
# ARGV[1] cutoff: the id below which entries are old enough to go ('<ms>-0')
# The floor is the oldest id any group still needs (its oldest pending entry, or the entry
# after its last delivered one); entries below min(cutoff, floor) are trimmed (approximately:
# whole macro nodes only, so trimming stays cheap). Returns the number of entries trimmed.
_TRIM_BEHIND_GROUPS = """
local function id_lt(a, b)
  local am, as = string.match(a, '(%d+)-(%d+)')
  local bm, bs = string.match(b, '(%d+)-(%d+)')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am < bm or (am == bm and as < bs)
end
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local floor = ARGV[1]
for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local info = {}
  for i = 1, #group, 2 do info[group[i]] = group[i + 1] end
  local pending = redis.call('XPENDING', KEYS[1], info['name'])
  local needed = info['last-delivered-id']
  if tonumber(pending[1]) > 0 and id_lt(pending[2], needed) then needed = pending[2] end
  if id_lt(needed, floor) then floor = needed end
end
return redis.call('XTRIM', KEYS[1], 'MINID', '~', floor)
"""

# KEYS[1] stream
# ARGV[1] group, ARGV[2] idle ms
# Deletes the group's consumers that have nothing pending and were idle longer than ARGV[2].
# Returns how many were deleted.
_FORGET_IDLE_CONSUMERS = """
local deleted = 0
for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local info = {}
  for i = 1, #consumer, 2 do info[consumer[i]] = consumer[i + 1] end
  if tonumber(info['pending']) == 0 and tonumber(info['idle']) > tonumber(ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    deleted = deleted + 1
  end
end
return deleted
"""


@dataclass(frozen=True)
class StreamRetention:
    """One stream's retention: how old its entries may get, and its consumer groups."""

    stream: str
    retention_ms: int
    groups: tuple[str, ...] = ()


class Retention:
    def __init__(self, redis: Redis, *, consumer_idle_ms: int) -> None:
        self._redis = redis
        self._consumer_idle_ms = consumer_idle_ms
        self._trim = redis.register_script(_TRIM_BEHIND_GROUPS)
        self._forget = redis.register_script(_FORGET_IDLE_CONSUMERS)

    async def trim(self, rule: StreamRetention, now_ms: int) -> int:
        """Trim ``rule.stream`` (see the module docstring); returns the entries removed."""
        cutoff = f"{max(0, now_ms - rule.retention_ms)}-0"
        return int(await self._trim(keys=[rule.stream], args=[cutoff]))

    async def forget_idle_consumers(self, rule: StreamRetention) -> int:
        """Delete the stream's gone consumers (nothing pending, idle); returns how many."""
        deleted = 0
        for group in rule.groups:
            args: list[str | int] = [group, self._consumer_idle_ms]
            try:
                deleted += int(await self._forget(keys=[rule.stream], args=args))
            except ResponseError as exc:  # no such stream or group (yet): nothing to forget
                if "NOGROUP" not in str(exc) and "no such key" not in str(exc).lower():
                    raise
        return deleted
