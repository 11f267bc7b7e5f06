"""The overlap policy of a run: the campaign lock, and the one run that may wait for it.

Every run of a campaign (whatever schedule) contends for one Redlock resource,
``campaign:<campaign_id>``, held with `Redlock.hold`: auto-extended every ttl/3, the total
lease capped at ``max_lease_s``; when the lease is lost the run's task is cancelled and the
``async with`` raises `LeaseLost`. The guard yields a `Hold`: the lease's fencing token, which
every write of the run carries (0 under ALLOW_ALL: nothing is fenced), and a check the scrape
runs before each fetch (a holder paused past its lease stops there instead of fetching beside
the next holder). The fence is asked to be above the highest one the state Redis accepted for
the campaign (`fence_floor`), so fences keep rising even after the lock masters lost their
data.

Timeline per policy:

    ALLOW_ALL   no lock ─> run (fence 0)
    SKIP        lock ─ granted ─> run
                     └ held ─> Overlapped ("overlap")
    BUFFER_ONE  another run waits already ─> Overlapped
                lock ─ granted ─> run
                     └ held ─> take the campaign's buffer marker ─ another run has it ─> Overlapped
                                 └ ours: poll the lock with backoff, refreshing the marker,
                                   for at most max_wait_s (then Overlapped)
                                   ─ granted ─> drop the marker ─> run
    any         QuorumUnavailable (lock masters down) propagates: the run is retried later

The marker makes "at most one waiting run" hold across workers: it is taken by one script
(`ScraperStore.claim_buffer`), so two runs never both wait; it expires if its waiter dies.
A run that arrives while another waits skips at once, so the waiting run gets the lock when
it frees (it polls; nothing can take the lock from it except a SKIP or ALLOW_ALL run of a
schedule with another policy on the same campaign). Each lock attempt is a single Redlock
attempt (no retries inside): contention is the policy's business, and an unavailable quorum
is retried by the consumer with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from redis.exceptions import RedisError

from campaign_common.observability.telemetry import mark_error, tracer
from campaign_common.redlock.client import Redlock
from campaign_common.redlock.errors import LeaseLost, LockHeld
from campaign_common.redlock.hold import HeldLock
from campaign_common.runs.limits import Overlap
from scraper_svc import metrics
from scraper_svc.errors import ScraperError
from scraper_svc.limits import OVERLAP
from scraper_svc.model import RunRequest
from scraper_svc.store import campaign_lock_resource

log = logging.getLogger(__name__)
_tracer = tracer(__name__)

POLL_MIN_S = 0.02
POLL_MAX_S = 0.25
# The buffer marker outlives several polls of its waiter, whatever the lock TTL.
MIN_MARKER_TTL_MS = 20 * int(POLL_MAX_S * 1000)


class Overlapped(ScraperError):
    """The campaign is running and the policy says this run does not wait (or waited enough)."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(OVERLAP + (f" ({detail})" if detail else ""))


@dataclass(frozen=True)
class Hold:
    """The campaign lock a run executes under: no lock (fence 0) under ALLOW_ALL."""

    fence: int = 0
    lock: HeldLock | None = None

    def check(self) -> None:
        """Raise `LeaseLost` if the lease ran out by this process's clock (a pause, a stall):
        the holder must not start more work the lock is meant to protect."""
        lock = self.lock
        if lock is None:
            return
        current = lock.current
        if lock.lost_reason is not None or current is None or current.remaining_ms() <= 0:
            reason = lock.lost_reason or "the lease ran out before the next fetch"
            raise LeaseLost(current.resource if current else "campaign", reason)


class BufferStore(Protocol):
    async def fence_floor(self, campaign_id: str) -> int: ...
    async def claim_buffer(self, run: RunRequest, ttl_ms: int) -> bool: ...
    async def release_buffer(self, run: RunRequest) -> None: ...
    async def buffered_run(self, campaign_id: str) -> str | None: ...


