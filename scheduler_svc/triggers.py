"""Fire-time arithmetic: a schedule's timing as an APScheduler trigger, and its next fires.

APScheduler's triggers only compute times here; nothing in this module waits. Cron triggers
are shared by every schedule with the same expression and zone (they hold no state), and a
stored expression that cannot be parsed or can never fire (one accepted before validation
refused it) becomes a trigger with no fires: computing fire times is always bounded.
Intervals and one-shot times are instants, so daylight saving time does not move them; cron
times are local wall-clock times (see `scheduler_svc.wallclock` for the DST policy).

Jitter (as Temporal Schedules have it): a fire's *nominal* time is what the trigger computes;
it names the run (`scheduler_svc.run_request.scheduled_run_id`) and is the run's ``scheduled_for``.
The fire is *due* a deterministic offset later, in [0, jitter), derived from the schedule id and
the nominal time (so every replica and every restart agrees), and capped before the next
nominal time (fires stay in order). The preview (``next_fire_times``) shows due times: when
runs will actually be requested, as Temporal's future action times do.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from campaign_common.timeutil import datetime_to_ms, ms_to_datetime
from scheduler_svc.cron import CronSyntaxError, parse_cron
from scheduler_svc.model import CronDialect, Schedule, Timing, TimingKind
from scheduler_svc.wallclock import BoundedTrigger, NeverTrigger, WallClockTrigger

log = logging.getLogger(__name__)


@lru_cache(maxsize=4096)
def cron_trigger(
    expression: str, timezone: str, dialect: CronDialect = CronDialect.POSIX5
) -> BaseTrigger:
    """The shared trigger of a cron expression in a zone (no fires if it cannot fire)."""
    try:
        return parse_cron(expression, ZoneInfo(timezone), dialect)
    except (CronSyntaxError, ValueError, KeyError, OSError) as exc:
        log.warning("cron %r in %s never fires: %s", expression[:80], timezone[:80], exc)
        return NeverTrigger()


def build_trigger(timing: Timing, anchor_ms: int) -> BaseTrigger:
    """Trigger for ``timing``; interval fires are ``anchor_ms + k * interval`` for k >= 1,
    all within the timing's start and end bounds."""
    trigger = _unbounded(timing, anchor_ms)
    if timing.start_ms or timing.end_ms:
        return BoundedTrigger(trigger, timing.start_ms, timing.end_ms)
    return trigger


def _unbounded(timing: Timing, anchor_ms: int) -> BaseTrigger:
    if timing.kind is TimingKind.CRON:
        return cron_trigger(timing.cron, timing.timezone or "UTC", timing.dialect)
    tz = UTC
    if timing.kind is TimingKind.INTERVAL:
        first = ms_to_datetime(anchor_ms + timing.interval_s * 1000)
        return IntervalTrigger(seconds=timing.interval_s, start_date=first, timezone=tz)
    return DateTrigger(run_date=ms_to_datetime(timing.run_at_ms), timezone=tz)


def next_fire_ms(
    trigger: BaseTrigger, *, after_ms: int, previous_ms: int | None = None
) -> int | None:
    """First fire time at or after ``after_ms`` and strictly after ``previous_ms``, or None.

    Always asks the trigger afresh (no previous fire time): APScheduler's interval trigger
    would otherwise return ``previous + interval`` even when that is long past. A shared cron
    trigger answers from its memo (`_NextFires`) when it can.
    """
    if previous_ms is not None:
        after_ms = max(after_ms, previous_ms + 1)
    if isinstance(trigger, WallClockTrigger):
        return _NEXT_FIRES.first_at_or_after(trigger, after_ms)
    return _ask(trigger, after_ms)


def _ask(trigger: BaseTrigger, after_ms: int) -> int | None:
    fire: datetime | None = trigger.get_next_fire_time(None, ms_to_datetime(after_ms))
    if fire is None:
        return None
    fire_ms = datetime_to_ms(fire.astimezone(UTC))
    return fire_ms if fire_ms >= after_ms else None  # a one-shot whose time has passed


