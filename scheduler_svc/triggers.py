"""Fire-time arithmetic: a schedule's timing as an APScheduler trigger, and its next fires.

APScheduler's triggers only compute times here; nothing in this module waits.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from campaign_common.timeutil import datetime_to_ms, ms_to_datetime
from scheduler_svc.cron import parse_cron
from scheduler_svc.model import Schedule, Timing, TimingKind


def build_trigger(timing: Timing, anchor_ms: int) -> BaseTrigger:
    """Trigger for ``timing``; interval fires are ``anchor_ms + k * interval`` for k >= 1."""
    tz = ZoneInfo(timing.timezone or "UTC")
    if timing.kind is TimingKind.CRON:
        return parse_cron(timing.cron, tz)
    if timing.kind is TimingKind.INTERVAL:
        first = ms_to_datetime(anchor_ms + timing.interval_s * 1000)
        return IntervalTrigger(seconds=timing.interval_s, start_date=first, timezone=tz)
    return DateTrigger(run_date=ms_to_datetime(timing.run_at_ms), timezone=tz)


def next_fire_ms(
    trigger: BaseTrigger, *, after_ms: int, previous_ms: int | None = None
) -> int | None:
    """First fire time at or after ``after_ms`` and strictly after ``previous_ms``, or None.

    Always asks the trigger afresh (no previous fire time): APScheduler's interval trigger
    would otherwise return ``previous + interval`` even when that is long past.
    """
    if previous_ms is not None:
        after_ms = max(after_ms, previous_ms + 1)
    fire: datetime | None = trigger.get_next_fire_time(None, ms_to_datetime(after_ms))
    if fire is None:
        return None
    fire_ms = datetime_to_ms(fire.astimezone(UTC))
    return fire_ms if fire_ms >= after_ms else None  # a one-shot whose time has passed


def upcoming_fires(schedule: Schedule, now_ms: int, count: int) -> list[int]:
    """The next ``count`` fire times from ``now_ms`` (preview for the API)."""
    trigger = build_trigger(schedule.timing, schedule.created_at_ms)
    fires: list[int] = []
    previous: int | None = None
    while len(fires) < count:
        fire = next_fire_ms(trigger, after_ms=now_ms, previous_ms=previous)
        if fire is None:
            break
        fires.append(fire)
        previous = fire
    return fires
