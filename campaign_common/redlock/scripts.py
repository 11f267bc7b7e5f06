"""Key names and Lua scripts of the Redlock client (`campaign_common.redlock.client`).

Every key the lock masters hold is named here, and every script that touches them is here with
a KEYS/ARGV header. Per resource each master holds two keys that share one hash tag, so each
script stays valid on a Redis Cluster node too:

- ``redlock:{<resource>}``        the lock: value = the holder's random token, PX = the TTL;
- ``redlock:{<resource>}:fence``  the fencing counter: an integer that only ever grows while it
  exists; it expires ``fence_ttl_ms`` after the resource's last acquisition or confirmation
  (`Redlock`'s setting, far longer than any lease; 0: never), so resources nobody locks any
  more leave nothing behind (why fences stay monotonic: `campaign_common.runs.writer`).

Scripts are invoked with EVALSHA; the connection layer loads them (SCRIPT LOAD) when it connects
and again whenever a master answers NOSCRIPT (a restarted master has an empty script cache).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, cast

from hiredis import pack_command

KEY_PREFIX = "redlock:"
FENCE_SUFFIX = ":fence"


def validate_resource(resource: str) -> None:
    """A resource name is non-empty and carries no brace, so the hash tag is the whole name."""
    if not resource or "{" in resource or "}" in resource:
        raise ValueError(f"lock resource must be non-empty and without braces: {resource!r}")


def lock_key(resource: str) -> str:
    return f"{KEY_PREFIX}{{{resource}}}"


def fence_key(resource: str) -> str:
    return f"{KEY_PREFIX}{{{resource}}}{FENCE_SUFFIX}"


def _bulk(part: bytes) -> bytes:
    return b"$%d\r\n%b\r\n" % (len(part), part)


@dataclass(frozen=True)
class LuaScript:
    """A script, its SHA1 and the head ``EVALSHA <sha> <numkeys>`` of its calls."""

    name: str
    source: bytes
    numkeys: int
    nargs: int
    variadic: bool = False  # more arguments than ``nargs`` may follow
    sha: bytes = field(init=False)
    _head: tuple[bytes, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        sha = hashlib.sha1(self.source).hexdigest().encode()
        object.__setattr__(self, "sha", sha)
        object.__setattr__(self, "_head", (b"EVALSHA", sha, b"%d" % self.numkeys))

    def wire(self, *parts: bytes) -> bytes:
        """The RESP encoding of ``EVALSHA sha numkeys *parts`` (keys first, then args),
        packed by hiredis."""
        expected = self.numkeys + self.nargs
        if len(parts) != expected and not (self.variadic and len(parts) > expected):
            raise ValueError(f"{self.name}: expected {expected} keys+args")
        # hiredis's stub types the tuple as one element long; it takes any length.
        packed: bytes = pack_command(cast(Any, self._head + parts))
        return packed

    def wire_around(
        self, before: tuple[bytes, ...], size: int, after: tuple[bytes, ...]
    ) -> tuple[bytes, bytes]:
        """``(head, tail)`` such that ``head + part + tail == wire(*before, part, *after)`` for
        every ``part`` of ``size`` bytes: the request of a resource packed once, with only the
        token (the part that changes from attempt to attempt) put in between."""
        wire = self.wire(*before, b"\0" * size, *after)
        tail = b"\r\n" + b"".join([_bulk(part) for part in after])
        head = wire[: len(wire) - len(tail) - size]
        if not head.endswith(b"$%d\r\n" % size) or not wire.endswith(tail):
            raise AssertionError(f"{self.name}: unexpected RESP layout")  # pragma: no cover
        return head, tail

    def load_command(self) -> bytes:
        return b"*3\r\n" + _bulk(b"SCRIPT") + _bulk(b"LOAD") + _bulk(self.source)


# KEYS[1] lock key; KEYS[2] fence counter key (same hash tag)
# ARGV[1] token (fresh for every acquisition attempt); ARGV[2] TTL in milliseconds;
# ARGV[3] fence floor (decimal integer >= 0; 0 = no floor); ARGV[4] counter TTL ms (0: none);
# ARGV[5..] orphans: tokens of this client's failed attempts on the resource whose clean-up is
# not confirmed yet (none in the common case).
# Sets the lock if it is free, or takes it over if this token or one of the orphans holds it:
# an orphan's key is the grant of a failed attempt (its reply came after the attempt gave up, or
# its release has not run yet), which no lease was ever returned for, so the retry must not
# mistake it for another owner. The key then holds this attempt's token and TTL, and the
# orphan's late compare-and-delete no longer matches it. Then the script increments the fence
# counter and, if the result is not above the floor, raises it to floor + 1 (through SET floor
# + INCR so that Redis does the arithmetic on 64-bit integers: Lua numbers are doubles, and a
# double passed to redis.call may be formatted in exponent notation). The counter is never
# lowered.
# The counter's expiry is refreshed with each grant.
# Returns the counter after the increment (> floor, >= 1) when the token holds the lock, else 0.
ACQUIRE = LuaScript(
    "acquire",
    b"""
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local holder = redis.call('GET', KEYS[1])
  local ours = holder == ARGV[1]
  for i = 5, #ARGV do
    if ours then break end
    ours = holder == ARGV[i]
  end
  if not ours then return 0 end
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
local fence = redis.call('INCR', KEYS[2])
if fence <= tonumber(ARGV[3]) then
  redis.call('SET', KEYS[2], ARGV[3])
  fence = redis.call('INCR', KEYS[2])
end
if ARGV[4] ~= '0' then redis.call('PEXPIRE', KEYS[2], ARGV[4]) end
return fence
""",
    numkeys=2,
    nargs=4,
    variadic=True,
)

# KEYS[1] lock key; KEYS[2] fence counter key (same hash tag)
# ARGV[1] token; ARGV[2] fence (decimal integer); ARGV[3] counter TTL ms (0: none)
# Raises the fence counter to at least ARGV[2] (never lowers it) and refreshes its expiry,
# whoever holds the lock.
# Returns 1 when the lock still holds this token (the raise counts for the quorum), 0 otherwise.
CONFIRM_FENCE = LuaScript(
    "confirm_fence",
    b"""
local fence = tonumber(ARGV[2])
if (tonumber(redis.call('GET', KEYS[2])) or 0) < fence then
  redis.call('SET', KEYS[2], ARGV[2])
end
if ARGV[3] ~= '0' then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return 1
end
return 0
""",
    numkeys=2,
    nargs=3,
)

# KEYS[1] lock key
# ARGV[1] token
# Compare-and-delete. Returns 1 when this token's lock was deleted, 0 when it was not there.
RELEASE = LuaScript(
    "release",
    b"""
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
""",
    numkeys=1,
    nargs=1,
)

# KEYS[1] lock key
# ARGV[1] token; ARGV[2] new TTL in milliseconds
# Compare-and-extend. Returns 1 when this token's lock got the new TTL, 0 when it was not there.
EXTEND = LuaScript(
    "extend",
    b"""
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
""",
    numkeys=1,
    nargs=2,
)

ALL_SCRIPTS: tuple[LuaScript, ...] = (ACQUIRE, CONFIRM_FENCE, RELEASE, EXTEND)