class _NextFires:
    """The last answer of each shared cron trigger, reused while it still holds.

    A trigger's fires are a fixed set of instants; its first fire at or after ``t`` is ``F``
    for every ``t`` in ``[lo, F]`` once it was ``F`` for ``lo``, since no fire lies between.
    So every schedule armed or previewed with the same cron and zone, any time before its next
    fire, costs a comparison instead of a walk through APScheduler's cron fields (the
    heaviest part of creating a schedule when thousands share a few hundred expressions).
    """

    def __init__(self, max_triggers: int) -> None:
        self._max = max_triggers
        self._last: dict[BaseTrigger, tuple[int, int]] = {}  # trigger -> (lo, first fire)

    def first_at_or_after(self, trigger: BaseTrigger, after_ms: int) -> int | None:
        last = self._last.get(trigger)
        if last is not None and last[0] <= after_ms <= last[1]:
            return last[1]
        fire = _ask(trigger, after_ms)
        if fire is not None:  # "no fire" is left uncached: it ends no interval
            if len(self._last) >= self._max and trigger not in self._last:
                self._last.clear()  # a bound, not an eviction policy: answers are recomputable
            self._last[trigger] = (after_ms, fire)
        return fire


_NEXT_FIRES = _NextFires(max_triggers=8192)


class FireTimes:
    """Memo of triggers and next fire times for one batch of work (start-up): a schedule's
    trigger is built once, and schedules that share a trigger (same cron and zone) and a start
    point compute their next fire once. Keys hold the trigger itself, so an id is never
    reused while the memo lives."""

    def __init__(self) -> None:
        self._triggers: dict[str, BaseTrigger] = {}
        self._next: dict[tuple[BaseTrigger, int], int | None] = {}
        self._last: dict[tuple[BaseTrigger, int], int | None] = {}

    def trigger(self, schedule: Schedule) -> BaseTrigger:
        trigger = self._triggers.get(schedule.schedule_id)
        if trigger is None:
            trigger = build_trigger(schedule.timing, schedule.created_at_ms)
            self._triggers[schedule.schedule_id] = trigger
        return trigger

    def next_after(self, trigger: BaseTrigger, after_ms: int) -> int | None:
        """``next_fire_ms(trigger, after_ms=after_ms)``, computed once per pair."""
        key = (trigger, after_ms)
        if key not in self._next:
            self._next[key] = next_fire_ms(trigger, after_ms=after_ms)
        return self._next[key]

    def any_between(self, trigger: BaseTrigger, since_ms: int, until_ms: int) -> bool:
        """Whether ``trigger`` fires in (since_ms, until_ms).

        A trigger asked about once (an interval's, anchored per schedule) is asked directly.
        From its second use (a cron shared by many schedules) its last fire before
        ``until_ms`` is found once, and each question is a comparison with it."""
        key = (trigger, until_ms)
        if key not in self._last:
            self._last[key] = None
            last = None
        else:
            last = self._last[key]
            if last is None:
                last = self._last[key] = _last_before(trigger, until_ms) or -1
        if last is None or last < 0:  # first use, or nothing in the look-back span
            first = self.next_after(trigger, since_ms + 1)
            return first is not None and first < until_ms
        return last > since_ms


# How far `_last_before` looks back by doubling from one minute (a yearly cron is found).
_LOOK_BACK_MAX_MS = 4 * 366 * 24 * 3600 * 1000


def _last_before(trigger: BaseTrigger, until_ms: int) -> int | None:
    """The last fire of ``trigger`` before ``until_ms`` within the look-back span, or None."""
    span_ms = 60_000
    while span_ms <= _LOOK_BACK_MAX_MS:
        fire = next_fire_ms(trigger, after_ms=until_ms - span_ms)
        if fire is not None and fire < until_ms:
            while True:  # walk forward to the last one before until_ms
                following = next_fire_ms(trigger, after_ms=fire + 1)
                if following is None or following >= until_ms:
                    return fire
                fire = following
        span_ms *= 2
    return None


