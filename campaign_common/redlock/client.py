"""Redlock over N independent Redis masters, with fencing tokens and auto-extension.

This module owns the lock algorithm: acquisition, release, extension, the auto-extending
``hold`` context, the fencing token, the typed errors and the per-attempt statistics. Key names
and Lua scripts live in `campaign_common.redlock.scripts`; the connection to each master in
`campaign_common.redlock.channel`.

Usage::

    redlock = Redlock([client_a, client_b, client_c])      # redis.asyncio clients
    async with redlock.hold("campaign:42", ttl_ms=10_000, max_lease_s=600) as lease:
        await write_results(fence=lease.fence)             # the body is cancelled if lost
    await redlock.aclose()

Acquisition (one attempt), on our monotonic clock (``time.monotonic``)::

    t0   a fresh token (16 random bytes from `secrets`, new for every attempt) and the ACQUIRE
         script go to every master at once: SET NX PX ttl, then INCR the resource's fence
         counter (and raise it above ``fence_floor``, see below)
    ...  replies arrive; each master has a per-node timeout, min(node_timeout_s, ttl / 10)
    t1   a quorum (N//2 + 1) granted -> decide now, do not wait for the others; or so many
         refused/failed/timed out that a quorum is impossible -> the attempt failed
    t2   only if the granting counters disagree: CONFIRM_FENCE (raise counter to the fence,
         check the token still holds the key) on every master, until a quorum confirms
         validity = ttl - (t2 - t0) - drift, drift = ttl * drift_factor + drift_fixed_ms
         validity <= 0 -> release everywhere, the attempt failed (a late lock is never returned)
    fail partial keys are released (compare-and-delete, awaited under the node timeout) on every
         master that granted or failed, before the next attempt or the error; retries are
         bounded (retry_count) and spaced by a random delay in [0.5, 1.5] x retry_delay_ms
    late a reply that arrives after the decision is still handled: a grant to a failed attempt is
         released at once, a lagging fence counter of a won attempt is raised (background, no
         task: the requests ride the masters' pipelines, which ``aclose`` drains; on the
         pipelined transport a release sent after a grant also executes after it)

Why a fresh token for every attempt: a failed attempt's replies, and the releases they trigger,
can reach a master after the next attempt's ACQUIRE (a master answered after the node timeout).
With one token for all attempts, attempt 1's late ACQUIRE would set the key that attempt 2's
ACQUIRE then merely refreshes (same token), and attempt 1's late compare-and-delete would then
delete the key of the lease attempt 2 returned: that lease would be short of a quorum while
looking valid, and a second client could take the lock inside its validity. With a token per
attempt every late reply, release and refresh matches only its own attempt's key.

Why a returned lease is exclusive: every granting master set its key at some time >= t0, so
(assumption A1 below) each key lives at least until t0 + ttl - drift = t2 + validity on our
clock, and a quorum of masters hold our token until then; two quorums always share a master,
and a master holds one token at a time, so no other client can hold a quorum in that window.
``Lease.expires_at`` is t0 + (ttl - drift) / 1000 on the monotonic clock.

Fencing token. Each master keeps a counter per resource that only grows. ACQUIRE increments it
(and then raises it to ``fence_floor`` + 1 if it is not above the floor) in the same script that
sets the lock, so the value a master returns was written while our token held that master's key.
The fence is the maximum over the granting quorum. If all of the quorum returned that same
value, every master of the quorum already stores the fence and the lease is issued at once (the
common case: masters see the same acquisitions, so their counters move in step). Otherwise
CONFIRM_FENCE raises the counter to the fence on every master and counts the masters where our
token still holds the key; the fence is issued only once a quorum has confirmed. Either way, at
issue time a quorum W of masters stores a counter >= fence, written while we held their keys.
Why the next holder B gets a larger fence than ours (A): W_A and B's granting quorum share a
master m. On m the two holds are disjoint (SET NX). If B's hold on m came after A's, B's INCR
ran after A's counter write, so B's fence > A's. B's hold on m cannot have come first: B's key
on m would have had to vanish before A held m, i.e. before A's issue time, yet B's validity says
that key outlived B's issue time, which comes after A's. A restarted master that lost its
counters comes back lower than the others; the next grant it takes part in disagrees, which
triggers CONFIRM_FENCE on every master and heals it.

Fence floor (how assumption A3 is relaxed). When more masters lose their data than A3 allows
(all of them restarted without persistence, a FLUSHALL), their counters start again at 1, and a
protected store that refuses fences below the highest it accepted would refuse every later
holder for good. So ``acquire``/``hold`` take ``fence_floor``: the caller passes the highest
fence its protected store accepted, and ACQUIRE makes every granting master's counter at least
floor + 1, so the fence issued (the maximum over the quorum) is > floor and the store accepts it.
Monotonicity is untouched: a floor only ever raises a counter, never lowers one, so every step
of the proof above holds as written (counters only grow; B's counter write on the shared master
comes after A's and yields more than A's fence), whatever floor a caller passes (0, stale or too
low: no effect). The raised value is stored, so it heals the wiped masters: later acquisitions,
with or without a floor, continue above it, and masters the floor did not reach are raised by
CONFIRM_FENCE or the late-reply healing like any lagging counter. What a floor cannot restore:
a fence issued before the loss that never reached the store can be issued again after it. Its
holder's lease was either live at the loss (the A2 window, in which exclusion is at risk anyway)
or had expired while the holder was paused (A4); such a holder's writes carry the same fence
as the new holder's and are accepted until a later holder writes with a higher fence.

Assumptions:

- A1 clocks: the masters' and this process's clocks advance at rates that differ by at most
  ``drift_factor`` (default 1 %), and key expiry may be early by at most ``drift_fixed_ms``
  (default 2 ms: Redis expires with millisecond resolution). Clocks are never stepped (slew
  only); a master whose clock jumps can expire keys early.
- A2 masters: independent (no replication between them). A master that restarts without its
  data should stay down for at least the longest TTL in use (the usual Redlock advice),
  otherwise mutual exclusion can be broken during that window.
- A3 fences increase from lease to lease as long as a majority of masters keeps its data: at
  any moment at most N - quorum masters may have lost their counters since an acquisition last
  reached them. Counter keys have no TTL (one small key per resource ever locked). Relaxed by
  ``fence_floor`` (above): when more masters lose their data, a caller that passes the highest
  fence its store accepted still gets fences above it, so a wipe never blocks a resource.
- A4 the process: a holder that is paused longer than its validity (GC, SIGSTOP) loses
  exclusivity silently, as with every lease; that is what the fence is for. ``hold`` cancels
  its body when an extension fails, but only a fenced write is safe against such a pause.

Release is compare-and-delete on every master in parallel; a lease that had already expired is
logged once at debug level (``strict=True`` raises `LeaseLost`). Extension is compare-and-PEXPIRE
on every master, succeeding when a quorum confirms before the old lease expires; the validity is
recomputed from the extension's own start. ``hold`` extends every ttl/3 in a background task; when
an extension fails or ``max_lease_s`` is reached it cancels the body and the ``async with``
raises `LeaseLost` with the reason, whatever the body did with the cancellation.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from types import TracebackType
from typing import Any, Literal

from redis.asyncio import Redis

from campaign_common.redlock.channel import (
    ConnectParams,
    MasterNode,
    NodeUnavailable,
    PipelinedNode,
    RedisPyNode,
)
from campaign_common.redlock.scripts import (
    ACQUIRE,
    CONFIRM_FENCE,
    EXTEND,
    RELEASE,
    LuaScript,
    fence_key,
    lock_key,
    validate_resource,
)

log = logging.getLogger(__name__)

TOKEN_BYTES = 16
Outcome = Literal["granted", "held", "unavailable", "expired", "extended", "lost", "released"]


class LockError(Exception):
    """Root of every error this module raises about a lock."""

    def __init__(self, resource: str, message: str) -> None:
        super().__init__(f"{resource}: {message}")
        self.resource = resource


class LockHeld(LockError):
    """Another holder has the lock (contention): the masters that answered refused us."""

    def __init__(self, resource: str, held_on: Sequence[str]) -> None:
        super().__init__(resource, f"held by another owner on {', '.join(held_on)}")
        self.held_on = tuple(held_on)


class QuorumUnavailable(LockError):
    """Too few masters answered in time (infrastructure), or the validity ran out."""

    def __init__(self, resource: str, failures: dict[str, str], reason: str = "") -> None:
        detail = "; ".join(f"{node}: {error}" for node, error in failures.items())
        super().__init__(resource, reason or f"no quorum of lock masters ({detail})")
        self.failures = failures
        self.reason = reason

    @property
    def nodes(self) -> tuple[str, ...]:
        """Addresses of the masters that failed."""
        return tuple(self.failures)


class LeaseLost(LockError):
    """A lease could not be kept: extension refused or failed, expired, or the time cap hit."""

    def __init__(self, resource: str, reason: str) -> None:
        super().__init__(resource, f"lease lost: {reason}")
        self.reason = reason


class LeaseCapReached(LeaseLost):
    """``hold`` gave the lease up because it lasted ``max_lease_s``: the work took too long.

    Unlike another `LeaseLost`, the lease was still valid when the body was cancelled, so the
    holder's fencing token is as good as it was (a newer holder's write still fences it off).
    """


@dataclass(frozen=True, slots=True)
class Lease:
    """One successful acquisition (or extension) of a resource.

    ``fence`` is the fencing token; ``expires_at`` and ``acquired_at`` are ``time.monotonic()``
    values; ``validity_ms`` is what was left when the lease was granted or extended.
    """

    resource: str
    token: bytes
    fence: int
    ttl_ms: int
    validity_ms: float
    acquired_at: float
    expires_at: float
    attempts: int
    key: bytes = field(repr=False)

    def remaining_ms(self) -> float:
        return (self.expires_at - time.monotonic()) * 1000.0

    @property
    def token_hex(self) -> str:
        return self.token.hex()


@dataclass(frozen=True, slots=True)
class AttemptStats:
    """What one attempt did, for metrics: see ``Redlock(on_attempt=...)``."""

    operation: Literal["acquire", "extend", "release"]
    resource: str
    attempt: int
    elapsed_ms: float
    granted: int
    nodes: int
    outcome: Outcome


@dataclass
class RedlockCounters:
    """Running totals since the client was created (cheap; always on)."""

    attempts: int = 0
    acquired: int = 0
    held: int = 0
    unavailable: int = 0
    expired: int = 0
    fence_confirmations: int = 0
    extended: int = 0
    lost: int = 0
    released: int = 0
    released_expired: int = 0


_PENDING: Any = object()


def _granted(reply: object) -> bool:
    return type(reply) is int and reply > 0


class _Round:
    """One request to a set of masters, resolved by reply callbacks (no task per master).

    The future resolves when every targeted master answered, at the per-node timeout, or
    (unless ``wait_all``) as soon as ``need`` masters granted or that became impossible.
    Replies that arrive afterwards are still recorded and passed to ``late``.
    """

    __slots__ = (
        "bad",
        "expected",
        "future",
        "late",
        "need",
        "ok",
        "replies",
        "timed_out",
        "timeout_s",
        "timer",
        "wait_all",
    )

    def __init__(
        self, size: int, expected: int, need: int, timeout_s: float, wait_all: bool
    ) -> None:
        loop = asyncio.get_running_loop()
        self.replies: list[object] = [_PENDING] * size
        self.expected = expected
        self.need = need
        self.wait_all = wait_all
        self.timeout_s = timeout_s
        self.ok = 0
        self.bad = 0
        self.timed_out = False
        self.late: Callable[[int, object], None] | None = None
        self.future: asyncio.Future[None] = loop.create_future()
        self.timer = loop.call_later(timeout_s, self._on_timeout)

    def on_reply(self, index: int, reply: object) -> None:
        self.replies[index] = reply
        if self.future.done():
            if self.late is not None:
                self.late(index, reply)
            return
        if type(reply) is int and reply > 0:
            self.ok += 1
        else:
            self.bad += 1
        if self.ok + self.bad == self.expected or (
            not self.wait_all and (self.ok >= self.need or self.bad > self.expected - self.need)
        ):
            self.timer.cancel()
            self.future.set_result(None)

    def _on_timeout(self) -> None:
        if not self.future.done():
            self.timed_out = True
            self.future.set_result(None)


class Redlock:
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
        self._closed = False

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(node.address for node in self._nodes)

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
        self._check_usable(resource, ttl_ms)
        if fence_floor < 0:
            raise ValueError(f"fence_floor must be >= 0, got {fence_floor}")
        retries = self.retry_count if retry_count is None else retry_count
        key = lock_key(resource).encode()
        counter = fence_key(resource).encode()
        floor = b"%d" % fence_floor
        attempt = 1
        while True:
            result = await self._attempt(resource, key, counter, floor, ttl_ms, attempt)
            if isinstance(result, Lease):
                return result
            if attempt > retries:
                raise result
            attempt += 1
            await asyncio.sleep(random.uniform(0.5, 1.5) * self.retry_delay_ms / 1000.0)

    async def _attempt(
        self, resource: str, key: bytes, counter: bytes, floor: bytes, ttl_ms: int, attempt: int
    ) -> Lease | LockError:
        # A token of its own: this attempt's late replies and releases can then never touch the
        # key of another attempt (see "Why a fresh token for every attempt" above).
        token = secrets.token_bytes(TOKEN_BYTES)
        started = time.monotonic()
        timeout_s = self._node_timeout(ttl_ms)
        parts = (key, counter, token, b"%d" % ttl_ms, floor)
        acquired = self._fan_out(ACQUIRE, parts, self._all, self.quorum, timeout_s)
        await acquired.future
        self.counters.attempts += 1
        error: LockError
        if acquired.ok >= self.quorum:
            fence = await self._settle_fence(acquired, key, counter, token, timeout_s)
            drift_ms = ttl_ms * self.drift_factor + self.drift_fixed_ms
            elapsed_ms = (time.monotonic() - started) * 1000.0
            validity_ms = ttl_ms - elapsed_ms - drift_ms
            if fence is not None and validity_ms > 0:
                self.counters.acquired += 1
                self._report("acquire", resource, attempt, started, acquired.ok, "granted")
                expires_at = started + (ttl_ms - drift_ms) / 1000.0
                return Lease(
                    resource, token, fence, ttl_ms, validity_ms, started, expires_at, attempt, key
                )
            error = self._late_error(resource, fence, ttl_ms, elapsed_ms, drift_ms)
        else:
            error = self._refusal(resource, acquired)
        await self._release_partial(acquired, key, token, timeout_s)
        outcome: Outcome = "held" if isinstance(error, LockHeld) else "unavailable"
        if isinstance(error, QuorumUnavailable) and error.reason.startswith("validity"):
            outcome = "expired"
        setattr(self.counters, outcome, getattr(self.counters, outcome) + 1)
        self._report("acquire", resource, attempt, started, acquired.ok, outcome)
        return error

    async def _settle_fence(
        self, acquired: _Round, key: bytes, counter: bytes, token: bytes, timeout_s: float
    ) -> int | None:
        """The fence of a won attempt, or None when too few masters confirmed it."""
        grants = [reply for reply in acquired.replies if isinstance(reply, int) and reply > 0]
        fence = max(grants)
        acquired.late = partial(self._heal_counter, key, counter, token, fence)
        if min(grants) == fence:
            for index, reply in enumerate(acquired.replies):
                if reply == 0:  # reachable but held by a stale key: raise its counter anyway
                    self._heal_counter(key, counter, token, fence, index, reply)
            return fence
        self.counters.fence_confirmations += 1
        parts = (key, counter, token, b"%d" % fence)
        confirmed = self._fan_out(CONFIRM_FENCE, parts, self._all, self.quorum, timeout_s)
        await confirmed.future
        return fence if confirmed.ok >= self.quorum else None

    def _heal_counter(
        self, key: bytes, counter: bytes, token: bytes, fence: int, index: int, reply: object
    ) -> None:
        """A master answered after the decision, or lags: raise its counter to the fence."""
        if type(reply) is int and reply < fence:
            parts = (key, counter, token, b"%d" % fence)
            self._nodes[index].call(CONFIRM_FENCE, parts, CONFIRM_FENCE.wire(*parts), _ignore)

    async def _release_partial(
        self, acquired: _Round, key: bytes, token: bytes, timeout_s: float
    ) -> None:
        """Undo a failed attempt: release where it may have been granted, now or later."""
        acquired.late = partial(self._release_late, key, token)
        targets = [
            index
            for index, reply in enumerate(acquired.replies)
            if reply is not _PENDING and reply != 0
        ]
        if targets:
            released = self._fan_out(RELEASE, (key, token), targets, 0, timeout_s, wait_all=True)
            await released.future

    def _release_late(self, key: bytes, token: bytes, index: int, reply: object) -> None:
        if reply != 0:  # granted (or unknown) after we gave up: release it
            parts = (key, token)
            self._nodes[index].call(RELEASE, parts, RELEASE.wire(*parts), _ignore)

    def _refusal(self, resource: str, acquired: _Round) -> LockError:
        """LockHeld if the masters that answered would have been a quorum but for a holder."""
        held_on: list[str] = []
        failures: dict[str, str] = {}
        for node, reply in zip(self._nodes, acquired.replies, strict=True):
            if reply == 0:
                held_on.append(node.address)
            elif reply is _PENDING:
                if acquired.timed_out:
                    failures[node.address] = f"no reply within {acquired.timeout_s * 1000:.0f} ms"
            elif not _granted(reply):
                failures[node.address] = str(reply)
        if held_on and len(failures) <= len(self._nodes) - self.quorum:
            return LockHeld(resource, held_on)
        return QuorumUnavailable(resource, failures)

    def _late_error(
        self, resource: str, fence: int | None, ttl_ms: int, elapsed_ms: float, drift_ms: float
    ) -> QuorumUnavailable:
        if fence is None:
            return QuorumUnavailable(resource, {}, "fence not confirmed by a quorum of masters")
        return QuorumUnavailable(
            resource,
            {},
            f"validity exhausted: ttl {ttl_ms} ms - elapsed {elapsed_ms:.1f} ms"
            f" - drift {drift_ms:.1f} ms <= 0",
        )

    # -- release and extension ---------------------------------------------------------------

    async def release(self, lease: Lease, *, strict: bool = False) -> None:
        """Compare-and-delete on every master. Releasing an expired lease is not an error
        (one debug line) unless ``strict``, which raises `LeaseLost`."""
        started = time.monotonic()
        parts = (lease.key, lease.token)
        timeout_s = self._node_timeout(lease.ttl_ms)
        released = self._fan_out(RELEASE, parts, self._all, 0, timeout_s, wait_all=True)
        await released.future
        self._report("release", lease.resource, 1, started, released.ok, "released")
        if released.ok >= self.quorum:
            self.counters.released += 1
            return
        self.counters.released_expired += 1
        detail = f"deleted on {released.ok} of {len(self._nodes)} masters"
        if strict:
            raise LeaseLost(lease.resource, f"not held by a quorum at release ({detail})")
        log.debug("redlock %s released after it expired or was taken (%s)", lease.resource, detail)

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

    def _extension_failures(self, extended: _Round) -> str:
        notes = []
        for node, reply in zip(self._nodes, extended.replies, strict=True):
            if reply is _PENDING:
                notes.append(f"{node.address}: no reply")
            elif not _granted(reply):
                notes.append(f"{node.address}: {'not held' if reply == 0 else reply}")
        return f"{extended.ok}/{len(self._nodes)} confirmed; " + "; ".join(notes)

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

    def _fan_out(
        self,
        script: LuaScript,
        parts: tuple[bytes, ...],
        targets: Sequence[int],
        need: int,
        timeout_s: float,
        *,
        wait_all: bool = False,
    ) -> _Round:
        wire = script.wire(*parts)
        round_ = _Round(len(self._nodes), len(targets), need, timeout_s, wait_all)
        on_reply = round_.on_reply
        nodes = self._nodes
        for index in targets:
            nodes[index].call(script, parts, wire, partial(on_reply, index))
        return round_

    def _node_timeout(self, ttl_ms: float) -> float:
        return min(self.node_timeout_s, ttl_ms / 10_000.0)

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


def _ignore(reply: object) -> None:
    return None


class HeldLock:
    """The ``async with`` returned by `Redlock.hold`; yields the `Lease` of the acquisition.

    The yielded lease keeps its token and fence for the whole hold; ``current`` is the latest
    (extended) lease. ``lost_reason`` is set when the keeper gave up.
    """

    def __init__(
        self,
        redlock: Redlock,
        resource: str,
        ttl_ms: int,
        max_lease_s: float | None,
        retry_count: int | None,
        fence_floor: int = 0,
    ) -> None:
        if max_lease_s is not None and max_lease_s <= 0:
            raise ValueError("max_lease_s must be positive")
        self._redlock = redlock
        self._resource = resource
        self._ttl_ms = ttl_ms
        self._max_lease_s = max_lease_s
        self._retry_count = retry_count
        self._fence_floor = fence_floor
        self._task: asyncio.Task[Any] | None = None
        self._keeper: asyncio.Task[Any] | None = None
        self.current: Lease | None = None
        self.lost_reason: str | None = None
        self.capped = False  # lost because the lease lasted max_lease_s

    async def __aenter__(self) -> Lease:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("Redlock.hold must run inside a task")
        lease = await self._redlock.acquire(
            self._resource,
            self._ttl_ms,
            retry_count=self._retry_count,
            fence_floor=self._fence_floor,
        )
        self._task = task
        self.current = lease
        self._keeper = self._redlock.spawn(self._keep(lease))
        self._redlock._holds.add(self)
        return lease

    async def _keep(self, lease: Lease) -> None:
        cap_at = lease.acquired_at + self._max_lease_s if self._max_lease_s else float("inf")
        interval_s = self._ttl_ms / 3000.0
        while True:
            now = time.monotonic()
            await asyncio.sleep(max(0.0, min(now + interval_s, cap_at) - now))
            if time.monotonic() >= cap_at:
                self.capped = True
                self.lose(f"maximum lease time of {self._max_lease_s} s reached")
                return
            try:
                lease = await self._redlock.extend(lease, self._ttl_ms)
            except LeaseLost as exc:
                self.lose(exc.reason)
                return
            except Exception as exc:  # anything else also means we cannot vouch for the lease
                self.lose(f"extension failed: {exc!r}")
                return
            self.current = lease

    def lose(self, reason: str) -> None:
        """Give the lease up: stop extending and cancel the body, which then sees `LeaseLost`."""
        if self.lost_reason is not None or self._task is None:
            return
        self.lost_reason = reason
        if self._keeper is not None and self._keeper is not asyncio.current_task():
            self._keeper.cancel()
        self._task.cancel(f"redlock lease on {self._resource} lost: {reason}")

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        assert self._keeper is not None and self._task is not None and self.current is not None
        self._keeper.cancel()  # from here on the keeper cannot cancel us any more
        self._redlock._holds.discard(self)
        await self._release(self.current)
        if self.lost_reason is None:
            return False
        if self._task.uncancel() > 0:  # also cancelled from outside: that wins
            if isinstance(exc, asyncio.CancelledError):
                return False
            raise asyncio.CancelledError
        lost = (LeaseCapReached if self.capped else LeaseLost)(self._resource, self.lost_reason)
        if exc is not None and not isinstance(exc, asyncio.CancelledError):
            raise lost from exc
        raise lost from None

    async def _release(self, lease: Lease) -> None:
        """Release even if this task is being cancelled: the release finishes in background."""
        release = self._redlock.spawn(self._redlock.release(lease))
        try:
            await asyncio.shield(release)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("redlock release of %s failed", self._resource, exc_info=True)


__all__ = [
    "AttemptStats",
    "HeldLock",
    "Lease",
    "LeaseCapReached",
    "LeaseLost",
    "LockError",
    "LockHeld",
    "NodeUnavailable",
    "QuorumUnavailable",
    "Redlock",
    "RedlockCounters",
]