class CampaignGuard:
    def __init__(
        self, redlock: Redlock, store: BufferStore, *, ttl_ms: int, max_lease_s: float
    ) -> None:
        self._redlock = redlock
        self._store = store
        self._ttl_ms = ttl_ms
        self._max_lease_s = max_lease_s
        # A holder cannot keep the lock longer than the lease cap, so waiting longer is moot.
        self._max_wait_s = max_lease_s + ttl_ms / 1000
        self._marker_ttl_ms = max(ttl_ms, MIN_MARKER_TTL_MS)

    @contextlib.asynccontextmanager
    async def hold(
        self, run: RunRequest, policy: Overlap, fence_floor: int | None = None
    ) -> AsyncIterator[Hold]:
        """Yield the run's `Hold` (see the module docstring); ``fence_floor``, when the caller
        has just read it (`ScraperStore.look_up`), serves the first lock attempt, later ones
        (BUFFER_ONE polls) read it again."""
        if policy is Overlap.ALLOW_ALL:
            yield Hold()
            return
        async with contextlib.AsyncExitStack() as stack:
            lock = await self._enter(stack, run, policy, fence_floor)
            assert lock.current is not None
            yield Hold(lock.current.fence, lock)

    async def _enter(
        self,
        stack: contextlib.AsyncExitStack,
        run: RunRequest,
        policy: Overlap,
        fence_floor: int | None,
    ) -> HeldLock:
        if policy is Overlap.BUFFER_ONE:
            waiting = await self._store.buffered_run(run.campaign_id)
            if waiting is not None and waiting != run.run_id:
                raise Overlapped()
        try:
            return await self._lock(stack, run, fence_floor)
        except LockHeld:
            if policy is not Overlap.BUFFER_ONE:
                raise Overlapped() from None
        return await self._wait_buffered(stack, run)

    async def _lock(
        self, stack: contextlib.AsyncExitStack, run: RunRequest, fence_floor: int | None = None
    ) -> HeldLock:
        if fence_floor is None:
            fence_floor = await self._store.fence_floor(run.campaign_id)
        held = self._redlock.hold(
            campaign_lock_resource(run.campaign_id),
            self._ttl_ms,
            max_lease_s=self._max_lease_s,
            retry_count=0,
            fence_floor=fence_floor,
        )
        started = time.monotonic()
        with _tracer.start_as_current_span(
            "acquire lock", record_exception=False, set_status_on_exception=False
        ) as span:
            try:
                await stack.enter_async_context(held)
            except Exception as exc:
                mark_error(span, type(exc).__name__, str(exc))
                raise
            if held.current is not None:
                span.set_attribute("lock.fence", held.current.fence)
        metrics.LOCK_ACQUIRE.observe(time.monotonic() - started)
        return held

    async def _wait_buffered(self, stack: contextlib.AsyncExitStack, run: RunRequest) -> HeldLock:
        if not await self._store.claim_buffer(run, self._marker_ttl_ms):
            raise Overlapped()
        log.info("run %s waits for campaign %s (BUFFER_ONE)", run.run_id, run.campaign_id)
        try:
            return await self._poll_lock(stack, run)
        finally:
            with contextlib.suppress(RedisError, OSError):  # else the marker expires
                await self._store.release_buffer(run)

    async def _poll_lock(self, stack: contextlib.AsyncExitStack, run: RunRequest) -> HeldLock:
        deadline = time.monotonic() + self._max_wait_s
        delay_s = POLL_MIN_S
        while True:
            await asyncio.sleep(delay_s * random.uniform(0.5, 1.5))
            delay_s = min(delay_s * 2, POLL_MAX_S)
            if time.monotonic() > deadline:
                raise Overlapped(f"waited {self._max_wait_s:g} s for the campaign lock")
            if not await self._store.claim_buffer(run, self._marker_ttl_ms):
                raise Overlapped("another run took the waiting place")
            with contextlib.suppress(LockHeld):
                return await self._lock(stack, run)