def fires_left(schedule: Schedule, after_ms: int) -> bool:
    """Whether ``schedule`` has a fire after ``after_ms`` (False past its end time)."""
    trigger = build_trigger(schedule.timing, schedule.created_at_ms)
    return next_fire_ms(trigger, after_ms=after_ms + 1) is not None


def jitter_offset_ms(schedule_id: str, nominal_ms: int, jitter_s: int) -> int:
    """The fire's offset in [0, jitter_s * 1000): the same on every replica, every run."""
    if jitter_s <= 0:
        return 0
    seed = f"{schedule_id}@{nominal_ms}".encode()
    digest = hashlib.blake2b(seed, digest_size=8, person=b"fire-jitter").digest()
    return int.from_bytes(digest, "big") % (jitter_s * 1000)


def due_ms(schedule: Schedule, trigger: BaseTrigger, nominal_ms: int) -> int:
    """When the fire of ``nominal_ms`` is due: plus its jitter, kept before the next fire."""
    offset = jitter_offset_ms(schedule.schedule_id, nominal_ms, schedule.timing.jitter_s)
    if offset:
        following = next_fire_ms(trigger, after_ms=nominal_ms + 1)
        if following is not None:
            offset = min(offset, following - nominal_ms - 1)
    return nominal_ms + offset


def _preview_start(trigger: BaseTrigger, now_ms: int, jitter_ms: int) -> int:
    """Where the preview starts looking: a fire whose nominal time passed may still be due
    (its jitter). Looks back in doubling steps up to the jitter for a recent nominal time, so a
    fast schedule is not walked through a whole jitter's worth of fires."""
    span_ms = 1000
    while jitter_ms > 0:
        start = now_ms - min(span_ms, jitter_ms)
        fire = next_fire_ms(trigger, after_ms=start)
        if fire is None or fire < now_ms or span_ms >= jitter_ms:
            return start
        span_ms *= 2
    return now_ms


# Previews of shared (cron) triggers, by (trigger, count): the time asked at and the fires.
# Every schedule with the same cron and zone shows the same next fires: a preview made at
# ``lo`` holds for any time up to its first fire (no fire lies between, as in `_NextFires`).
_PREVIEWS: dict[tuple[BaseTrigger, int], tuple[int, list[int]]] = {}
_PREVIEWS_MAX = 4096


def upcoming_fires(schedule: Schedule, now_ms: int, count: int) -> list[int]:
    """The next ``count`` due times from ``now_ms`` (preview for the API; jitter included)."""
    trigger = build_trigger(schedule.timing, schedule.created_at_ms)
    if not _shared_preview(schedule.timing):
        return _upcoming(schedule, trigger, now_ms, count)
    key = (trigger, count)
    found = _PREVIEWS.get(key)
    if found is not None and found[0] <= now_ms and (not found[1] or now_ms <= found[1][0]):
        return list(found[1])
    fires = _upcoming(schedule, trigger, now_ms, count)
    if len(_PREVIEWS) >= _PREVIEWS_MAX and key not in _PREVIEWS:
        _PREVIEWS.clear()  # a bound, not an eviction policy: previews are recomputable
    _PREVIEWS[key] = (now_ms, fires)
    return list(fires)


def _shared_preview(timing: Timing) -> bool:
    """A cron without bounds or jitter: its trigger, and so its preview, is shared."""
    return timing.kind is TimingKind.CRON and not (
        timing.start_ms or timing.end_ms or timing.jitter_s
    )


def _upcoming(schedule: Schedule, trigger: BaseTrigger, now_ms: int, count: int) -> list[int]:
    fires: list[int] = []
    previous: int | None = None
    after_ms = _preview_start(trigger, now_ms, schedule.timing.jitter_s * 1000)
    while len(fires) < count:
        fire = next_fire_ms(trigger, after_ms=after_ms, previous_ms=previous)
        if fire is None:
            break
        previous = fire
        due = due_ms(schedule, trigger, fire)
        if due >= now_ms:
            fires.append(due)
    return fires
