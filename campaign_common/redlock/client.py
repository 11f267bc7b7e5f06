"""The Redlock client: acquisition, release and extension over the lock masters.

The algorithm, its fencing token and its assumptions are described in the package docstring
(`campaign_common.redlock`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import replace
from functools import partial
from typing import Any, Literal

from redis.asyncio import Redis

from campaign_common.redlock.channel import MasterNode, NodeUnavailable
from campaign_common.redlock.connect_params import ConnectParams
from campaign_common.redlock.errors import LeaseLost, LockError, LockHeld, QuorumUnavailable
from campaign_common.redlock.hold import HeldLock
from campaign_common.redlock.lease import Lease
from campaign_common.redlock.orphans import Orphan, Orphans
from campaign_common.redlock.pipelined_node import PipelinedNode
from campaign_common.redlock.quorum import _PENDING, MasterQuorum, _ignore, _Round
from campaign_common.redlock.redis_py_node import RedisPyNode
from campaign_common.redlock.scripts import (
    ACQUIRE,
    CONFIRM_FENCE,
    EXTEND,
    RELEASE,
    validate_resource,
)
from campaign_common.redlock.stats import AttemptStats, Outcome, RedlockCounters
from campaign_common.redlock.tokens import new_token
from campaign_common.redlock.wires import ResourceWires, WireCache

log = logging.getLogger(__name__)


class Redlock(MasterQuorum):
    """A Redlock client over independent masters (see the module docstring).

    ``clients`` are redis-py asyncio clients, one per master (3 by default, 5 recommended);
    they describe where each master is and are not used for traffic unless
    ``pipelined=False``. The quorum is ``len(clients) // 2 + 1``. ``retry_count`` is the
    number of attempts after the first. ``on_attempt`` receives an `AttemptStats` per attempt.
    """

    def __init__(
        self,
        clients: Sequence[Redis],
        *,
        node_timeout_s: float = 0.1,
        drift_factor: float = 0.01,
        drift_fixed_ms: float = 2.0,
        retry_count: int = 3,
        retry_delay_ms: float = 200.0,
        pipelined: bool = True,
        connect_timeout_s: float = 1.0,
        close_timeout_s: float = 2.0,
        on_attempt: Callable[[AttemptStats], None] | None = None,
        fence_ttl_ms: int = 0,
    ) -> None:
        if not clients:
            raise ValueError("Redlock needs at least one master")
        if node_timeout_s <= 0 or retry_count < 0 or retry_delay_ms < 0 or drift_factor < 0:
            raise ValueError("node_timeout_s must be > 0; retries, delay and drift >= 0")
        self.quorum = len(clients) // 2 + 1
        self.node_timeout_s = node_timeout_s
        self.drift_factor = drift_factor
        self.drift_fixed_ms = drift_fixed_ms
        self.retry_count = retry_count
        self.retry_delay_ms = retry_delay_ms
        self.close_timeout_s = close_timeout_s
        # Expiry of the fence counters, refreshed by every grant (0: never; scripts module).
        self._fence_ttl = b"%d" % max(0, fence_ttl_ms)
        self.on_attempt = on_attempt
        self.counters = RedlockCounters()
        stall_s = max(1.0, 20 * node_timeout_s)
        self._nodes: list[MasterNode] = [
            PipelinedNode(ConnectParams.from_client(c, connect_timeout_s), stall_timeout_s=stall_s)
            if pipelined
            else RedisPyNode(c, stall_timeout_s=stall_s)
            for c in clients
        ]
        self._all = tuple(range(len(self._nodes)))
        self._background: set[asyncio.Task[Any]] = set()
        self._holds: set[HeldLock] = set()
        self._orphans = Orphans()
        self._wires = WireCache(self._fence_ttl)
        self._closed = False

    async def connect(self) -> None:
        """Connect to every master now (optional: requests connect lazily).

        Raises `QuorumUnavailable` if fewer than a quorum of masters answer a PING.
        """
        results = await asyncio.gather(*(n.connect() for n in self._nodes), return_exceptions=True)
        failures = {
            node.address: str(result) or type(result).__name__
            for node, result in zip(self._nodes, results, strict=True)
            if isinstance(result, BaseException)
        }
        if len(self._nodes) - len(failures) < self.quorum:
            raise QuorumUnavailable("*", failures)

    async def aclose(self) -> None:
        """Finish background work (bounded by ``close_timeout_s``) and close the connections."""
        if self._closed:
            return
        self._closed = True
        for held in list(self._holds):  # their bodies are cancelled and learn why
            held.lose("the Redlock client was closed")
        await asyncio.sleep(0)  # let those bodies reach their exit and start releasing
        if self._background:
            await asyncio.wait(set(self._background), timeout=self.close_timeout_s)
            for task in self._background:
                task.cancel()
        await asyncio.gather(*(node.aclose(self.close_timeout_s) for node in self._nodes))

    async def __aenter__(self) -> Redlock:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- acquisition -------------------------------------------------------------------------

    async def acquire(
        self,
        resource: str,
        ttl_ms: int,
        *,
        retry_count: int | None = None,
        fence_floor: int = 0,
    ) -> Lease:
        """Take the lock on ``resource`` for ``ttl_ms``; see the module docstring.

        The lease's fence is greater than ``fence_floor`` (pass the highest fence the protected
        store accepted, so that fences continue above it even after the masters lost their
        data). Raises `LockHeld` when another owner holds it, `QuorumUnavailable` when too few
        masters answered (or the validity ran out), after the last of ``retry_count`` retries.
        """
        wires = self._wires.acquire.get((resource, ttl_ms, fence_floor))
        if wires is None or self._closed:  # validated when packed, so a hit is valid
            self._check_usable(resource, ttl_ms)
            if fence_floor < 0:
                raise ValueError(f"fence_floor must be >= 0, got {fence_floor}")
            wires = self._wires.resource(resource, ttl_ms, fence_floor)
        retries = self.retry_count if retry_count is None else retry_count
        attempt = 1
        while True:
            result = await self._attempt(resource, wires, ttl_ms, attempt)
            if isinstance(result, Lease):
                return result
            if attempt > retries:
                raise result
            attempt += 1
            await asyncio.sleep(random.uniform(0.5, 1.5) * self.retry_delay_ms / 1000.0)

    async def _attempt(
        self, resource: str, wires: ResourceWires, ttl_ms: int, attempt: int
    ) -> Lease | LockError:
        # A token of its own: this attempt's late replies and releases can then never touch the
        # key of another attempt (see "Why a fresh token for every attempt" above).
        token = new_token()
        key, counter = wires.key, wires.counter
        started = time.monotonic()
        timeout_s = self._node_timeout(ttl_ms)
        parts = wires.acquire_parts(token)
        orphans = self._orphans.tokens(key)
        if orphans:  # this client's failed attempts that may still hold keys: take them over
            parts += orphans
            wire = ACQUIRE.wire(*parts)
        else:
            wire = wires.acquire_head + token + wires.acquire_tail
        acquired = self._send(ACQUIRE, parts, wire, self._all, self.quorum, timeout_s, False)
        await acquired.future
        self.counters.attempts += 1
        error: LockError
        if acquired.ok >= self.quorum:
            fence = self._agreed_fence(acquired, key, counter, token)
            if fence < 0:  # the granting counters disagree: confirm the largest on a quorum
                fence = await self._confirm_fence(key, counter, token, -fence, timeout_s)
            drift_ms = ttl_ms * self.drift_factor + self.drift_fixed_ms
            elapsed_ms = (time.monotonic() - started) * 1000.0
            validity_ms = ttl_ms - elapsed_ms - drift_ms
            if fence > 0 and validity_ms > 0:
                self.counters.acquired += 1
                if self.on_attempt is not None:
                    self._report("acquire", resource, attempt, started, acquired.ok, "granted")
                expires_at = started + (ttl_ms - drift_ms) / 1000.0
                return Lease(
                    resource, token, fence, ttl_ms, validity_ms, started, expires_at, attempt, key
                )
            error = self._late_error(resource, fence, ttl_ms, elapsed_ms, drift_ms)
        else:
            error = self._refusal(resource, acquired)
        await self._release_partial(acquired, key, token, timeout_s, ttl_ms / 1000.0)
        outcome: Outcome = "held" if isinstance(error, LockHeld) else "unavailable"
        if isinstance(error, QuorumUnavailable) and error.reason.startswith("validity"):
            outcome = "expired"
        setattr(self.counters, outcome, getattr(self.counters, outcome) + 1)
        self._report("acquire", resource, attempt, started, acquired.ok, outcome)
        return error

    def _agreed_fence(self, acquired: _Round, key: bytes, counter: bytes, token: bytes) -> int:
        """The fence of a won attempt when every grant returned it; else minus the largest."""
        fence = lowest = 0
        stale = False
        for reply in acquired.replies:
            if type(reply) is int:
                if reply > fence:
                    fence = reply
                if reply > 0 and (lowest == 0 or reply < lowest):
                    lowest = reply
                stale = stale or reply == 0
        acquired.late = partial(self._heal_counter, key, counter, token, fence)
        if lowest != fence:
            return -fence
        if stale:  # reachable but held by a stale key: raise its counter anyway
            for index, reply in enumerate(acquired.replies):
                if reply == 0:
                    self._heal_counter(key, counter, token, fence, index, reply)
        return fence

    async def _confirm_fence(
        self, key: bytes, counter: bytes, token: bytes, fence: int, timeout_s: float
    ) -> int:
        """``fence`` once a quorum raised its counter to it while we hold the key, else 0."""
        self.counters.fence_confirmations += 1
        parts = (key, counter, token, b"%d" % fence, self._fence_ttl)
        confirmed = self._fan_out(CONFIRM_FENCE, parts, self._all, self.quorum, timeout_s)
        await confirmed.future
        return fence if confirmed.ok >= self.quorum else 0

    def _heal_counter(
        self, key: bytes, counter: bytes, token: bytes, fence: int, index: int, reply: object
    ) -> None:
        """A master answered after the decision, or lags: raise its counter to the fence."""
        if type(reply) is int and reply < fence:
            parts = (key, counter, token, b"%d" % fence, self._fence_ttl)
            wire = CONFIRM_FENCE.wire(*parts)
            self._nodes[index].call(CONFIRM_FENCE, parts, wire, _ignore, index)

    async def _release_partial(
        self, acquired: _Round, key: bytes, token: bytes, timeout_s: float, ttl_s: float
    ) -> None:
        """Undo a failed attempt: release where it may have been granted, now or later.

        Until every master answered and every release is confirmed, the token is an orphan that
        the next attempt on the resource takes over (`campaign_common.redlock.orphans`).
        """
        replies = acquired.replies
        targets = [i for i, reply in enumerate(replies) if reply is not _PENDING and reply != 0]
        pending = sum(1 for reply in replies if reply is _PENDING)
        # a request of unknown outcome may yet run after our release of it: linger for it
        orphan = self._orphans.adopt(key, token, pending + len(targets), ttl_s, replies)
        acquired.late = partial(self._release_late, orphan)
        if targets:
            released = self._fan_out(RELEASE, (key, token), targets, 0, timeout_s, wait_all=True)
            released.late = orphan.on_late
            try:
                await released.future
            finally:  # the replies that came in time; later ones settle through ``late``
                orphan.unknowns(released.replies)
                orphan.settle(released.ok + released.bad)

    def _release_late(self, orphan: Orphan, index: int, reply: object) -> None:
        if reply == 0:  # refused: this master never held the orphan's key
            orphan.settle()
            return
        if isinstance(reply, NodeUnavailable):
            orphan.unknown()
        parts = (orphan.key, orphan.token)  # granted (or unknown) after we gave up: release it
        self._nodes[index].call(RELEASE, parts, RELEASE.wire(*parts), orphan.on_late, index)

    # -- release and extension ---------------------------------------------------------------

    async def release(self, lease: Lease, *, strict: bool = False) -> None:
        """Compare-and-delete on every master. Releasing an expired lease is not an error
        (one debug line) unless ``strict``, which raises `LeaseLost`."""
        started = time.monotonic() if self.on_attempt is not None else 0.0
        parts = (lease.key, lease.token)
        wire = self._wires.release(lease.key, lease.token)
        native = self._wires.native_release(lease.key, lease.token)
        timeout_s = self._node_timeout(lease.ttl_ms)
        released = self._send(RELEASE, parts, wire, self._all, 0, timeout_s, True, native)
        await released.future
        if released.ok + released.bad < len(self._nodes) or released.bad:
            self._orphan_release(lease, released)
        if self.on_attempt is not None:
            self._report("release", lease.resource, 1, started, released.ok, "released")
        if released.ok >= self.quorum:
            self.counters.released += 1
            return
        self.counters.released_expired += 1
        detail = f"deleted on {released.ok} of {len(self._nodes)} masters"
        if strict:
            raise LeaseLost(lease.resource, f"not held by a quorum at release ({detail})")
        log.debug("redlock %s released after it expired or was taken (%s)", lease.resource, detail)

    def _orphan_release(self, lease: Lease, released: _Round) -> None:
        """A release not confirmed everywhere: its token is an orphan until it is."""
        pending = sum(1 for reply in released.replies if reply is _PENDING)
        linger_s = lease.ttl_ms / 1000.0
        orphan = self._orphans.adopt(lease.key, lease.token, pending, linger_s, released.replies)
        released.late = orphan.on_late

    async def extend(self, lease: Lease, ttl_ms: int | None = None) -> Lease:
        """Compare-and-extend on a quorum before ``lease`` expires; returns the new lease.

        Raises `LeaseLost` if a quorum did not confirm in time (key gone, taken, or masters
        unreachable) or no validity is left.
        """
        ttl = lease.ttl_ms if ttl_ms is None else ttl_ms
        self._check_usable(lease.resource, ttl)
        started = time.monotonic()
        left_s = lease.expires_at - started
        if left_s <= 0:
            raise self._lost(lease, started, 0, "expired before it was extended")
        parts = (lease.key, lease.token, b"%d" % ttl)
        timeout_s = min(self._node_timeout(ttl), left_s)
        extended = self._fan_out(EXTEND, parts, self._all, self.quorum, timeout_s)
        await extended.future
        now = time.monotonic()
        if extended.ok < self.quorum:
            detail = self._extension_failures(extended)
            raise self._lost(lease, started, extended.ok, f"extension refused ({detail})")
        if now >= lease.expires_at:
            raise self._lost(lease, started, extended.ok, "extension confirmed after expiry")
        drift_ms = ttl * self.drift_factor + self.drift_fixed_ms
        validity_ms = ttl - (now - started) * 1000.0 - drift_ms
        if validity_ms <= 0:
            raise self._lost(lease, started, extended.ok, "no validity left after extension")
        self.counters.extended += 1
        self._report("extend", lease.resource, 1, started, extended.ok, "extended")
        expires_at = started + (ttl - drift_ms) / 1000.0
        return replace(lease, ttl_ms=ttl, validity_ms=validity_ms, expires_at=expires_at)

    def _lost(self, lease: Lease, started: float, granted: int, reason: str) -> LeaseLost:
        self.counters.lost += 1
        self._report("extend", lease.resource, 1, started, granted, "lost")
        return LeaseLost(lease.resource, reason)

    def hold(
        self,
        resource: str,
        ttl_ms: int,
        *,
        max_lease_s: float | None = None,
        retry_count: int | None = None,
        fence_floor: int = 0,
    ) -> HeldLock:
        """``async with`` context: acquire, auto-extend every ttl/3, release on exit.

        When an extension fails or the lease has lasted ``max_lease_s``, the body is cancelled
        and the ``async with`` raises `LeaseLost` with the reason. ``fence_floor`` is passed to
        `acquire`: the lease's fence is greater than it.
        """
        return HeldLock(self, resource, ttl_ms, max_lease_s, retry_count, fence_floor)

    # -- plumbing ----------------------------------------------------------------------------

    def _check_usable(self, resource: str, ttl_ms: int) -> None:
        if self._closed:
            raise RuntimeError("Redlock client is closed")
        validate_resource(resource)
        if ttl_ms <= 0:
            raise ValueError(f"ttl_ms must be positive, got {ttl_ms}")

    def _report(
        self,
        operation: Literal["acquire", "extend", "release"],
        resource: str,
        attempt: int,
        started: float,
        granted: int,
        outcome: Outcome,
    ) -> None:
        if self.on_attempt is None:
            return
        elapsed_ms = (time.monotonic() - started) * 1000.0
        stats = AttemptStats(
            operation, resource, attempt, elapsed_ms, granted, len(self._nodes), outcome
        )
        try:
            self.on_attempt(stats)
        except Exception:
            log.exception("redlock on_attempt callback failed")

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as background work that ``aclose`` waits for."""
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task
