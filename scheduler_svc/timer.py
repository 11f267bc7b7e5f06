"""The timer: every active schedule's next fire in one heap, one APScheduler job as the clock.

APScheduler is a projection here, never a source of truth. Its triggers (`triggers`) compute
each schedule's next nominal fire time, due at that time plus the schedule's jitter
(`triggers.due_ms`); the due times wait in a heap (O(log n) per change, a few hundred bytes
per schedule instead of a job object each), and a single APScheduler job, armed for the
heap's earliest time, wakes the timer. A wake-up hands every due fire to `on_fire`;
afterwards the fire's schedule is armed for its following fire.

Timeline that keeps this correct:
1. `sync(schedule)` runs whenever the registry applies a change; it replaces the schedule's
   armed entry (the heap keeps the old one until it comes up, then drops it: only the entry in
   ``_armed`` counts), so a paused, deleted or re-timed schedule never fires from a stale entry.
2. A fire that was already running when its schedule changed (or that ran on a replica which
   has not applied the change yet, e.g. one that was frozen) still hands its fire over; the
   emission script refuses it unless the schedule as stored is still active at the version the
   fire was computed from (`scheduler_svc.firing`). Afterwards the fire re-arms only if the
   armed entry is still the one it started from (``_armed[sid] is entry``), so it never
   resurrects a stale schedule.
3. Emission is idempotent per run id, so a fire emitted here and by another replica, or again
   after a restart's catch-up, still yields exactly one run.
4. No fire is skipped silently: when a fire took so long (an emission retried for the whole
   catch-up window, a frozen process) that later fires are past the window by now (the
   schedule's own window, else the service's default), those are handed over too, one after
   the other in the same task, and `on_fire` records them as missed; the next fire is armed at
   the first one not yet past the window.
5. The wake job runs only to pop due entries and start their fire tasks (it never waits on
   Redis), so one wake-up can never delay the next; it re-arms itself for the new earliest time.
   It yields to the event loop every few hundred fires, so a re-armed wake may run beside
   it: each pops only entries that are due and still armed, so they share the work. A wake
   that starts that many fires is a burst: the long-lived heap is kept out of the garbage
   collector's full passes until its fires are done (`scheduler_svc.heap_freeze`).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.date import DateTrigger

from campaign_common.timeutil import ms_to_datetime, now_ms
from scheduler_svc.firing import MAX_MISSED_RECORDS, fires_between
from scheduler_svc.heap_freeze import HeapFreeze
from scheduler_svc.model import Schedule, ScheduleState
from scheduler_svc.triggers import FireTimes, due_ms, next_fire_ms

log = logging.getLogger(__name__)

FireHandler = Callable[[Schedule, int], Awaitable[None]]
_WAKE_JOB = "timer-wake"
_WAKE_SLICE = 256  # fires started per event-loop turn in a burst
# The longest the heap stays frozen for bursts (`HeapFreeze`): far longer than a burst's
# fires take while Redis answers.
_FREEZE_MAX_S = 30.0


@dataclass(frozen=True, eq=False, slots=True)
class _Armed:
    schedule: Schedule
    trigger: BaseTrigger
    fire_ms: int


class Timer:
    def __init__(self, on_fire: FireHandler, catch_up_window_ms: int) -> None:
        self._on_fire = on_fire
        self._window_ms = catch_up_window_ms
        self._scheduler = AsyncIOScheduler(timezone="UTC")
        self._armed: dict[str, _Armed] = {}  # schedule id -> its armed (current) entry
        self._heap: list[tuple[int, int, _Armed]] = []  # (due ms, tie-breaker, entry)
        self._order = itertools.count()
        self._wake_ms: int | None = None  # when the wake job is armed for
        self._fires: set[asyncio.Task[None]] = set()
        self._freeze = HeapFreeze(_FREEZE_MAX_S)

    def start(self) -> None:
        self._scheduler.start()
        self._arm_wake()

    def shutdown(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        for task in self._fires:
            task.cancel()
        self._freeze.close()
        self._armed.clear()
        self._heap.clear()

    def sync(
        self, schedule: Schedule, deleted: bool, *, catch_up_from_ms: int | None = None
    ) -> None:
        """Arm (or disarm) ``schedule`` for its next fire from now.

        With ``catch_up_from_ms`` (start-up) fires since then are run at once; catch-up never
        reaches back before the schedule's last change (fires before a creation or a resume
        were never due).
        """
        since = None if catch_up_from_ms is None else (lambda _: catch_up_from_ms)
        self.sync_many([schedule], since, deleted=deleted)

    def sync_many(
        self,
        schedules: Iterable[Schedule],
        catch_up_from: Callable[[Schedule], int] | None = None,
        *,
        deleted: bool = False,
        fire_times: FireTimes | None = None,
    ) -> None:
        """`sync` for many schedules at once (start-up: ``catch_up_from`` gives each its own
        start of catch-up); shared triggers compute once."""
        memo = fire_times or FireTimes()
        for schedule in schedules:
            self._armed.pop(schedule.schedule_id, None)  # its heap entry is dropped when due
            if deleted or schedule.state is not ScheduleState.ACTIVE:
                continue
            trigger = memo.trigger(schedule)
            if catch_up_from is None:
                after = now_ms()
            else:
                after = max(catch_up_from(schedule), schedule.updated_at_ms)
            self._arm(schedule, trigger, memo.next_after(trigger, after))
        self._compact()
        self._arm_wake()

    def _arm(self, schedule: Schedule, trigger: BaseTrigger, fire_ms: int | None) -> None:
        if fire_ms is None:
            self._armed.pop(schedule.schedule_id, None)
            return
        entry = _Armed(schedule, trigger, fire_ms)
        self._armed[schedule.schedule_id] = entry
        due = due_ms(schedule, trigger, fire_ms)
        heapq.heappush(self._heap, (due, next(self._order), entry))

    def _compact(self) -> None:
        """Drop replaced entries once they outnumber the armed ones (bounded memory)."""
        if len(self._heap) > 2 * len(self._armed) + 1024:
            self._heap = [item for item in self._heap if self._is_armed(item[2])]
            heapq.heapify(self._heap)

    def _arm_wake(self) -> None:
        """Point the one APScheduler job at the earliest armed fire (if that moved)."""
        while self._heap and not self._is_armed(self._heap[0][2]):
            heapq.heappop(self._heap)
        head = self._heap[0][0] if self._heap else None
        if head == self._wake_ms or not self._scheduler.running:
            return
        self._wake_ms = head
        if head is None:
            if self._scheduler.get_job(_WAKE_JOB) is not None:
                self._scheduler.remove_job(_WAKE_JOB)
            return
        self._scheduler.add_job(
            self._wake,
            trigger=DateTrigger(run_date=ms_to_datetime(head)),
            id=_WAKE_JOB,
            replace_existing=True,
            misfire_grace_time=None,  # a late wake-up still fires; catch-up rules decide
            max_instances=64,  # a re-armed wake may start while others still start fires
        )

    async def _wake(self) -> None:
        """Start a fire task for every due entry; re-arm the wake job for the next one.

        Starts them ``_WAKE_SLICE`` at a time and lets the event loop run in between, so a
        burst of thousands never holds API calls up for the whole of it.
        """
        self._wake_ms = None
        now = now_ms()
        started = 0
        batch: list[asyncio.Task[None]] = []  # this slice's fires
        while self._heap and self._heap[0][0] <= now:
            _, _, entry = heapq.heappop(self._heap)
            if not self._is_armed(entry):
                continue
            task = asyncio.create_task(self._fire(entry), name="fire")
            self._fires.add(task)
            task.add_done_callback(self._fires.discard)
            batch.append(task)
            started += 1
            if started % _WAKE_SLICE == 0:
                self._freeze.hold_until_done(batch)  # a burst
                batch = []
                await asyncio.sleep(0)
        if started > _WAKE_SLICE:
            self._freeze.hold_until_done(batch)
        self._arm_wake()

    async def _fire(self, entry: _Armed) -> None:
        fire_ms = entry.fire_ms
        await self._handle(entry, fire_ms)
        cutoff_ms = now_ms() - entry.schedule.catch_up_window_ms(self._window_ms)
        late = fires_between(entry.trigger, fire_ms, cutoff_ms)
        if len(late) == MAX_MISSED_RECORDS:
            log.warning(
                "%s fell far behind: only its newest %d late fires are recorded",
                entry.schedule.schedule_id,
                MAX_MISSED_RECORDS,
            )
        for late_ms in late:  # past the window: on_fire records each as missed
            if not self._is_armed(entry):
                return
            await self._handle(entry, late_ms)
        if not self._is_armed(entry):
            return  # the schedule changed meanwhile; sync() armed the new version
        after = max(fire_ms + 1, cutoff_ms)
        following = next_fire_ms(entry.trigger, after_ms=after, previous_ms=fire_ms)
        self._arm(entry.schedule, entry.trigger, following)
        self._arm_wake()

    async def _handle(self, entry: _Armed, fire_ms: int) -> None:
        try:
            await self._on_fire(entry.schedule, fire_ms)
        except Exception:
            log.exception("fire of %s at %d failed", entry.schedule.schedule_id, fire_ms)

    def _is_armed(self, entry: _Armed) -> bool:
        return self._armed.get(entry.schedule.schedule_id) is entry
