"""The timer: APScheduler 3 wakes the service at each schedule's next fire time.

APScheduler is a projection here, never a source of truth: it holds one one-shot job per
active schedule (id ``<schedule id>@<nominal fire ms>``) that runs when that fire is due (the
nominal time plus the schedule's jitter, `triggers.due_ms`), computed by `triggers`.
When the job runs, `on_fire` emits the run and the timer arms the following fire.

Timeline that keeps this correct:
1. `sync(schedule)` runs whenever the registry applies a change; it replaces the job, so a
   paused, deleted or re-timed schedule never keeps a stale job here.
2. A job that was already running when its schedule changed (or that ran on a replica which has
   not applied the change yet, e.g. one that was frozen) still hands its fire over; the
   emission script refuses it unless the schedule as stored is still active at the version the
   job fired from (`scheduler_svc.firing`). Afterwards the job re-arms only if the armed entry
   is still the one it started from (`_armed[sid][0] is entry`), so it never resurrects a
   stale schedule.
3. Emission is idempotent per run id, so a fire emitted here and by another replica, or again
   after a restart's catch-up, still yields exactly one run.
4. No fire is skipped silently: when a fire took so long (an emission retried for the whole
   catch-up window, a frozen process) that later fires are past the window by now (the
   schedule's own window, else the service's default), those are
   handed over too, one after the other in the same job, and `on_fire` records them as
   missed; the next job is armed at the first fire not yet past the window.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.date import DateTrigger

from campaign_common.timeutil import ms_to_datetime, now_ms
from scheduler_svc.firing import MAX_MISSED_RECORDS, fires_between
from scheduler_svc.model import Schedule, ScheduleState
from scheduler_svc.triggers import build_trigger, due_ms, next_fire_ms

log = logging.getLogger(__name__)

FireHandler = Callable[[Schedule, int], Awaitable[None]]


@dataclass(frozen=True, eq=False)
class _Armed:
    schedule: Schedule
    trigger: BaseTrigger


def _job_id(schedule_id: str, fire_ms: int) -> str:
    """One job per fire: a re-armed job never collides with the one still running."""
    return f"{schedule_id}@{fire_ms}"


class Timer:
    def __init__(self, on_fire: FireHandler, catch_up_window_ms: int) -> None:
        self._on_fire = on_fire
        self._window_ms = catch_up_window_ms
        self._scheduler = AsyncIOScheduler(timezone="UTC")
        self._armed: dict[str, tuple[_Armed, str]] = {}  # schedule id -> (entry, job id)

    def start(self) -> None:
        self._scheduler.start()

    def shutdown(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        self._armed.clear()

    def next_fire(self, schedule_id: str) -> int | None:
        armed = self._armed.get(schedule_id)
        return int(armed[1].rsplit("@", 1)[1]) if armed else None

    def sync(
        self, schedule: Schedule, deleted: bool, *, catch_up_from_ms: int | None = None
    ) -> None:
        """Arm (or disarm) ``schedule`` for its next fire from now.

        With ``catch_up_from_ms`` (start-up) fires since then are run at once; catch-up never
        reaches back before the schedule's last change (fires before a creation or a resume
        were never due).
        """
        self._disarm(schedule.schedule_id)
        if deleted or schedule.state is not ScheduleState.ACTIVE:
            return
        entry = _Armed(schedule, build_trigger(schedule.timing, schedule.created_at_ms))
        if catch_up_from_ms is None:
            after = now_ms()
        else:
            after = max(catch_up_from_ms, schedule.updated_at_ms)
        self._arm(entry, next_fire_ms(entry.trigger, after_ms=after))

    def _disarm(self, schedule_id: str) -> None:
        armed = self._armed.pop(schedule_id, None)
        if armed is not None and self._scheduler.get_job(armed[1]) is not None:
            self._scheduler.remove_job(armed[1])

    def _arm(self, entry: _Armed, fire_ms: int | None) -> None:
        schedule_id = entry.schedule.schedule_id
        if fire_ms is None:
            self._armed.pop(schedule_id, None)
            return
        job_id = _job_id(schedule_id, fire_ms)
        self._armed[schedule_id] = (entry, job_id)
        self._scheduler.add_job(
            self._fire,
            trigger=DateTrigger(
                run_date=ms_to_datetime(due_ms(entry.schedule, entry.trigger, fire_ms))
            ),
            args=[entry, fire_ms],
            id=job_id,
            replace_existing=True,
            misfire_grace_time=None,  # a late wake-up still fires; catch-up rules decide
        )

    async def _fire(self, entry: _Armed, fire_ms: int) -> None:
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
        self._arm(entry, next_fire_ms(entry.trigger, after_ms=after, previous_ms=fire_ms))

    async def _handle(self, entry: _Armed, fire_ms: int) -> None:
        try:
            await self._on_fire(entry.schedule, fire_ms)
        except Exception:
            log.exception("fire of %s at %d failed", entry.schedule.schedule_id, fire_ms)

    def _is_armed(self, entry: _Armed) -> bool:
        armed = self._armed.get(entry.schedule.schedule_id)
        return armed is not None and armed[0] is entry
