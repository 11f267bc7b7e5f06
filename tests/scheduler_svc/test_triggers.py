"""Fire-time memo used at start-up answers exactly what the direct computation answers."""

from __future__ import annotations

import random

from scheduler_svc.model import Schedule, Timing, TimingKind
from scheduler_svc.triggers import FireTimes, build_trigger, next_fire_ms
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
