"""Fire-time memos (start-up's, shared cron triggers', previews') answer exactly what the
direct computation answers, whatever order they are asked in."""

from __future__ import annotations

import random
from datetime import UTC

from apscheduler.triggers.base import BaseTrigger

from campaign_common.timeutil import datetime_to_ms, ms_to_datetime
from scheduler_svc.model import Schedule, Timing, TimingKind
from scheduler_svc.triggers import (
    FireTimes,
    build_trigger,
    cron_trigger,
    next_fire_ms,
    upcoming_fires,
)
from tests.scheduler_svc.records import schedule_record

HOUR_MS = 3600 * 1000
BASE_MS = 1_780_000_000_000  # 2026-05-28


def _direct(schedule: Schedule, since_ms: int, until_ms: int) -> bool:
    trigger = build_trigger(schedule.timing, schedule.created_at_ms)
    first = next_fire_ms(trigger, after_ms=since_ms + 1)
    return first is not None and first < until_ms


def test_fire_times_any_between_matches_the_direct_answer() -> None:
    rng = random.Random(11)
    timings = [
        Timing(TimingKind.CRON, cron="*/5 * * * *"),
        Timing(TimingKind.CRON, cron="30 2 * * *", timezone="America/New_York"),
        Timing(TimingKind.CRON, cron="0 9 * * 1-5", timezone="Europe/Berlin"),
        Timing(TimingKind.CRON, cron="0 0 1 1 *", timezone="Asia/Tokyo"),  # yearly
        Timing(TimingKind.CRON, cron="0 0 31 2 *"),  # never fires
        Timing(TimingKind.INTERVAL, interval_s=7 * 24 * 3600),
        Timing(TimingKind.RUN_AT, run_at_ms=BASE_MS - 5 * HOUR_MS),
    ]
    memo = FireTimes()
    until_ms = BASE_MS
    for n in range(400):
        schedule = schedule_record(
            f"s{n}", timing=timings[n % len(timings)], created_at_ms=BASE_MS - 400 * 24 * HOUR_MS
        )
        since_ms = until_ms - rng.choice([1, 5, 60, 600, 3600, 86_400, 400 * 86_400]) * 1000
        got = memo.any_between(memo.trigger(schedule), since_ms, until_ms)
        assert got == _direct(schedule, since_ms, until_ms), (schedule.timing, since_ms)


def _asked(trigger: BaseTrigger, after_ms: int) -> int | None:
    """The trigger's own answer, without any memo."""
    fire = trigger.get_next_fire_time(None, ms_to_datetime(after_ms))
    return None if fire is None else datetime_to_ms(fire.astimezone(UTC))


def test_shared_cron_next_fire_matches_the_trigger_in_any_order() -> None:
    rng = random.Random(7)
    # 2026-03-08 02:00 is skipped in New York (DST): fires around it move to 03:00 once.
    spring_forward_ms = 1_772_953_200_000  # 2026-03-08 07:00 UTC
    triggers = [
        cron_trigger("*/7 * * * *", "America/New_York"),
        cron_trigger("30 2 * * *", "America/New_York"),
        cron_trigger("0 9 * * 1-5", "Europe/Berlin"),
    ]
    times = [spring_forward_ms + rng.randrange(-3 * 86_400_000, 3 * 86_400_000) for _ in range(300)]
    for after_ms in times:  # near fires and exactly at them too
        for trigger in triggers:
            fire = _asked(trigger, after_ms)
            assert fire is not None
            for probe in (after_ms, fire - 1, fire, fire + 1, after_ms - 1):
                assert next_fire_ms(trigger, after_ms=probe) == _asked(trigger, probe), probe


def test_preview_of_a_shared_cron_moves_on_past_its_first_fire() -> None:
    schedule = schedule_record("hourly", timing=Timing(TimingKind.CRON, cron="0 * * * *"))
    start_ms = BASE_MS - 123_456
    first = upcoming_fires(schedule, start_ms, 3)
    hour = first[0]
    assert first == [hour, hour + HOUR_MS, hour + 2 * HOUR_MS] and hour >= start_ms
    assert upcoming_fires(schedule, hour, 3) == first  # a fire at "now" is still ahead
    assert upcoming_fires(schedule, hour + 1, 3) == [h + HOUR_MS for h in first]
    assert upcoming_fires(schedule, start_ms - HOUR_MS, 3)[0] == hour - HOUR_MS  # earlier again
