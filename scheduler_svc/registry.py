"""The schedule projection: current schedules rebuilt from the event log, and who waits on it.

Every replica applies the same log in the same order, so every replica converges on the same
state. Commands wait (`wait_applied`) until the entry they appended has been applied here, so a
caller reads its own writes from the replica it talked to.
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
import itertools
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping

from scheduler_svc.model import Schedule, ScheduleState

StreamId = tuple[int, int]
log = logging.getLogger(__name__)


def parse_stream_id(entry_id: bytes | str) -> StreamId:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


class Registry:
    """Schedules by id, their ids in order (paging) and a count per state, each kept up to
    date per change: no change or page costs more than O(log n) plus its own size."""

    def __init__(self) -> None:
        self._schedules: dict[str, Schedule] = {}
        self._ids: list[str] = []  # sorted; ids sort by creation time, so inserts append
        self._counts: Counter[ScheduleState] = Counter()
        self._campaigns: Counter[str] = Counter()  # schedules per campaign
        self._applied: StreamId = (0, 0)
        # Commands waiting for an entry, earliest entry first: each advance wakes exactly the
        # waiters it satisfies (a burst's thousands of waiters are not all woken per entry).
        self._waiters: list[tuple[StreamId, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._listeners: list[Callable[[Schedule, bool], None]] = []

    @property
    def applied(self) -> StreamId:
        return self._applied

    def on_change(self, listener: Callable[[Schedule, bool], None]) -> None:
        """``listener(schedule, deleted)`` runs after every applied change."""
        self._listeners.append(listener)

    def get(self, schedule_id: str) -> Schedule | None:
        return self._schedules.get(schedule_id)

    def __len__(self) -> int:
        return len(self._ids)

    def all(self) -> Iterator[Schedule]:
        """Every schedule, ordered by id (ids sort by creation time)."""
        return (self._schedules[key] for key in self._ids)

    def page_after(self, after: str, size: int) -> tuple[list[Schedule], bool]:
        """Up to ``size`` schedules with ids after ``after``, in order, and whether more follow."""
        start = bisect.bisect_right(self._ids, after)
        ids = self._ids[start : start + size]
        return [self._schedules[key] for key in ids], start + size < len(self._ids)

    def has_campaign(self, campaign_id: str) -> bool:
        """Whether any schedule held here belongs to the campaign."""
        return self._campaigns[campaign_id] > 0

    def counts(self) -> Mapping[ScheduleState, int]:
        """How many schedules are in each state."""
        return self._counts

    async def apply(self, entry_id: StreamId, schedule: Schedule | None, deleted: bool) -> None:
        """Apply one log entry (``schedule`` None for entries this version skips)."""
        if schedule is not None:
            current = self._schedules.get(schedule.schedule_id)
            if current is None or schedule.version > current.version:
                self._store(current, schedule, deleted)
                self._notify(schedule, deleted)
        self._advance(entry_id)

    async def reset(self, schedules: Iterable[Schedule], position: StreamId) -> None:
        """Adopt a snapshot that covers the log up to ``position``.

        Each snapshot schedule is applied like an entry (only a higher version counts). A
        schedule held here but absent from the snapshot was deleted by ``position``: this
        registry only ever holds schedules from entries before it (a reset happens at start-up
        or when the log was trimmed past what was applied here).
        """
        present: set[str] = set()
        for schedule in schedules:
            present.add(schedule.schedule_id)
            current = self._schedules.get(schedule.schedule_id)
            if current is None or schedule.version > current.version:
                self._store(current, schedule, False)
                self._notify(schedule, False)
        for gone in [self._schedules[key] for key in self._ids if key not in present]:
            self._store(gone, gone, True)
            self._notify(gone, True)
        self._advance(position)

    def _store(self, current: Schedule | None, schedule: Schedule, deleted: bool) -> None:
        key = schedule.schedule_id
        if current is not None:
            self._counts[current.state] -= 1
        if deleted:
            if current is not None:
                del self._schedules[key]
                del self._ids[bisect.bisect_left(self._ids, key)]
                self._forget_campaign_of(current)
            return
        self._schedules[key] = schedule
        self._counts[schedule.state] += 1
        if current is None:
            self._campaigns[schedule.campaign_id] += 1
            if not self._ids or key > self._ids[-1]:
                self._ids.append(key)
            else:
                bisect.insort(self._ids, key)

    def _forget_campaign_of(self, schedule: Schedule) -> None:
        left = self._campaigns[schedule.campaign_id] - 1
        if left > 0:
            self._campaigns[schedule.campaign_id] = left
        else:
            del self._campaigns[schedule.campaign_id]

    def _notify(self, schedule: Schedule, deleted: bool) -> None:
        for listener in self._listeners:
            try:
                listener(schedule, deleted)
            except Exception:  # one bad schedule must not stop the log for all others
                log.exception("applying %s to a listener failed", schedule.schedule_id)

    def _advance(self, entry_id: StreamId) -> None:
        self._applied = max(self._applied, entry_id)
        while self._waiters and self._waiters[0][0] <= self._applied:
            waiter = heapq.heappop(self._waiters)[2]
            if not waiter.done():
                waiter.set_result(None)

    @property
    def waiting(self) -> int:
        """Callers waiting in `wait_applied` for an entry not applied yet."""
        return len(self._waiters)

    async def wait_applied(self, entry_id: StreamId, timeout_s: float) -> None:
        """Return once ``entry_id`` is applied; TimeoutError after ``timeout_s``."""
        if self._applied >= entry_id:
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._waiters, (entry_id, next(self._order), waiter))
        # A timer that fails the waiter: every command waits here, and this costs a third of
        # what `asyncio.timeout` does (no task cancellation to translate).
        expiry = loop.call_later(timeout_s, _expire, waiter, entry_id)
        try:
            await waiter
        finally:
            expiry.cancel()
            waiter.cancel()  # a timed-out waiter is dropped when its entry comes up


def _expire(waiter: asyncio.Future[None], entry_id: StreamId) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError(f"log entry {entry_id} not applied in time"))
