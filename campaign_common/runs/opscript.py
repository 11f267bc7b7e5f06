"""Scripts that are safe to re-send: each call carries an operation id it checks first.

redis-py re-sends a command (EVALSHA included) after a timeout or a dropped connection. When
the script had run and only its reply was lost, a second run would append its events again,
or answer a conflict for the change it made itself. A script wrapped by `idempotent` takes
one extra key, last in KEYS: the operation's key (`op_key`, in the hash tag of the script's
other keys, so the script stays on one Redis Cluster slot). The first run stores its reply
there (JSON, TTL `OP_TTL_MS` unless the service sets another); a re-send with the same key
returns that reply and changes nothing. Every logical call makes a fresh operation id
(`new_op_id`), so two real calls never share one; the client's own re-sends of a call do.

Scripts that are naturally idempotent (dedupe keys, compare-and-delete, moves that remove
what they move) do not need this.
"""

from __future__ import annotations

import secrets

# Longer than any client-side retry of one command (seconds) by a wide margin.
OP_TTL_MS = 3600 * 1000


def new_op_id() -> str:
    return secrets.token_hex(10)


def op_key(hash_tag: str, op_id: str) -> str:
    """The operation's key, e.g. ``{runs:0}:op:<id>`` for ``hash_tag="runs:0"``."""
    return f"{{{hash_tag}}}:op:{op_id}"


# The fragments around a body (see `idempotent`): before it, a re-send answers the stored
# reply; after it, the reply is stored for the re-sends to come.
RESEND_PROLOGUE = """
local op_key = KEYS[#KEYS]
local done = redis.call('GET', op_key)
if done then return cjson.decode(done) end
local result = (function()
"""
RESEND_EPILOGUE = """
end)()
if result == nil then result = false end
redis.call('SET', op_key, cjson.encode(result), 'PX', {op_ttl_ms})
return result
"""


def idempotent(body: str, op_ttl_ms: int = OP_TTL_MS) -> str:
    """``body`` (a script that ends in ``return``) made safe to re-send; see the module doc.

    KEYS[#KEYS] is the operation key. The body keeps its own KEYS and ARGV numbering and must
    not read ``#KEYS``. A reply of nil is stored and returned as false (a nil reply too).
    The stored reply lives ``op_ttl_ms`` (a service setting: the re-send window, by a wide
    margin; each distinct TTL is a script of its own).
    """
    if op_ttl_ms < 1:
        raise ValueError(f"op_ttl_ms must be at least 1, not {op_ttl_ms}")
    return RESEND_PROLOGUE + body + RESEND_EPILOGUE.format(op_ttl_ms=op_ttl_ms)
