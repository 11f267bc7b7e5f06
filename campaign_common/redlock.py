"""A basic, correct Redlock over N independent Redis masters (asyncio, ``redis.asyncio``).

This module owns the lock key name (``lock:{<resource>}``) and the release script.

Algorithm (Redis' distributed-lock spec, "Redlock"):

1. Draw a random token (20 bytes from ``secrets``), so only the holder can release its lock.
2. Read the monotonic clock, then ``SET key token NX PX ttl`` on *all* masters in parallel;
   each node gets ``per_node_timeout_s`` (far below the TTL), so a dead or slow master costs
   at most that long and never blocks the others.
3. Elapsed time is measured on ``time.monotonic()``; the lock's validity is
   ``ttl - elapsed - (ttl * drift_factor + 2 ms)``.
4. The lock is granted only if a majority (``N // 2 + 1``) answered OK *and* the validity is
   still positive. Otherwise the attempt is undone on *every* master (also those that seemed
   to refuse: a reply may have been lost after the key was set) and ``None`` is returned.
5. Release is a compare-and-delete script on every master in parallel: a key is deleted only if
   it still holds this token, so releasing a lock that expired (and that someone else may hold
   now) is harmless. Errors of single nodes are logged, never raised.

Assumptions that make it safe: the masters are independent (no replication between them, so a
failover cannot hand one key to two holders), their clocks advance at about the same rate (the
drift term), and the guarded work finishes within ``Lock.validity_ms`` counted from
``Lock.acquired_at``; this basic client neither extends nor fences, so callers must bound their
work by the validity. Retries, extension and fencing tokens come with the full client.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)
T = TypeVar("T")

KEY_PREFIX = "lock:"
CLOCK_DRIFT_FLOOR_MS = 2.0
TOKEN_BYTES = 20

# KEYS[1] lock key
# ARGV[1] token
# Compare-and-delete: deletes the key only while it holds this token. Returns 1 if deleted,
# 0 if the key is gone or belongs to another holder.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def lock_key(resource: str) -> str:
    """The key of ``resource`` on every master; the braces make it a Cluster hash tag."""
    return f"{KEY_PREFIX}{{{resource}}}"


@dataclass(frozen=True)
class Lock:
    """A granted lock. Valid for ``validity_ms`` from ``acquired_at`` (``time.monotonic()``)."""

    resource: str
    token: str
    validity_ms: float
    acquired_at: float

    @property
    def valid_until(self) -> float:
        """Monotonic time after which the lock must be assumed lost."""
        return self.acquired_at + self.validity_ms / 1000

    def remaining_s(self) -> float:
        """Seconds of validity left now (negative once it is gone)."""
        return self.valid_until - time.monotonic()


class Redlock:
    """Majority locks over independent masters; see the module docstring for the algorithm."""

    def __init__(
        self, clients: Sequence[Redis], *, per_node_timeout_s: float, drift_factor: float = 0.01
    ) -> None:
        if not clients:
            raise ValueError("Redlock needs at least one lock master")
        if per_node_timeout_s <= 0 or not 0 <= drift_factor < 1:
            raise ValueError("per_node_timeout_s must be > 0 and drift_factor in [0, 1)")
        self._clients = tuple(clients)
        self._release_scripts = [client.register_script(_RELEASE) for client in self._clients]
        self._timeout_s = per_node_timeout_s
        self._drift_factor = drift_factor

    @property
    def quorum(self) -> int:
        return len(self._clients) // 2 + 1

    async def acquire(self, resource: str, ttl_ms: int) -> Lock | None:
        """The lock on ``resource`` for ``ttl_ms``, or None if it is held or no quorum answered."""
        if ttl_ms <= 0:
            raise ValueError("ttl_ms must be positive")
        key, token = lock_key(resource), secrets.token_hex(TOKEN_BYTES)
        started = time.monotonic()
        try:
            replies = await asyncio.gather(
                *[
                    self._on_node(cast(Awaitable[Any], c.set(key, token, nx=True, px=ttl_ms)))
                    for c in self._clients
                ]
            )
        except asyncio.CancelledError:
            # Cancelled mid-attempt: keys may be set that no Lock will ever release.
            await asyncio.shield(self._release(key, token))
            raise
        finished = time.monotonic()
        granted = sum(1 for reply in replies if reply is True)
        drift_ms = ttl_ms * self._drift_factor + CLOCK_DRIFT_FLOOR_MS
        validity_ms = ttl_ms - (finished - started) * 1000 - drift_ms
        if granted >= self.quorum and validity_ms > 0:
            return Lock(resource, token, validity_ms, finished)
        log.debug(
            "lock not granted",
            extra={"resource": resource, "granted": granted, "validity_ms": validity_ms},
        )
        await self._release(key, token)
        return None

    async def release(self, lock: Lock) -> None:
        """Compare-and-delete on every master; an expired or already released lock is fine."""
        await self._release(lock_key(lock.resource), lock.token)

    async def _release(self, key: str, token: str) -> None:
        await asyncio.gather(
            *[self._on_node(script(keys=[key], args=[token])) for script in self._release_scripts]
        )

    async def _on_node(self, command: Awaitable[T]) -> T | None:
        """One node's reply under the per-node deadline; None when it failed or timed out."""
        try:
            return await asyncio.wait_for(command, self._timeout_s)
        except (TimeoutError, RedisError, OSError) as exc:
            log.debug("lock master did not answer: %r", exc)
            return None
