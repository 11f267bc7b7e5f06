"""The auto-extending hold of a lock: ``async with redlock.hold(...)`` (see `HeldLock`)."""

from __future__ import annotations

import asyncio
import logging
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any

from campaign_common.redlock.errors import LeaseCapReached, LeaseLost
from campaign_common.redlock.lease import Lease

if TYPE_CHECKING:
    from campaign_common.redlock.client import Redlock

log = logging.getLogger(__name__)


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
